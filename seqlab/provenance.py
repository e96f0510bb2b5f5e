"""The commit of the code that runs: ``$SEQLAB_COMMIT`` when set (copies without git history, such as a device
machine's), else git's HEAD of the checkout seqlab runs from, else ``unknown``."""

from __future__ import annotations

import functools
import os
import subprocess
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parents[1]


def code_commit() -> str:
    """$SEQLAB_COMMIT, else the checkout's short HEAD, else ``unknown``."""
    return os.environ.get("SEQLAB_COMMIT") or _checkout_head()


@functools.cache
def _checkout_head() -> str:
    """The checkout's short HEAD when this process first asks (one git call, not one per result entry)."""
    try:
        return subprocess.check_output(
            ["git", "rev-parse", "--short", "HEAD"], text=True, cwd=CHECKOUT, stderr=subprocess.DEVNULL
        ).strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
