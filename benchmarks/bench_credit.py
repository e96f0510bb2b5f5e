"""Token-level credit assignment on Multi30k de->en: MLE, RAML, VAML, AC, ERAC and ERAC without future entropy,
all fine-tuned from one MLE checkpoint with one budget, 3 seeds, test_2016 BLEU (beam 5); plus the ERAC ablation
over the target-network rate beta x the variance penalty lambda_var on validation BLEU, with divergences counted.

    # the MLE checkpoint shared with the ERPO benchmarks (or omit --mle-checkpoint to train one first)
    python benchmarks/bench_credit.py --mle-checkpoint runs/multi30k_transformer/checkpoint_best.pt \
        --minutes 10 --critic-steps 3000 --seeds 1,2,3 --ablation
    # an end-to-end check of the pipeline on a CPU in minutes (tiny models, a Multi30k subset; writes nothing)
    python benchmarks/bench_credit.py --tiny

Protocol (docs/credit.md): every algorithm starts from the same MLE weights and tokenizers and gets the same
fine-tuning budget (``--minutes`` / ``--steps``, Adam, constant learning rate ``--lr``).  The critics / Q-networks
of vaml, ac and erac are first trained in a run of their own with the actor fixed (``--critic-steps`` at
``--critic-lr``; reported as ``<algo>_critic_minutes``) and handed over with ``critic_from``.  "mle" continues MLE
for the same budget.  A run is *diverged* when its last checkpoint's greedy validation BLEU fell more than
``--divergence-drop`` below the MLE checkpoint's, or its training loss became non-finite.

Writes to benchmarks/results/credit_<device>.json: ``multi30k_deen_<algo>_test2016_bleu_mean`` / ``_std``,
``<algo>_step_time_ratio_vs_mle``, ``multi30k_deen_erac_future_entropy_gain``, the ablation's
``multi30k_deen_erac_ablation_beta<b>_var<l>_valid_bleu`` / ``_diverged`` and
``multi30k_deen_erac_ablation_divergences``.  Finished runs are skipped when the script is started again.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import shutil
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import torch

from seqlab import launch
from seqlab.bench import results as results_io
from seqlab.bench.timing import timed_train_step
from seqlab.config import load_config
from seqlab.data.batching import collate
from seqlab.train.trainer import Trainer, load_model_weights

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"
PREFIX = "multi30k_deen"
COLLECT_ONLY = False  # --collect-only: report finished runs, train nothing

#: algorithm label -> (config, algorithm overrides); critic-based ones get a critic pre-training run
ALGORITHMS: dict[str, tuple[str, list[str]]] = {
    "mle": ("multi30k_erac.yaml", ["algorithm.name=mle", "algorithm.options={}", "train.label_smoothing=0.1"]),
    "raml": ("multi30k_erac.yaml", ["algorithm.name=raml", "algorithm.options={tau: 0.4, num_samples: 8}"]),
    "vaml": ("multi30k_vaml.yaml", []),
    "ac": ("multi30k_ac.yaml", []),
    "erac": ("multi30k_erac.yaml", []),
    "erac_no_future_entropy": ("multi30k_erac.yaml", ["algorithm.options.future_entropy=false"]),
}
CRITIC_ALGOS = {"vaml", "ac", "erac", "erac_no_future_entropy"}
ACTOR_CRITIC = {"ac", "erac", "erac_no_future_entropy"}  # actors learning from their own samples
BETAS = [0.001, 0.01, 0.1, 1.0]
VAR_WEIGHTS = [0.0, 0.001]

TINY = [
    "task.options.max_train=1500",
    "task.options.vocab_size=600",
    "model.options={d_model: 32, n_heads: 4, ffn_dim: 64, encoder_layers: 1, decoder_layers: 1, dropout: 0.1}",
    "train.device=cpu",
    "train.max_tokens=1500",
    "train.eval_max_examples=100",
    "decode.beam_size=1",
    "decode.batch_size=500",
    "train.log_every_steps=4",
]
TINY_CRITIC = "{d_model: 32, n_heads: 4, ffn_dim: 64, encoder_layers: 1, decoder_layers: 1, dropout: 0.1}"


def log(msg: str) -> None:
    print(f"[bench_credit {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def make_trainer(config: str | Path, run_dir: Path, overrides: list[str], tokenizers: Path | None) -> Trainer:
    if tokenizers is not None and not (run_dir / "tokenizers").exists():
        run_dir.mkdir(parents=True, exist_ok=True)
        shutil.copytree(tokenizers, run_dir / "tokenizers")
    cfg = load_config(config, [f"run_dir={run_dir}", "train.progress_bar=false", "train.tensorboard=false", *overrides])
    return Trainer(cfg, console=False)


def train_run(
    config: str | Path, run_dir: Path, overrides: list[str], tokenizers: Path | None, final_eval: bool = True
) -> dict[str, Any]:
    """Train (or resume) one run; ``results.json`` marks it finished.  Without ``final_eval`` (critic runs, whose
    actor never changes) the test decoding is skipped."""
    done = run_dir / "results.json"
    if done.exists():
        return json.loads(done.read_text())
    if COLLECT_ONLY:
        log(f"unfinished, left out (--collect-only): {run_dir}")
        return {}
    trainer = make_trainer(config, run_dir, overrides, tokenizers)
    if not final_eval:
        trainer.finish = lambda stopped_early=False: {"steps": trainer.step, "train_seconds": trainer.train_seconds}
    t0 = time.perf_counter()
    results = trainer.fit()
    trainer.close()
    results["wall_seconds"] = time.perf_counter() - t0
    results["nonfinite_loss"] = nonfinite_loss(run_dir)
    done.write_text(json.dumps(results, indent=2))
    return results


def nonfinite_loss(run_dir: Path) -> bool:
    path = run_dir / "log.jsonl"
    if not path.exists():
        return False
    for line in path.read_text().splitlines():
        rec = json.loads(line)
        if rec.get("kind") == "train" and not math.isfinite(float(rec.get("loss", 0.0))):
            return True
    return False


def last_checkpoint_valid_bleu(config: str | Path, run_dir: Path, overrides: list[str]) -> float:
    """Greedy validation BLEU of a run's *last* checkpoint (best-checkpoint selection would hide divergence)."""
    trainer = make_trainer(config, run_dir, [*overrides, "train.resume=false"], None)
    load_model_weights(trainer.model, run_dir / "checkpoint_last.pt")
    scores, _ = trainer.evaluate("valid", beam_size=1)
    trainer.close()
    return float(scores["bleu"])


