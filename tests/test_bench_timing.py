"""seqlab.bench.timing: what else runs beside a timing (a shared GPU or busy host makes latencies no speed figure)."""

from __future__ import annotations

import subprocess

import torch

from seqlab.bench import timing


def test_gpu_utilization_reads_nvidia_smi_and_is_none_where_it_cannot(monkeypatch):
    if not torch.cuda.is_available():  # no UUID to name the device by: its index
        assert timing.gpu_id(torch.device("cuda", 3)) == "3"
    calls = []

    def smi(cmd, **_kw):
        calls.append(cmd)
        return subprocess.CompletedProcess(cmd, 0, stdout="37\n")

    monkeypatch.setattr(timing.subprocess, "run", smi)
    monkeypatch.setattr(timing, "gpu_id", lambda device: f"GPU-uuid-of-{device.index}")
    assert timing.gpu_utilization(torch.device("cuda", 1)) == 37.0
    assert "--id=GPU-uuid-of-1" in calls[0] and "--query-gpu=utilization.gpu" in calls[0]

    def missing(cmd, **_kw):
        raise FileNotFoundError("nvidia-smi")

    monkeypatch.setattr(timing.subprocess, "run", missing)
    assert timing.gpu_utilization(torch.device("cuda", 0)) is None
    monkeypatch.setattr(timing.subprocess, "run", lambda cmd, **_kw: subprocess.CompletedProcess(cmd, 0, stdout=""))
    assert timing.gpu_utilization(torch.device("cuda", 0)) is None


def test_timing_conditions_flag_a_busy_gpu_or_host(monkeypatch, capsys):
    monkeypatch.setattr(timing.os, "cpu_count", lambda: 16)
    monkeypatch.setattr(timing.torch.cuda, "synchronize", lambda *_: None)
    cuda = torch.device("cuda", 0)

    def conditions(load: float, busy: float | None, device: torch.device = cuda) -> dict:
        monkeypatch.setattr(timing.os, "getloadavg", lambda: (load, load, load))
        monkeypatch.setattr(timing, "gpu_utilization", lambda _device: busy)
        return timing.timing_conditions(device, settle_seconds=0)

    quiet = conditions(1.0, 0.0)
    assert quiet == {"gpu_utilization_idle_percent": 0.0, "load_1min": 1.0, "cpus": 16, "contended": False}
    assert conditions(1.0, 40.0)["contended"]  # another process's kernels while this one waited
    assert conditions(1 + 16 * 0.25 + 0.5, 0.0)["contended"]  # session 22: nine host-bound runs beside the timing
    assert not conditions(1 + 16 * 0.25 - 0.5, None)["contended"]  # nvidia-smi silent: the host decides
    on_cpu = conditions(1.0, 99.0, torch.device("cpu"))  # no GPU queried on the CPU
    assert on_cpu["gpu_utilization_idle_percent"] is None and not on_cpu["contended"]
    monkeypatch.setattr(timing.torch, "get_num_threads", lambda: 8)  # on the CPU its own threads make the load
    assert not conditions(8 + 16 * 0.25 - 0.5, None, torch.device("cpu"))["contended"]
    assert conditions(8 + 16 * 0.25 + 0.5, None, torch.device("cpu"))["contended"]

    timing.warn_if_contended(quiet, "quiet run")
    assert capsys.readouterr().out == ""
    timing.warn_if_contended(conditions(1.0, 40.0), "de-en step10000 latencies")
    out = capsys.readouterr().out
    assert out.startswith("WARNING: de-en step10000 latencies timed beside other work") and "40.0 %" in out
    busy = conditions(1.0, 40.0)
    assert not timing.report_conditions([quiet, quiet], "bench_speed") and capsys.readouterr().out == ""
    assert timing.report_conditions([quiet, busy], "bench_speed") and timing.contended([busy, quiet])
    assert capsys.readouterr().out.startswith("WARNING: bench_speed (after the timing) timed beside other work")


def test_until_returned_times_the_work_to_its_return_and_waits_for_the_device_after_it(monkeypatch):
    """A latency until the result is on the host: the device synchronised before the clock starts, the clock stopped
    when the work returns, and the work it left queued (a search's chunk past its end) waited for after the clock."""
    events = []
    clock = iter([1.0, 1.25])
    monkeypatch.setattr(timing.torch.cuda, "synchronize", lambda *_: events.append("sync"))
    monkeypatch.setattr(timing.time, "perf_counter", lambda: events.append("clock") or next(clock))
    result, seconds = timing.until_returned(lambda: events.append("work") or "hyp", torch.device("cuda", 0))
    assert (result, seconds) == ("hyp", 0.25)
    assert events == ["sync", "clock", "work", "clock", "sync"]
