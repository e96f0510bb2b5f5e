"""The reduced G2P check of token-level credit assignment (issue 15): MLE, AC, ERAC and VAML as rows of one
``seqlab compare``, each continuing the same MLE checkpoint at actor lr 1e-4 for the same number of model updates.

Setup (the reduced CPU comparison of ``benchmarks/suites/g2p_cpu_reduced.yaml``): Transformer d 128, 2+2 layers, on 20K
CMUdict words (1 % validation, 1 % test), a shared MLE checkpoint of 800 steps (lr 2e-3, inverse-sqrt warm-up
300, label smoothing 0.1), greedy decoding, reward = negative edit distance (per-token increments, no length
scaling).  Every row then trains ``--budget-steps`` model updates at a constant lr 1e-4 (Adam), validation WER on
300 words every ``--eval-every`` steps, the best validation checkpoint scored on test.

* ``ac`` / ``erac``: a 1+1-layer d 64 Transformer critic reading the reference, no dropout, its own zero-initialised
  Q head; pre-trained with the actor fixed at 10x the actor's lr until its validation TD error has not improved for
  3 evaluations (every 100 critic steps, at most ``--critic-cap`` steps); then the joint phase as in the authors'
  code (Adam beta1 = 0 for actor and critic, critic lr = actor lr, 2 samples per source).
* ``vaml``: the same Q-network, soft Q-learning until its validation residual stops improving (same rule), then
  the model's phase (tau 0.4, kappa 0.2, 5 samples).
Critic / Q-learning steps do not count against the budget (``Algorithm.preparation_steps``).

Outputs: the comparison's report (``OUT/report``) plus ``critic_td.png`` (validation TD error of every critic
phase), and the entries ``g2p_cpu_<algo>_credit_test_wer_{mean,std,min,max,n}`` (and PER, ``_p_vs_mle``; the
``_credit_`` keeps them apart from the ERPO table's ``g2p_cpu_mle_test_wer_*``) in
``benchmarks/results/credit_g2p_<device>.json``, plus ``g2p_cpu_<algo>_critic_steps_mean`` (critic-phase
length).  Resumable: rerun the same command.

    OMP_NUM_THREADS=1 python benchmarks/credit_g2p_cpu.py --out runs/credit_g2p_cpu --seeds 1,2,3   # CPU
    python benchmarks/credit_g2p_cpu.py --out runs/credit_g2p_gpu --seeds 1,2,3 --device cuda --gpus auto \\
        --runs-per-gpu 6                                                                          # one GPU
    python benchmarks/credit_g2p_cpu.py --tiny --out /tmp/credit_tiny --seeds 1                  # smoke test
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from seqlab.bench import results as results_io

ROOT = Path(__file__).resolve().parent.parent
ALGORITHMS = ["mle", "ac", "erac", "vaml"]
CRITIC = {"d_model": 64, "n_heads": 4, "ffn_dim": 256, "encoder_layers": 1, "decoder_layers": 1, "dropout": 0.0}


def overrides(args: argparse.Namespace) -> list[str]:
    """Every run's settings, the shared pre-training's, and each row's (``label:key=value``)."""
    out = [
        f"task.options.max_train={args.max_train}",
        "task.options.valid_percent=1",
        "task.options.test_percent=1",
        "model.options={d_model: 128, n_heads: 4, ffn_dim: 512, encoder_layers: 2, decoder_layers: 2, dropout: 0.1}",
        f"train.device={args.device}",
        "train.max_tokens=3000",
        f"train.eval_every_steps={args.eval_every}",
        "train.eval_max_examples=300",
        "train.tensorboard=false",
        "train.progress_bar=false",
        "decode.beam_size=1",
        "train.optimizer=adam",
        "train.betas=[0.9,0.999]",
        f"train.lr={args.lr}",
        "train.scheduler=constant",
        f"train.log_every_steps={args.eval_every}",
        f"train.save_every_steps={args.eval_every}",
        "pretrain:train.lr=0.002",
        "pretrain:train.warmup_steps=300",
        "pretrain:train.scheduler=inverse_sqrt",
        f"pretrain:train.eval_every_steps={min(100, args.pretrain_steps)}",
        "pretrain:train.log_every_steps=100",
    ]
    critic = json.dumps(CRITIC).replace('"', "")
    shared = [
        f"critic_pretrain_steps={args.critic_cap}",
        f"critic_eval_every={args.critic_eval_every}",
        f"critic_patience={args.critic_patience}",
        "critic_lr_scale=10",
        "scale_by_length=false",
        f"critic_options={critic}",
    ]
    for algo in [a for a in ("ac", "erac") if a in args.algorithms]:
        out += [f"{algo}:algorithm.options.{o}" for o in [*shared, "num_samples=2"]]
    if "vaml" in args.algorithms:
        out += [f"vaml:algorithm.options.{o.replace('critic_pretrain_steps', 'q_steps')}" for o in shared]
    return out


