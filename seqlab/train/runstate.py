"""A run's life outside the training loop: has it finished, and stopping cleanly on Ctrl-C / SIGTERM.

* :func:`finished_run` reads ``results.json`` (and no data) to tell whether rerunning a command would train no
  step, so the command can say so and how to continue, instead of re-decoding the test set.
* :class:`StopSignals` turns the first SIGINT / SIGTERM into a request the trainer honours after the current step
  (it saves ``checkpoint_last.pt`` and raises :class:`TrainingInterrupted`); a second signal stops at once.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

#: the exit code of a run stopped by Ctrl-C or SIGTERM (the shell's 128 + SIGINT)
INTERRUPTED_EXIT = 130


class TrainingInterrupted(Exception):
    """Training stopped on a signal after saving ``checkpoint``; rerunning the same command resumes."""

    def __init__(self, step: int, checkpoint: Path | None, signal_name: str):
        self.step, self.checkpoint, self.signal_name = step, checkpoint, signal_name
        saved = f"saved {checkpoint}" if checkpoint else "nothing saved"
        super().__init__(f"{signal_name} at step {step}: {saved}; run the same command again to resume")


@dataclass
class FinishedRun:
    """A run whose budget is spent: what ended it and its stored results."""

    run_dir: Path
    steps: int
    reason: str  # the config key whose budget is spent (train.max_steps, ...) or "early stopping"
    results: dict[str, Any] = field(default_factory=dict)

    def message(self, continue_hint: str | None = None) -> str:
        hint = (
            continue_hint
            or {
                "train.max_steps": "raise train.max_steps",
                "train.max_epochs": "raise train.max_epochs",
                "train.max_minutes": "raise train.max_minutes",
                "train.patience": "raise train.patience (or set it to null)",
            }[self.reason]
        )
        return (
            f"{self.run_dir} has finished: {self.steps} steps, its {self.reason} budget is spent "
            f"(results in {self.run_dir / 'results.json'}); to continue it, {hint}; to start over, use another "
            "run_dir or train.resume=false"
        )


def finished_run(cfg: Any) -> FinishedRun | None:
    """The run of ``cfg`` when it finished (its last results are newer than its last checkpoint) and ``cfg``'s
    budget allows no further step; None when there is something to train (or nothing to resume)."""
    tc, run_dir = cfg.train, Path(cfg.run_dir)
    last, results_path = run_dir / "checkpoint_last.pt", run_dir / "results.json"
    if not tc.resume or not last.is_file() or not results_path.is_file():
        return None
    if results_path.stat().st_mtime < last.stat().st_mtime:  # trained further after these results
        return None
    try:
        results = json.loads(results_path.read_text(encoding="utf-8"))
        steps = int(results["steps"])
        budget_steps = int(results.get("budget_steps", steps))
        epochs, seconds = int(results["epochs"]), float(results["train_seconds"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    reason = None
    if tc.max_steps is not None and budget_steps >= tc.max_steps:
        reason = "train.max_steps"
    elif tc.max_minutes is not None and seconds >= tc.max_minutes * 60:
        reason = "train.max_minutes"
    elif epochs >= tc.max_epochs:
        reason = "train.max_epochs"
    elif (
        results.get("stopped_early")
        and tc.patience is not None
        and int(results.get("bad_evals", tc.patience)) >= tc.patience
    ):
        reason = "train.patience"
    return FinishedRun(run_dir, steps, reason, results) if reason else None


class StopSignals:
    """Within ``with StopSignals() as stop:`` and while ``stop.deferring``, SIGINT and SIGTERM set
    ``stop.requested`` (the signal's name) and print one line; a second one, or one while not deferring, raises
    KeyboardInterrupt (SIGTERM too).  Outside the main thread it does nothing."""

    SIGNALS = ("SIGINT", "SIGTERM")

    def __init__(self, announce: bool = True):
        self.requested: str | None = None
        self.announce = announce
        #: False outside the training loop (evaluation, start-up): the first signal then stops at once
        self.deferring = False
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self.requested is not None or not self.deferring:
            raise KeyboardInterrupt
        self.requested = name
        if self.announce:
            print(
                f"\n{name}: stopping after this step and saving a checkpoint (again to quit at once)",
                file=sys.stderr,
                flush=True,
            )

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for name in self.SIGNALS:
                signum = getattr(signal, name)
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous.clear()
