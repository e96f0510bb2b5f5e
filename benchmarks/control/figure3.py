"""The ERPO paper's Figure 3 as a table and plots: random, BC, GAIL, GAIL + interpolation on MuJoCo.

For every environment: train (or resume) a PPO expert, roll out demonstrations, then for every seed,
number of demonstrations and method train and evaluate one run. Every run is a directory under
``--work`` with its own checkpoint and ``result.json``; finished runs are skipped, interrupted GAIL runs
resume, so the script can be stopped and started again (``--max-minutes`` stops launching new runs).
After every run it rewrites

- ``benchmarks/results/<results-name>.json``: entries ``<env>_<method>_<n>demos_return_mean`` / ``_std``
  (mean and population std over seeds of each seed's mean evaluation return) and ``<env>_expert_return_mean``
  / ``_std``, as {"metric", "value", "unit", "device", "commit", "command", "date"};
- ``benchmarks/reports/control/<label>.md``: the table, with the budgets that produced it;
- ``benchmarks/reports/control/<label>.png`` and ``<label>_curves.png``: returns against the number of
  demonstrations, and learning curves (evaluation return against policy steps, mean ± std over seeds);
- ``benchmarks/reports/control/<label>_runs.json``: every run's numbers and curve.

Full grid (the paper's scale; hours of CPU per environment)::

    python benchmarks/control/figure3.py --envs hopper halfcheetah walker2d --demos 1 4 11 18 \
        --seeds 0 1 2 3 4 --expert-steps 1000000 --gail-steps 1000000

Outputs only (from the finished runs): add ``--report-only``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from seqlab.bench import results as results_io
from seqlab.control.cli import run_name
from seqlab.control.config import load_control_config
from seqlab.control.envs import env_id, make_env, short_name

ROOT = Path(__file__).resolve().parents[2]
METHODS = ("random", "bc", "gail", "gail_interp")
LABELS = {"random": "Random", "bc": "BC", "gail": "GAIL", "gail_interp": "GAIL + interpolation", "expert": "Expert"}
REPORTS = ROOT / "benchmarks" / "reports" / "control"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--envs", nargs="+", default=["hopper", "halfcheetah", "walker2d"])
    p.add_argument("--demos", nargs="+", type=int, default=[1, 4, 11, 18])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    p.add_argument("--expert-steps", type=int, default=1_000_000)
    p.add_argument("--gail-steps", type=int, default=1_000_000)
    p.add_argument("--n-trajectories", type=int, default=25, help="demonstrations rolled out per environment")
    p.add_argument("--eval-episodes", type=int, default=10, help="final evaluation episodes per run")
    p.add_argument("--work", default="runs/control_bench", help="run directories (checkpoints, results)")
    p.add_argument("--results-name", default="control", help="benchmarks/results/<name>.json")
    p.add_argument("--label", default="figure3", help="file stem of the table and plots")
    p.add_argument("--max-minutes", type=float, default=None, help="launch no new run after this")
    p.add_argument("--report-only", action="store_true")
    p.add_argument("--scale-note", default="", help="a sentence for the report (e.g. 'reduced grid')")
    p.add_argument("--set", nargs="*", default=[], help="config overrides for every run (key=value)")
    return p.parse_args(argv)


def env_config(env: str, args: argparse.Namespace, extra: list[str]):
    path = ROOT / "configs" / "control" / f"{short_name(env)}.yaml"
    overrides = [
        f"env={env}",
        "progress_bar=false",
        f"expert.total_steps={args.expert_steps}",
        f"gail.total_steps={args.gail_steps}",
        f"gail.final_eval_episodes={args.eval_episodes}",
        f"demos.n_trajectories={args.n_trajectories}",
        *args.set,
        *extra,
    ]
    return load_control_config(path if path.exists() else None, overrides)


def log(msg: str) -> None:
    print(f"[{datetime.datetime.now():%H:%M:%S}] {msg}", flush=True)


def run_env(env: str, args: argparse.Namespace, deadline: float | None) -> None:
    from seqlab.control.bc import train_bc_run
    from seqlab.control.demos import DemoDataset
    from seqlab.control.evaluate import RandomActor, evaluate, summary
    from seqlab.control.expert import make_demos, train_expert
    from seqlab.control.gail import train_gail

    work = Path(args.work) / short_name(env)
    cfg = env_config(env, args, [])
    expert_dir = work / "expert"
    info = json.loads((expert_dir / "expert.json").read_text()) if (expert_dir / "expert.json").exists() else {}
    if info.get("steps", 0) < args.expert_steps:
        log(f"{env}: expert, {args.expert_steps} steps")
        info = train_expert(cfg, expert_dir)
    log(f"{env}: expert return {info['return_mean']:.1f} ± {info['return_std']:.1f}")
    demos_path = work / "demos.npz"
    if demos_path.exists() and DemoDataset.load(demos_path).n_trajectories >= max(args.demos):
        ds = DemoDataset.load(demos_path)
    else:
        _, ds = make_demos(cfg, expert_dir, demos_path)
    log(f"{env}: {ds.n_trajectories} demonstrations, return {ds.returns.mean():.1f} ± {ds.returns.std():.1f}")
    for seed in args.seeds:  # seeds outermost: a stopped grid has whole seeds
        for n in args.demos:
            for method in args.methods:
                run_dir = work / (f"random_seed{seed}" if method == "random" else run_name(method, n, seed))
                if (run_dir / "result.json").exists():
                    continue
                if deadline is not None and time.time() > deadline:
                    log("time budget reached: no new runs")
                    return
                t0 = time.time()
                rcfg = env_config(env, args, [f"seed={seed}", f"gail.n_demos={n}"])
                torch.manual_seed(seed)
                if method == "random":
                    run_dir.mkdir(parents=True, exist_ok=True)
                    rets = evaluate(
                        env,
                        RandomActor(make_env(env).action_space, seed),
                        args.eval_episodes,
                        max_episode_steps=rcfg.max_episode_steps,
                    )
                    res = {"method": "random", "seed": seed, **summary(rets), "returns": rets.tolist()}
                    (run_dir / "result.json").write_text(json.dumps(res, indent=2) + "\n")
                elif method == "bc":
                    res = train_bc_run(rcfg, ds, run_dir)
                else:
                    rcfg.gail.method = method
                    res = train_gail(rcfg, ds, run_dir, log=lambda s, d=run_dir.name: log(f"{d} {s}"))
                log(
                    f"{env} {method} {n} demos seed {seed}: {res['return_mean']:.1f} ± {res['return_std']:.1f} "
                    f"({time.time() - t0:.0f} s)"
                )
                report(args)


def collect(args: argparse.Namespace) -> dict:
    """Per environment: the expert, and per (method, n) the finished seeds' results."""
    out: dict = {}
    for env in args.envs:
        work = Path(args.work) / short_name(env)
        e: dict = {"runs": {}}
        if (work / "expert.json").exists() or (work / "expert" / "expert.json").exists():
            info = json.loads((work / "expert" / "expert.json").read_text())
            e["expert"] = {k: info[k] for k in ("return_mean", "return_std", "steps", "episodes")}
        if (work / "demos.json").exists():
            d = json.loads((work / "demos.json").read_text())
            e["demos"] = {
                "return_mean": d["return_mean"],
                "return_std": d["return_std"],
                "lengths": d["lengths"][: max(args.demos)],
            }
        for method in args.methods:
            for n in args.demos:
                runs = []
                for seed in args.seeds:
                    rd = work / (f"random_seed{seed}" if method == "random" else run_name(method, n, seed))
                    if (rd / "result.json").exists():
                        r = json.loads((rd / "result.json").read_text())
                        runs.append(
                            {
                                k: r.get(k)
                                for k in ("seed", "return_mean", "return_std", "steps", "iterations", "wall_s", "curve")
                            }
                        )
                if runs:
                    e["runs"][f"{method}_{n}"] = runs
        out[short_name(env)] = e
    return out


