"""``train.profile_steps: [first, last]``: torch.profiler over those training steps of the real loop (collation,
copies, the step, logging), written to ``run_dir/profile/``:

* ``ops_by_device_time.txt`` / ``ops_by_host_time.txt``: the operators and seqlab's labelled regions
  (``seqlab.batch``, ``seqlab.loss``, ``seqlab.backward``, ``seqlab.optimizer``) by self time;
* ``trace.json``: a Chrome / Perfetto trace;
* ``summary.json``: the steps' wall time and, on a GPU, how much of it the device was busy (``device_busy_share``
  well below 1: the loop around the kernels, not the kernels, sets the pace).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import torch
from torch.profiler import ProfilerActivity, profile

PROFILE_DIR = "profile"


def release_cupti_after_profiling() -> None:
    """Ask Kineto to finalize CUPTI when a CUDA profiling session ends (``TEARDOWN_CUPTI=1``), unless the user set
    it.  Without it CUPTI stays attached for the rest of the process and every later kernel launch pays for it
    (10-20 % slower training after a profile, pytorch/pytorch#146604), so a figure timed after a profile in the same
    process would be too low.  Only on CUDA 12.6 and later, where torch.profiler itself keeps the teardown on with
    CUDA graphs (before 12.6 a re-initialised CUPTI crashed beside them); elsewhere the default is left alone."""
    cuda = getattr(torch.version, "cuda", None)
    if cuda and tuple(int(x) for x in cuda.split(".")[:2]) >= (12, 6):
        os.environ.setdefault("TEARDOWN_CUPTI", "1")


def union_length(spans: list[tuple[float, float]]) -> float:
    """The total length covered by intervals ``(start, end)``; overlaps counted once."""
    busy, end = 0.0, float("-inf")
    for lo, hi in sorted(spans):
        if hi <= end:
            continue
        busy += hi - max(lo, end)
        end = hi
    return busy


def device_busy_us(prof: Any) -> float:
    """Microseconds of device (kernel and copy) time the profiler saw; intervals of overlapping kernels counted once.
    The device-side spans of labelled regions (``record_function``: ``seqlab.loss`` ...) are not work: they cover
    the gaps between kernels too (counted before session 23, which about doubled the busy share)."""
    return union_length(
        [
            (e.time_range.start, e.time_range.end)
            for e in prof.events()
            if getattr(e, "device_type", None) == torch.autograd.DeviceType.CUDA
            and not getattr(e, "is_user_annotation", False)
            and e.time_range.end > e.time_range.start
        ]
    )


def trace_device_busy_us(trace: dict) -> float:
    """:func:`device_busy_us` from a Chrome trace (``trace.json``): the union of its kernel, memcpy and memset
    events (``cat`` ``kernel``, ``gpu_memcpy``, ``gpu_memset``), in microseconds."""
    events = trace["traceEvents"] if isinstance(trace, dict) else trace
    return union_length([(e["ts"], e["ts"] + e["dur"]) for e in device_events(events)])


#: the ``cat`` of a Chrome trace's device work: kernels, copies and memsets
DEVICE_EVENT_KINDS = frozenset({"kernel", "gpu_memcpy", "gpu_memset"})


def device_events(events: list[dict]) -> list[dict]:
    """The events of a Chrome trace's ``traceEvents`` that are device work (:data:`DEVICE_EVENT_KINDS`) and last."""
    return [e for e in events if e.get("cat") in DEVICE_EVENT_KINDS and e.get("dur")]


class StepProfiler:
    """Records training steps ``first`` .. ``last`` (1-based step numbers, as logged) and writes the tables."""

    def __init__(self, steps: tuple[int, int] | list[int] | None, run_dir: Path, device: torch.device, enabled: bool):
        self.first, self.last = (int(steps[0]), int(steps[1])) if steps else (0, -1)
        self.out = Path(run_dir) / PROFILE_DIR
        self.cuda = device.type == "cuda"
        self.enabled = enabled and steps is not None
        self._prof: Any = None
        self._t0 = 0.0

    def before_step(self, done: int) -> None:
        """Called with the number of steps done, before the next step's batch is built."""
        if self.enabled and self._prof is None and done + 1 == self.first:
            activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if self.cuda else [])
            if self.cuda:
                release_cupti_after_profiling()  # the steps after the profile run as fast as the ones before
            self._prof = profile(activities=activities, record_shapes=False)
            self._prof.__enter__()
            if self.cuda:
                torch.cuda.synchronize()
            self._t0 = time.perf_counter()

    def after_step(self, done: int, final: bool = False) -> None:
        """Called with the number of steps done, after the step's logging and bookkeeping (``final``: training
        ends here, so the steps recorded so far are written)."""
        if self._prof is None or (done < self.last and not final):
            return
        if self.cuda:
            torch.cuda.synchronize()
        wall = time.perf_counter() - self._t0
        self._prof.__exit__(None, None, None)
        prof, self._prof, self.enabled = self._prof, None, False
        self.write(prof, wall, done - self.first + 1)

    def write(self, prof: Any, wall_s: float, steps: int) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        averages = prof.key_averages()
        device_key = "self_cuda_time_total" if self.cuda else "self_cpu_time_total"
        (self.out / "ops_by_device_time.txt").write_text(averages.table(sort_by=device_key, row_limit=50) + "\n")
        (self.out / "ops_by_host_time.txt").write_text(
            averages.table(sort_by="self_cpu_time_total", row_limit=50) + "\n"
        )
        prof.export_chrome_trace(str(self.out / "trace.json"))
        summary: dict[str, Any] = {
            "steps": [self.first, self.first + steps - 1],
            "wall_ms_per_step": 1000.0 * wall_s / max(steps, 1),
        }
        if self.cuda:
            busy = device_busy_us(prof) / 1e6
            summary.update(device_busy_ms_per_step=1000.0 * busy / max(steps, 1), device_busy_share=busy / wall_s)
        (self.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
