"""Entries from the torch.profiler tables ``bench_step_time.py --profile DIR`` writes: per table (one label), the
host time per call and the call count of the operators the Speed section quotes, and the tables' host and CUDA totals.

    SEQLAB_COMMIT=17f1b37 SEQLAB_DEVICE="NVIDIA H200" python benchmarks/profile_entries.py \\
        benchmarks/reports/step_profiles_h200 --results step_profiles_cuda

Entries ``step_profile_<label>_<operator>_host_ms_per_call`` and ``_calls`` (``cudnn_attention_forward``,
``cudnn_attention_backward``, ``fp32_mem_efficient_attention`` with its ``_cuda_ms`` instead, ``stream_synchronize``
with its host ``_host_ms``; ``flash_attention_forward`` and ``mem_efficient_attention_forward`` with their CUDA time
per call, ``_cuda_ms_per_call``), and ``step_profile_<label>_{host,cuda}_ms_total`` (three profiled steps each).
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from seqlab.bench import results as results_io

#: operator (a prefix of the table's name column) -> entry name
OPERATORS = {
    "aten::_cudnn_attention_forward": "cudnn_attention_forward",
    "aten::_cudnn_attention_backward": "cudnn_attention_backward",
    "fmha_cutlassF_f32": "fp32_mem_efficient_attention",
    "cudaStreamSynchronize": "stream_synchronize",
    "aten::_flash_attention_forward": "flash_attention_forward",
    "aten::_efficient_attention_forward": "mem_efficient_attention_forward",
}
#: operators whose entry is their CUDA time per call (ms) rather than their host time
CUDA_PER_CALL = ("flash_attention_forward", "mem_efficient_attention_forward")
UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def ms(text: str) -> float:
    """A profiler duration ('522.164us', '9.519ms', '1.831s') in milliseconds."""
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()
    return float(value) * UNITS[unit]


def table_rows(text: str) -> dict[str, list[str]]:
    """The first row of each operator of :data:`OPERATORS`: its columns after the name (self CPU %, self CPU,
    CPU total %, CPU total, CPU time avg, self CUDA, self CUDA %, CUDA total, CUDA time avg, calls)."""
    rows = {}
    for line in text.splitlines():
        for prefix, name in OPERATORS.items():
            if name not in rows and line.strip().startswith(prefix):
                rows[name] = line.split()[-10:]
    return rows


def entries_of(label: str, text: str) -> list[dict]:
    name = f"step_profile_{label}"
    out = []
    for op, cols in table_rows(text).items():
        calls = int(cols[9])
        if op == "fp32_mem_efficient_attention":
            out.append(results_io.entry(f"{name}_{op}_cuda_ms", round(ms(cols[7]), 3), "ms of CUDA time, 3 steps"))
        elif op in CUDA_PER_CALL:
            out.append(results_io.entry(f"{name}_{op}_cuda_ms_per_call", round(ms(cols[8]), 4), "ms"))
        elif op == "stream_synchronize":
            out.append(results_io.entry(f"{name}_{op}_host_ms", round(ms(cols[3]), 3), "ms of host time, 3 steps"))
        else:
            out.append(results_io.entry(f"{name}_{op}_host_ms_per_call", round(ms(cols[4]), 4), "ms"))
        out.append(results_io.entry(f"{name}_{op}_calls", calls, "calls in 3 steps"))
    for kind in ("CPU", "CUDA"):
        found = re.search(rf"Self {kind} time total: ([\d.]+(?:us|ms|s))", text)
        if found:
            key = "host" if kind == "CPU" else "cuda"
            out.append(results_io.entry(f"{name}_{key}_ms_total", round(ms(found.group(1)), 3), "ms, 3 steps"))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("folder", type=Path, help="the --profile folder (one <label>.txt per algorithm and path)")
    p.add_argument("--results", default="step_profiles_cuda")
    p.add_argument("--suffix", default="", help="appended to each label (tables of another commit beside older ones)")
    args = p.parse_args()
    entries = []
    for path in sorted(args.folder.glob("*.txt")):
        entries += entries_of(path.stem + args.suffix, path.read_text(encoding="utf-8"))
    for e in entries:
        print(f"{e['metric']:70s} {e['value']}")
    print(f"{len(entries)} entries -> {results_io.write(args.results, entries)}")


if __name__ == "__main__":
    main()
