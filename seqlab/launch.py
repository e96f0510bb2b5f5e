"""Jobs on GPU slots: the one scheduler of ``seqlab compare``'s runs and the benchmarks' jobs.

A :class:`Job` is a command, its log (appended to) and a test of whether it has finished.  :func:`run_jobs`
starts the jobs not yet finished, ``per_gpu`` at a time on each GPU (each then capped at its share of the GPU's
memory) or ``slots`` at a time without GPUs: one thread per slot takes the next job, runs it (by default its
command in a subprocess whose environment :func:`job_env` builds; a job may instead carry in-process ``work``,
as the tests' fake launchers do) and reports it.  At a deadline, subprocesses still running are terminated (a
resumable job continues when started again) and nothing more starts.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

#: the checkout seqlab runs from: every job finds this seqlab first on its PYTHONPATH
REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Slot:
    """Where a job runs: a GPU (None: the GPUs this process sees) and the share of its memory a job may hold."""

    gpu: str | None = None
    memory_fraction: float | None = None


@dataclass
class Job:
    """One job: ``argv`` in a subprocess, its output appended to ``log``.  ``finished()`` says whether its work is
    done (asked before starting it, and after it exits 0); without it, a job always runs and is done when it exits
    0.  ``work`` (given a :class:`Slot`, returning an exit code) runs in place of the subprocess; ``before`` runs
    in the slot just before the job starts."""

    name: str
    argv: list[str]
    log: Path
    finished: Callable[[], bool] | None = None
    env: dict[str, str] = field(default_factory=dict)  # added to the environment
    work: Callable[[Slot], int] | None = None
    before: Callable[[], None] | None = None
    cwd: Path | None = REPO  # None: this process's working directory

    def is_finished(self) -> bool:
        return self.finished is not None and self.finished()


@dataclass
class Outcome:
    name: str
    status: str  # done | skipped | failed | stopped
    seconds: float = 0.0
    gpu: str | None = None
    returncode: int | None = None


class Messages:
    """The lines :func:`run_jobs` echoes about its jobs (None: no line); subclass to word them differently."""

    def skipped(self, job: Job) -> str | None:
        return f"[skip] {job.name}: done"

    def started(self, job: Job, slot: Slot) -> str | None:
        return f"[start] {job.name}" + ("" if slot.gpu is None else f" on GPU {slot.gpu}") + f" (log {job.log})"

    def ended(self, job: Job, outcome: Outcome, count: int, total: int) -> str | None:
        """``outcome`` of ``job``, the ``count``-th of the ``total`` jobs that ran to end."""
        if outcome.status == "stopped":
            return f"[stopped] {job.name}"
        return f"[{'done' if outcome.status == 'done' else f'FAILED ({outcome.returncode})'}] {job.name}"


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


def spawn(job: Job, slot: Slot, deadline: float | None = None) -> tuple[int, bool]:
    """Run ``job.argv`` in a subprocess on ``slot`` (environment :func:`job_env`), its output appended to
    ``job.log`` after a ``$ command`` line; at ``deadline`` (epoch seconds) it is terminated.  Returns its exit
    code and whether the deadline stopped it."""
    job.log.parent.mkdir(parents=True, exist_ok=True)
    with open(job.log, "a", encoding="utf-8") as log:
        log.write(f"$ {' '.join(job.argv)}\n")
        log.flush()
        env = job_env(slot.gpu, slot.memory_fraction, job.env)
        proc = subprocess.Popen(job.argv, stdout=log, stderr=subprocess.STDOUT, cwd=job.cwd, env=env)
        try:
            return proc.wait(timeout=None if deadline is None else max(deadline - time.time(), 0.0)), False
        except subprocess.TimeoutExpired:
            proc.terminate()  # a trainer saves its last checkpoint on SIGTERM
            return proc.wait(), True


def job_slots(gpus: Sequence[str], per_gpu: int, slots: int | None, memory_share: float | None) -> list[Slot]:
    """``per_gpu`` slots on each of ``gpus``, else ``slots`` (default 1) on the visible GPUs; each slot's jobs may
    hold ``memory_share`` divided by the slots of their GPU (uncapped without ``memory_share``).  The GPUs take
    turns (0, 1, 0, 1, ...): fewer jobs than slots spread over every GPU instead of filling the first."""
    width = per_gpu if gpus else (slots or 1)
    fraction = None if memory_share is None else memory_share / width
    return [Slot(g, fraction) for _ in range(per_gpu) for g in gpus] if gpus else [Slot(None, fraction)] * width


def run_jobs(
    jobs: Sequence[Job],
    gpus: Sequence[str] = (),
    per_gpu: int = 1,
    memory_share: float | None = None,
    deadline: float | None = None,
    echo: Callable[[str], None] = print,
    slots: int | None = None,
    messages: Messages | None = None,
) -> list[Outcome]:
    """Run the unfinished ``jobs``: ``per_gpu`` at a time on each of ``gpus`` (each capped at ``memory_share /
    per_gpu`` of its GPU when ``memory_share`` is given), else ``slots`` at a time (default 1) without GPUs, capped
    at ``memory_share / slots`` of the visible GPU when given.  At ``deadline`` (epoch seconds) running
    subprocesses are terminated (status ``stopped``) and nothing more starts.  Outcomes: the skipped jobs first,
    then in the order the jobs ended; an exception in a job's ``work`` or ``before`` stops the scheduling (the
    running jobs end first) and is raised here."""
    messages = messages or Messages()
    outcomes = [Outcome(j.name, "skipped") for j in jobs if j.is_finished()]
    skipped = {o.name for o in outcomes}
    for job in jobs:
        if job.name in skipped and (line := messages.skipped(job)) is not None:
            echo(line)
    pending = deque(j for j in jobs if j.name not in skipped)
    total, lock, errors = len(pending), threading.Lock(), []

    def next_job() -> Job | None:
        with lock:
            if not pending or errors or (deadline is not None and time.time() >= deadline):
                return None
            return pending.popleft()

    def serve(slot: Slot, job: Job | None) -> None:
        while job is not None:
            try:
                outcome = _run_one(job, slot, deadline, messages, echo, lock)
            except BaseException as e:  # noqa: BLE001  (raised again in the caller's thread)
                with lock:
                    errors.append(e)
                return
            with lock:
                outcomes.append(outcome)
                count = sum(o.status != "skipped" for o in outcomes)
                if (line := messages.ended(job, outcome, count, total)) is not None:
                    echo(line)
            job = next_job()

    # the first jobs go to the slots in their order (the GPUs take turns), before any thread runs
    threads = [
        threading.Thread(target=serve, args=(s, next_job()), daemon=True)
        for s in job_slots(gpus, per_gpu, slots, memory_share)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return outcomes + [Outcome(j.name, "stopped") for j in pending]  # not started before the deadline


def _run_one(
    job: Job,
    slot: Slot,
    deadline: float | None,
    messages: Messages,
    echo: Callable[[str], None],
    lock: threading.Lock,
) -> Outcome:
    """Run one job on ``slot``: its ``before``, a start line, its work or subprocess; its outcome."""
    if job.before is not None:
        job.before()
    if (line := messages.started(job, slot)) is not None:
        with lock:
            echo(line)
    start = time.time()
    returncode, stopped = (job.work(slot), False) if job.work is not None else spawn(job, slot, deadline)
    if stopped:
        status = "stopped"
    else:
        status = "done" if returncode == 0 and (job.finished is None or job.finished()) else "failed"
    return Outcome(job.name, status, time.time() - start, slot.gpu, returncode)
