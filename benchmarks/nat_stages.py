"""Per-stage BLEU entries of a staged ``bench_nat.py`` run, collected from its work folder.

``bench_nat.py --nat-steps 1000,2000,3000`` scores every completed stage on the GPU while the next one trains
(``<work>/<pair>/eval_step<N>.json``) but reports only the last stage.  This script turns those files — for
instance from a device's session.tar — into entries ``multi30k_<pair>_<row>_test2016_bleu_step<N>`` of
benchmarks/results/nat_<device type>.json (``--record NAME``: NAME.json), with the device and commit the run had (not
this machine's); with ``--logged`` also what the rows logged: the imitation term at the start and the end of the last
scored stage (``multi30k_<pair>_<row>_imitation_kl_{start,end}``, :func:`bench_nat.imitation_entries`) and each kept
stage's validation BLEU (``multi30k_<pair>_<row>_valid_bleu_step<N>``, :func:`bench_nat.validation_entries`):

    python benchmarks/nat_stages.py --work /tmp/run2/nat --device "NVIDIA H200" --commit 09919ea \\
        --command "python benchmarks/bench_nat.py ..." [--stages 1000,2000] [--skip-rows at_greedy]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from types import SimpleNamespace

from bench_nat import logged_entries, stage_entries  # noqa: E402

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
    p.add_argument("--record", default="nat_cuda", help="benchmarks/results/NAME.json to write")
    p.add_argument("--logged", action="store_true", help="also the rows' imitation term and validation BLEU by stage")
    args = p.parse_args()
    stages = None if args.stages is None else [int(s) for s in args.stages.split(",")]
    command = (
        f"{args.command}  # collected by python benchmarks/nat_stages.py --work {args.work} --stages {args.stages}"
    )
    skip = tuple(r for r in args.skip_rows.split(",") if r)
    entries = stage_entries(args.work, stages, args.device, args.commit, command, skip)
    if args.logged:
        entries += [{**e, "device": args.device, "commit": args.commit} for e in logged_by_pair(args, command)]
    print("wrote", results_io.write(args.record, entries))
    for e in entries:
        print(f"{e['metric']:60s} {e['value']:>8}")


def logged_by_pair(args: argparse.Namespace, command: str) -> list[dict]:
    """The imitation and validation entries of every pair, for the rows whose steps its last scored stage records."""
    entries = []
    for pair in sorted(path.name for path in args.work.iterdir() if path.is_dir()):
        scored = sorted(args.work.glob(f"{pair}/eval_step*.json"), key=lambda f: int(f.stem.removeprefix("eval_step")))
        if not scored:
            continue
        res = json.loads(scored[-1].read_text())
        rows = [key.removesuffix("_steps") for key in res if key.endswith("_steps")]
        run = SimpleNamespace(work=str(args.work), trained_rows=dict.fromkeys(rows))
        entries += logged_entries(run, pair, res, command)
    return entries


if __name__ == "__main__":
    main()
