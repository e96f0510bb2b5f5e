"""Training step time of every algorithm relative to an MLE step, on identical batches and the same model, with
the sampling loops captured as CUDA graphs and eager; and a check that both sample the same tokens.

    python benchmarks/bench_step_time.py --config configs/multi30k_transformer.yaml --steps 30 \\
        task.options.path=.devdata/multi30k

Writes to benchmarks/results/step_time_<device>.json (``--name`` to change), one set per ``--paths`` entry:

* ``mle_step_ms``: the median over two MLE passes, the first and the last timed (``mle_first_step_ms``,
  ``mle_end_step_ms``), the denominator of every ratio once both have run (the first trainer of a process can be
  timed slower than the same step later: 28.9 ms first against 24.4 ms for noising in session 16);
* ``<algo>_step_ms`` and ``<algo>_step_time_ratio_vs_mle``: the library's default path (``default``: sampling
  loops eager, SEQLAB_SAMPLING_GRAPHS unset; greedy decodes such as self-critical baselines captured per shape);
* ``<algo>_graph_step_ms`` / ``_graph_step_time_ratio_vs_mle``: the sampling loops captured as CUDA graphs too
  (``graph``: SEQLAB_SAMPLING_GRAPHS=1, :mod:`seqlab.decoding.sampling`), for the algorithms that sample from the
  model (``SAMPLING``);
  The captured loops follow the training step's precision (bf16 autocast with ``train.bf16``, the default on CUDA;
  :func:`seqlab.decoding.graphs.graphs_in_bf16`); before session 16 they ran in fp32;
* ``<algo>_graph_fp32_step_ms`` / ``_graph_fp32_step_time_ratio_vs_mle``: the captured loops in fp32 all the same
  (``graph_fp32``: SEQLAB_GRAPH_BF16=0), as every ``_graph`` entry up to commit 7526958 was measured;
* ``<algo>_graph_compiled_step_ms`` / ``_graph_compiled_step_time_ratio_vs_mle``: the captured loops with the decoder
  step compiled (``graph_compiled``: SEQLAB_COMPILE_DECODE=1 too, :func:`seqlab.decoding.graphs.decode_step_compiled`);
* ``<algo>_static_compiled_step_ms`` / ``_static_compiled_step_time_ratio_vs_mle``: the fixed-shape loops run eagerly
  with the compiled step, no capture per shape (``static_compiled``: SEQLAB_SAMPLING_GRAPHS=static,
  SEQLAB_COMPILE_DECODE=1);
* ``<algo>_nographs_step_ms`` / ``_nographs_step_time_ratio_vs_mle``: no CUDA graph anywhere (``nographs``:
  SEQLAB_CUDA_GRAPHS=0), for the same algorithms;
* ``sampling_graph_equals_eager`` and ``mixture_graph_equals_eager`` (1 when the captured loop's tokens and
  log-probabilities equal the same fixed-shape loop run eagerly, on the same random stream, over ``--check-batches``
  real batches), and the fraction of rows equal to the dynamic-cache eager loop (``*_graph_vs_dynamic_rows_equal``:
  a different attention kernel, so float rounding may flip a draw now and then).

Trailing ``key=value`` overrides apply to every algorithm, ``algo:key=value`` to that algorithm only (e.g.
``ac:algorithm.options.other_actions_weight=1.0``, the credit table's setting, which MLE would reject).

With ``--epochs N`` a fresh trainer of each label also trains N whole epochs, timed step by step with every first
shape and capture included: ``<label>_epoch<k>_step_ms`` and ``_epoch<k>_step_time_ratio_vs_mle`` say what training
pays per step, where the median above says what a warm step costs; ``<label>_epoch<k>_sampling_loops_captured``
counts the sampling loops captured in that epoch.

The timed batches are first stepped untimed, again while a pass still captured sampling loops (at most
``WARM_PASSES``: a larger shape grows the loops' shared K/V memory and drops the loops captured before it), so the
median is a warm step's; loops captured during the timed pass all the same (evicted from the cache) are printed.
What training pays for first shapes and captures is ``--epochs``' figure: one epoch of Multi30k's 8,192-token
batches has 22 sampling-loop and 26 greedy-graph shape keys (``benchmarks/shape_keys.py``).

Without CUDA only the default (eager) path is measured and the check is skipped.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
from pathlib import Path

import torch

from seqlab.algorithms.base import ALGORITHMS, load_plugins
from seqlab.bench import results as results_io
from seqlab.bench.timing import first_batches, profile_table, timed_train_step
from seqlab.compare.runner import split_overrides, uses_reward
from seqlab.config import load_config
from seqlab.data.batching import collate
from seqlab.decoding import sampling
from seqlab.train.trainer import Trainer

#: the sampling algorithms first (the issue's targets), so a time limit loses the cheap ones
ALL = "mle,interpolation,pg,spg,mixer,mixer_anneal,ac,erac,vaml,noising,raml,alpha_dimt,erpo,scheduled_sampling"


def switches(
    sampling: str | None, cuda: str | None = None, bf16: str | None = None, compiled: str | None = None
) -> dict[str, str | None]:
    """The CUDA-graph environment switches of one timed path (None: unset)."""
    return {
        "SEQLAB_SAMPLING_GRAPHS": sampling,
        "SEQLAB_CUDA_GRAPHS": cuda,
        "SEQLAB_GRAPH_BF16": bf16,
        "SEQLAB_COMPILE_DECODE": compiled,
    }


#: how each ``--paths`` entry sets the graph switches and names its entries
PATHS = {
    "default": (switches(None), ""),
    "graph": (switches("1"), "_graph"),
    "graph_fp32": (switches("1", bf16="0"), "_graph_fp32"),
    "graph_compiled": (switches("1", compiled="1"), "_graph_compiled"),
    "static_compiled": (switches("static", compiled="1"), "_static_compiled"),
    "nographs": (switches("0", "0"), "_nographs"),
}
#: untimed passes over the timed batches at most: again while a pass captured sampling loops (a larger shape grows
#: the loops' shared K/V memory and drops the loops captured before it, so the first pass can leave stale ones)
WARM_PASSES = 3
#: the algorithms whose step runs a sampling loop (model samples or the token mixture)
SAMPLING = {"pg", "spg", "mixer", "mixer_anneal", "interpolation", "ac", "erac"}
#: overrides that put an algorithm in the phase worth timing (the critics' joint / target phase, not pre-training)
PHASE_OVERRIDES = {
    "ac": ["algorithm.options.actor_pretrain_steps=0", "algorithm.options.critic_pretrain_steps=0"],
    "erac": ["algorithm.options.actor_pretrain_steps=0", "algorithm.options.critic_pretrain_steps=0"],
    "vaml": ["algorithm.options.q_steps=0"],
}


def profile_steps(trainer: Trainer, batches: list, path: Path) -> None:
    """Where a step's time goes: torch.profiler over three steps, the top operators by self time."""
    profile_table(lambda: [trainer.train_step(b) for b in batches[:3]], trainer.device, path)


