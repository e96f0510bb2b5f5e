"""``trainer_tok_per_s``: the training throughput ``seqlab train`` itself logs, after warm-up.

Reads a run's ``log.jsonl`` (its ``train`` records' ``tgt_tok_per_s``, one per logging window), drops the windows
logged in the first ``--warmup-seconds`` of the run (compilation, first batch shapes) and takes the median of the
rest (``trainer_counted_seconds``: the training time those windows cover; issue 19 asks for two minutes after the
warm-up, which needs ``train.max_epochs`` high enough not to end the run first). The plain PyTorch loop's figure on
the same GPU comes from ``benchmarks/results/speed_<device>.json`` (``plain_train_tok_per_s``, written by
``bench_speed.py`` in the same session), giving ``trainer_tok_per_s_ratio_vs_plain``.

    python -m seqlab.cli train --config configs/multi30k_transformer.yaml run_dir=/tmp/m30 train.compile=true \\
        train.max_minutes=2.5 ...
    python benchmarks/trainer_throughput.py /tmp/m30 --warmup-seconds 30

A run with ``train.profile_steps=[first, last]`` also gives ``trainer_step_wall_ms_profiled`` and, on a GPU,
``trainer_device_busy_share`` (the share of those steps' wall time the device was busy: well below 1 means the loop
around the kernels sets the pace).  Its ``trainer_tok_per_s`` then counts only the windows that end before the
profiled steps: a CUDA profile can leave every later kernel launch of the process slower (CUPTI left attached,
:func:`seqlab.train.profiling.release_cupti_after_profiling`).  The windows that start after them give
``trainer_tok_per_s_after_profile``, which shows whether it did.

A run with ``train.cuda_graphs`` logs how many batch-shape buckets it has captured so far; the first batch of a
bucket runs eagerly and is then captured, which slows its window.  ``trainer_cuda_graph_captures_counted`` says how
many captures fall in the counted windows, and ``trainer_tok_per_s_between_captures`` is the median of the counted
windows without one (the rate once every bucket is captured).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

from seqlab.bench import results as results_io


@dataclass(frozen=True)
class Window:
    """One ``train`` record: when it was logged, the steps it covers (``first`` .. ``last``) and its rate."""

    time: float
    first: int
    last: int
    rate: float
    captures: int | None = None  # train.cuda_graphs: buckets captured by the end of the window


def windows(log: Path) -> list[Window]:
    """Every ``train`` record of ``log`` as a :class:`Window` (a window covers the steps since the previous one)."""
    records = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines() if line.strip()]
    train = [r for r in records if r.get("kind") == "train"]
    out, previous = [], 0
    for r in train:
        step = int(r.get("step", previous + 1))
        out.append(Window(r["time"], previous + 1, step, r["tgt_tok_per_s"], r.get("cuda_graph_captures")))
        previous = step
    return out


def counted_seconds(all_rates: list[Window], counted: list[Window]) -> float:
    """The training time the ``counted`` windows cover: from the end of the window before the first of them (the
    first's own end where it is the run's first) to the end of the last (issue 19 asks for two minutes)."""
    i = all_rates.index(counted[0])
    return counted[-1].time - (all_rates[i - 1].time if i else counted[0].time)


def after_warmup(rates: list[Window], warmup_seconds: float) -> list[Window]:
    """The windows logged ``warmup_seconds`` or more after the first one."""
    if not rates:
        return []
    start = rates[0].time
    return [w for w in rates if w.time - start >= warmup_seconds]


def split_at_profile(kept: list[Window], profiled: tuple[int, int] | None) -> tuple[list[Window], list[Window]]:
    """(the windows that end before the profiled steps, those that start after them); without a profile, all
    windows and none."""
    if profiled is None:
        return kept, []
    first, last = profiled
    return [w for w in kept if w.last < first], [w for w in kept if w.first > last]


def capture_counts(all_rates: list[Window], counted: list[Window]) -> tuple[int, list[Window]] | None:
    """(captures within the ``counted`` windows, those of them with none), or None for a run without captures."""
    if not counted or counted[0].captures is None:
        return None
    before = {w.last: w.captures for w in all_rates}
    new = []
    for w in counted:
        previous = max((last for last in before if last < w.first), default=None)
        new.append(w.captures - (before[previous] if previous is not None else 0))
    return sum(new), [w for w, n in zip(counted, new, strict=True) if n == 0]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir")
    ap.add_argument("--warmup-seconds", type=float, default=30.0)
    ap.add_argument("--label", default="", help="suffix of the metric names (e.g. _eager)")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)
    all_rates = windows(Path(args.run_dir) / "log.jsonl")
    summary = Path(args.run_dir) / "profile" / "summary.json"  # train.profile_steps: is the loop host-bound?
    prof = json.loads(summary.read_text()) if summary.exists() else None
    clean, after = split_at_profile(after_warmup(all_rates, args.warmup_seconds), prof and tuple(prof["steps"]))
    if not clean:
        where = f" and before the profiled steps {prof['steps']}" if prof else ""
        raise SystemExit(f"no training window after {args.warmup_seconds} s{where} of {len(all_rates)}")
    span, counted = all_rates[-1].time - all_rates[0].time, counted_seconds(all_rates, clean)
    rate = statistics.median(w.rate for w in clean)
    print(
        f"trainer_tok_per_s{args.label}: {rate:,.0f} (median of {len(clean)} of {len(all_rates)} windows, covering "
        f"{counted:.0f} s of {span:.0f} s of logging)"
    )
    entries = [
        results_io.entry(f"trainer_tok_per_s{args.label}", round(rate, 1), "target tokens/s"),
        results_io.entry(f"trainer_counted_seconds{args.label}", round(counted, 1), "s of training"),
    ]
    captured = capture_counts(all_rates, clean)
    if captured is not None and not all_rates[-1].captures:
        raise SystemExit(
            f"{args.run_dir}: a train.cuda_graphs run that captured no step (it warned why and trained "
            "eagerly): its throughput is not the captured step's"
        )
    if captured is not None:
        count, quiet = captured
        print(f"train.cuda_graphs: {count} captures in the counted windows, {len(quiet)} windows without one", end="")
        entries.append(results_io.entry(f"trainer_cuda_graph_captures_counted{args.label}", count, "captures"))
        if quiet:
            between = statistics.median(w.rate for w in quiet)
            print(f": {between:,.0f} target tokens/s", end="")
            metric = f"trainer_tok_per_s_between_captures{args.label}"
            entries.append(results_io.entry(metric, round(between, 1), "target tokens/s"))
        print()
    if after:
        later = statistics.median(w.rate for w in after)
        print(f"after the profiled steps: {later:,.0f} (median of {len(after)} windows, {later / rate:.2f}x)")
        metric = f"trainer_tok_per_s_after_profile{args.label}"
        entries.append(results_io.entry(metric, round(later, 1), "target tokens/s"))
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
    if prof is not None:
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
