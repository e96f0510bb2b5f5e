"""Wall-clock time of one training step, with the GPU synchronised on both sides."""

from __future__ import annotations

import time
from typing import Any

import torch


def timed_train_step(trainer: Any, batch: Any) -> float:
    """Seconds one ``trainer.train_step(batch)`` takes, queued GPU work included."""
    cuda = trainer.device.type == "cuda"
    if cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    trainer.train_step(batch)
    if cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - start