def make_trainer(
    cfg_path: str,
    algo: str,
    overrides: list[str],
    init_state: dict | None,
    tokenizers: str | None,
    reward: str | None = None,
) -> Trainer:
    common, per_algorithm = split_overrides(overrides)  # key=value for every algorithm, algo:key=value for one
    overrides = [*common, *per_algorithm.get(algo, [])]
    run_dir = tempfile.mkdtemp(prefix=f"seqlab_step_{algo}_")
    if tokenizers:
        shutil.copytree(tokenizers, Path(run_dir) / "tokenizers")
    cfg = load_config(
        cfg_path,
        [
            f"run_dir={run_dir}",
            f"algorithm.name={algo}",
            "train.resume=false",
            "train.progress_bar=false",
            "train.tensorboard=false",
            *PHASE_OVERRIDES.get(algo, []),
            *([f"algorithm.options.reward={reward}"] if reward and uses_reward(algo) else []),
            *overrides,
        ],
    )
    trainer = Trainer(cfg, console=False)
    if init_state is not None:
        trainer.model.load_state_dict(init_state)
    return trainer


def set_switches(switches: dict[str, str | None]) -> None:
    """Set (or unset, for None) the CUDA-graph environment switches of one timed path."""
    for key, value in switches.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def step_times(
    trainer: Trainer, n_steps: int, warmup: int, profile_path: Path | None = None
) -> tuple[list[float], int]:
    """Seconds per timed step, and the sampling loops captured during the timed pass (evicted shapes)."""
    batches = first_batches(trainer, n_steps + warmup)
    torch.manual_seed(0)
    for _ in range(WARM_PASSES):  # untimed: every new batch shape is slow the first time on a GPU (captures too)
        before = sampling.CAPTURES[0]
        for b in batches:
            trainer.train_step(b)
        if sampling.CAPTURES[0] == before:  # a pass without captures: every loop is warm
            break
    captures = sampling.CAPTURES[0]
    times = []
    for i, b in enumerate(batches):
        seconds = timed_train_step(trainer, b)
        if i >= warmup:
            times.append(seconds)
    captures = sampling.CAPTURES[0] - captures
    if profile_path is not None:
        profile_steps(trainer, batches, profile_path)
    return times, captures


