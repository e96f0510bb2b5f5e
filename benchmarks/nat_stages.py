"""Per-stage BLEU entries of a staged ``bench_nat.py`` run, collected from its work folder.

``bench_nat.py --nat-steps 1000,2000,3000`` scores every completed stage on the GPU while the next one trains
(``<work>/<pair>/eval_step<N>.json``) but reports only the last stage.  This script turns those files — for
instance from a device's session.tar — into entries ``multi30k_<pair>_<row>_test2016_bleu_step<N>`` of
benchmarks/results/nat_<device type>.json, with the device and commit the run had (not this machine's):

    python benchmarks/nat_stages.py --work /tmp/run2/nat --device "NVIDIA H200" --commit 09919ea \\
        --command "python benchmarks/bench_nat.py ..." [--stages 1000,2000] [--skip-rows at_greedy]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bench_nat import stage_entries  # noqa: E402

from seqlab.bench import results as results_io


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", required=True, type=Path, help="bench_nat's --work folder")
    p.add_argument("--device", required=True, help="the GPU the run used, as results_io names it")
    p.add_argument("--commit", required=True, help="the commit the run's code came from")
    p.add_argument("--command", required=True, help="the bench_nat command of the run")
    p.add_argument("--stages", default=None, help="only these stages (comma-separated step counts)")
    p.add_argument(
        "--skip-rows",
        default="",
        help="rows not to record (comma-separated), e.g. ones a fix "
        "changed, or imitate_nat_w0 for a run from before that row existed",
    )
    args = p.parse_args()
    stages = None if args.stages is None else [int(s) for s in args.stages.split(",")]
    command = (
        f"{args.command}  # collected by python benchmarks/nat_stages.py --work {args.work} --stages {args.stages}"
    )
    skip = tuple(r for r in args.skip_rows.split(",") if r)
    entries = stage_entries(args.work, stages, args.device, args.commit, command, skip)
    print("wrote", results_io.write("nat_cuda", entries))
    for e in entries:
        print(f"{e['metric']:60s} {e['value']:>8}")


if __name__ == "__main__":
    main()
