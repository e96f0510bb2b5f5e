"""The test-suite figures the README quotes, from the log of a fresh-clone ``.ci/run`` timed by the shell:

    git clone -q . /tmp/fresh && cd /tmp/fresh && { time bash .ci/run; } > ci.log 2>&1
    python benchmarks/ci_timing.py ci.log --commit $(git -C /tmp/fresh rev-parse --short HEAD)

Reads pytest's two summary lines (the default suite, then ``-m slow``) and the shell's ``real`` time, and writes
``tests_default_count``, ``tests_default_wall_s_cpu2``, ``tests_slow_count``, ``tests_slow_wall_s_cpu2`` and
``ci_run_wall_s_cpu2`` to benchmarks/results/tests_cpu.json.
"""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path

from seqlab.bench import results as results_io

SUMMARY = re.compile(r"^=*\s*(\d+) passed(?:, (\d+) skipped)?.* in ([\d.]+)s")
REAL = re.compile(r"^real\s+(\d+)m([\d.]+)s")
DEVICE = "CPU AMD EPYC (2 cores)"
COMMAND = (
    "bash .ci/run on a fresh clone (git clone -q . /tmp/fresh; the README's test command, then -m slow); "
    "pytest's own wall time; 2-core AMD EPYC, otherwise idle"
)


def parse(text: str) -> tuple[list[tuple[int, int, float]], float | None]:
    """pytest summaries (passed, skipped, seconds) in log order, and the shell's real time in seconds."""
    summaries, real = [], None
    for line in text.splitlines():
        if m := SUMMARY.match(line.strip()):
            summaries.append((int(m.group(1)), int(m.group(2) or 0), float(m.group(3))))
        elif m := REAL.match(line.strip()):
            real = 60 * int(m.group(1)) + float(m.group(2))
    return summaries, real


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("log", type=Path)
    p.add_argument("--commit", help="the clone's commit (default: this checkout's)")
    args = p.parse_args()
    if args.commit:
        os.environ["SEQLAB_COMMIT"] = args.commit
    os.environ.setdefault("SEQLAB_DEVICE", DEVICE)
    summaries, real = parse(args.log.read_text(encoding="utf-8"))
    if len(summaries) != 2 or real is None:
        raise SystemExit(f"{args.log}: expected two pytest summaries and a 'real' time, found {summaries}, {real}")
    entries = []
    for (passed, skipped, seconds), name, what in zip(
        summaries, ("default", "slow"), ("default suite", "-m slow"), strict=True
    ):
        command = f"{COMMAND} ({what})"
        entries.append(results_io.entry(f"tests_{name}_count", passed, f"tests passed ({skipped} skipped)", command))
        entries.append(results_io.entry(f"tests_{name}_wall_s_cpu2", seconds, "s", command))
    entries.append(
        results_io.entry(
            "ci_run_wall_s_cpu2",
            round(real, 1),
            "s",
            "time bash .ci/run on a fresh clone (install of the dev and hf extras included; 2-core AMD EPYC, "
            "otherwise idle)",
        )
    )
    for e in entries:
        print(f"{e['metric']:28s} {e['value']}")
    print(results_io.write("tests_cpu", entries))


if __name__ == "__main__":
    main()