def command(args: argparse.Namespace) -> str:
    """The grid's command line, quoted (a ``--report-only`` pass records the grid it reports on)."""
    import shlex

    return shlex.join(["python", "benchmarks/control/figure3.py", *[a for a in sys.argv[1:] if a != "--report-only"]])


def report(args: argparse.Namespace) -> None:
    data = collect(args)
    REPORTS.mkdir(parents=True, exist_ok=True)
    entries = []
    cmd = command(args)
    for env, e in data.items():
        if "expert" in e:
            entries += [
                results_io.entry(f"{env}_expert_return_mean", e["expert"]["return_mean"], "return", cmd),
                results_io.entry(f"{env}_expert_return_std", e["expert"]["return_std"], "return", cmd),
            ]
        for key, runs in e["runs"].items():
            means = np.array([r["return_mean"] for r in runs])
            entries += [
                results_io.entry(f"{env}_{key}demos_return_mean", float(means.mean()), "return", cmd),
                results_io.entry(f"{env}_{key}demos_return_std", float(means.std()), "return", cmd),
            ]
    if entries:
        results_io.write(args.results_name, entries)
    meta = {
        "command": cmd,
        "commit": results_io.commit(),
        "device": results_io.device_name(),
        "date": datetime.date.today().isoformat(),
        "scale_note": args.scale_note,
        "expert_steps": args.expert_steps,
        "gail_steps": args.gail_steps,
        "seeds": args.seeds,
        "demos": args.demos,
        "eval_episodes": args.eval_episodes,
        "overrides": args.set,
    }
    (REPORTS / f"{args.label}_runs.json").write_text(json.dumps({"meta": meta, "envs": data}, indent=1) + "\n")
    (REPORTS / f"{args.label}.md").write_text(table(data, args, meta))
    plot(data, args)


