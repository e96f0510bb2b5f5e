"""The commit of the code that runs: ``$SEQLAB_COMMIT`` when set (copies without git history, such as a device
machine's), else git's HEAD of the checkout seqlab runs from, else ``unknown``."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parents[1]


def code_commit() -> str:
    """$SEQLAB_COMMIT, else the checkout's short HEAD, else ``unknown``."""
    if os.environ.get("SEQLAB_COMMIT"):
        return os.environ["SEQLAB_COMMIT"]
    try:
        return subprocess.check_output(
            ["git", "rev-parse", "--short", "HEAD"], text=True, cwd=CHECKOUT, stderr=subprocess.DEVNULL
        ).strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
