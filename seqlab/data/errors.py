"""Errors and warnings about data; every message names the file and, where relevant, the line."""

from __future__ import annotations

from pathlib import Path


class DataError(ValueError):
    """A problem with input data, e.g. ``data/train.de.gz:17: empty source line``.

    ``path`` and ``line`` (1-based) are kept as attributes; when given they prefix the message.
    Configuration problems that concern no file (a missing task option) pass neither."""

    def __init__(self, message: str, path: str | Path | None = None, line: int | None = None):
        self.path = None if path is None else str(path)
        self.line = line
        self.reason = message
        prefix = ""
        if self.path is not None:
            prefix = f"{self.path}:{line}: " if line is not None else f"{self.path}: "
        super().__init__(prefix + message)


class DataWarning(UserWarning):
    """Recoverable data problems (skipped empty lines, dropped long examples); one counted warning each."""
