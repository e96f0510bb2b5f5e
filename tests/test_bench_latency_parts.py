"""benchmarks/latency_parts.py: a batch-1 search's profile split into its parts (prologue, chunk graphs, eager)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from helpers import load_script


def span(name: str, ts: float, dur: float, cat: str = "user_annotation", **args) -> dict:
    return {"ph": "X", "name": name, "ts": ts, "dur": dur, "cat": cat, "args": args}


def kernel(ts: float, dur: float, correlation: int, name: str = "k") -> dict:
    return span(name, ts, dur, cat="kernel", correlation=correlation)


@pytest.fixture
def parts(monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))  # its imports beside it
    return load_script("latency_parts")


def test_kernels_go_to_the_part_whose_label_holds_their_launch(parts):
    """A kernel belongs to the label around the host call that launched it (by correlation id), not to where it
    ran on the GPU; launches outside a sentence are left out; busy time counts overlapping kernels once."""
    trace = {
        "traceEvents": [
            span("sentence", 0, 1000),
            span("seqlab.search.prologue", 10, 40),
            span("seqlab.search.chunk", 60, 40),
            span("seqlab.search.end_test", 100, 90),
            span("seqlab.search.chunk", 200, 40),
            span("cudaGraphLaunch", 20, 5, cat="cuda_runtime", correlation=1),
            span("cudaGraphLaunch", 70, 5, cat="cuda_runtime", correlation=2),
            span("cudaGraphLaunch", 210, 5, cat="cuda_runtime", correlation=3),
            span("cudaLaunchKernel", 900, 5, cat="cuda_runtime", correlation=4),
            span("cudaGraphLaunch", 1200, 5, cat="cuda_runtime", correlation=5),  # after the sentence
            kernel(100, 10, 1),
            kernel(110, 20, 1),
            kernel(130, 20, 2, "gemv"),
            kernel(300, 20, 3, "gemv"),
            kernel(315, 15, 3, "softmax"),  # overlaps the one before it
            kernel(905, 5, 4),
            kernel(1300, 50, 5),
        ]
    }
    (row,) = parts.split_sentences(trace)
    assert (row["prologue_kernels"], row["chunk_kernels"], row["eager_kernels"]) == (2, 3, 1)
    assert (row["prologue_gpu_us"], row["chunk_gpu_us"], row["eager_gpu_us"]) == (30, 50, 5)
    assert row["busy_us"] == 85 and row["wall_us"] == 1000 and row["chunks"] == 2
    assert row["idle_between_us"] == (910 - 100) - 85
    summary = parts.summarise([row], chunk=2)
    assert summary["steps"] == 4 and summary["kernels_per_step"] == 0.75 and summary["step_gpu_us"] == 12.5
    assert summary["top_step_kernels"][0] == {"name": "gemv", "us_per_step": 10.0, "per_step": 0.5}


def test_variants_set_their_switches_and_restore_them(parts, monkeypatch):
    monkeypatch.setenv("SEQLAB_DECODE_TF32", "1")
    monkeypatch.delenv("SEQLAB_COMPILE_DECODE", raising=False)
    with parts.variant_env("compiled+fp32"):
        assert os.environ["SEQLAB_COMPILE_DECODE"] == "1" and os.environ["SEQLAB_DECODE_TF32"] == "0"
    assert os.environ["SEQLAB_DECODE_TF32"] == "1" and "SEQLAB_COMPILE_DECODE" not in os.environ
    from seqlab.models import transformer

    with parts.variant_env("compiled+linear+reduce"):  # the model's modes are read at import: set and restored
        assert (transformer.FEW_ROWS_LINEAR, transformer.SINGLE_QUERY_MODE) == ("reduce", "reduce")
    assert (transformer.FEW_ROWS_LINEAR, transformer.SINGLE_QUERY_MODE) == ("auto", "auto")
    with pytest.raises(SystemExit, match="unknown variant"):
        with parts.variant_env("fast"):
            pass


def test_host_parts_time_the_host_before_and_after_a_search(parts, monkeypatch):
    """The hook sees the search's labelled parts (no profiler): the time before the first (here at least 2 ms of
    setup) and after the last (at least 3 ms of results), and it is unset afterwards."""
    import time

    import torch

    from seqlab.decoding import graphs

    def fake_decode(model, sources, decode, device, beam_size):
        time.sleep(0.002)
        for part in ("seqlab.search.prologue", "seqlab.search.chunk", "seqlab.search.end_test"):
            with graphs.labelled(part):
                pass
        time.sleep(0.003)

    monkeypatch.setattr(parts, "decode_ids", fake_decode)
    found = parts.host_parts(None, [[5, 2], [6, 2]], None, torch.device("cpu"))
    assert found["before_search_us"] >= 2000 and found["after_search_us"] >= 3000
    assert graphs.PART_HOOK is None


def test_one_chunk_is_read_kernel_by_kernel_from_a_kept_trace(parts, tmp_path, capsys):
    """The middle chunk of the middle sentence, its kernels in the order they ran with the idle gap before each;
    ``--from-trace`` reads a gzipped trace without a model and writes the summary with that chunk."""
    import gzip
    import json

    trace = {
        "traceEvents": [
            span("sentence", 0, 1000),
            span("seqlab.search.chunk", 10, 20),
            span("seqlab.search.chunk", 100, 20),
            span("seqlab.search.chunk", 200, 20),
            span("cudaGraphLaunch", 15, 5, cat="cuda_runtime", correlation=1),
            span("cudaGraphLaunch", 105, 5, cat="cuda_runtime", correlation=2),
            span("cudaGraphLaunch", 205, 5, cat="cuda_runtime", correlation=3),
            kernel(50, 10, 1, "first chunk"),
            kernel(150, 4, 2, "layer_norm"),
            kernel(140, 6, 2, "gemv"),  # listed out of order: sorted by when it ran
            kernel(155, 3, 2, "add"),
            kernel(250, 10, 3, "last chunk"),
        ]
    }
    assert parts.chunk_sequence(trace) == [
        {"name": "gemv", "us": 6, "gap_us": 0.0},
        {"name": "layer_norm", "us": 4, "gap_us": 4},
        {"name": "add", "us": 3, "gap_us": 1},
    ]
    kept, report = tmp_path / "default.json.gz", tmp_path / "summary.json"
    kept.write_bytes(gzip.compress(json.dumps(trace).encode()))
    assert parts.main(["--from-trace", str(kept), "--report", str(report)]) == 0
    summary = json.loads(report.read_text())
    assert [k["name"] for k in summary["chunk_sequence"]] == ["gemv", "layer_norm", "add"]
    assert summary["steps"] == 3 * 2 and "layer_norm" in capsys.readouterr().out
