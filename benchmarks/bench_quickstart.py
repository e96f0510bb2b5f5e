"""The README's main job, timed: `seqlab quickstart` end to end (wall clock) and its test WER / PER.

    python benchmarks/bench_quickstart.py                 # on a 2-core CPU machine
    python benchmarks/bench_quickstart.py --cores 2       # pinned to 2 cores of a larger idle machine

Writes quickstart_wall_s_cpu<N> (N: the cores it ran on), g2p_quickstart_test_wer and _per, the steps trained and
the load average (1 minute, before and after: the wall time is only fair on idle cores) to
benchmarks/results/quickstart_cpu.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from seqlab.bench import results as results_io


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cores", type=int, default=None, help="pin the run to this many cores (0..N-1)")
    parser.add_argument("--run-dir", help="default: a fresh temporary directory")
    args, extra = parser.parse_known_args()  # the rest goes to quickstart: --steps 900, overrides
    args.extra = extra
    run_dir = Path(args.run_dir or Path(tempfile.mkdtemp(prefix="seqlab_quickstart_")) / "run")
    cmd = [sys.executable, "-m", "seqlab.cli", "quickstart", *args.extra, f"run_dir={run_dir}"]
    env = dict(os.environ)
    cores = os.cpu_count() or 1
    if args.cores:
        cmd = ["taskset", "-c", f"0-{args.cores - 1}", *cmd]
        env["OMP_NUM_THREADS"] = str(args.cores)
        cores = args.cores
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    subprocess.run(cmd, check=True, env=env)
    wall = time.perf_counter() - start
    load_after = os.getloadavg()[0]
    results = json.loads((run_dir / "results.json").read_text())
    print(
        f"wall {wall:.1f} s on {cores} cores (load average {load_before:.1f} before, {load_after:.1f} after); "
        f"{results['steps']} steps; test {results['test']}"
    )
    command = f"python benchmarks/bench_quickstart.py {' '.join(sys.argv[1:])}".strip() + "  (runs: seqlab quickstart)"
    entries = [
        results_io.entry(f"quickstart_wall_s_cpu{cores}", round(wall, 1), "s", command),
        results_io.entry("g2p_quickstart_test_wer", round(results["test"]["wer"], 2), "%", command),
        results_io.entry("g2p_quickstart_test_per", round(results["test"]["per"], 2), "%", command),
        results_io.entry("quickstart_steps", results["steps"], "steps", command),
        results_io.entry("quickstart_train_s", round(results["train_seconds"], 1), "s", command),
        results_io.entry(
            f"quickstart_load_avg_cpu{cores}", round(max(load_before, load_after), 2), "load (1 min)", command
        ),
    ]
    print("wrote", results_io.write("quickstart_cpu", entries))


if __name__ == "__main__":
    main()
