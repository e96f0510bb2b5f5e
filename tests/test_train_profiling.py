"""seqlab.train.profiling: how busy the device was, from profiler events and from a saved Chrome trace."""

from __future__ import annotations

import json
from types import SimpleNamespace

import torch
from helpers import load_script

from seqlab.train.profiling import device_busy_us, trace_device_busy_us, union_length


def test_union_length_counts_overlaps_once():
    assert union_length([(0, 10), (5, 12), (20, 25), (21, 22)]) == 17
    assert union_length([]) == 0


def test_device_busy_leaves_out_the_device_spans_of_labelled_regions():
    """A record_function region's device-side span covers the gaps between its kernels: it is not work."""
    cuda, cpu = torch.autograd.DeviceType.CUDA, torch.autograd.DeviceType.CPU

    def event(lo, hi, device=cuda, annotation=False):
        return SimpleNamespace(
            time_range=SimpleNamespace(start=lo, end=hi), device_type=device, is_user_annotation=annotation
        )

    prof = SimpleNamespace(
        events=lambda: [event(0, 4), event(6, 8), event(0, 100, annotation=True), event(0, 50, device=cpu)]
    )
    assert device_busy_us(prof) == 6


def test_trace_device_busy_counts_kernels_copies_and_memsets_only(tmp_path):
    trace = {
        "traceEvents": [
            {"cat": "kernel", "ts": 0, "dur": 4},
            {"cat": "gpu_memcpy", "ts": 3, "dur": 3},
            {"cat": "gpu_memset", "ts": 10, "dur": 1},
            {"cat": "gpu_user_annotation", "ts": 0, "dur": 100},
            {"cat": "cpu_op", "ts": 0, "dur": 50},
        ]
    }
    assert trace_device_busy_us(trace) == 7
    (tmp_path / "trace.json").write_text(json.dumps(trace))
    (tmp_path / "summary.json").write_text(json.dumps({"steps": [1, 2], "wall_ms_per_step": 0.007}))
    assert load_script("trace_busy").main([str(tmp_path / "trace.json"), "--no-write"]) == 0
