"""Throughput of the batched sentence-BLEU reward against sacrebleu on the same sentence pairs.

    OMP_NUM_THREADS=1 python benchmarks/bench_rewards.py --device cpu

Pairs come from Multi30k val English (whitespace words mapped to ids): hypothesis = sentence i,
reference = another sentence, ``--batch`` pairs in one [N, T] batch.  seqlab's ``sentence_bleu`` scores
the whole batch at once on ``--device``; sacrebleu's ``BLEU(tokenize="none", effective_order=True)``
scores the same pairs one by one on the CPU (ids written as words "w17").  Writes
benchmarks/results/rewards_<device type>.json: a list of {metric, value, unit, device, commit,
command, date}.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch
from sacrebleu.metrics import BLEU

from seqlab.bench import results as results_io
from seqlab.bench.timing import sync
from seqlab.data.vocab import EOS_ID, PAD_ID
from seqlab.rewards import sentence_bleu

ROOT = Path(__file__).resolve().parents[1]


def load_pairs(path: Path, batch: int) -> tuple[list[list[int]], list[list[int]]]:
    with gzip.open(path / "val.en.gz", "rt", encoding="utf-8") as f:
        lines = [line.split() for line in f]
    vocab: dict[str, int] = {}
    ids = [[vocab.setdefault(w, len(vocab) + 4) for w in line] for line in lines]
    n = len(ids)
    hyps = [ids[i % n] for i in range(batch)]
    refs = [ids[(i + 1 + i // n) % n] for i in range(batch)]
    return hyps, refs


def pack(seqs: list[list[int]]) -> torch.Tensor:
    width = max(len(s) for s in seqs) + 1
    out = torch.full((len(seqs), width), PAD_ID, dtype=torch.long)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = torch.tensor(s, dtype=torch.long)
        out[i, len(s)] = EOS_ID
    return out


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = ""
    if hasattr(os, "getloadavg"):
        load = f", 1-min load {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"  # shared machines
    return f"{model} ({torch.get_num_threads()} torch threads{load})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batch", type=int, default=4096)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--data", type=Path, default=ROOT / ".." / "shared" / "data" / "multi30k")
    ap.add_argument("--out", type=Path, default=None, help="default: benchmarks/results/rewards_<device type>.json")
    args = ap.parse_args()
    device = torch.device(args.device)

    hyps, refs = load_pairs(args.data, args.batch)
    hyp, ref = pack(hyps).to(device), pack(refs).to(device)

    for _ in range(2):  # warm-up (allocator, kernels)
        scores = sentence_bleu(hyp, ref)
    sync(device)
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        scores = sentence_bleu(hyp, ref)
        sync(device)
        times.append(time.perf_counter() - start)
    ours = args.batch / min(times)

    metric = BLEU(tokenize="none", effective_order=True)
    hyp_s = [" ".join(f"w{t}" for t in h) for h in hyps]
    ref_s = [" ".join(f"w{t}" for t in r) for r in refs]
    sacre_times = []
    for _ in range(max(1, min(args.repeats, 3))):
        start = time.perf_counter()
        sacre = [metric.sentence_score(h, [r]).score / 100 for h, r in zip(hyp_s, ref_s, strict=True)]
        sacre_times.append(time.perf_counter() - start)
    sacre_rate = args.batch / min(sacre_times)
    max_diff = float((scores.cpu().double() - torch.tensor(sacre, dtype=torch.float64)).abs().max())

    common = {
        "device": device_name(device),
        "commit": results_io.commit(),
        "command": " ".join(
            [f"{k}={os.environ[k]}" for k in ("OMP_NUM_THREADS",) if k in os.environ]
            + ["python", Path(sys.argv[0]).as_posix()]
            + sys.argv[1:]
        ),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    T = hyp.size(1)
    entries = [
        {
            "metric": "bleu_reward_sent_per_s",
            "value": round(ours, 1),
            "unit": f"sentences/s (batch {args.batch}, width {T}, best of {args.repeats})",
            **common,
        },
        {
            "metric": "sacrebleu_sentence_bleu_sent_per_s",
            "value": round(sacre_rate, 1),
            "unit": f"sentences/s (CPU, one process, best of {len(sacre_times)})",
            **common,
        },
        {"metric": "bleu_reward_speedup_vs_sacrebleu", "value": round(ours / sacre_rate, 2), "unit": "x", **common},
        {"metric": "bleu_reward_max_abs_diff_vs_sacrebleu", "value": max_diff, "unit": "BLEU in [0, 1]", **common},
    ]
    out = args.out or ROOT / "benchmarks" / "results" / f"rewards_{device.type}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(entries, indent=2) + "\n")
    for e in entries:
        print(f"{e['metric']:40s} {e['value']:>14} {e['unit']}")
    print(f"device: {common['device']}  commit: {common['commit']}  -> {out}")


if __name__ == "__main__":
    main()