# --------------------------------------------------------------------------- step time
def step_time_ratios(
    algos: list[str], base: list[str], critic_opts: list[str], tokenizers: Path, n_steps: int, warmup: int = 3
) -> dict[str, float]:
    """Median joint-phase step time of each algorithm / MLE's, on identical batches from the same weights."""
    medians: dict[str, float] = {}
    state = None
    for algo in ["mle", *[a for a in algos if a != "mle"]]:
        config, extra = ALGORITHMS[algo]
        over = [*base, *extra, *(critic_opts if algo in CRITIC_ALGOS else [])]
        if algo in CRITIC_ALGOS:
            over += ["algorithm.options.critic_pretrain_steps=0"] if algo != "vaml" else ["algorithm.options.q_steps=0"]
        run_dir = Path(f"/tmp/bench_credit_step_{algo}_{int(time.time())}")
        with warnings.catch_warnings():  # an untrained critic is fine for timing
            warnings.simplefilter("ignore", UserWarning)
            trainer = make_trainer(CONFIGS / config, run_dir, [*over, "train.resume=false"], tokenizers)
        if state is None:
            state = {k: v.clone() for k, v in trainer.model.state_dict().items()}
        trainer.model.load_state_dict(state)
        trainer.sampler.set_epoch(0)
        times = []
        torch.manual_seed(0)
        for i, indices in enumerate(trainer.sampler):
            if i >= n_steps + warmup:
                break
            seconds = timed_train_step(trainer, collate(trainer.train_data, indices).to(trainer.device))
            if i >= warmup:
                times.append(seconds)
        trainer.close()
        shutil.rmtree(run_dir, ignore_errors=True)
        medians[algo] = statistics.median(times)
        log(f"step time {algo:24s} {medians[algo] * 1000:8.1f} ms  x{medians[algo] / medians['mle']:.2f}")
    return {a: medians[a] / medians["mle"] for a in medians if a != "mle"}


