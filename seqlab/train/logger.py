"""Metrics to a JSONL file, TensorBoard and the console."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any


class MetricLogger:
    def __init__(self, run_dir: Path, tensorboard: bool = True, enabled: bool = True):
        self.enabled = enabled
        self.run_dir = run_dir
        self.path = run_dir / "log.jsonl"
        self.writer = None
        if enabled and tensorboard:
            self.writer = self._tensorboard()

    def _tensorboard(self, purge_step: int | None = None) -> Any:
        try:
            from torch.utils.tensorboard import SummaryWriter

            return SummaryWriter(str(self.run_dir / "tensorboard"), purge_step=purge_step)
        except ImportError:  # tensorboard is a dependency, but stay usable without it
            return None

    def resume(self, step: int) -> None:
        """A run resumed from its checkpoint at ``step``: drop the records logged after it (an interrupted
        attempt's, which the resumed run writes again), so every step appears once, and mark the resume."""
        if not self.enabled:
            return
        if self.path.exists():
            kept, dropped = [], 0
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:  # a line torn by a kill
                    dropped += 1
                    continue
                if rec.get("step", 0) > step:
                    dropped += 1
                else:
                    kept.append(line)
            if dropped:
                tmp = self.path.with_suffix(".jsonl.tmp")
                tmp.write_text("".join(k + "\n" for k in kept), encoding="utf-8")
                tmp.replace(self.path)
        self.log("resume", step, {})
        if self.writer is not None:  # TensorBoard: drop the events after the checkpoint as well
            self.writer.close()
            self.writer = self._tensorboard(purge_step=step + 1)

    def log(self, kind: str, step: int, values: dict[str, Any]) -> None:
        if not self.enabled:
            return
        record = {"kind": kind, "step": step, "time": time.time(), **values}
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        if self.writer is not None:
            for key, value in values.items():
                if isinstance(value, (int, float)):
                    self.writer.add_scalar(f"{kind}/{key}", value, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
