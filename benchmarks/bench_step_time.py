"""Training step time of every algorithm relative to an MLE step, on identical batches and the same model.

    python benchmarks/bench_step_time.py --config configs/multi30k_transformer.yaml \
        --algorithms mle,raml,alpha_dimt,pg,interpolation --steps 30

Writes `<algo>_step_time_ratio_vs_mle` (and `<algo>_step_ms`) to benchmarks/results/step_time_<device>.json.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
from pathlib import Path

import torch

from seqlab.algorithms.base import ALGORITHMS, load_plugins  # noqa: E402
from seqlab.bench import results as results_io
from seqlab.bench.timing import timed_train_step
from seqlab.config import load_config  # noqa: E402
from seqlab.data.batching import collate  # noqa: E402
from seqlab.train.trainer import Trainer  # noqa: E402


def profile_steps(trainer: Trainer, batches: list, path: Path) -> None:
    """Where a step's time goes: torch.profiler over a few steps, the top operators by self time."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if trainer.device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        for b in batches[:3]:
            trainer.train_step(b)
        if trainer.device.type == "cuda":
            torch.cuda.synchronize()
    key = "self_cuda_time_total" if trainer.device.type == "cuda" else "self_cpu_time_total"
    text = [prof.key_averages().table(sort_by=key, row_limit=40),
            prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=40)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n\n".join(text), encoding="utf-8")


def step_times(cfg_path: str, algo: str, overrides: list[str], n_steps: int, warmup: int,
               init_state: dict | None, tokenizers: str | None,
               profile_dir: Path | None = None) -> tuple[list[float], dict]:
    run_dir = tempfile.mkdtemp(prefix=f"seqlab_step_{algo}_")
    if tokenizers:
        shutil.copytree(tokenizers, Path(run_dir) / "tokenizers")
    cfg = load_config(cfg_path, [f"run_dir={run_dir}", f"algorithm.name={algo}", "train.resume=false",
                                 "train.progress_bar=false", "train.tensorboard=false", *overrides])
    trainer = Trainer(cfg, console=False)
    if init_state is not None:
        trainer.model.load_state_dict(init_state)
    trainer.sampler.set_epoch(0)
    batches = []
    for indices in trainer.sampler:
        batches.append(collate(trainer.train_data, indices).to(trainer.device))
        if len(batches) >= n_steps + warmup:
            break
    torch.manual_seed(0)
    for b in batches:  # untimed pass: every new batch shape is slow the first time on a GPU
        trainer.train_step(b)
    times = []
    for i, b in enumerate(batches):
        seconds = timed_train_step(trainer, b)
        if i >= warmup:
            times.append(seconds)
    if profile_dir is not None:
        profile_steps(trainer, batches, profile_dir / f"{algo}.txt")
    return times, trainer.model.state_dict()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="configs/multi30k_transformer.yaml")
    ap.add_argument("--algorithms", default="mle,noising,raml,alpha_dimt,spg,pg,mixer,mixer_anneal,"
                                            "scheduled_sampling,interpolation,erpo")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--init-from", help="an MLE checkpoint, so sampled lengths are realistic")
    ap.add_argument("--tokenizers", help="that checkpoint's tokenizers folder (reused, not retrained)")
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--profile", type=Path, help="also write each algorithm's torch.profiler table to this folder")
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args()
    load_plugins()
    algos = [a for a in args.algorithms.split(",") if a]
    unknown = [a for a in algos if a not in ALGORITHMS]
    if unknown:
        raise SystemExit(f"unknown algorithms {unknown}")
    init = torch.load(args.init_from, map_location="cpu", weights_only=False)["model"] if args.init_from else None
    medians = {}
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    for algo in ["mle", *[a for a in algos if a != "mle"]]:
        times, _ = step_times(args.config, algo, args.overrides, args.steps, args.warmup, init, args.tokenizers,
                              args.profile)
        t = medians[algo] = statistics.median(times)
        print(f"{algo:20s} {t * 1000:9.1f} ms/step  x{t / medians['mle']:.2f}", flush=True)
        if not args.no_write:  # written after every algorithm, so a time limit loses nothing measured
            entries = [results_io.entry(f"{algo}_step_ms", round(t * 1000, 2), "ms")]
            if algo != "mle":
                entries.append(results_io.entry(f"{algo}_step_time_ratio_vs_mle", round(t / medians["mle"], 3), "x"))
            results_io.write(f"step_time_{dev}", entries)


if __name__ == "__main__":
    main()
