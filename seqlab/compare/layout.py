"""Names in a comparison directory and the ``--extra-test`` argument, shared by the runner, the scorer and the
report (a module of its own, so that none of them imports another for them)."""

from __future__ import annotations

import re
from pathlib import Path

from seqlab.config import ConfigError

START_DIR = "start"  # OUT/start: the shared checkpoint's test (and extra test) outputs and scores
EXTRA_DIR = "extra"  # run_dir/extra: a run's best checkpoint on the extra test sets


def parse_extra_test(item: str) -> tuple[str, list[str]]:
    """``NAME=SRC,REF`` -> (NAME, [SRC, REF]) with absolute paths; the files must exist."""
    name, _, files = item.partition("=")
    name, paths = name.strip(), [f.strip() for f in files.split(",")]
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]*", name) or len(paths) != 2 or not all(paths):
        raise ConfigError(f"--extra-test {item!r}: expected NAME=SRC,REF (NAME of letters, digits, _ and -)")
    if name in ("test", "valid", "train"):
        raise ConfigError(f"--extra-test {item!r}: {name!r} names a split of the task; choose another name")
    for path in paths:
        if not Path(path).is_file():
            raise ConfigError(f"--extra-test {name}: no file {path}")
    return name, [str(Path(p).resolve()) for p in paths]
