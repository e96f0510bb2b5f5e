"""seqlab.launch.run_jobs: the benchmarks' scheduler (finished jobs skipped, failures reported, deadline stops)."""

from __future__ import annotations

import sys
import time

from seqlab.launch import Job, run_jobs


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
    outcomes = {o.name: o for o in run_jobs(jobs, slots=2, poll_seconds=0.1, echo=lambda s: None)}
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
    outcomes = run_jobs(jobs, deadline=time.time() + 1.0, poll_seconds=0.1, echo=lambda s: None)
    assert {o.name: o.status for o in outcomes} == {"slow": "stopped", "next": "stopped"}
    assert time.time() - start < 30 and not (tmp_path / "next.done").exists()
