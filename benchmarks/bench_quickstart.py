"""The README's main job, timed: `seqlab quickstart` wall-clock and its test WER / PER.

    python benchmarks/bench_quickstart.py          # on the 2-core CPU machine

Writes quickstart_wall_s_cpu2, g2p_quickstart_test_wer (and _per) to benchmarks/results/quickstart_cpu.json.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import results_io  # noqa: E402


def main() -> None:
    run_dir = Path(tempfile.mkdtemp(prefix="seqlab_quickstart_")) / "run"
    cmd = [sys.executable, "-m", "seqlab.cli", "quickstart", f"run_dir={run_dir}"]
    start = time.perf_counter()
    subprocess.run(cmd, check=True)
    wall = time.perf_counter() - start
    results = json.loads((run_dir / "results.json").read_text())
    cores = os.cpu_count()
    print(f"wall {wall:.1f} s on {cores} cores; test {results['test']}")
    command = "python benchmarks/bench_quickstart.py  (runs: seqlab quickstart)"
    entries = [results_io.entry(f"quickstart_wall_s_cpu{cores}", round(wall, 1), "s", command),
               results_io.entry("g2p_quickstart_test_wer", round(results["test"]["wer"], 2), "%", command),
               results_io.entry("g2p_quickstart_test_per", round(results["test"]["per"], 2), "%", command)]
    print("wrote", results_io.write("quickstart_cpu", entries))


if __name__ == "__main__":
    main()
