"""The imitate-NAT ablation (Wei et al., ACL 2019) on Multi30k en->de and de->en, end to end.

Per language pair: train the autoregressive demonstrator (``dat``, configs/multi30k_dat.yaml) or take a
given checkpoint; distil the training set with it (beam search, ``seqlab distill``); train the NAT rows

    nat_uniformcopy, nat_softcopy             NAT on the distilled corpus (UniformCopy / SoftCopy inputs)
    nat_uniformcopy_nokd, nat_softcopy_nokd   the same on the original references
    imitate_nat, imitate_nat_nokd             imitate-NAT (SoftCopy), with / without distillation

(every run uses the demonstrator's tokenizers), then score on test_2016_flickr (sacreBLEU) the rows above,
``at_greedy`` / ``at_beam`` (the demonstrator) and ``imitate_nat_lpd`` (imitate-NAT with length-parallel
decoding over [L̂ − ΔT, L̂ + ΔT], ΔT = 3, rescored by the demonstrator), and measure batch-1 latency
(median over the first ``--latency-sentences`` test sentences, fp32, after warm-up; encoder included)
and speed-ups over ``at_greedy`` and ``at_beam``.

Training runs are ``seqlab train`` subprocesses; with several GPUs they run side by side, one per GPU
(``--gpus``).  Every stage is resumable: finished runs (results.json), a finished distillation
(distill.json) and finished evaluations are kept and skipped on the next call.

    python benchmarks/bench_nat.py --data ../shared/data/multi30k --gpus 4
    python benchmarks/bench_nat.py --smoke --work /tmp/bench_nat_smoke     # tiny CPU run, nothing recorded

Metrics: multi30k_<pair>_<row>_test2016_bleu (pair de_en / en_de), multi30k_<pair>_distilled_corpus_bleu,
multi30k_<pair>_teacher_beam_test2016_bleu (from distillation), and, on ``--latency-pair`` (default the
first pair), <row>_batch1_latency_ms, <row>_speedup_vs_at_greedy, <row>_speedup_vs_at_beam.  Written to
benchmarks/results/nat_<device type>.json only for full (non-smoke) runs on a GPU; always to
<work>/results.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import results_io  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from seqlab.config import DecodeConfig  # noqa: E402
from seqlab.data.vocab import EOS_ID  # noqa: E402

CONFIGS = REPO / "configs"

#: trained rows: (config, copy, distilled corpus?)
TRAINED_ROWS: dict[str, tuple[str, str, bool]] = {
    "nat_uniformcopy": ("multi30k_nat.yaml", "uniform", True),
    "nat_softcopy": ("multi30k_nat.yaml", "softcopy", True),
    "nat_uniformcopy_nokd": ("multi30k_nat.yaml", "uniform", False),
    "nat_softcopy_nokd": ("multi30k_nat.yaml", "softcopy", False),
    "imitate_nat": ("multi30k_imitate_nat.yaml", "softcopy", True),
    "imitate_nat_nokd": ("multi30k_imitate_nat.yaml", "softcopy", False),
}
ROWS = ["at_greedy", "at_beam", *TRAINED_ROWS, "imitate_nat_lpd"]

SMOKE_MODEL = {"d_model": 64, "n_heads": 4, "ffn_dim": 128, "encoder_layers": 2, "decoder_layers": 2,
               "dropout": 0.1, "n_actions": 32}


def pair_name(pair: str) -> str:
    return pair.replace("-", "_")


def yaml_value(value: Any) -> str:
    return json.dumps(value)  # JSON is YAML: the CLI parses override values as YAML


# ------------------------------------------------------------------------------------------ jobs
class Job:
    """One ``seqlab`` subprocess; done when ``marker`` exists."""

    def __init__(self, name: str, argv: list[str], log: Path, marker: Path):
        self.name, self.argv, self.log, self.marker = name, argv, log, marker


class DeadlineReached(SystemExit):
    pass


def check_deadline(deadline: float | None) -> None:
    if deadline is not None and time.time() > deadline:
        raise DeadlineReached("deadline reached: rerun the same command to continue (every stage resumes)")


def run_jobs(jobs: list[Job], gpus: int, deadline: float | None = None, per_gpu: int = 1,
             memory_share: float | None = None) -> None:
    """Run pending jobs, at most ``per_gpu`` per GPU at a time (sequentially on the CPU when ``gpus`` is 0), each
    capped at ``memory_share / per_gpu`` of its GPU's memory when ``memory_share`` is given.
    At ``deadline`` (epoch seconds) running jobs are terminated; they resume from their last checkpoint."""
    from seqlab.train.trainer import share_gpu_memory

    pending = [j for j in jobs if not j.marker.exists()]
    for j in jobs:
        if j.marker.exists():
            print(f"[skip] {j.name}: {j.marker} exists")
    slots = [g for g in range(gpus) for _ in range(per_gpu)] if gpus > 0 else [None]
    running: list[tuple[Job, subprocess.Popen, Any, int | None]] = []
    failed: list[str] = []
    while pending or running:
        while pending and slots:
            job, slot = pending.pop(0), slots.pop(0)
            env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
            if slot is None:
                env.setdefault("OMP_NUM_THREADS", "1")
            else:
                env["CUDA_VISIBLE_DEVICES"] = str(slot)
                if memory_share is not None:
                    share_gpu_memory(env, memory_share / per_gpu)
            job.log.parent.mkdir(parents=True, exist_ok=True)
            fh = open(job.log, "a", encoding="utf-8")
            print(f"[start] {job.name}" + ("" if slot is None else f" on GPU {slot}") + f" (log {job.log})")
            running.append((job, subprocess.Popen(job.argv, stdout=fh, stderr=subprocess.STDOUT, env=env,
                                                  cwd=REPO), fh, slot))
        time.sleep(1.0)
        if deadline is not None and time.time() > deadline:
            for job, proc, fh, _ in running:
                proc.terminate()
                proc.wait()
                fh.close()
                print(f"[stopped] {job.name}")
            check_deadline(deadline)
        for item in list(running):
            job, proc, fh, slot = item
            if proc.poll() is None:
                continue
            fh.close()
            running.remove(item)
            slots.append(slot)
            status = "done" if proc.returncode == 0 and job.marker.exists() else f"FAILED ({proc.returncode})"
            print(f"[{status}] {job.name}")
            if status != "done":
                failed.append(job.name)
    if failed:
        raise SystemExit(f"failed jobs: {failed}; see their logs")


def seqlab_train(config: Path, overrides: list[str]) -> list[str]:
    return [sys.executable, "-m", "seqlab.cli", "train", "--config", str(config), *overrides]


# ------------------------------------------------------------------------------------------ setup
def multi30k_options(args: argparse.Namespace, pair: str) -> dict[str, Any]:
    src, tgt = pair.split("-")
    opts: dict[str, Any] = {"path": str(Path(args.data).resolve()), "src_lang": src, "tgt_lang": tgt,
                            "vocab_size": args.vocab_size, "shared_vocab": True}
    if args.max_train:
        opts["max_train"] = args.max_train
    return opts


def common_overrides(args: argparse.Namespace, run_dir: Path, minutes: float, steps: int | None) -> list[str]:
    out = [f"run_dir={run_dir}", f"train.device={'cuda' if args.gpus > 0 else 'cpu'}",
           f"train.max_minutes={minutes}", "train.progress_bar=false"]
    if steps is not None and not args.smoke:
        out.append(f"train.max_steps={steps}")
    if args.smoke:
        out += [f"model.options={yaml_value(SMOKE_MODEL)}", f"train.max_steps={args.smoke_steps}",
                "train.max_tokens=2048", "train.warmup_steps=100", "train.lr=0.002",
                f"train.eval_every_steps={max(args.smoke_steps // 2, 1)}", "train.eval_max_examples=100",
                "train.tensorboard=false", "decode.batch_size=200"]
    return out


def teacher_jobs(args: argparse.Namespace, pairs: list[str], given: dict[str, str]) -> list[Job]:
    jobs = []
    for pair in pairs:
        if pair in given:
            continue
        run = Path(args.work) / pair / "dat"
        ov = common_overrides(args, run, args.teacher_minutes, args.teacher_steps) + [
            "task.name=multi30k", f"task.options={yaml_value(multi30k_options(args, pair))}", *args.teacher_override]
        jobs.append(Job(f"{pair}/dat", seqlab_train(CONFIGS / "multi30k_dat.yaml", ov), run / "train.log",
                        run / "results.json"))
    return jobs


def distill_jobs(args: argparse.Namespace, pairs: list[str], teachers: dict[str, Path]) -> list[Job]:
    jobs = []
    for pair in pairs:
        out = Path(args.work) / pair / "distilled"
        task = yaml_value(multi30k_options(args, pair))
        argv = [sys.executable, "-m", "seqlab.cli", "distill", "--teacher", str(teachers[pair]),
                "--output", str(out), "--beam-size", str(args.beam), "--device",
                "cuda" if args.gpus > 0 else "cpu", "task.name=multi30k", f"task.options={task}"]
        if args.smoke:
            argv[-2:-2] = ["--batch-size", "200"]
        log = Path(args.work) / pair / "distill.log"
        jobs.append(Job(f"{pair}/distill", argv, log, out / "distill.json"))
    return jobs


def row_jobs(args: argparse.Namespace, pairs: list[str], teachers: dict[str, Path]) -> list[Job]:
    jobs = []
    for pair in pairs:
        distilled = Path(args.work) / pair / "distilled"
        kd_task = json.loads((distilled / "task.json").read_text())
        for row, (config, copy, kd) in TRAINED_ROWS.items():
            run = Path(args.work) / pair / row
            if not (run / "tokenizers").exists():  # the demonstrator's tokenizers, for every row
                shutil.copytree(distilled / "tokenizers", run / "tokenizers")
            task = (["task.name=parallel", f"task.options={yaml_value(kd_task)}"] if kd else
                    ["task.name=multi30k", f"task.options={yaml_value(multi30k_options(args, pair))}"])
            ov = common_overrides(args, run, args.nat_minutes, args.nat_steps) + task + [f"model.options.copy={copy}"]
            if args.smoke:  # the smoke model options replaced the config's: restore the row's switch
                ov.append(f"model.options.imitation={yaml_value(row.startswith('imitate'))}")
            if row.startswith("imitate"):
                ov.append(f"algorithm.options.teacher={teachers[pair]}")
            ov += args.nat_override
            jobs.append(Job(f"{pair}/{row}", seqlab_train(CONFIGS / config, ov), run / "train.log",
                            run / "results.json"))
    return jobs


def best_checkpoint(run: Path) -> Path:
    best = run / "checkpoint_best.pt"
    return best if best.exists() else run / "checkpoint_last.pt"


# ------------------------------------------------------------------------------------------ evaluation
def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def batch1_latency_ms(fn: Any, sources: list[list[int]], device: torch.device, warmup: int = 10) -> float:
    """Median wall-clock milliseconds of ``fn(src [1, S])`` over ``sources`` (after ``warmup`` calls)."""
    tensors = [torch.tensor([s], dtype=torch.long, device=device) for s in sources]
    with torch.no_grad():
        for t in tensors[:warmup]:
            fn(t)
        times = []
        for t in tensors:
            sync(device)
            t0 = time.perf_counter()
            fn(t)
            sync(device)
            times.append((time.perf_counter() - t0) * 1000.0)
    return statistics.median(times)


def evaluate_pair(args: argparse.Namespace, pair: str, teacher_path: Path, latency: bool) -> dict[str, Any]:
    """BLEU of every row on test_2016_flickr (and latencies); cached in <work>/<pair>/eval.json."""
    import seqlab.nat  # noqa: F401  (registers the nat / dat models)
    from seqlab.data.tasks import load_task
    from seqlab.decoding import beam_search, greedy_search
    from seqlab.inference import load_checkpoint_model
    from seqlab.nat.decoding import length_parallel_decode, make_nat_decoder
    from seqlab.train.evaluate import evaluate_corpus

    cache = Path(args.work) / pair / "eval.json"
    done = json.loads(cache.read_text()) if cache.exists() else {}
    have_latency = not latency or all(f"{r}_latency_ms" in done for r in ROWS)
    if all(f"{r}_bleu" in done for r in ROWS) and have_latency:
        return done
    device = torch.device("cuda" if args.gpus > 0 else "cpu")
    teacher = load_checkpoint_model(teacher_path, device)
    decode: DecodeConfig = teacher.config.decode
    tokenizers = Path(args.work) / pair / "distilled" / "tokenizers"
    task = load_task("multi30k", multi30k_options(args, pair), tokenizers)
    test = task.test
    src_tok, tgt_tok = teacher.src_tokenizer, teacher.tgt_tokenizer
    nats = {row: load_checkpoint_model(best_checkpoint(Path(args.work) / pair / row), device).model
            for row in TRAINED_ROWS}
    nats["imitate_nat_lpd"] = nats["imitate_nat"]
    max_len = decode.max_len
    decoders: dict[str, Any] = {row: make_nat_decoder(0, max_len=max_len) for row in TRAINED_ROWS}
    decoders["imitate_nat_lpd"] = make_nat_decoder(args.delta_t, teacher=teacher.model, max_len=max_len)
    kw = dict(max_len_a=decode.max_len_a, max_len_b=decode.max_len_b, max_len=max_len)
    for row in ROWS:
        if f"{row}_bleu" in done:
            continue
        check_deadline(args.deadline)
        if row.startswith("at_"):
            beam = 1 if row == "at_greedy" else args.beam
            scores, _ = evaluate_corpus(teacher.model, test, src_tok, tgt_tok, ["bleu"], decode, device,
                                        beam_size=beam)
        else:
            scores, _ = evaluate_corpus(nats[row], test, src_tok, tgt_tok, ["bleu"], decode, device,
                                        decoder=decoders[row])
        done[f"{row}_bleu"] = scores["bleu"]
        print(f"{pair} {row}: test2016 BLEU {scores['bleu']:.2f}")
        cache.write_text(json.dumps(done, indent=2))
    if latency:
        sources, _ = test.references()
        ids = [src_tok.encode(s)[: max_len - 1] + [EOS_ID] for s in sources[: args.latency_sentences]]
        fns: dict[str, Any] = {
            "at_greedy": lambda s: greedy_search(teacher.model, s, **kw),
            "at_beam": lambda s: beam_search(teacher.model, s, beam_size=args.beam,
                                             length_penalty=decode.length_penalty, **kw),
            "imitate_nat_lpd": lambda s: length_parallel_decode(nats["imitate_nat"], s, args.delta_t,
                                                                teacher=teacher.model, max_len=max_len),
        }
        for row in TRAINED_ROWS:
            fns[row] = (lambda m: lambda s: length_parallel_decode(m, s, 0, max_len=max_len))(nats[row])
        for row in ROWS:
            check_deadline(args.deadline)
            done[f"{row}_latency_ms"] = batch1_latency_ms(fns[row], ids, device)
            print(f"{pair} {row}: batch-1 latency {done[f'{row}_latency_ms']:.2f} ms")
        cache.write_text(json.dumps(done, indent=2))
    return done


# ------------------------------------------------------------------------------------------ main
def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "multi30k"))
    p.add_argument("--pairs", nargs="+", default=["de-en", "en-de"])
    p.add_argument("--work", default=str(REPO / "runs" / "bench_nat"))
    p.add_argument("--gpus", type=int, default=torch.cuda.device_count(), help="0: CPU, sequential")
    p.add_argument("--teacher", action="append", default=[], metavar="PAIR=CKPT",
                   help="use this dat checkpoint as the demonstrator of PAIR instead of training one")
    p.add_argument("--teacher-minutes", type=float, default=8.0)
    p.add_argument("--nat-minutes", type=float, default=6.0)
    p.add_argument("--teacher-steps", type=int, default=None, help="a step budget besides --teacher-minutes")
    p.add_argument("--nat-steps", type=int, default=None,
                   help="a step budget besides --nat-minutes (equal steps per row when rows share a GPU)")
    p.add_argument("--teacher-override", action="append", default=[], metavar="KEY=VALUE",
                   help="config override of the demonstrator runs (repeatable)")
    p.add_argument("--nat-override", action="append", default=[], metavar="KEY=VALUE",
                   help="config override of every NAT / imitate-NAT run (repeatable), e.g. train.warmup_steps=400")
    p.add_argument("--jobs-per-gpu", type=int, default=1, help="trainings / distillations side by side per GPU")
    p.add_argument("--gpu-memory-share", type=float, default=None,
                   help="share of each GPU's memory all jobs together may hold (default: uncapped)")
    p.add_argument("--vocab-size", type=int, default=8000)
    p.add_argument("--max-train", type=int, default=None, help="distinct training sources kept")
    p.add_argument("--beam", type=int, default=5)
    p.add_argument("--delta-t", type=int, default=3)
    p.add_argument("--latency-sentences", type=int, default=200)
    p.add_argument("--latency-pair", default=None, help="pair whose latencies are recorded (default: first)")
    p.add_argument("--smoke", action="store_true", help="tiny models, few steps: proves the pipeline only")
    p.add_argument("--smoke-steps", type=int, default=300)
    p.add_argument("--no-record", action="store_true", help="never write benchmarks/results/")
    p.add_argument("--train-only", action="store_true",
                   help="stop after training (evaluate later, e.g. with the GPU to itself for the latencies)")
    p.add_argument("--deadline-minutes", type=float, default=None,
                   help="stop (resumably) after this many minutes, e.g. under a per-command time limit")
    args = p.parse_args()
    args.deadline = None if args.deadline_minutes is None else time.time() + 60 * args.deadline_minutes
    if args.smoke:
        args.max_train = args.max_train or 3000
        args.vocab_size = min(args.vocab_size, 2000)
        args.latency_sentences = min(args.latency_sentences, 30)
    latency_pair = args.latency_pair or args.pairs[0]
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    given = dict(item.split("=", 1) for item in args.teacher)

    sharing = dict(per_gpu=args.jobs_per_gpu, memory_share=args.gpu_memory_share)
    run_jobs(teacher_jobs(args, args.pairs, given), args.gpus, args.deadline, **sharing)
    teachers = {pair: Path(given[pair]).resolve() if pair in given else best_checkpoint(work / pair / "dat")
                for pair in args.pairs}
    run_jobs(distill_jobs(args, args.pairs, teachers), args.gpus, args.deadline, **sharing)
    run_jobs(row_jobs(args, args.pairs, teachers), args.gpus, args.deadline, **sharing)
    if args.train_only:
        print("trained every row (--train-only): rerun without it to evaluate")
        return

    command = results_io.command_line()
    entries, summary = [], {}
    for pair in args.pairs:
        res = evaluate_pair(args, pair, teachers[pair], latency=pair == latency_pair)
        report = json.loads((work / pair / "distilled" / "distill.json").read_text())
        summary[pair] = {"eval": res, "distill": {k: v for k, v in report.items() if k != "task_options"}}
        name = f"multi30k_{pair_name(pair)}"
        for row in ROWS:
            bleu = round(res[f"{row}_bleu"], 2)
            entries.append(results_io.entry(f"{name}_{row}_test2016_bleu", bleu, "BLEU", command))
        entries.append(results_io.entry(f"{name}_distilled_corpus_bleu",
                                        round(report["distilled_vs_references"]["bleu"], 2), "BLEU", command))
        if "teacher_test" in report:
            entries.append(results_io.entry(f"{name}_teacher_beam_test2016_bleu",
                                            round(report["teacher_test"]["bleu"], 2), "BLEU", command))
        if pair == latency_pair:
            at_greedy, at_beam = res["at_greedy_latency_ms"], res["at_beam_latency_ms"]
            for row in ROWS:
                ms = res[f"{row}_latency_ms"]
                entries.append(results_io.entry(f"{row}_batch1_latency_ms", round(ms, 3), "ms", command))
                if row != "at_greedy":
                    entries.append(results_io.entry(f"{row}_speedup_vs_at_greedy", round(at_greedy / ms, 2),
                                                    "x", command))
                if row != "at_beam":
                    entries.append(results_io.entry(f"{row}_speedup_vs_at_beam", round(at_beam / ms, 2),
                                                    "x", command))
    (work / "results.json").write_text(json.dumps(entries, indent=2) + "\n")
    (work / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"wrote {work / 'results.json'} and {work / 'summary.json'}")
    on_gpu = args.gpus > 0 and torch.cuda.is_available()
    if args.smoke or args.no_record or not on_gpu:
        print("not recorded in benchmarks/results/ (smoke run, --no-record, or no GPU)")
    else:
        print("wrote", results_io.write("nat_cuda", entries))
    for e in entries:
        print(f"{e['metric']:55s} {e['value']:>10} {e['unit']}")


if __name__ == "__main__":
    main()
