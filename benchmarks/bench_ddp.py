"""DDP scaling efficiency: training throughput on 2 GPUs / (2 x throughput on 1 GPU), per algorithm.

Each measurement is a real ``seqlab train`` run launched by torchrun (1 process, then 2), with the same
per-GPU batch (``train.max_tokens`` is per GPU, so this is weak scaling: two GPUs see twice the tokens per
step).  Throughput = target tokens of the training batches per second, from the ``train`` records of
``log.jsonl``: rank 0 logs its own tokens per second, and the length-bucketed sampler hands every rank
batches of the same token budget, so the global figure is world size x rank 0's.  The first
``--skip-windows`` logging windows (CUDA warm-up, allocator growth) are left out and the median of the
rest is used; no validation runs inside the measured steps.

    python benchmarks/bench_ddp.py --config configs/multi30k_transformer.yaml --algorithms mle,pg \\
        --steps 400 [--init-from runs/multi30k_mle/checkpoint_best.pt] [key=value ...]

Metrics (benchmarks/results/ddp_cuda.json, GPU runs only): ``ddp_scaling_efficiency_2gpu_<algo><label>``,
``ddp_train_tok_per_s_1gpu_<algo><label>``, ``ddp_train_tok_per_s_2gpu_<algo><label>`` (``--label``: e.g.
``--label _cuda_graphs train.cuda_graphs=true`` for captured steps on both sides).  On a CPU (``--device cpu``,
gloo) the script checks that the 2-process path works and prints the numbers without recording them:
CPU figures say nothing about GPU scaling.

``--from-logs`` launches nothing: it reads the runs already in ``--work-dir`` (their logs brought back from the
GPU machine) and records the same figures, with ``--measured-by`` naming the command that ran them there.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from seqlab.bench import results as results_io

REPO = Path(__file__).resolve().parents[1]


def launch(
    config: str,
    algorithm: str,
    nproc: int,
    run_dir: Path,
    steps: int,
    device: str,
    init_from: str | None,
    log_every: int,
    overrides: list[str],
) -> Path:
    """One torchrun training run; returns its log.jsonl."""
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={nproc}",
        "-m",
        "seqlab.compare",
        "train",
        "--config",
        config,
        f"run_dir={run_dir}",
        f"algorithm.name={algorithm}",
        "algorithm.options={}",
        f"train.max_steps={steps}",
        "train.max_epochs=1000000",
        "train.max_minutes=null",
        "train.eval_every_steps=100000000",
        "train.save_every_steps=null",
        "train.patience=null",
        f"train.log_every_steps={log_every}",
        "train.progress_bar=false",
        "train.tensorboard=false",
        "train.resume=false",
        f"train.device={device}",
        "decode.beam_size=1",
        f"train.init_from={json.dumps(init_from) if init_from else 'null'}",
        "train.cuda_graphs=false",  # eager on 1 and on 2 GPUs alike, unless an override asks for captured steps
        *overrides,
    ]
    env = dict(os.environ)
    if device == "cuda":
        env["CUDA_VISIBLE_DEVICES"] = ",".join(str(i) for i in range(nproc))
    else:
        env.setdefault("OMP_NUM_THREADS", "1")
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / "bench.out", "w", encoding="utf-8") as out:
        rc = subprocess.call(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    if rc != 0:
        tail = (run_dir / "bench.out").read_text(encoding="utf-8")[-3000:]
        raise RuntimeError(f"{algorithm} on {nproc} process(es) failed (exit {rc}):\n{tail}")
    return run_dir / "log.jsonl"


def throughput(log: Path, world_size: int, skip_windows: int) -> tuple[float, int]:
    """Global target tokens per second (median over the logging windows after the first ``skip_windows``)."""
    rates = [
        json.loads(line)["tgt_tok_per_s"]
        for line in log.read_text(encoding="utf-8").splitlines()
        if json.loads(line).get("kind") == "train"
    ]
    kept = rates[skip_windows:]
    if not kept:
        raise RuntimeError(
            f"{log}: {len(rates)} logging windows, none left after skipping {skip_windows}; raise --steps"
        )
    return world_size * statistics.median(kept), len(kept)


def uncaptured_graphs(run_dir: Path) -> str | None:
    """Why a ``train.cuda_graphs`` run's throughput is not the captured step's (nothing was captured: it warned and
    trained eagerly), or None (captured, or a run without captured steps)."""
    path = run_dir / "results.json"
    graphs = json.loads(path.read_text(encoding="utf-8")).get("cuda_graphs") if path.is_file() else None
    if graphs is not None and not graphs["captures"]:
        return f"{run_dir.name}: train.cuda_graphs captured no step (see its bench.out): not a captured figure"
    return None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="configs/multi30k_transformer.yaml")
    p.add_argument("--algorithms", default="mle,pg")
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--log-every", type=int, default=20)
    p.add_argument("--skip-windows", type=int, default=3)
    p.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    p.add_argument("--init-from", help="checkpoint to start from (sampling algorithms: a trained MLE model)")
    p.add_argument("--work-dir", help="where the runs go (default: a temporary directory)")
    p.add_argument("--no-write", action="store_true")
    p.add_argument("--from-logs", action="store_true", help="read the runs already in --work-dir; launch nothing")
    p.add_argument("--measured-by", help="with --from-logs: the command that ran them (kept in the entries)")
    p.add_argument("--label", default="", help="suffix of the runs' folders and metric names (e.g. _cuda_graphs)")
    p.add_argument("overrides", nargs="*", help="extra key=value overrides for every run")
    args = p.parse_args(argv)
    if args.from_logs and not args.work_dir:
        raise SystemExit("bench_ddp: --from-logs reads the runs in --work-dir; name it")
    if args.device == "cuda" and not args.from_logs:
        import torch

        if torch.cuda.device_count() < 2:
            raise SystemExit(
                f"bench_ddp: needs 2 GPUs, found {torch.cuda.device_count()} (use --device cpu "
                "to check the 2-process path on a CPU)"
            )
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="seqlab_ddp_"))
    entries, report = [], {}
    command = None
    if args.from_logs:
        command = results_io.command_line() + (f" (runs made by: {args.measured_by})" if args.measured_by else "")
    for algo in [a.strip() for a in args.algorithms.split(",") if a.strip()]:
        rates = {}
        for n in (1, 2):
            run_dir = work / f"{algo}{args.label}_{n}"
            if not args.from_logs:
                launch(
                    args.config,
                    algo,
                    n,
                    run_dir,
                    args.steps,
                    args.device,
                    args.init_from,
                    args.log_every,
                    args.overrides,
                )
            elif not (run_dir / "log.jsonl").is_file():
                raise SystemExit(f"bench_ddp: --from-logs: {run_dir / 'log.jsonl'} not found")
            uncaptured = uncaptured_graphs(run_dir) if args.device == "cuda" else None  # the CPU captures nothing
            if uncaptured:
                raise SystemExit(f"bench_ddp: {uncaptured}")
            rates[n], windows = throughput(run_dir / "log.jsonl", n, args.skip_windows)
            print(f"{algo}: {n} process(es): {rates[n]:,.0f} target tokens/s (median of {windows} windows)")
        eff = rates[2] / (2 * rates[1])
        name = f"{algo}{args.label}"
        report[name] = {"tok_per_s_1": rates[1], "tok_per_s_2": rates[2], "efficiency": eff}
        print(f"{name}: scaling efficiency on 2 {'GPUs' if args.device == 'cuda' else 'CPU processes'}: {eff:.3f}")
        entries += [
            results_io.entry(f"ddp_scaling_efficiency_2gpu_{name}", round(eff, 4), "ratio", command),
            results_io.entry(f"ddp_train_tok_per_s_1gpu_{name}", round(rates[1], 1), "tgt tokens/s", command),
            results_io.entry(f"ddp_train_tok_per_s_2gpu_{name}", round(rates[2], 1), "tgt tokens/s", command),
        ]
    print(json.dumps(report, indent=2))
    if args.device != "cuda":
        print("bench_ddp: CPU run (gloo): not recorded; the ddp_* metrics are GPU figures")
    elif not args.no_write:
        print(f"wrote {results_io.write('ddp_cuda', entries)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
