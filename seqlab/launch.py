"""Subprocess jobs on GPU slots: the one scheduler of ``seqlab compare``'s runs and the benchmarks' jobs.

A :class:`Job` is a command, its log (appended to) and a test of whether it has finished.  :func:`run_jobs`
starts the jobs not yet finished, ``per_gpu`` at a time on each GPU (each then capped at its share of the GPU's
memory) or one at a time without GPUs, and at a deadline stops what still runs (a resumable job continues when
started again).
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

#: the checkout seqlab runs from: every job finds this seqlab first on its PYTHONPATH
REPO = Path(__file__).resolve().parents[1]


@dataclass
class Job:
    """One subprocess: ``argv``, its output appended to ``log``.  ``finished()`` says whether its work is done (asked
    before starting it, and after it exits 0); without it, a job always runs and is done when it exits 0."""

    name: str
    argv: list[str]
    log: Path
    finished: Callable[[], bool] | None = None
    env: dict[str, str] = field(default_factory=dict)  # added to the environment

    def is_finished(self) -> bool:
        return self.finished is not None and self.finished()


@dataclass
class Outcome:
    name: str
    status: str  # done | skipped | failed | stopped
    seconds: float = 0.0
    gpu: str | None = None
    returncode: int | None = None


def job_env(
    gpu: str | None, memory_fraction: float | None = None, extra: dict[str, str] | None = None
) -> dict[str, str]:
    """The environment of a job on ``gpu`` (None: the GPUs this process sees), holding at most ``memory_fraction``
    of the GPU's memory, with ``extra`` added."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    env.setdefault("PYTHONUNBUFFERED", "1")
    if gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = str(gpu)
    if memory_fraction is not None:
        from seqlab.train.trainer import share_gpu_memory

        share_gpu_memory(env, memory_fraction)
    env.update(extra or {})
    return env


def run_jobs(
    jobs: Sequence[Job],
    gpus: Sequence[str] = (),
    per_gpu: int = 1,
    memory_share: float | None = None,
    deadline: float | None = None,
    echo: Callable[[str], None] = print,
    poll_seconds: float = 1.0,
    slots: int | None = None,
) -> list[Outcome]:
    """Run the unfinished ``jobs``: ``per_gpu`` at a time on each of ``gpus`` (each capped at ``memory_share /
    per_gpu`` of its GPU when ``memory_share`` is given), else ``slots`` at a time (default 1) without GPUs, capped
    at ``memory_share / slots`` of the visible GPU when given.  At ``deadline`` (epoch seconds) running jobs are
    terminated (status ``stopped``) and nothing more starts."""
    outcomes = [Outcome(j.name, "skipped") for j in jobs if j.is_finished()]
    for o in outcomes:
        echo(f"[skip] {o.name}: done")
    pending = [j for j in jobs if j.name not in {o.name for o in outcomes}]
    free: list[str | None] = [g for g in gpus for _ in range(per_gpu)] if gpus else [None] * (slots or 1)
    width = per_gpu if gpus else (slots or 1)
    fraction = None if memory_share is None else memory_share / width
    running: list[tuple[Job, subprocess.Popen, object, str | None, float]] = []
    while pending or running:
        while pending and free and (deadline is None or time.time() < deadline):
            job, gpu = pending.pop(0), free.pop(0)
            job.log.parent.mkdir(parents=True, exist_ok=True)
            log = open(job.log, "a", encoding="utf-8")  # closed when the job ends
            log.write(f"$ {' '.join(job.argv)}\n")
            log.flush()
            echo(f"[start] {job.name}" + ("" if gpu is None else f" on GPU {gpu}") + f" (log {job.log})")
            proc = subprocess.Popen(
                job.argv, stdout=log, stderr=subprocess.STDOUT, cwd=REPO, env=job_env(gpu, fraction, job.env)
            )
            running.append((job, proc, log, gpu, time.time()))
        if deadline is not None and time.time() >= deadline:
            for job, proc, log, gpu, start in running:
                proc.terminate()
                proc.wait()
                log.close()
                outcomes.append(Outcome(job.name, "stopped", time.time() - start, gpu, proc.returncode))
                echo(f"[stopped] {job.name}")
            outcomes += [Outcome(j.name, "stopped") for j in pending]
            return outcomes
        time.sleep(poll_seconds)
        for item in list(running):
            job, proc, log, gpu, start = item
            if proc.poll() is None:
                continue
            log.close()
            running.remove(item)
            free.append(gpu)
            ok = proc.returncode == 0 and (job.finished is None or job.finished())
            outcomes.append(Outcome(job.name, "done" if ok else "failed", time.time() - start, gpu, proc.returncode))
            echo(f"[{'done' if ok else f'FAILED ({proc.returncode})'}] {job.name}")
    return outcomes