def epoch_step_times(trainer: Trainer, epochs: int) -> tuple[list[float], list[int]]:
    """Mean seconds per step over each of ``epochs`` whole training epochs of a fresh trainer, every new batch shape
    and sampling-loop capture included (what training pays, unlike :func:`step_times`' warm median), and the
    sampling loops captured in each epoch."""
    means, captured = [], []
    for epoch in range(epochs):
        trainer.sampler.set_epoch(epoch)
        before, total, steps = sampling.CAPTURES[0], 0.0, 0
        for indices in trainer.sampler:
            total += timed_train_step(trainer, collate(trainer.train_data, indices).to(trainer.device))
            steps += 1
        means.append(total / max(steps, 1))
        captured.append(sampling.CAPTURES[0] - before)
    return means, captured


def rows_equal(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    width = max(a.size(1), b.size(1))
    a = torch.nn.functional.pad(a, (0, width - a.size(1)))
    b = torch.nn.functional.pad(b, (0, width - b.size(1)))
    return a.eq(b).all(1)


@torch.no_grad()
def check_graph_equals_eager(trainer: Trainer, n_batches: int) -> list[dict]:
    """Sample every check batch (K = 4 model samples; the interpolation's mixture, lambdas (0.3, 0.4, 0.3), c = 10)
    three ways on one random stream: captured, the same fixed-shape loop eager, the dynamic-cache loop."""
    from seqlab.decoding import sample
    from seqlab.erpo.proposals import token_mixture

    model = trainer.model
    model.eval()
    same = {"sampling": True, "mixture": True}
    equal_rows = {"sampling": [], "mixture": []}
    worst_logp = 0.0
    for i, b in enumerate(first_batches(trainer, n_batches)):
        enc = model.encode(b.src)
        out = {}
        for mode in ("graph", "static", "dynamic"):
            os.environ["SEQLAB_SAMPLING_GRAPHS"] = "1" if mode == "graph" else "0"
            torch.manual_seed(100 + i)
            out["sampling", mode] = sample(model, b.src, num_samples=4, enc=enc, static=mode != "dynamic")
            torch.manual_seed(200 + i)
            out["mixture", mode] = token_mixture(
                model, enc, b.tgt, torch.tensor([0.3, 0.4, 0.3]), reward_scale=10.0, mode=mode
            )
        os.environ["SEQLAB_SAMPLING_GRAPHS"] = "1"
        g, s = out["sampling", "graph"], out["sampling", "static"]
        same["sampling"] &= torch.equal(g.tokens, s.tokens) and torch.equal(g.token_log_probs, s.token_log_probs)
        if g.tokens.shape == s.tokens.shape:
            worst_logp = max(worst_logp, float((g.token_log_probs - s.token_log_probs).abs().max()))
        gm, sm = out["mixture", "graph"], out["mixture", "static"]
        same["mixture"] &= torch.equal(gm.tokens, sm.tokens) and torch.equal(gm.components, sm.components)
        equal_rows["sampling"].append(rows_equal(g.tokens, out["sampling", "dynamic"].tokens))
        equal_rows["mixture"].append(rows_equal(gm.tokens, out["mixture", "dynamic"].tokens))
    model.train()
    entries = []
    for kind in ("sampling", "mixture"):
        frac = float(torch.cat(equal_rows[kind]).float().mean())
        print(
            f"{kind}: graph == eager (fixed-shape) {same[kind]}; rows equal to the dynamic loop {frac:.4f}", flush=True
        )
        entries += [
            results_io.entry(f"{kind}_graph_equals_eager", int(same[kind]), "bool"),
            results_io.entry(f"{kind}_graph_vs_dynamic_rows_equal", round(frac, 4), "fraction"),
        ]
    print(f"sampling: largest |log p| difference graph vs eager {worst_logp:.3g}", flush=True)
    return entries


def ratios_against_both_mle_passes(medians: dict[str, float], first: list[float], end: list[float]) -> list[dict]:
    """MLE is timed first and again after every algorithm; the ratios are rewritten against the median over both
    passes' steps (``mle_step_ms``), so a slow first pass (a cold GPU or allocator) does not flatter the others.
    Each pass's own median stays in ``mle_first_step_ms`` / ``mle_end_step_ms``."""
    mle = statistics.median(first + end)
    print(
        f"{'mle (again, last)':26s} {statistics.median(end) * 1000:9.1f} ms/step; ratios against both passes' median "
        f"{mle * 1000:.1f} ms (first pass {statistics.median(first) * 1000:.1f})",
        flush=True,
    )
    entries = [
        results_io.entry("mle_step_ms", round(mle * 1000, 2), "ms (median over both MLE passes)"),
        results_io.entry("mle_first_step_ms", round(statistics.median(first) * 1000, 2), "ms"),
        results_io.entry("mle_end_step_ms", round(statistics.median(end) * 1000, 2), "ms"),
    ]
    for label, t in medians.items():
        if label != "mle":
            print(f"{label:26s} x{t / mle:.2f}", flush=True)
            entries.append(results_io.entry(f"{label}_step_time_ratio_vs_mle", round(t / mle, 3), "x"))
    return entries


def epoch_entries(label: str, algo: str, args: argparse.Namespace, init: dict | None, means: dict) -> list[dict]:
    """``--epochs``: a fresh trainer of ``algo`` trained ``args.epochs`` whole epochs; its mean step time per epoch
    (``means[label]``) and, after MLE's, the ratio to MLE's same epoch."""
    trainer = make_trainer(args.config, algo, args.overrides, init, args.tokenizers, args.reward)
    times, captured = epoch_step_times(trainer, args.epochs)
    means[label] = times
    entries = []
    for k, (t, caps) in enumerate(zip(times, captured, strict=True), start=1):
        ratio = t / means["mle"][k - 1]
        print(f"{label:26s} epoch {k}: {t * 1000:9.1f} ms/step  x{ratio:.2f}  ({caps} sampling loops captured)")
        entries.append(results_io.entry(f"{label}_epoch{k}_step_ms", round(t * 1000, 2), "ms (mean over the epoch)"))
        entries.append(results_io.entry(f"{label}_epoch{k}_sampling_loops_captured", caps, "captures"))
        if algo != "mle":
            entries.append(results_io.entry(f"{label}_epoch{k}_step_time_ratio_vs_mle", round(ratio, 3), "x"))
    return entries


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="configs/multi30k_transformer.yaml")
    ap.add_argument("--algorithms", default=ALL)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--init-from", help="an MLE checkpoint, so sampled lengths are realistic")
    ap.add_argument("--tokenizers", help="that checkpoint's tokenizers folder (reused, not retrained)")
    ap.add_argument(
        "--paths",
        default="default,graph,nographs",
        help="what to time on CUDA (see the module doc): default, graph, nographs; the first is timed for every "
        "algorithm, the others for the sampling ones",
    )
    ap.add_argument("--reward", help="the reward of every algorithm that takes one (e.g. rouge for summarization)")
    ap.add_argument("--check-batches", type=int, default=4, help="batches of the graph == eager check (0: none)")
    ap.add_argument("--name", help="results file name (default step_time_<device>)")
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--profile", type=Path, help="also write each algorithm's torch.profiler table to this folder")
    ap.add_argument(
        "--epochs",
        type=int,
        default=0,
        help="also train this many whole epochs from a fresh trainer and report each one's mean step time, first "
        "shapes and captures included (<label>_epoch<k>_step_ms and its ratio to MLE's epoch k)",
    )
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args()
    load_plugins()
    algos = [a for a in args.algorithms.split(",") if a]
    unknown = [a for a in algos if a not in ALGORITHMS]
    if unknown:
        raise SystemExit(f"unknown algorithms {unknown}")
    init = torch.load(args.init_from, map_location="cpu", weights_only=False)["model"] if args.init_from else None
    cuda = torch.cuda.is_available()
    name = args.name or f"step_time_{'cuda' if cuda else 'cpu'}"
    paths = [p for p in args.paths.split(",") if p] if cuda else ["default"]
    if unknown_paths := [p for p in paths if p not in PATHS]:
        raise SystemExit(f"unknown paths {unknown_paths}; known: {', '.join(PATHS)}")
    medians: dict[str, float] = {}
    first_mle: list[float] = []  # MLE's first pass, pooled with its last (ratios_against_both_mle_passes)
    epoch_means: dict[str, list[float]] = {}

    def record(entries: list[dict]) -> None:
        if not args.no_write:  # written after every measurement, so a time limit loses nothing measured
            results_io.write(name, entries)

    for algo in ["mle", *[a for a in algos if a != "mle"]]:
        for path in paths if algo in SAMPLING else paths[:1]:
            switches, suffix = PATHS[path]
            set_switches(switches)
            label = f"{algo}{suffix}" if algo in SAMPLING else algo
            try:
                trainer = make_trainer(args.config, algo, args.overrides, init, args.tokenizers, args.reward)
            except Exception as e:  # an algorithm whose options differ: report it, measure the rest
                print(f"{label:26s} skipped: {type(e).__name__}: {e}", flush=True)
                break
            profile = args.profile / f"{label}.txt" if args.profile else None
            times, captures = step_times(trainer, args.steps, args.warmup, profile)
            if label == "mle":
                first_mle = times
            t = medians[label] = statistics.median(times)
            captured = cuda and suffix.startswith("_graph")
            extra = f"  ({captures} sampling loops captured in the timed pass)" if captured else ""
            print(f"{label:26s} {t * 1000:9.1f} ms/step  x{t / medians['mle']:.2f}{extra}", flush=True)
            entries = [results_io.entry(f"{label}_step_ms", round(t * 1000, 2), "ms")]
            if algo != "mle":
                entries.append(results_io.entry(f"{label}_step_time_ratio_vs_mle", round(t / medians["mle"], 3), "x"))
            record(entries)
            del trainer
            if args.epochs > 0:
                record(epoch_entries(label, algo, args, init, epoch_means))
    set_switches(PATHS[paths[0]][0])
    if len(medians) > 1:  # MLE again, last: the first trainer of the process can be timed slower (session 16)
        trainer = make_trainer(args.config, "mle", args.overrides, init, args.tokenizers, args.reward)
        end, _ = step_times(trainer, args.steps, args.warmup)
        del trainer
        record(ratios_against_both_mle_passes(medians, first_mle, end))
    set_switches(PATHS["default"][0])
    if cuda and args.check_batches > 0:
        trainer = make_trainer(args.config, "mle", args.overrides, init, args.tokenizers)
        record(check_graph_equals_eager(trainer, args.check_batches))


if __name__ == "__main__":
    main()