def compare_command(args: argparse.Namespace, report_only: bool = False) -> list[str]:
    cmd = [
        sys.executable,
        "-m",
        "seqlab.cli",
        "compare",
        "--config",
        "configs/g2p_transformer.yaml",
        "--algorithms",
        ",".join(args.algorithms),
        "--seeds",
        args.seeds,
        "--pretrain-steps",
        str(args.pretrain_steps),
        "--budget-steps",
        str(args.budget_steps),
        "--out",
        args.out,
        "--gpus",
        args.gpus,
        "--runs-per-gpu",
        str(args.runs_per_gpu),
        "--reward",
        "neg_edit",
        # a fresh optimizer at the actor lr (the authors' joint phase builds new optimizers); label smoothing 0.1
        # for the MLE start and every run's likelihood terms
        "--init-state",
        "model",
        "--label-smoothing",
        "0.1",
    ]
    if report_only:
        cmd.append("--report-only")
    return cmd + overrides(args)


def critic_curves(out: Path) -> dict[str, list[tuple[int, list[tuple[int, float]], int]]]:
    """Per critic row: (seed, [(critic steps, validation TD error)], critic-phase length) of every finished run."""
    curves: dict[str, list] = {}
    for algo in ("ac", "erac", "vaml"):
        for run in sorted((out / "runs" / algo).glob("seed*")):
            log = run / "log.jsonl"
            if not (run / "results.json").exists() or not log.exists():
                continue
            rows = [json.loads(x) for x in log.read_text().splitlines() if x.strip()]
            td = [(int(r["critic_steps"]), float(r["valid_td"])) for r in rows if r["kind"] == "critic"]
            ckpt = run / "checkpoint_last.pt"
            length = td[-1][0] if td else 0
            if ckpt.exists():
                import torch

                state = torch.load(ckpt, map_location="cpu", weights_only=False)["algorithm"]
                length = int(state["critic_steps"])
            curves.setdefault(algo, []).append((int(run.name[4:]), td, length))
    return curves


def plot_critic_curves(curves: dict, path: Path) -> Path | None:
    if not curves:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for algo, runs in curves.items():
        for seed, td, _ in runs:
            if td:
                ax.plot([s for s, _ in td], [v for _, v in td], marker="o", label=f"{algo} seed {seed}")
    ax.set_xlabel("critic steps (actor fixed)")
    ax.set_ylabel("validation |TD error|")
    ax.set_yscale("log")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/credit_g2p_cpu")
    p.add_argument("--seeds", default="1,2,3")
    p.add_argument("--algorithms", default=",".join(ALGORITHMS))
    p.add_argument("--device", default="cpu", help="train.device of every run (cpu, cuda)")
    p.add_argument("--gpus", default="none", help="seqlab compare --gpus: none (in sequence), auto, or 0,1")
    p.add_argument("--runs-per-gpu", type=int, default=1)
    p.add_argument("--lr", type=float, default=1e-4, help="the actor's (and the joint critic's) learning rate")
    p.add_argument("--budget-steps", type=int, default=200, help="model updates per run")
    p.add_argument("--eval-every", type=int, default=25)
    p.add_argument("--pretrain-steps", type=int, default=800)
    p.add_argument("--max-train", type=int, default=20000)
    p.add_argument("--critic-cap", type=int, default=3000)
    p.add_argument("--critic-eval-every", type=int, default=100)
    p.add_argument("--critic-patience", type=int, default=3)
    p.add_argument("--tiny", action="store_true", help="a minutes-long smoke test of the whole pipeline")
    p.add_argument("--report-only", action="store_true")
    p.add_argument("--no-export", action="store_true", help="do not write benchmarks/results")
    args = p.parse_args()
    args.algorithms = [a for a in args.algorithms.split(",") if a]
    if args.tiny:
        args.max_train, args.pretrain_steps, args.budget_steps, args.eval_every = 2000, 40, 10, 5
        args.critic_cap, args.critic_eval_every, args.no_export = 20, 5, True
    if args.critic_eval_every % args.eval_every or args.critic_cap % args.eval_every:
        p.error(
            "--critic-eval-every and --critic-cap must be multiples of --eval-every (validation stays aligned "
            "with the model updates)"
        )
    out = Path(args.out)
    rc = subprocess.call(compare_command(args, report_only=args.report_only), cwd=ROOT)
    if not (out / "report" / "summary.json").exists():
        return rc or 1
    curves = critic_curves(out)
    plot_critic_curves(curves, out / "report" / "critic_td.png")
    if args.no_export:
        return rc
    from seqlab.compare.report import benchmark_entries

    device = "cuda" if args.device.startswith("cuda") else "cpu"
    command = " ".join(["python", "benchmarks/credit_g2p_cpu.py", *sys.argv[1:]])
    entries = [
        results_io.entry(m.replace("_test_", "_credit_test_", 1), v, u, command)
        for m, v, u in benchmark_entries(out, "g2p_cpu", "test")
    ]
    for algo, runs in curves.items():
        lengths = [n for _, _, n in runs]
        entries.append(
            results_io.entry(f"g2p_cpu_{algo}_critic_steps_mean", sum(lengths) / len(lengths), "steps", command)
        )
    print(results_io.write(f"credit_g2p_{device}", entries))
    return rc


if __name__ == "__main__":
    sys.exit(main())
