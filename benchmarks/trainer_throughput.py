"""``trainer_tok_per_s``: the training throughput ``seqlab train`` itself logs, after warm-up.

Reads a run's ``log.jsonl`` (its ``train`` records' ``tgt_tok_per_s``, one per logging window), drops the
windows logged in the first ``--warmup-seconds`` of the run (compilation, first batch shapes) and takes the
median of the rest.  The plain PyTorch loop's figure on the same GPU comes from
``benchmarks/results/speed_<device>.json`` (``plain_train_tok_per_s``, written by ``bench_speed.py`` in the
same session), giving ``trainer_tok_per_s_ratio_vs_plain``.

    python -m seqlab.cli train --config configs/multi30k_transformer.yaml run_dir=/tmp/m30 train.compile=true \\
        train.max_minutes=2.5 ...
    python benchmarks/trainer_throughput.py /tmp/m30 --warmup-seconds 30

A run with ``train.profile_steps=[first, last]`` also gives ``trainer_step_wall_ms_profiled`` and, on a GPU,
``trainer_device_busy_share`` (the share of those steps' wall time the device was busy: well below 1 means the loop
around the kernels sets the pace).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from seqlab.bench import results as results_io


def windows(log: Path) -> list[tuple[float, float]]:
    """(wall time, target tokens per second) of every ``train`` record."""
    records = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [(r["time"], r["tgt_tok_per_s"]) for r in records if r.get("kind") == "train"]


def after_warmup(rates: list[tuple[float, float]], warmup_seconds: float) -> list[float]:
    """The rates of the windows logged ``warmup_seconds`` or more after the first one."""
    if not rates:
        return []
    start = rates[0][0]
    return [rate for when, rate in rates if when - start >= warmup_seconds]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir")
    ap.add_argument("--warmup-seconds", type=float, default=30.0)
    ap.add_argument("--label", default="", help="suffix of the metric names (e.g. _eager)")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)
    all_rates = windows(Path(args.run_dir) / "log.jsonl")
    kept = after_warmup(all_rates, args.warmup_seconds)
    if not kept:
        raise SystemExit(f"no training window after {args.warmup_seconds} s of {len(all_rates)}")
    span = all_rates[-1][0] - all_rates[0][0]
    rate = statistics.median(kept)
    print(
        f"trainer_tok_per_s{args.label}: {rate:,.0f} (median of {len(kept)} of {len(all_rates)} windows, "
        f"{span:.0f} s of logging)"
    )
    entries = [results_io.entry(f"trainer_tok_per_s{args.label}", round(rate, 1), "target tokens/s")]
    device = results_io.device_name()
    speed = results_io.results_dir() / f"speed_{'cuda' if 'CPU' not in device else 'cpu'}.json"
    plain = (
        [e for e in json.loads(speed.read_text()) if e["metric"] == "plain_train_tok_per_s" and e["device"] == device]
        if speed.exists()
        else []
    )
    if plain:
        ratio = rate / plain[-1]["value"]
        print(f"vs the plain loop's {plain[-1]['value']:,.0f} on {device} (commit {plain[-1]['commit']}): {ratio:.2f}x")
        entries.append(results_io.entry(f"trainer_tok_per_s_ratio_vs_plain{args.label}", round(ratio, 3), "x"))
    profiled = Path(args.run_dir) / "profile" / "summary.json"  # train.profile_steps: is the loop host-bound?
    if profiled.exists():
        prof = json.loads(profiled.read_text())
        print(f"profiled steps {prof['steps']}: {prof['wall_ms_per_step']:.2f} ms per step", end="")
        entries.append(
            results_io.entry(f"trainer_step_wall_ms_profiled{args.label}", round(prof["wall_ms_per_step"], 3), "ms")
        )
        if "device_busy_share" in prof:
            print(f", device busy {prof['device_busy_share']:.1%} of it", end="")
            entries.append(
                results_io.entry(
                    f"trainer_device_busy_share{args.label}", round(prof["device_busy_share"], 4), "share of wall time"
                )
            )
        print()
    if not args.no_write:
        print("wrote", results_io.write(speed.stem, entries))
    return 0


if __name__ == "__main__":
    sys.exit(main())