def _cell(runs: list[dict] | None) -> str:
    if not runs:
        return "–"
    m = np.array([r["return_mean"] for r in runs])
    return f"{m.mean():.0f} ± {m.std():.0f} ({len(m)})"


def table(data: dict, args: argparse.Namespace, meta: dict) -> str:
    lines = [f"# Figure 3 as a table: average return on the true reward ({args.label})", ""]
    if args.scale_note:
        lines += [f"**Scale: {args.scale_note}**", ""]
    lines += [
        f"Command: `{meta['command']}`  ",
        f"Commit {meta['commit']}, {meta['device']}, {meta['date']}.  ",
        f"Expert PPO: {args.expert_steps:,} steps. GAIL / GAIL + interpolation: {args.gail_steps:,} policy "
        f"steps per run. Final evaluation: {args.eval_episodes} episodes (deterministic policy). "
        "Cells: mean ± std over seeds of each seed's mean return (number of seeds).",
        "",
    ]
    methods = list(args.methods)
    lines.append("| env | demos | " + " | ".join(LABELS[m] for m in methods) + " | Expert |")
    lines.append("|---|---|" + "---|" * (len(methods) + 1))
    for env, e in data.items():
        ex = e.get("expert")
        ex_s = f"{ex['return_mean']:.0f} ± {ex['return_std']:.0f}" if ex else "–"
        for n in args.demos:
            cells = [_cell(e["runs"].get(f"{m}_{n}")) for m in methods]
            lines.append(f"| {env} | {n} | " + " | ".join(cells) + f" | {ex_s} |")
    lines.append("")
    return "\n".join(lines)


def plot(data: dict, args: argparse.Namespace) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    envs = list(data)
    fig, axes = plt.subplots(1, len(envs), figsize=(4.5 * len(envs), 3.6), squeeze=False)
    for ax, env in zip(axes[0], envs, strict=True):
        e = data[env]
        for m in args.methods:
            xs, ys, ss = [], [], []
            for n in args.demos:
                runs = e["runs"].get(f"{m}_{n}")
                if runs:
                    v = np.array([r["return_mean"] for r in runs])
                    xs.append(n)
                    ys.append(v.mean())
                    ss.append(v.std())
            if xs:
                ax.errorbar(xs, ys, yerr=ss, marker="o", capsize=3, label=LABELS[m])
        if "expert" in e:
            ax.axhline(e["expert"]["return_mean"], color="k", ls="--", lw=1, label=LABELS["expert"])
        ax.set_title(env_id(env))
        ax.set_xlabel("demonstration trajectories")
        ax.set_xticks(args.demos)
        ax.set_ylabel("average return")
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(REPORTS / f"{args.label}.png", dpi=120)
    plt.close(fig)

    fig, axes = plt.subplots(len(envs), len(args.demos), figsize=(4 * len(args.demos), 3.2 * len(envs)), squeeze=False)
    for i, env in enumerate(envs):
        e = data[env]
        for j, n in enumerate(args.demos):
            ax = axes[i][j]
            for m in ("gail", "gail_interp"):
                runs = [r for r in e["runs"].get(f"{m}_{n}", []) if r.get("curve")]
                if not runs:
                    continue
                k = min(len(r["curve"]) for r in runs)
                steps = np.array([p["steps"] for p in runs[0]["curve"][:k]])
                vals = np.array([[p["return"] for p in r["curve"][:k]] for r in runs])
                mu, sd = vals.mean(0), vals.std(0)
                ax.plot(steps / 1000, mu, label=f"{LABELS[m]} ({len(runs)} seeds)")
                ax.fill_between(steps / 1000, mu - sd, mu + sd, alpha=0.2)
            if "expert" in e:
                ax.axhline(e["expert"]["return_mean"], color="k", ls="--", lw=1)
            ax.set_title(f"{env_id(env)}, {n} demos", fontsize=9)
            ax.set_xlabel("policy steps (thousands)")
            ax.set_ylabel("return")
            if any(not line.get_label().startswith("_") for line in ax.lines):
                ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(REPORTS / f"{args.label}_curves.png", dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(1)
    if not args.report_only:
        deadline = time.time() + 60 * args.max_minutes if args.max_minutes else None
        for env in args.envs:
            run_env(env, args, deadline)
    report(args)
    log(f"wrote benchmarks/results/{args.results_name}.json and {REPORTS}/{args.label}.*")
    return 0


if __name__ == "__main__":
    sys.exit(main())
