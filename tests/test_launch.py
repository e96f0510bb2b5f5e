"""seqlab.launch.run_jobs: the one scheduler of the benchmarks and `seqlab compare` (finished jobs skipped, failures
reported, deadline stops, slots per GPU with their memory shares, in-process work)."""

from __future__ import annotations

import sys
import threading
import time

import pytest

from seqlab.launch import Job, Messages, Slot, job_slots, run_jobs


def job(tmp_path, name: str, code: str, marker: bool = True) -> Job:
    done = tmp_path / f"{name}.done"
    argv = [sys.executable, "-c", code + (f"; open({str(done)!r}, 'w').close()" if marker else "")]
    return Job(name, argv, tmp_path / "logs" / f"{name}.log", done.exists if marker else None)


def test_jobs_run_skip_and_fail(tmp_path):
    (tmp_path / "old.done").touch()
    jobs = [
        job(tmp_path, "old", "pass"),
        job(tmp_path, "a", "print('hi')"),
        job(tmp_path, "bad", "raise SystemExit(4)"),
        job(tmp_path, "nomark", "pass", marker=False),
    ]
    outcomes = {o.name: o for o in run_jobs(jobs, slots=2, echo=lambda s: None)}
    assert {n: o.status for n, o in outcomes.items()} == {
        "old": "skipped",
        "a": "done",
        "bad": "failed",
        "nomark": "done",
    }
    assert outcomes["bad"].returncode == 4
    assert "hi" in (tmp_path / "logs" / "a.log").read_text()


def test_deadline_stops_running_and_pending_jobs(tmp_path):
    jobs = [job(tmp_path, "slow", "import time; time.sleep(60)"), job(tmp_path, "next", "pass")]
    start = time.time()
    outcomes = run_jobs(jobs, deadline=time.time() + 1.0, echo=lambda s: None)
    assert {o.name: o.status for o in outcomes} == {"slow": "stopped", "next": "stopped"}
    assert time.time() - start < 30 and not (tmp_path / "next.done").exists()


def test_slots_share_each_gpu_memory():
    assert job_slots(["0", "1"], 2, None, 0.9) == [Slot("0", 0.45), Slot("1", 0.45), Slot("0", 0.45), Slot("1", 0.45)]
    assert job_slots([], 1, 3, None) == [Slot(None, None)] * 3


def test_fewer_jobs_than_slots_spread_over_the_gpus(tmp_path):
    """Two jobs on two GPUs of four slots each run one per GPU (not both on the first GPU)."""
    gpus: dict[str, str] = {}

    def work(name: str):
        def run(slot: Slot) -> int:
            gpus[name] = slot.gpu
            return 0

        return run

    jobs = [Job(n, [], tmp_path / f"{n}.log", work=work(n)) for n in ("critic_a", "critic_b")]
    run_jobs(jobs, gpus=["0", "1"], per_gpu=4, echo=lambda s: None)
    assert gpus == {"critic_a": "0", "critic_b": "1"}


def test_in_process_work_runs_on_slots_with_its_before_hook(tmp_path):
    """A job's ``work`` replaces the subprocess: it gets the slot, runs after ``before``, and its exit code and
    ``finished()`` decide its outcome; no GPU holds two jobs of one slot each at a time."""
    lock, busy, peak, order = threading.Lock(), {}, {}, []

    def work(name: str):
        def run(slot: Slot) -> int:
            with lock:
                busy[slot.gpu] = busy.get(slot.gpu, 0) + 1
                peak[slot.gpu] = max(peak.get(slot.gpu, 0), busy[slot.gpu])
            time.sleep(0.05)
            with lock:
                busy[slot.gpu] -= 1
            (tmp_path / name).touch()
            return 3 if name == "bad" else 0

        return run

    names = ["a", "b", "c", "bad"]
    jobs = [
        Job(n, [], tmp_path / f"{n}.log", (tmp_path / n).exists, work=work(n), before=lambda n=n: order.append(n))
        for n in names
    ]
    lines: list[str] = []
    outcomes = run_jobs(jobs, gpus=["0", "1"], echo=lines.append)
    assert {o.name: (o.status, o.returncode) for o in outcomes} == {
        "a": ("done", 0),
        "b": ("done", 0),
        "c": ("done", 0),
        "bad": ("failed", 3),
    }
    assert peak == {"0": 1, "1": 1} and sorted(order) == sorted(names)
    assert "[FAILED (3)] bad" in lines and not any(line.startswith("[skip]") for line in lines)
    again = run_jobs(jobs, echo=lines.append)  # every marker written: all skipped
    assert {o.status for o in again} == {"skipped"}


def test_messages_are_worded_by_the_caller_and_errors_reach_it(tmp_path):
    class Counted(Messages):
        def started(self, job, slot):
            return None

        def ended(self, job, outcome, count, total):
            return f"{job.name} {outcome.status} {count}/{total}"

    lines: list[str] = []
    jobs = [Job(n, [], tmp_path / n, work=lambda slot: 0) for n in ("x", "y")]
    run_jobs(jobs, echo=lines.append, messages=Counted())
    assert lines == ["x done 1/2", "y done 2/2"]

    def boom(slot: Slot) -> int:
        raise ValueError("broken launcher")

    with pytest.raises(ValueError, match="broken launcher"):
        run_jobs([Job("z", [], tmp_path / "z", work=boom)], echo=lines.append)
