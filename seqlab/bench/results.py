"""Benchmark figures as ``{"metric", "value", "unit", "device", "commit", "command", "date"}`` entries in
``benchmarks/results/<name>.json`` (``$SEQLAB_RESULTS_DIR`` instead, when set)."""

from __future__ import annotations

import datetime
import json
import os
import platform
import sys
from pathlib import Path

from seqlab.launch import REPO  # the checkout seqlab runs from (benchmarks/ lives next to the package)
from seqlab.provenance import code_commit


def results_dir() -> Path:
    """Where result files go: ``$SEQLAB_RESULTS_DIR``, else the checkout's ``benchmarks/results``, else
    ``benchmarks/results`` under the working directory (seqlab installed outside a checkout)."""
    if os.environ.get("SEQLAB_RESULTS_DIR"):
        return Path(os.environ["SEQLAB_RESULTS_DIR"])
    if (REPO / "benchmarks").is_dir():
        return REPO / "benchmarks" / "results"
    return Path.cwd() / "benchmarks" / "results"


def device_name() -> str:
    """$SEQLAB_DEVICE when set (figures exported away from the machine that measured them), else the first CUDA
    device's name, else ``CPU <model name> (<n> cores)``."""
    if os.environ.get("SEQLAB_DEVICE"):
        return os.environ["SEQLAB_DEVICE"]
    try:
        import torch

        if torch.cuda.is_available():
            return torch.cuda.get_device_name(0)
    except ImportError:
        pass
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"CPU {cpu} ({os.cpu_count()} cores)"


def commit() -> str:
    """The code's commit (:func:`seqlab.provenance.code_commit`)."""
    return code_commit()


def command_line() -> str:
    """This process's command line, as ``python <script> <args>``."""
    return " ".join(["python", *sys.argv])


def entry(metric: str, value: float, unit: str, command: str | None = None) -> dict:
    """One result entry, stamped with this device, commit and date (``command`` defaults to this process's)."""
    return {
        "metric": metric,
        "value": value,
        "unit": unit,
        "device": device_name(),
        "commit": commit(),
        "command": command or command_line(),
        "date": datetime.date.today().isoformat(),
    }


def write(name: str, entries: list[dict]) -> Path:
    """Merge ``entries`` into ``<results dir>/<name>.json``: an entry of the same metric and device is replaced,
    every other entry is kept."""
    directory = results_dir()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.json"
    old = json.loads(path.read_text()) if path.exists() else []
    keys = {(e["metric"], e["device"]) for e in entries}
    merged = [e for e in old if (e["metric"], e["device"]) not in keys] + entries
    path.write_text(json.dumps(merged, indent=2) + "\n")
    return path
