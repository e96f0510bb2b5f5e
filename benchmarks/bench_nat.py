"""The imitate-NAT ablation (Wei et al., ACL 2019) on Multi30k en->de and de->en, end to end.

Per language pair: train the autoregressive demonstrator (``dat``, configs/multi30k_dat.yaml) or take a
given checkpoint; distil the training set with it (beam search, ``seqlab distill``); train the NAT rows

    nat_uniformcopy, nat_softcopy             NAT on the distilled corpus (UniformCopy / SoftCopy inputs)
    nat_uniformcopy_nokd, nat_softcopy_nokd   the same on the original references
    imitate_nat, imitate_nat_nokd             imitate-NAT (SoftCopy), with / without distillation
    imitate_nat_w0                            the control: imitate-NAT with imitation weight 0

(every run uses the demonstrator's tokenizers and starts from the demonstrator's weights, as imitate-NAT does:
embeddings, encoder, decoder layers, output norm, and the imitation modules of the imitate-NAT rows; decoder
inputs copy the source embeddings), then score on test_2016_flickr (sacreBLEU) the rows above,
``at_greedy`` / ``at_beam`` (the demonstrator) and ``imitate_nat_lpd`` (imitate-NAT with length-parallel
decoding over [L̂ − ΔT, L̂ + ΔT], ΔT = 3, rescored by the demonstrator), and measure batch-1 latency
(median over the first ``--latency-sentences`` test sentences, fp32, after warm-up; encoder included)
and speed-ups over ``at_greedy`` and ``at_beam``.

Training runs are ``seqlab train`` subprocesses; with several GPUs they run side by side, one per GPU
(``--gpus``).  Every stage is resumable: finished runs (results.json), a finished distillation
(distill.json) and finished evaluations are kept and skipped on the next call.

    python benchmarks/bench_nat.py --data ../shared/data/multi30k --gpus 4
    python benchmarks/bench_nat.py --smoke --work /tmp/bench_nat_smoke     # tiny CPU run, nothing recorded

Metrics: multi30k_<pair>_<row>_test2016_bleu (pair deen / ende), multi30k_<pair>_<row>_train_steps,
multi30k_<pair>_distilled_corpus_bleu, multi30k_<pair>_teacher_beam_test2016_bleu (from distillation), and, on
``--latency-pair`` (default the first pair), <row>_batch1_latency_ms, <row>_speedup_vs_at_greedy,
<row>_speedup_vs_at_beam (the batch-1 speed-ups, ``<row>_speedup_vs_at_{greedy,beam}_batch1`` since session
16; captured: AT greedy and beam search as fixed-shape searches replayed in captured chunks of steps (beam search
with ``SEQLAB_STATIC_BEAM=1``), and for NAT batches of up to 8 sources, one replay per decode), the same with the
``_eager`` suffix (no graphs; the library's eager beam search), and <row>_batch1_graph_equals_eager (the fraction
of the latency sentences whose graph output equals the eager one); the NAT SoftCopy row's also as ``nat_*``
(``nat_speedup_vs_at_greedy_batch1``, ``nat_sent_per_s_batch64``: issue 18's names).

``--at-plain`` also trains the plain Transformer (configs/multi30k_transformer.yaml, no imitation modules) per pair
beside the first NAT stage: then ``at_greedy`` / ``at_beam`` decode it and are every speed-up's baseline, and
``dat_greedy`` / ``dat_beam`` are the demonstrator; ``--rows`` trains and scores only the named NAT rows; every
row's batched throughput over the whole test set is <row>_sent_per_s_batch<N> (``--throughput-batch``, 64) and
<row>_sent_per_s_tokens<N> (batches under a token budget, ``--throughput-tokens``, 4,096).

``--imitation-weights 0,0.001,0.01,0.1`` trains imitate-NAT rows ``imitate_nat_w<weight>`` instead of the table's
(same initialisation, distillation and copy; only the weight λ2 of the imitation term differs) and scores them
with the AT rows, without latencies; ``--record NAME`` writes the entries to benchmarks/results/NAME.json
whatever the device (the CPU sweep: docs/nat.md).

``--nat-steps 1000,2000,3000`` trains in stages: every row reaches a stage before any goes on, each stage's
best checkpoints are kept (``<row>/step<N>.pt``) and scored in the background while the next trains, and the
report is the last stage every row completed (``--evaluate-only`` after an interruption).  Written to
benchmarks/results/nat_<device type>.json only for full (non-smoke) runs on a GPU (or to NAME.json with
``--record NAME``); always to <work>/results.json.

    OMP_NUM_THREADS=1 python benchmarks/bench_nat.py --smoke --pairs de-en --work /tmp/nat_sweep \
        --imitation-weights 0,0.001,0.01,0.1 --record nat_imitation_sweep_cpu     # the CPU imitation sweep
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from seqlab import launch
from seqlab.bench import results as results_io
from seqlab.bench.timing import contended, report_conditions, sync, timing_conditions
from seqlab.config import DecodeConfig
from seqlab.data.vocab import EOS_ID

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"


@dataclass(frozen=True)
class Row:
    """A trained row: its config, copy, whether it trains on the distilled corpus, and (imitate-NAT rows) the
    imitation weight λ2 (None: the config's, 0.001)."""

    config: str
    copy: str
    distilled: bool
    imitation_weight: float | None = None

    @property
    def imitates(self) -> bool:
        return self.config == "multi30k_imitate_nat.yaml"


TRAINED_ROWS: dict[str, Row] = {
    "nat_uniformcopy": Row("multi30k_nat.yaml", "uniform", True),
    "nat_softcopy": Row("multi30k_nat.yaml", "softcopy", True),
    "nat_uniformcopy_nokd": Row("multi30k_nat.yaml", "uniform", False),
    "nat_softcopy_nokd": Row("multi30k_nat.yaml", "softcopy", False),
    "imitate_nat": Row("multi30k_imitate_nat.yaml", "softcopy", True),
    "imitate_nat_nokd": Row("multi30k_imitate_nat.yaml", "softcopy", False),
    "imitate_nat_w0": Row("multi30k_imitate_nat.yaml", "softcopy", True, 0.0),  # the control: no imitation
}
ROWS = ["at_greedy", "at_beam", *TRAINED_ROWS, "imitate_nat_lpd"]


#: an imitate-NAT row of another imitation weight, e.g. ``imitate_nat_w0.01``
SWEEP_ROW = re.compile(r"imitate_nat_w(\d+(?:\.\d+)?(?:e-?\d+)?)")


def sweep_rows(weights: list[float]) -> dict[str, Row]:
    """imitate-NAT rows ``imitate_nat_w<weight>`` that differ in the imitation weight only."""
    return {f"imitate_nat_w{w:g}": Row("multi30k_imitate_nat.yaml", "softcopy", True, w) for w in weights}


def evaluated_rows(trained: dict[str, Row], plain_at: bool = False) -> list[str]:
    """The AT rows, the trained ones, and LPD when the table's imitate-NAT row is among them.  With a plain AT
    Transformer (``--at-plain``) ``at_*`` decode it and ``dat_*`` the demonstrator; otherwise ``at_*`` are the
    demonstrator's."""
    at = ["at_greedy", "at_beam", "dat_greedy", "dat_beam"] if plain_at else ["at_greedy", "at_beam"]
    return [*at, *trained, *(["imitate_nat_lpd"] if "imitate_nat" in trained else [])]


def select_rows(names: str | None, trained: dict[str, Row]) -> dict[str, Row]:
    """``--rows a,b``: only these trained rows (in the table's order), then any ``imitate_nat_w<weight>`` named
    (imitate-NAT with imitation weight λ2 = weight, :func:`sweep_rows`) beside them."""
    if not names:
        return trained
    wanted = [n.strip() for n in names.split(",") if n.strip()]
    weights = [n for n in wanted if n not in trained and SWEEP_ROW.fullmatch(n)]
    unknown = [n for n in wanted if n not in trained and n not in weights]
    if unknown:
        raise SystemExit(f"--rows: unknown row(s) {unknown}; known: {', '.join(trained)}, imitate_nat_w<weight>")
    chosen = {name: row for name, row in trained.items() if name in wanted}
    extra = sweep_rows([float(SWEEP_ROW.fullmatch(n).group(1)) for n in weights])
    return {**chosen, **{name: row for name, row in extra.items() if name not in chosen}}


SMOKE_MODEL = {
    "d_model": 64,
    "n_heads": 4,
    "ffn_dim": 128,
    "encoder_layers": 2,
    "decoder_layers": 2,
    "dropout": 0.1,
    "n_actions": 32,
}


def pair_name(pair: str) -> str:
    """``de-en`` -> ``deen`` (the issue's metric names)."""
    return pair.replace("-", "")


def yaml_value(value: Any) -> str:
    return json.dumps(value)  # JSON is YAML: the CLI parses override values as YAML


# ------------------------------------------------------------------------------------------ jobs
class Job:
    """One ``seqlab`` subprocess; done when ``marker`` exists (and, for a training run with a step budget, when
    its results.json reports at least ``steps`` steps: a later stage resumes the run from its last checkpoint)."""

    def __init__(self, name: str, argv: list[str], log: Path, marker: Path, steps: int | None = None):
        self.name, self.argv, self.log, self.marker, self.steps = name, argv, log, marker, steps

    def done(self) -> bool:
        if not self.marker.exists():
            return False
        if self.steps is None:
            return True
        results = json.loads(self.marker.read_text())
        return results["steps"] >= self.steps or results.get("stopped_early", False)


class DeadlineReached(SystemExit):
    pass


def check_deadline(deadline: float | None) -> None:
    if deadline is not None and time.time() > deadline:
        raise DeadlineReached("deadline reached: rerun the same command to continue (every stage resumes)")


def run_jobs(
    jobs: list[Job], gpus: int, deadline: float | None = None, per_gpu: int = 1, memory_share: float | None = None
) -> None:
    """Run pending jobs (:func:`seqlab.launch.run_jobs`), at most ``per_gpu`` per GPU at a time (sequentially on
    the CPU, one thread each unless OMP_NUM_THREADS is set, when ``gpus`` is 0), each capped at
    ``memory_share / per_gpu`` of its GPU's memory when ``memory_share`` is given.
    At ``deadline`` (epoch seconds) running jobs are terminated; they resume from their last checkpoint."""
    cpu = {} if gpus else {"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    outcomes = launch.run_jobs(
        [launch.Job(j.name, j.argv, j.log, j.done, cpu) for j in jobs],
        gpus=[str(g) for g in range(gpus)],
        per_gpu=per_gpu,
        memory_share=memory_share if gpus else None,
        deadline=deadline,
    )
    if any(o.status == "stopped" for o in outcomes):
        check_deadline(deadline)
    failed = [o.name for o in outcomes if o.status == "failed"]
    if failed:
        raise SystemExit(f"failed jobs: {failed}; see their logs")


def seqlab_train(config: Path, overrides: list[str]) -> list[str]:
    return [sys.executable, "-m", "seqlab.cli", "train", "--config", str(config), *overrides]


# ------------------------------------------------------------------------------------------ setup
def multi30k_options(args: argparse.Namespace, pair: str) -> dict[str, Any]:
    src, tgt = pair.split("-")
    opts: dict[str, Any] = {
        "path": str(Path(args.data).resolve()),
        "src_lang": src,
        "tgt_lang": tgt,
        "vocab_size": args.vocab_size,
        "shared_vocab": True,
    }
    if args.max_train:
        opts["max_train"] = args.max_train
    return opts


def common_overrides(args: argparse.Namespace, run_dir: Path, minutes: float, steps: int | None) -> list[str]:
    out = [
        f"run_dir={run_dir}",
        f"train.device={'cuda' if args.gpus > 0 else 'cpu'}",
        f"train.max_minutes={minutes}",
        "train.progress_bar=false",
    ]
    if steps is not None and not args.smoke:
        out.append(f"train.max_steps={steps}")
    if args.smoke:
        out += [
            f"model.options={yaml_value(SMOKE_MODEL)}",
            f"train.max_steps={steps or args.smoke_steps}",
            "train.max_tokens=2048",
            "train.warmup_steps=100",
            "train.lr=0.002",
            f"train.eval_every_steps={max((steps or args.smoke_steps) // 2, 1)}",
            "train.eval_max_examples=100",
            "train.tensorboard=false",
            "decode.batch_size=200",
        ]
    return out


def teacher_jobs(args: argparse.Namespace, pairs: list[str], given: dict[str, str]) -> list[Job]:
    jobs = []
    for pair in pairs:
        if pair in given:
            continue
        run = Path(args.work) / pair / "dat"
        ov = common_overrides(args, run, args.teacher_minutes, args.teacher_steps) + [
            "task.name=multi30k",
            f"task.options={yaml_value(multi30k_options(args, pair))}",
            *args.teacher_override,
        ]
        jobs.append(
            Job(f"{pair}/dat", seqlab_train(CONFIGS / "multi30k_dat.yaml", ov), run / "train.log", run / "results.json")
        )
    return jobs


def plain_at_jobs(args: argparse.Namespace, pairs: list[str]) -> list[Job]:
    """``--at-plain``: the plain Transformer (configs/multi30k_transformer.yaml, no imitation modules) per pair, the
    baseline of every speed-up, with the demonstrator's tokenizers and step / minute budget."""
    jobs = []
    for pair in pairs if args.at_plain else []:
        run = Path(args.work) / pair / "at"
        if not (run / "tokenizers").exists():
            shutil.copytree(Path(args.work) / pair / "distilled" / "tokenizers", run / "tokenizers")
        ov = common_overrides(args, run, args.teacher_minutes, args.teacher_steps) + [
            "task.name=multi30k",
            f"task.options={yaml_value(multi30k_options(args, pair))}",
            *args.teacher_override,
        ]
        if args.smoke:  # the smoke model without the demonstrator's imitation modules
            ov.append(f"model.options={yaml_value({k: v for k, v in SMOKE_MODEL.items() if k != 'n_actions'})}")
        config = CONFIGS / "multi30k_transformer.yaml"
        jobs.append(Job(f"{pair}/at", seqlab_train(config, ov), run / "train.log", run / "results.json"))
    return jobs


def demonstrators(args: argparse.Namespace, given: dict[str, str]) -> dict[str, Path]:
    """Each pair's demonstrator: the ``--teacher`` checkpoint given, else the trained DAT's best checkpoint."""
    work = Path(args.work)
    return {
        pair: Path(given[pair]).resolve() if pair in given else best_checkpoint(work / pair / "dat")
        for pair in args.pairs
    }


def train_demonstrators(args: argparse.Namespace, given: dict[str, str], sharing: dict[str, Any]) -> dict[str, Path]:
    """Train the DATs not given, then name the demonstrators: only once a DAT has trained does its best checkpoint
    exist (named before, a first call took the last one for the distillation and the rows it trained, while a later
    call, and every evaluation, took the best)."""
    run_jobs(teacher_jobs(args, args.pairs, given), args.gpus, args.deadline, **sharing)
    return demonstrators(args, given)


def distill_jobs(args: argparse.Namespace, pairs: list[str], teachers: dict[str, Path]) -> list[Job]:
    jobs = []
    for pair in pairs:
        out = Path(args.work) / pair / "distilled"
        task = yaml_value(multi30k_options(args, pair))
        argv = [
            sys.executable,
            "-m",
            "seqlab.cli",
            "distill",
            "--teacher",
            str(teachers[pair]),
            "--output",
            str(out),
            "--beam-size",
            str(args.beam),
            "--device",
            "cuda" if args.gpus > 0 else "cpu",
            "task.name=multi30k",
            f"task.options={task}",
        ]
        if args.smoke:
            argv[-2:-2] = ["--batch-size", "200"]
        log = Path(args.work) / pair / "distill.log"
        jobs.append(Job(f"{pair}/distill", argv, log, out / "distill.json"))
    return jobs


def row_jobs(args: argparse.Namespace, pairs: list[str], teachers: dict[str, Path], steps: int | None) -> list[Job]:
    jobs = []
    for pair in pairs:
        distilled = Path(args.work) / pair / "distilled"
        kd_task = json.loads((distilled / "task.json").read_text())
        for row, spec in args.trained_rows.items():
            run = Path(args.work) / pair / row
            if not (run / "tokenizers").exists():  # the demonstrator's tokenizers, for every row
                shutil.copytree(distilled / "tokenizers", run / "tokenizers")
            task = (
                ["task.name=parallel", f"task.options={yaml_value(kd_task)}"]
                if spec.distilled
                else ["task.name=multi30k", f"task.options={yaml_value(multi30k_options(args, pair))}"]
            )
            ov = common_overrides(args, run, args.nat_minutes, steps) + task + [f"model.options.copy={spec.copy}"]
            if args.smoke:  # the smoke model options replaced the config's: restore the row's switch
                ov.append(f"model.options.imitation={yaml_value(spec.imitates)}")
            if spec.imitates:  # the demonstrator is the teacher and (init_from_teacher) the initialisation
                ov.append(f"algorithm.options.teacher={teachers[pair]}")
                if spec.imitation_weight is not None:
                    ov.append(f"algorithm.options.imitation_weight={yaml_value(spec.imitation_weight)}")
            else:  # the same initialisation as imitate-NAT
                ov.append(f"algorithm.options.init_from={teachers[pair]}")
            ov += args.nat_override
            jobs.append(
                Job(
                    f"{pair}/{row}",
                    seqlab_train(CONFIGS / spec.config, ov),
                    run / "train.log",
                    run / "results.json",
                    steps,
                )
            )
    return jobs


# ------------------------------------------------------------------------------------------ stages
def stage_tag(steps: int | None) -> str:
    return "final" if steps is None else f"step{steps}"


def freeze_stage(args: argparse.Namespace, pairs: list[str], steps: int | None) -> None:
    """Keep every row's best checkpoint and results of this stage (the next stage trains on from them)."""
    tag = stage_tag(steps)
    for pair in pairs:
        for row in args.trained_rows:
            run = Path(args.work) / pair / row
            shutil.copyfile(best_checkpoint(run), run / f"{tag}.pt")
            shutil.copyfile(run / "results.json", run / f"results_{tag}.json")
    print(f"[stage] {tag}: every row kept")


def completed_stages(args: argparse.Namespace) -> list[int | None]:
    """The stages every row of this call (``--rows``) has kept in every pair: a later call with other rows in the
    same work folder trains those rows through every stage, reusing the demonstrator, distillation and plain AT."""
    stages = [None] if args.stages is None else args.stages
    work = Path(args.work)

    def kept(steps: int | None) -> bool:
        tag = stage_tag(steps)
        runs = [work / pair / row for pair in args.pairs for row in args.trained_rows]
        return all((run / f"results_{tag}.json").exists() for run in runs)

    return [s for s in stages if kept(s)]


def best_checkpoint(run: Path) -> Path:
    """The run's best checkpoint (its last one when it kept no best)."""
    best = run / "checkpoint_best.pt"
    return best if best.exists() else run / "checkpoint_last.pt"


# ------------------------------------------------------------------------------------------ evaluation
def batch1_decode(
    fn: Any, sources: list[list[int]], device: torch.device, warmup: int = 10
) -> tuple[float, list[list[int]]]:
    """Median wall-clock milliseconds of ``fn(src [1, S])`` over ``sources`` (after ``warmup`` calls), and the
    outputs (token ids up to EOS)."""
    tensors = [torch.tensor([s], dtype=torch.long, device=device) for s in sources]
    outputs, times = [], []
    with torch.no_grad():
        for t in tensors[:warmup]:
            fn(t)
        for t in tensors:
            sync(device)
            t0 = time.perf_counter()
            hyp = fn(t)
            sync(device)
            times.append((time.perf_counter() - t0) * 1000.0)
            row = hyp.tokens[0].tolist()
            outputs.append(row[: row.index(EOS_ID)] if EOS_ID in row else row)
    return statistics.median(times), outputs


def is_at_row(row: str) -> bool:
    return row.split("_")[0] in ("at", "dat") and row.split("_")[-1] in ("greedy", "beam")


def token_batches(sources: list[list[int]], budget: int) -> list[list[int]]:
    """Indices of ``sources`` in batches of at most ``budget`` padded source tokens (rows x longest), the sources
    sorted by length first, as a decoder of a whole test set under a token budget batches them (fairseq's
    ``--max-tokens``); a source longer than the budget goes alone."""
    order = sorted(range(len(sources)), key=lambda i: (len(sources[i]), i))
    batches: list[list[int]] = []
    for i in order:
        if batches and (len(batches[-1]) + 1) * len(sources[i]) <= budget:
            batches[-1].append(i)  # sorted: this source is the batch's longest
        else:
            batches.append([i])
    return batches


def batched_rate(fn: Any, sources: list[list[int]], batch: int, device: torch.device, tokens: int = 0) -> float:
    """Sentences per second of ``fn`` over ``sources`` in batches of ``batch`` sentences (padded) or, with
    ``tokens``, of at most that many padded source tokens (:func:`token_batches`), after one warm-up pass."""
    from seqlab.train.evaluate import pad_batch

    if tokens:
        batches = [pad_batch([sources[i] for i in rows], device) for rows in token_batches(sources, tokens)]
    else:
        batches = [pad_batch(sources[i : i + batch], device) for i in range(0, len(sources), batch)]
    with torch.no_grad():
        for src in batches:  # warm-up: shapes, captures
            fn(src)
        sync(device)
        t0 = time.perf_counter()
        for src in batches:
            fn(src)
        sync(device)
    return len(sources) / (time.perf_counter() - t0)


class PairModels:
    """The demonstrator and the NAT rows of one pair at one stage, on ``device``."""

    def __init__(self, args: argparse.Namespace, pair: str, teacher_path: Path, tag: str):
        import seqlab.nat  # noqa: F401  (registers the nat / dat models)
        from seqlab.data.tasks import load_task
        from seqlab.inference import load_checkpoint_model

        self.device = torch.device("cuda" if args.gpus > 0 else "cpu")
        self.teacher = load_checkpoint_model(teacher_path, self.device)
        self.decode: DecodeConfig = self.teacher.config.decode
        tokenizers = Path(args.work) / pair / "distilled" / "tokenizers"
        self.test = load_task("multi30k", multi30k_options(args, pair), tokenizers).test
        self.nats = {
            row: load_checkpoint_model(Path(args.work) / pair / row / f"{tag}.pt", self.device).model
            for row in args.trained_rows
        }
        # the AT rows' model: the plain Transformer (--at-plain) for at_*, the demonstrator for dat_* (or at_*)
        plain = best_checkpoint(Path(args.work) / pair / "at") if args.at_plain else None
        self.at = {
            "at": load_checkpoint_model(plain, self.device).model if plain else self.teacher.model,
            "dat": self.teacher.model,
        }
        if "imitate_nat" in self.nats:
            self.nats["imitate_nat_lpd"] = self.nats["imitate_nat"]
        self.delta = {row: args.delta_t if row == "imitate_nat_lpd" else 0 for row in self.nats}

    def nat_decoder(self, row: str, graphs: bool | None = None) -> Any:
        """The row's ``decoder(model, src)``: argmax length, or LPD rescored by the demonstrator."""
        from seqlab.nat.decoding import make_nat_decoder

        teacher = self.teacher.model if self.delta[row] else None
        return make_nat_decoder(self.delta[row], teacher=teacher, max_len=self.decode.max_len, graphs=graphs)

    def one_source(self, row: str, graphs: bool | None) -> Any:
        """``fn(src)`` decoding with the row's model and decoder."""
        decoder, model = self.nat_decoder(row, graphs), self.nats[row]
        return lambda src: decoder(model, src)


def bleu_pass(args: argparse.Namespace, pair: str, teacher_path: Path, tag: str) -> dict[str, Any]:
    """test_2016_flickr BLEU of every row (batched decoding); cached in <work>/<pair>/eval_<tag>.json."""
    from seqlab.train.evaluate import evaluate_corpus

    cache = Path(args.work) / pair / f"eval_{tag}.json"
    done = json.loads(cache.read_text()) if cache.exists() else {}
    if all(f"{r}_bleu" in done for r in args.rows):
        return done
    m = PairModels(args, pair, teacher_path, tag)
    tok = (m.teacher.src_tokenizer, m.teacher.tgt_tokenizer)
    for row in args.rows:
        if f"{row}_bleu" in done:
            continue
        check_deadline(args.deadline)
        if is_at_row(row):
            model, kind = m.at[row.split("_")[0]], row.split("_")[1]
            beam = 1 if kind == "greedy" else args.beam
            scores, _ = evaluate_corpus(model, m.test, *tok, ["bleu"], m.decode, m.device, beam_size=beam)
        else:
            scores, _ = evaluate_corpus(
                m.nats[row], m.test, *tok, ["bleu"], m.decode, m.device, decoder=m.nat_decoder(row)
            )
        done[f"{row}_bleu"] = scores["bleu"]
        print(f"{pair} {tag} {row}: test2016 BLEU {scores['bleu']:.2f}")
        cache.write_text(json.dumps(done, indent=2))
    for row in args.trained_rows:
        done[f"{row}_steps"] = json.loads((Path(args.work) / pair / row / f"results_{tag}.json").read_text())["steps"]
    cache.write_text(json.dumps(done, indent=2))
    return done


def latency_pass(args: argparse.Namespace, pair: str, teacher_path: Path, tag: str) -> dict[str, Any]:
    """Batch-1 latencies of every row, with CUDA graphs (seqlab's default) and eagerly, and how many graph
    outputs equal the eager ones; cached in <work>/<pair>/latency_<tag>.json with what else ran on the machine
    before and after (``timing_conditions``). A cache timed beside other work is not reused: the next call times
    again (session 22's first evaluation ran beside a comparison: AT greedy 11.95 ms, alone 4.91)."""
    from seqlab.decoding import beam_search, greedy_search
    from seqlab.train.evaluate import encode_lines

    cache = Path(args.work) / pair / f"latency_{tag}.json"
    cached = json.loads(cache.read_text()) if cache.exists() else {}
    if all(f"{row}_latency_ms" in cached for row in args.rows) and not contended(cached.get("timing_conditions", [])):
        return cached
    # a row the cache lacks (another call's --rows): every row again, so that all are timed in one process alike
    m = PairModels(args, pair, teacher_path, tag)
    kw = dict(max_len_a=m.decode.max_len_a, max_len_b=m.decode.max_len_b, max_len=m.decode.max_len)
    sources, _ = m.test.references()
    every = encode_lines(m.teacher.src_tokenizer, sources, m.decode.max_len)
    ids = every[: args.latency_sentences]
    fns: dict[str, Any] = {}
    for name, model in m.at.items():
        fns[f"{name}_greedy"] = functools.partial(greedy_search, model, **kw)
        fns[f"{name}_beam"] = functools.partial(
            beam_search, model, beam_size=args.beam, length_penalty=m.decode.length_penalty, **kw
        )
    done: dict[str, Any] = {"timing_conditions": [timing_conditions(m.device)]}
    switches = ("SEQLAB_CUDA_GRAPHS", "SEQLAB_STATIC_BEAM")
    before = {key: os.environ.get(key) for key in switches}
    try:
        for mode, env in (("graph", "1"), ("eager", "0")):
            # AT greedy's and beam search's switches (beam search captured as one static search in the graph pass,
            # the library's eager beam search otherwise); NAT decoders get theirs explicitly
            for key in switches:
                os.environ[key] = env
            for row in args.rows:
                check_deadline(args.deadline)
                fn = fns.get(row) or m.one_source(row, graphs=None if mode == "graph" else False)
                ms, outputs = batch1_decode(fn, ids, m.device)
                key = f"{row}_latency_ms" if mode == "graph" else f"{row}_latency_eager_ms"
                done[key], done[f"{row}_{mode}_outputs"] = ms, outputs
                rate = batched_rate(fn, every, args.throughput_batch, m.device)  # the whole test set
                by_tokens = batched_rate(fn, every, 0, m.device, tokens=args.throughput_tokens)
                done[f"{row}_sent_per_s{'' if mode == 'graph' else '_eager'}"] = rate
                done[f"{row}_sent_per_s_tokens{'' if mode == 'graph' else '_eager'}"] = by_tokens
                print(
                    f"{pair} {tag} {row}: batch-1 latency {ms:.2f} ms, {rate:.0f} sent/s at batch "
                    f"{args.throughput_batch}, {by_tokens:.0f} sent/s under {args.throughput_tokens} tokens ({mode})"
                )
    finally:  # the caller's settings, as they were
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    for row in args.rows:
        graph, eager = done.pop(f"{row}_graph_outputs"), done.pop(f"{row}_eager_outputs")
        done[f"{row}_graph_equals_eager"] = sum(g == e for g, e in zip(graph, eager, strict=True)) / len(graph)
    done["timing_conditions"].append(timing_conditions(m.device))
    report_conditions(done["timing_conditions"], f"{pair} {tag} latencies")
    cache.write_text(json.dumps(done, indent=2))
    return done


# ------------------------------------------------------------------------------------------ report
IMITATION_WINDOW = 500  # steps averaged for the imitation term's start and end


def report(args: argparse.Namespace, teachers: dict[str, Path], steps: int | None) -> list[dict[str, Any]]:
    """Entries (and <work>/results.json, summary.json) of one completed stage."""
    work, tag, latency_pair = Path(args.work), stage_tag(steps), args.latency_pair or args.pairs[0]
    command = results_io.command_line()
    if args.gpus == 0 and os.environ.get("OMP_NUM_THREADS"):
        command = f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']} {command}"
    entries, summary = [], {"stage": tag}
    for pair in args.pairs:
        res = bleu_pass(args, pair, teachers[pair], tag)
        if pair == latency_pair and (args.gpus > 0 or args.smoke) and not args.imitation_weights:
            res = {**res, **latency_pass(args, pair, teachers[pair], tag)}
        distill = json.loads((work / pair / "distilled" / "distill.json").read_text())
        summary[pair] = {
            "eval": res,
            "distill": {k: v for k, v in distill.items() if k != "task_options"},
            "digests": provenance_digests(args, pair, teachers[pair]),
        }
        print(f"{pair}: digests {summary[pair]['digests']}")
        name = f"multi30k_{pair_name(pair)}"
        for row in args.rows:
            entries.append(
                results_io.entry(f"{name}_{row}_test2016_bleu", round(res[f"{row}_bleu"], 2), "BLEU", command)
            )
        for row in args.trained_rows:
            entries.append(results_io.entry(f"{name}_{row}_train_steps", res[f"{row}_steps"], "steps", command))
        entries += [
            results_io.entry(f"{name}_{run}_train_seconds", round(seconds, 1), "s", command)
            for run, seconds in train_seconds(args, pair, tag).items()
        ]
        entries += logged_entries(args, pair, res, command)
        steps_by_row = {row: res[f"{row}_steps"] for row in args.trained_rows}
        if len(set(steps_by_row.values())) > 1:  # a minutes limit stopped some rows first: not like for like
            print(f"WARNING: {pair}: the rows trained for different step counts {steps_by_row}; raise --nat-minutes")
        entries.append(
            results_io.entry(
                f"{name}_distilled_corpus_bleu", round(distill["distilled_vs_references"]["bleu"], 2), "BLEU", command
            )
        )
        if "teacher_test" in distill:
            entries.append(
                results_io.entry(
                    f"{name}_teacher_beam_test2016_bleu", round(distill["teacher_test"]["bleu"], 2), "BLEU", command
                )
            )
        if "at_greedy_latency_ms" in res:
            entries += latency_entries(args, res, command)
    if args.stages is not None and len(args.stages) > 1:  # every scored stage, for the BLEU-vs-steps table
        entries += stage_entries(work, None, None, None, command, strict=False, rows=args.rows)
    (work / "results.json").write_text(json.dumps(entries, indent=2) + "\n")
    (work / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"wrote {work / 'results.json'} and {work / 'summary.json'}")
    return entries


def provenance_digests(args: argparse.Namespace, pair: str, teacher: Path) -> dict[str, str]:
    """SHA-1 of the demonstrator's weights, the plain AT's (``--at-plain``) and the distilled training targets: runs
    of a table trained in different device sessions, each from a demonstrator trained again there (training is
    deterministic), are comparable only when these agree."""
    from seqlab.train.checkpoint import weights_digest

    digests = {"dat_weights": weights_digest(teacher)}
    if args.at_plain:
        digests["at_weights"] = weights_digest(best_checkpoint(Path(args.work) / pair / "at"))
    targets = Path(args.work) / pair / "distilled" / "train.tgt"
    digests["distilled_train_tgt"] = hashlib.sha1(targets.read_bytes()).hexdigest()
    return digests


def train_seconds(args: argparse.Namespace, pair: str, tag: str) -> dict[str, float]:
    """Training seconds of the demonstrator, the plain AT (``--at-plain``) and each trained row up to stage ``tag``
    (what a row costs, for planning runs within a device session's time)."""
    work = Path(args.work) / pair
    files = {
        "dat": work / "dat" / "results.json",
        **{row: work / row / f"results_{tag}.json" for row in args.trained_rows},
    }
    if args.at_plain:
        files["at"] = work / "at" / "results.json"
    return {run: json.loads(path.read_text())["train_seconds"] for run, path in files.items() if path.exists()}


def logged_entries(args: argparse.Namespace, pair: str, res: dict[str, Any], command: str) -> list[dict]:
    """What the trained rows logged: the imitation term (:func:`imitation_entries`) and each kept stage's
    validation BLEU (:func:`validation_entries`)."""
    return imitation_entries(args, pair, res, command) + validation_entries(args, pair, command)


def imitation_entries(args: argparse.Namespace, pair: str, res: dict[str, Any], command: str) -> list[dict]:
    """Per trained row whose log has it, Σ_layers KL(π_AT ‖ π_NAT) per target token (the imitation term, logged
    for the weight-0 control too) averaged over the first and the last ``IMITATION_WINDOW`` steps of its stage:
    whether imitation makes the NAT's action distributions approach the demonstrator's (the two windows overlap in a
    stage shorter than twice the window)."""
    entries = []
    for row in args.trained_rows:
        log = Path(args.work) / pair / row / "log.jsonl"
        if not log.exists():
            continue
        end = res[f"{row}_steps"]
        logged = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
        kl = [(e["step"], e["imitation_kl"]) for e in logged if e.get("kind") == "train" and "imitation_kl" in e]
        for name, lo, hi in (("start", 0, IMITATION_WINDOW), ("end", end - IMITATION_WINDOW, end)):
            window = [value for step, value in kl if lo < step <= hi]
            if window:
                metric = f"multi30k_{pair_name(pair)}_{row}_imitation_kl_{name}"
                entries.append(results_io.entry(metric, round(sum(window) / len(window), 3), "nats", command))
    return entries


def validation_entries(args: argparse.Namespace, pair: str, command: str) -> list[dict]:
    """Per trained row and kept stage, the validation BLEU of the stage's best checkpoint (greedy, what chose it):
    ``multi30k_<pair>_<row>_valid_bleu_step<N>``, whether the rows still gain."""
    entries = []
    for row in args.trained_rows:
        for path in sorted((Path(args.work) / pair / row).glob("results_step*.json")):
            steps = int(path.stem.removeprefix("results_step"))
            bleu = json.loads(path.read_text()).get("valid", {}).get("bleu")
            if bleu is not None:
                metric = f"multi30k_{pair_name(pair)}_{row}_valid_bleu_step{steps}"
                entries.append(results_io.entry(metric, round(bleu, 2), "BLEU", command))
    return entries


def latency_entries(args: argparse.Namespace, res: dict[str, Any], command: str) -> list[dict]:
    """The latency pass's entries: per row and mode (captured, ``_eager``) the batch-1 latency, the batched
    throughputs and the batch-1 speed-ups over AT greedy and beam, whether graph equals eager, whether the timing
    shared the machine (``batch1_latency_timing_contended``), and the issue's ``nat_*`` names (:func:`issue_names`)."""
    entries = []
    for mode, suffix in (("", "_latency_ms"), ("_eager", "_latency_eager_ms")):
        at_greedy, at_beam = res[f"at_greedy{suffix}"], res[f"at_beam{suffix}"]
        for row in args.rows:
            ms = res[f"{row}{suffix}"]
            entries.append(results_io.entry(f"{row}_batch1{suffix}", round(ms, 3), "ms", command))
            rates = [(f"batch{args.throughput_batch}", res[f"{row}_sent_per_s{mode}"])]
            if f"{row}_sent_per_s_tokens{mode}" in res:
                rates.append((f"tokens{args.throughput_tokens}", res[f"{row}_sent_per_s_tokens{mode}"]))
            entries += [
                results_io.entry(f"{row}_sent_per_s_{batching}{mode}", round(rate, 1), "sent/s", command)
                for batching, rate in rates
            ]
            entries += [
                results_io.entry(f"{row}_speedup_vs_{base}_batch1{mode}", round(base_ms / ms, 2), "x", command)
                for base, base_ms in (("at_greedy", at_greedy), ("at_beam", at_beam))
                if row != base
            ]
    entries += [
        results_io.entry(f"{row}_batch1_graph_equals_eager", res[f"{row}_graph_equals_eager"], "fraction", command)
        for row in args.rows
    ]
    if "timing_conditions" in res:  # 1: something else ran on the machine before or after the timing
        shared = float(contended(res["timing_conditions"]))
        entries.append(results_io.entry("batch1_latency_timing_contended", shared, "", command))
    return entries + issue_names(entries)


#: the NAT row the issue's ``nat_*`` entries name (NAT SoftCopy, from the demonstrator, on the distilled data)
NAT_ROW = "nat_softcopy"


def issue_names(entries: list[dict]) -> list[dict]:
    """The latency and throughput entries under the names issue 18 gives: ``nat_*`` for :data:`NAT_ROW`'s
    (``nat_speedup_vs_at_greedy_batch1``, ``nat_speedup_vs_at_beam_batch1``, ``nat_sent_per_s_batch64``, ...)."""
    kinds = tuple(f"{NAT_ROW}_{kind}_" for kind in ("speedup_vs", "sent_per_s"))  # not nat_softcopy_nokd's
    return [{**e, "metric": "nat_" + e["metric"][len(NAT_ROW) + 1 :]} for e in entries if e["metric"].startswith(kinds)]


def stage_entries(
    work: Path,
    stages: list[int] | None,
    device: str | None,
    commit: str | None,
    command: str,
    skip_rows: tuple[str, ...] = (),
    strict: bool = True,
    rows: list[str] = ROWS,
) -> list[dict]:
    """``multi30k_<pair>_<row>_test2016_bleu_step<N>`` of every scored stage (device / commit: this run's when
    None); a stage not fully scored is an error, or skipped when not ``strict``."""
    entries = []
    for path in sorted(work.glob("*/eval_step*.json")):
        pair, steps = path.parent.name, int(path.stem.removeprefix("eval_step"))
        if stages is not None and steps not in stages:
            continue
        scores = json.loads(path.read_text())
        missing = [r for r in rows if r not in skip_rows and f"{r}_bleu" not in scores]
        if missing and strict:
            raise SystemExit(f"{path}: stage not fully scored (no BLEU for {missing})")
        if missing:
            print(f"[skip] {path}: stage not fully scored")
            continue
        for row in (r for r in rows if r not in skip_rows):
            e = results_io.entry(
                f"multi30k_{pair_name(pair)}_{row}_test2016_bleu_step{steps}",
                round(scores[f"{row}_bleu"], 2),
                "BLEU",
                command,
            )
            entries.append({**e, "device": device or e["device"], "commit": commit or e["commit"]})
    if not entries:
        raise SystemExit(f"no eval_step<N>.json under {work}/<pair>/")
    return entries


def background_bleu(args: argparse.Namespace, steps: int | None) -> subprocess.Popen:
    """Score a frozen stage in a subprocess while the next stage trains."""
    argv = [sys.executable, *sys.argv, "--bleu-stage", str(steps)]
    log = Path(args.work) / f"bleu_{stage_tag(steps)}.log"
    print(f"[start] BLEU of {stage_tag(steps)} (log {log})")
    return subprocess.Popen(argv, stdout=open(log, "a", encoding="utf-8"), stderr=subprocess.STDOUT, cwd=REPO)


# ------------------------------------------------------------------------------------------ main
def parse_stages(text: str | None) -> list[int] | None:
    if text is None:
        return None
    stages = [int(x) for x in text.split(",")]
    if stages != sorted(set(stages)) or stages[0] <= 0:
        raise SystemExit(f"--nat-steps: increasing positive step counts, got {text!r}")
    return stages


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "multi30k"))
    p.add_argument("--pairs", nargs="+", default=["de-en", "en-de"])
    p.add_argument("--work", default=str(REPO / "runs" / "bench_nat"))
    p.add_argument("--gpus", type=int, default=torch.cuda.device_count(), help="0: CPU, sequential")
    p.add_argument(
        "--teacher",
        action="append",
        default=[],
        metavar="PAIR=CKPT",
        help="use this dat checkpoint as the demonstrator of PAIR instead of training one",
    )
    p.add_argument("--teacher-minutes", type=float, default=8.0)
    p.add_argument("--nat-minutes", type=float, default=6.0)
    p.add_argument("--teacher-steps", type=int, default=None, help="a step budget besides --teacher-minutes")
    p.add_argument(
        "--nat-steps",
        default=None,
        metavar="N[,N2,...]",
        help="step budget(s) besides --nat-minutes (equal steps per row when rows share a GPU); several "
        "are stages: every row trains on to the next, each stage is kept and scored, the report "
        "is the last stage every row completed",
    )
    p.add_argument(
        "--teacher-override",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="config override of the demonstrator runs (repeatable)",
    )
    p.add_argument(
        "--nat-override",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="config override of every NAT / imitate-NAT run (repeatable), e.g. train.warmup_steps=400",
    )
    p.add_argument("--jobs-per-gpu", type=int, default=1, help="trainings / distillations side by side per GPU")
    p.add_argument(
        "--gpu-memory-share",
        type=float,
        default=None,
        help="share of each GPU's memory all jobs together may hold (default: uncapped)",
    )
    p.add_argument("--vocab-size", type=int, default=8000)
    p.add_argument("--max-train", type=int, default=None, help="distinct training sources kept")
    p.add_argument("--beam", type=int, default=5)
    p.add_argument("--delta-t", type=int, default=3)
    p.add_argument("--latency-sentences", type=int, default=200)
    p.add_argument("--latency-pair", default=None, help="pair whose latencies are recorded (default: first)")
    p.add_argument(
        "--rows",
        default=None,
        metavar="ROW[,ROW2,...]",
        help="train and score only these NAT rows (default: all); imitate_nat_w<weight> adds imitate-NAT with that "
        "imitation weight",
    )
    p.add_argument(
        "--at-plain",
        action="store_true",
        help="also train the plain Transformer (no imitation modules) per pair: rows at_greedy / at_beam decode it "
        "and are the speed-ups' baseline, dat_greedy / dat_beam the demonstrator",
    )
    p.add_argument("--throughput-batch", type=int, default=64, help="batch size of the sent/s figures")
    p.add_argument(
        "--throughput-tokens",
        type=int,
        default=4096,
        help="token budget of the whole-test-set sent/s figures (<row>_sent_per_s_tokens<N>; sources sorted by "
        "length, batches of at most N padded source tokens)",
    )
    p.add_argument("--smoke", action="store_true", help="tiny models, few steps: proves the pipeline only")
    p.add_argument("--smoke-steps", type=int, default=300)
    p.add_argument("--no-record", action="store_true", help="never write benchmarks/results/")
    p.add_argument(
        "--record",
        default=None,
        metavar="NAME",
        help="write the entries to benchmarks/results/NAME.json whatever the device (e.g. a CPU sweep)",
    )
    p.add_argument(
        "--metric-suffix",
        default="",
        help="appended to every metric name (e.g. a second configuration recorded in the same file)",
    )
    p.add_argument(
        "--imitation-weights",
        default=None,
        metavar="W[,W2,...]",
        help="train imitate-NAT rows imitate_nat_w<W> (imitation weight W) instead of the table's rows",
    )
    p.add_argument(
        "--train-only",
        action="store_true",
        help="stop after training (evaluate later, e.g. with the GPU to itself for the latencies)",
    )
    p.add_argument(
        "--evaluate-only", action="store_true", help="train nothing: report the last stage every row completed"
    )
    p.add_argument("--bleu-stage", default=None, help=argparse.SUPPRESS)  # internal: score one frozen stage
    p.add_argument(
        "--deadline-minutes",
        type=float,
        default=None,
        help="stop (resumably) after this many minutes, e.g. under a per-command time limit",
    )
    args = p.parse_args()
    args.stages = parse_stages(args.nat_steps)
    args.imitation_weights = (
        None if args.imitation_weights is None else [float(w) for w in args.imitation_weights.split(",")]
    )
    args.trained_rows = TRAINED_ROWS if args.imitation_weights is None else sweep_rows(args.imitation_weights)
    args.trained_rows = select_rows(args.rows, args.trained_rows)
    args.rows = evaluated_rows(args.trained_rows, args.at_plain)
    args.deadline = None if args.deadline_minutes is None else time.time() + 60 * args.deadline_minutes
    if args.smoke:
        args.max_train = args.max_train or 3000
        args.vocab_size = min(args.vocab_size, 2000)
        args.latency_sentences = min(args.latency_sentences, 30)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    given = dict(item.split("=", 1) for item in args.teacher)
    teachers = demonstrators(args, given)
    if args.bleu_stage is not None:
        for pair in args.pairs:
            steps = None if args.bleu_stage == "None" else int(args.bleu_stage)
            bleu_pass(args, pair, teachers[pair], stage_tag(steps))
        return

    scoring: list[subprocess.Popen] = []
    if not args.evaluate_only:
        sharing = dict(per_gpu=args.jobs_per_gpu, memory_share=args.gpu_memory_share)
        teachers = train_demonstrators(args, given, sharing)
        run_jobs(distill_jobs(args, args.pairs, teachers), args.gpus, args.deadline, **sharing)
        for steps in [None] if args.stages is None else args.stages:
            if steps in completed_stages(args):
                continue
            jobs = row_jobs(args, args.pairs, teachers, steps) + plain_at_jobs(args, args.pairs)  # beside stage 1
            run_jobs(jobs, args.gpus, args.deadline, **sharing)
            freeze_stage(args, args.pairs, steps)
            if args.train_only:
                scoring.append(background_bleu(args, steps))
        for proc in scoring:
            proc.wait()
        if args.train_only:
            print("trained every row (--train-only): rerun with --evaluate-only for the latencies and the report")
            return
    stages = completed_stages(args)
    if not stages:
        raise SystemExit("no stage completed yet: train first")
    entries = report(args, teachers, stages[-1])
    for e in entries:
        e["metric"] += args.metric_suffix
    on_gpu = args.gpus > 0 and torch.cuda.is_available()
    if args.record and not args.no_record:
        print("wrote", results_io.write(args.record, entries))
    elif args.smoke or args.no_record or not on_gpu or args.imitation_weights:
        print("not recorded in benchmarks/results/ (smoke run, sweep without --record, --no-record, or no GPU)")
    else:
        print("wrote", results_io.write("nat_cuda", entries))
    for e in entries:
        print(f"{e['metric']:55s} {e['value']:>10} {e['unit']}")


if __name__ == "__main__":
    main()
