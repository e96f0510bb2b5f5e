"""Does a multi-GPU ``seqlab train`` under a time budget exit by itself after its final evaluation (issue 19)?

Runs the README's command, ``torchrun --standalone --nproc_per_node N -m seqlab.cli train --config C
train.max_minutes=M ...``, with a guard (``--guard-seconds``; reaching it is the failure this checks for). Records
whether the run ended by itself, its exit code, and the seconds from ``results.json`` (written after the final
evaluation) to the process's exit.

    python benchmarks/ddp_exit.py --nproc 2 --minutes 0.75 --work-dir runs/ddp_exit task.options.path=...

Entries (benchmarks/results/ddp_cuda.json; ``--device cpu`` prints only): ``ddp_exit_by_itself_<N>gpu`` (1 or 0),
``ddp_exit_seconds_after_results_<N>gpu``, ``ddp_exit_wall_seconds_<N>gpu``.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from seqlab.bench import results as results_io

REPO = Path(__file__).resolve().parents[1]


def run_until_exit(cmd: list[str], env: dict[str, str], log: Path, guard_seconds: float) -> tuple[int | None, float]:
    """The command's exit code (None when the guard stopped it) and the wall time until it ended."""
    start = time.time()
    with open(log, "w", encoding="utf-8") as out:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            return proc.wait(timeout=guard_seconds), time.time() - start
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return None, time.time() - start


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="configs/multi30k_transformer.yaml")
    ap.add_argument("--nproc", type=int, default=2)
    ap.add_argument("--minutes", type=float, default=0.75, help="train.max_minutes")
    ap.add_argument("--guard-seconds", type=float, default=240.0)
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--work-dir", required=True)
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("overrides", nargs="*", help="extra key=value overrides")
    args = ap.parse_args(argv)
    run_dir = Path(args.work_dir).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={args.nproc}",
        "-m", "seqlab.cli", "train", "--config", args.config, f"run_dir={run_dir / 'model'}",
        f"train.max_minutes={args.minutes}", "train.progress_bar=false", "train.tensorboard=false",
        f"train.device={args.device}", *args.overrides,
    ]  # fmt: skip
    env = dict(os.environ)
    if args.device == "cpu":
        env.setdefault("OMP_NUM_THREADS", "1")
    rc, wall = run_until_exit(cmd, env, run_dir / "torchrun.out", args.guard_seconds)
    ended = time.time()
    results = run_dir / "model" / "results.json"
    after = ended - results.stat().st_mtime if results.is_file() else None
    exited = rc == 0  # by itself (not stopped by the guard: rc None) and without an error
    print(
        f"ddp_exit: {args.nproc} processes, exit code {rc}, {wall:.1f} s in all; results.json "
        + (f"written {after:.1f} s before the exit" if after is not None else "not written")
    )
    if rc is None:
        print(f"ddp_exit: stopped by the {args.guard_seconds:.0f} s guard: the run did not exit by itself")
    if args.device == "cpu" or args.no_write:
        return 0 if exited else 1
    n = args.nproc
    entries = [
        results_io.entry(f"ddp_exit_by_itself_{n}gpu", int(exited), "bool"),
        results_io.entry(f"ddp_exit_wall_seconds_{n}gpu", round(wall, 1), "s"),
    ]
    if after is not None:
        entries.append(results_io.entry(f"ddp_exit_seconds_after_results_{n}gpu", round(after, 1), "s"))
    print(f"wrote {results_io.write('ddp_cuda', entries)}")
    return 0 if exited else 1


if __name__ == "__main__":
    sys.exit(main())
