"""How busy the GPU was in a saved torch.profiler Chrome trace: the union of its kernel, memcpy and memset events
(:func:`seqlab.train.profiling.trace_device_busy_us`), per step and as a share of the steps' wall time.

For a ``seqlab train`` run with ``train.profile_steps``, the steps and their wall time come from the run's
``profile/summary.json`` beside the trace:

    python benchmarks/trace_busy.py RUN/profile/trace.json --metric trainer_device_busy_share_kernels

Before session 23 ``summary.json``'s ``device_busy_share`` also counted the device-side spans of seqlab's labelled
regions, which cover the gaps between kernels; this recomputes a saved trace's share without them.  Entry
``<metric>`` in ``benchmarks/results/speed_<device>.json`` unless ``--no-write``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from seqlab.bench import results as results_io
from seqlab.train.profiling import trace_device_busy_us


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("trace", type=Path)
    ap.add_argument("--summary", type=Path, help="the run's profile/summary.json (default: beside the trace)")
    ap.add_argument("--metric", default="trainer_device_busy_share_kernels")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)
    summary_path = args.summary or args.trace.parent / "summary.json"
    summary = json.loads(summary_path.read_text())
    steps = summary["steps"][1] - summary["steps"][0] + 1
    busy_ms = trace_device_busy_us(json.loads(args.trace.read_text())) / 1000 / steps
    share = busy_ms / summary["wall_ms_per_step"]
    print(f"{busy_ms:.2f} ms of GPU work per step of {summary['wall_ms_per_step']:.2f} ms: {share:.1%} busy")
    if not args.no_write:
        device = results_io.device_name()
        name = f"speed_{'cuda' if 'CPU' not in device else 'cpu'}"
        entry = results_io.entry(args.metric, round(share, 4), "share of wall time")
        print("wrote", results_io.write(name, [entry]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
