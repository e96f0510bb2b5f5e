"""Wall-clock time of one training step, with the GPU synchronised on both sides, and the batches benchmarks time."""

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


def first_batches(trainer: Any, count: int) -> list:
    """The first ``count`` training batches of epoch 0, on the trainer's device (every timed system steps on them)."""
    from seqlab.data.batching import collate

    trainer.sampler.set_epoch(0)
    batches = []
    for indices in trainer.sampler:
        batches.append(collate(trainer.train_data, indices).to(trainer.device))
        if len(batches) >= count:
            break
    return batches
