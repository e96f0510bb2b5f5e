"""Wall-clock time of one training step, with the GPU synchronised on both sides, the batches benchmarks time, and
torch.profiler tables of what a piece of work spends its time on."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch


def timed(work: Callable[[], Any], device: torch.device) -> tuple[Any, float]:
    """``work()``'s result and the seconds it took, queued GPU work included (synchronised on both sides)."""
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    result = work()
    if cuda:
        torch.cuda.synchronize()
    return result, time.perf_counter() - start


def timed_train_step(trainer: Any, batch: Any) -> float:
    """Seconds one ``trainer.train_step(batch)`` takes, queued GPU work included."""
    return timed(lambda: trainer.train_step(batch), trainer.device)[1]


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


def profile_table(work: Callable[[], Any], device: torch.device, path: Path, rows: int = 40) -> None:
    """Run ``work()`` under torch.profiler and write its operators to ``path``: the top ``rows`` by self CUDA time
    (on a GPU; kernels replayed from a CUDA graph included), then by self host time."""
    from torch.profiler import ProfilerActivity, profile

    cuda = device.type == "cuda"
    with profile(activities=[ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])) as prof:
        work()
        if cuda:
            torch.cuda.synchronize()
    table = prof.key_averages().table
    text = ([table(sort_by="self_cuda_time_total", row_limit=rows)] if cuda else []) + [
        table(sort_by="self_cpu_time_total", row_limit=rows)
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n\n".join(text), encoding="utf-8")