# --------------------------------------------------------------------------- --jobs workers
def run_workers(units: list[str], jobs: int, memory_share: float | None, work: Path) -> None:
    """Train ``units`` in up to ``jobs`` worker subprocesses of this script (same arguments plus ``--unit``;
    :func:`seqlab.launch.run_jobs`), each capped at ``memory_share / jobs`` of the GPU's memory; a failed unit is
    retried in the parent."""
    argv = sys.argv[1:]  # a worker sees --jobs too, but --unit makes it train its one unit and return
    workers = [
        launch.Job(
            unit, [sys.executable, __file__, *argv, "--unit", unit], work / "logs" / f"{unit.replace(':', '_')}.log"
        )
        for unit in units
    ]
    launch.run_jobs(workers, slots=jobs, memory_share=memory_share, echo=log)


# --------------------------------------------------------------------------- main
def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mle-checkpoint", help="the shared MLE checkpoint (its run dir's tokenizers are reused)")
    ap.add_argument(
        "--mle-config",
        default=str(CONFIGS / "multi30k_transformer.yaml"),
        help="trains the MLE checkpoint when --mle-checkpoint is not given",
    )
    ap.add_argument("--work-dir", default="runs/bench_credit")
    ap.add_argument("--algorithms", default=",".join(ALGORITHMS))
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("--minutes", type=float, default=10.0, help="fine-tuning budget of every algorithm")
    ap.add_argument("--steps", type=int, default=None, help="a step budget instead of / besides --minutes")
    ap.add_argument("--lr", type=float, default=1e-4, help="fine-tuning learning rate (Adam, constant)")
    ap.add_argument(
        "--actor-critic-lr", type=float, default=1e-5, help="fine-tuning lr of ac / erac (they collapsed at 1e-4)"
    )
    ap.add_argument(
        "--critic-steps",
        type=int,
        default=3000,
        help="critic / Q-network pre-training steps at most (it ends earlier when its validation TD "
        "error stops improving)",
    )
    ap.add_argument("--critic-lr", type=float, default=1e-3)
    ap.add_argument(
        "--share-critic",
        action="store_true",
        help="pre-train each critic once (first seed) and reuse it for every seed",
    )
    ap.add_argument("--eval-every", type=int, default=500)
    ap.add_argument(
        "--raml-options", default="{tau: 0.4, num_samples: 8}", help="RAML's options (use the ERPO benchmarks' setting)"
    )
    ap.add_argument("--ablation", action="store_true", help="also run the beta x lambda_var ablation (seed 1)")
    ap.add_argument("--ablation-betas", default=",".join(f"{b:g}" for b in BETAS))
    ap.add_argument("--ablation-vars", default=",".join(f"{v:g}" for v in VAR_WEIGHTS))
    ap.add_argument("--divergence-drop", type=float, default=3.0, help="BLEU below the MLE checkpoint's")
    ap.add_argument("--step-time-steps", type=int, default=30)
    ap.add_argument("--tiny", action="store_true", help="CPU end-to-end check: tiny models, no results written")
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--jobs", type=int, default=1, help="training runs side by side (worker subprocesses)")
    ap.add_argument(
        "--gpu-memory-share",
        type=float,
        default=None,
        help="share of the GPU's memory all --jobs workers together may hold (default: uncapped)",
    )
    ap.add_argument(
        "--skip-step-time",
        action="store_true",
        help="leave out the step-time ratios (measure them later with the GPU to themselves)",
    )
    ap.add_argument("--collect-only", action="store_true", help="report the finished runs; train nothing")
    ap.add_argument("--unit", help=argparse.SUPPRESS)  # internal: the one run a --jobs worker trains
    ap.add_argument("overrides", nargs="*", help="extra config overrides for every run")
    return ap.parse_args()


class CreditBench:
    """One invocation of the benchmark: its runs (critic pre-training, fine-tuning, ablation) and the entries
    they give."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.work = Path(
            args.work_dir if not args.tiny or args.work_dir != "runs/bench_credit" else "/tmp/bench_credit_tiny"
        )
        self.algos = [a for a in args.algorithms.split(",") if a]
        unknown = set(self.algos) - set(ALGORITHMS)
        if unknown:
            raise SystemExit(f"unknown algorithms {sorted(unknown)}; choose from {sorted(ALGORITHMS)}")
        self.seeds = [int(s) for s in args.seeds.split(",") if s]
        ALGORITHMS["raml"] = (ALGORITHMS["raml"][0], ["algorithm.name=raml", f"algorithm.options={args.raml_options}"])
        self.base = [*(TINY if args.tiny else []), *args.overrides]
        self.critic_opts = [f"algorithm.options.critic_options={TINY_CRITIC}"] if args.tiny else []
        if args.tiny:  # a short critic phase: at most 40 steps, validated every 20
            args.critic_steps = min(args.critic_steps, 40)
            self.critic_opts.append("algorithm.options.critic_eval_every=20")
        self.command = " ".join(["python", "benchmarks/bench_credit.py", *sys.argv[1:]])
        self.entries: list[dict] = []
        self.ablation = self.ablation_settings()
        self.mle_ckpt = Path()
        self.tokenizers = Path()
        self.budget: list[str] = []

    def prepare_mle_checkpoint(self) -> None:
        """The shared MLE checkpoint (``--mle-checkpoint``, else trained now) and every fine-tuning's budget."""
        args = self.args
        if args.mle_checkpoint:
            self.mle_ckpt = Path(args.mle_checkpoint)
        else:
            tiny = ["train.max_steps=150", "train.lr=0.003", "train.warmup_steps=50", "train.eval_every_steps=150"]
            log(f"training the MLE checkpoint with {args.mle_config}")
            train_run(args.mle_config, self.work / "mle_checkpoint", [*self.base, *(tiny if args.tiny else [])], None)
            self.mle_ckpt = self.work / "mle_checkpoint" / "checkpoint_best.pt"
        self.tokenizers = self.mle_ckpt.parent / "tokenizers"
        self.budget = [
            f"train.init_from={self.mle_ckpt.resolve()}",
            f"train.lr={args.lr}",
            f"train.max_minutes={args.minutes}",
            f"train.eval_every_steps={args.eval_every}",
            "train.patience=null",
        ]
        if args.steps:
            self.budget.append(f"train.max_steps={args.steps}")

    def entry(self, metric: str, value: Any, unit: str) -> None:
        self.entries.append(results_io.entry(metric, value, unit, self.command))

    def critic_run(self, algo: str, seed: int, extra: list[str], tag: str) -> Path:
        """Pre-train the critic / Q-network of ``algo`` with the actor fixed; returns its checkpoint."""
        args = self.args
        config, algo_over = ALGORITHMS[algo]
        phase = "algorithm.options.q_steps" if algo == "vaml" else "algorithm.options.critic_pretrain_steps"
        if args.share_critic:
            seed = self.seeds[0]
        run_dir = self.work / f"critic_{tag}_s{seed}"
        res = train_run(
            CONFIGS / config,
            run_dir,
            [
                *self.base,
                *algo_over,
                *self.critic_opts,
                *extra,
                f"train.seed={seed}",
                f"train.init_from={self.mle_ckpt.resolve()}",
                f"train.lr={args.critic_lr}",
                "algorithm.options.critic_lr_scale=1",  # train.lr is the critic's own here
                # critic-only steps are outside train.max_steps: the phase runs until its validation TD
                # error stops improving (at most --critic-steps), then one joint step ends the run
                "train.max_steps=1",
                f"{phase}={args.critic_steps}",
                "train.max_minutes=null",
                f"train.eval_every_steps={10**9}",
                "train.patience=null",
            ],
            self.tokenizers,
            final_eval=False,
        )
        if res:
            self.entry(f"{PREFIX}_{tag}_critic_s{seed}_minutes", round(res["train_seconds"] / 60, 2), "min")
        return run_dir / "checkpoint_last.pt"

    def main_run(
        self, algo: str, seed: int, extra: list[str], tag: str, critic_tag: str | None = None
    ) -> tuple[dict, Path, list[str]]:
        """Fine-tune ``algo`` from the MLE checkpoint; critic-based ones start from the pre-trained critic of
        ``critic_tag`` (default: their own, pre-trained with the same ``extra`` options)."""
        config, algo_over = ALGORITHMS[algo]
        over = [*self.base, *algo_over, *self.budget, *extra, f"train.seed={seed}"]
        if algo in ACTOR_CRITIC:
            over.append(f"train.lr={self.args.actor_critic_lr}")
        if algo in CRITIC_ALGOS:
            crit = (
                self.critic_run(algo, seed, [], critic_tag) if critic_tag else self.critic_run(algo, seed, extra, tag)
            )
            phase = "algorithm.options.q_steps=0" if algo == "vaml" else "algorithm.options.critic_pretrain_steps=0"
            over += [*self.critic_opts, f"algorithm.options.critic_from={crit.resolve()}", phase]
        run_dir = self.work / f"{tag}_s{seed}"
        log(f"{tag} seed {seed} -> {run_dir}")
        return train_run(CONFIGS / config, run_dir, over, self.tokenizers), run_dir, over

    def ablation_settings(self) -> list[tuple[float, float, str, list[str]]]:
        """(beta, lambda_var, tag, overrides) of the ablation (none without --ablation); every one starts from the
        main runs' pre-trained ERAC critic and differs in the joint phase only (beta: target-critic rate,
        lambda_var: variance penalty)."""
        args = self.args
        if not args.ablation:
            return []

        def tag(beta: float, var: float) -> str:
            return (
                "erac" if beta == 0.001 and var == 0.001 and "erac" in self.algos else f"erac_beta{beta:g}_var{var:g}"
            )

        return [
            (
                beta,
                var,
                tag(beta, var),
                [f"algorithm.options.target_beta={beta}", f"algorithm.options.var_weight={var}"],
            )
            for beta in [float(b) for b in args.ablation_betas.split(",")]
            for var in [float(v) for v in args.ablation_vars.split(",")]
        ]

    def units(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """Every training run as a named unit, for --jobs workers: the critics, then the fine-tuning runs."""
        critic_units: dict[str, Any] = {}
        run_units: dict[str, Any] = {}
        for algo in self.algos:
            for seed in self.seeds:
                if algo in CRITIC_ALGOS:
                    s = self.seeds[0] if self.args.share_critic else seed
                    critic_units[f"critic:{algo}:{s}"] = functools.partial(self.critic_run, algo, s, [], algo)
                run_units[f"run:{algo}:{seed}"] = functools.partial(self.main_run, algo, seed, [], algo)
        first = self.seeds[0]
        for _, _, tag, extra in self.ablation:
            critic_units[f"critic:erac:{first}"] = functools.partial(self.critic_run, "erac", first, [], "erac")
            run_units[f"run:{tag}:{first}"] = functools.partial(self.main_run, "erac", first, extra, tag, "erac")
        return critic_units, run_units

    def run_unit(self, name: str) -> None:
        """A worker of --jobs: one unit, nothing recorded."""
        critic_units, run_units = self.units()
        units = {**critic_units, **run_units}
        if name not in units:
            raise SystemExit(f"unknown unit {name!r}; one of {sorted(units)}")
        units[name]()

    def compare_algorithms(self) -> None:
        """Every algorithm x seed: test BLEU mean / std, the future-entropy gain and the targets."""
        scores: dict[str, list[float]] = {}
        for algo in self.algos:
            for seed in self.seeds:
                res, _, _ = self.main_run(algo, seed, [], algo)
                if not res:
                    continue
                scores.setdefault(algo, []).append(float(res["test"]["bleu"]))
                log(f"{algo} seed {seed}: test BLEU {scores[algo][-1]:.2f} (valid {res['valid']['bleu']:.2f})")
            vals = scores.get(algo)
            if not vals:
                continue
            mean, std = statistics.mean(vals), (statistics.stdev(vals) if len(vals) > 1 else 0.0)
            self.entry(f"{PREFIX}_{algo}_test2016_bleu_mean", round(mean, 2), "BLEU")
            self.entry(f"{PREFIX}_{algo}_test2016_bleu_std", round(std, 2), "BLEU")
        means = {a: statistics.mean(v) for a, v in scores.items()}
        if "erac" in means and "erac_no_future_entropy" in means:
            gain = means["erac"] - means["erac_no_future_entropy"]
            self.entry(f"{PREFIX}_erac_future_entropy_gain", round(gain, 2), "BLEU")
        for a, b, margin in (("vaml", "raml", 0.3), ("erac", "ac", 0.2), ("erac", "mle", 0.8)):
            if a in means and b in means:
                diff = means[a] - means[b]
                log(f"target {a} >= {b} + {margin}: {diff:+.2f} BLEU -> {'met' if diff >= margin else 'NOT met'}")

    def record_step_times(self) -> None:
        """Step time (joint phase) relative to MLE, alone on the device."""
        ratios = step_time_ratios(
            self.algos, [*self.base, *self.budget], self.critic_opts, self.tokenizers, self.args.step_time_steps
        )
        for a, r in ratios.items():
            self.entry(f"{a}_step_time_ratio_vs_mle", round(r, 2), "x")

    def run_ablation(self) -> None:
        """beta x lambda_var on validation BLEU, divergences counted."""
        init_bleu = None
        diverged_total = 0
        first = self.seeds[0]
        for beta, var, tag, extra in self.ablation:
            res, run_dir, over = self.main_run("erac", first, extra, tag, "erac")
            if not res:
                continue
            config = CONFIGS / ALGORITHMS["erac"][0]
            if init_bleu is None:
                init_bleu = _init_valid_bleu(config, self.work, over, self.mle_ckpt)
            last = last_checkpoint_valid_bleu(config, run_dir, over)
            diverged = res.get("nonfinite_loss", False) or last < init_bleu - self.args.divergence_drop
            diverged_total += int(diverged)
            log(
                f"ablation beta {beta:g} var {var:g}: valid BLEU best {res['valid']['bleu']:.2f}, last {last:.2f}"
                f" (MLE {init_bleu:.2f}){' DIVERGED' if diverged else ''}"
            )
            name = f"{PREFIX}_erac_ablation_beta{beta:g}_var{var:g}"
            self.entry(f"{name}_valid_bleu", round(float(res["valid"]["bleu"]), 2), "BLEU")
            self.entry(f"{name}_diverged", int(diverged), "bool")
        self.entry(f"{PREFIX}_erac_ablation_divergences", diverged_total, "runs")

    def write(self) -> None:
        """The entries (each metric once: a reused run reports once) to the results file, or, for --tiny /
        --no-write, to WORK/entries.json."""
        entries = list({e["metric"]: e for e in self.entries}.values())
        dev = "cuda" if torch.cuda.is_available() and not self.args.tiny else "cpu"
        if not (self.args.no_write or self.args.tiny):
            log(f"wrote {results_io.write(f'credit_{dev}', entries)}")
        else:
            out = self.work / "entries.json"
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(entries, indent=2))
            log(f"not recorded as a benchmark (tiny / --no-write); entries in {out}")


def main() -> None:
    args = parse_args()
    global COLLECT_ONLY
    COLLECT_ONLY = args.collect_only
    bench = CreditBench(args)
    bench.prepare_mle_checkpoint()
    if args.unit:
        bench.run_unit(args.unit)
        return
    if args.jobs > 1:
        for phase in bench.units():
            run_workers(list(phase), args.jobs, args.gpu_memory_share, bench.work)
    bench.compare_algorithms()
    if not args.skip_step_time:
        bench.record_step_times()
    if bench.ablation:
        bench.run_ablation()
    bench.write()


def _init_valid_bleu(config: Path, work: Path, over: list[str], mle_ckpt: Path) -> float:
    """Greedy validation BLEU of the MLE checkpoint itself (the divergence reference)."""
    cache = work / "mle_init_valid_bleu.json"
    if cache.exists():
        return float(json.loads(cache.read_text())["bleu"])
    over = [o for o in over if not o.startswith("algorithm.")] + ["algorithm.name=mle", "algorithm.options={}"]
    trainer = make_trainer(
        config, work / "mle_init_eval", [*over, "train.resume=false"], mle_ckpt.parent / "tokenizers"
    )
    load_model_weights(trainer.model, mle_ckpt)
    scores, _ = trainer.evaluate("valid", beam_size=1)
    trainer.close()
    cache.write_text(json.dumps({"bleu": scores["bleu"]}))
    return float(scores["bleu"])


if __name__ == "__main__":
    main()
