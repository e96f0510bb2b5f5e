"""Wall-clock time of one training step, with the GPU synchronised on both sides, the batches benchmarks time, and
torch.profiler tables of what a piece of work spends its time on."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch


def sync(device: torch.device) -> None:
    """Wait for the work queued on ``device`` (a no-op off CUDA)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(work: Callable[[], Any], device: torch.device) -> tuple[Any, float]:
    """``work()``'s result and the seconds it took, queued GPU work included (synchronised on both sides)."""
    sync(device)
    start = time.perf_counter()
    result = work()
    sync(device)
    return result, time.perf_counter() - start


def until_returned(work: Callable[[], Any], device: torch.device) -> tuple[Any, float]:
    """``work()``'s result and the seconds until it returned, the device synchronised before; for work whose result is
    on the host (a search's hypotheses as lists). GPU work it leaves queued behind that result (the chunk a captured
    search ran past its end, whose output nothing reads) is waited for after the timing, not inside it."""
    sync(device)
    start = time.perf_counter()
    result = work()
    seconds = time.perf_counter() - start
    sync(device)
    return result, seconds


#: above these, :func:`timing_conditions` reports a timing as contended: the GPU's utilisation while this process
#: queues nothing (percent), and the 1-minute load average per CPU beyond this process's own (one busy thread on a
#: GPU, its torch threads on the CPU)
BUSY_GPU_PERCENT = 5
BUSY_LOAD_PER_CPU = 0.25


def gpu_id(device: torch.device) -> str:
    """nvidia-smi's name of ``device``: its UUID (CUDA_VISIBLE_DEVICES renumbers the devices a process sees), or
    its index where the UUID is unknown."""
    index = device.index if device.index is not None else torch.cuda.current_device()
    try:
        return f"GPU-{torch.cuda.get_device_properties(index).uuid}"
    except (AttributeError, RuntimeError, AssertionError):
        return str(index)


def gpu_utilization(device: torch.device) -> float | None:
    """The GPU's utilisation in percent over nvidia-smi's last sample period, or None where nvidia-smi cannot say."""
    query = ["nvidia-smi", f"--id={gpu_id(device)}", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"]
    try:
        return float(subprocess.run(query, capture_output=True, text=True, timeout=30, check=True).stdout.split()[0])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None


def timing_conditions(device: torch.device, settle_seconds: float = 1.0) -> dict[str, Any]:
    """What else runs beside a timing: the GPU's utilisation after this process has synchronised and waited
    ``settle_seconds`` (another process's kernels), and the host's 1-minute load average against its CPUs.
    ``contended`` is True when either is above :data:`BUSY_GPU_PERCENT` / :data:`BUSY_LOAD_PER_CPU`: latencies of
    host-bound searches measured then are not speed figures."""
    busy = None
    if device.type == "cuda":
        sync(device)
        time.sleep(settle_seconds)
        busy = gpu_utilization(device)
    cpus = os.cpu_count() or 1
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    own = 1 if device.type == "cuda" else torch.get_num_threads()  # this process's share of the load
    contended = (busy is not None and busy > BUSY_GPU_PERCENT) or (load - own) / cpus > BUSY_LOAD_PER_CPU
    return {"gpu_utilization_idle_percent": busy, "load_1min": round(load, 2), "cpus": cpus, "contended": contended}


def warn_if_contended(conditions: dict[str, Any], what: str) -> None:
    """Print a warning naming ``what`` when :func:`timing_conditions` found the machine shared."""
    if conditions["contended"]:
        print(
            f"WARNING: {what} timed beside other work (GPU {conditions['gpu_utilization_idle_percent']} % busy while "
            f"this process waited, load {conditions['load_1min']} on {conditions['cpus']} CPUs): the latencies are "
            "not a speed figure; time again with the machine to itself",
            flush=True,
        )


def contended(found: list[dict[str, Any]]) -> bool:
    """Whether any of these :func:`timing_conditions` found the machine shared."""
    return any(conditions["contended"] for conditions in found)


def report_conditions(found: list[dict[str, Any]], what: str) -> bool:
    """:func:`warn_if_contended` for the conditions before and after a timing of ``what``; whether either found the
    machine shared."""
    for when, conditions in zip(("before", "after"), found, strict=True):
        warn_if_contended(conditions, f"{what} ({when} the timing)")
    return contended(found)


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

    from seqlab.train.profiling import release_cupti_after_profiling

    cuda = device.type == "cuda"
    if cuda:
        release_cupti_after_profiling()  # what is timed after this profile is not slowed by it
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
