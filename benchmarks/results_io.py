"""Write benchmark figures as {"metric", "value", "unit", "device", "commit", "command", "date"} entries."""

from __future__ import annotations

import datetime
import json
import platform
import subprocess
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def device_name() -> str:
    try:
        import torch

        if torch.cuda.is_available():
            return torch.cuda.get_device_name(0)
    except ImportError:
        pass
    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import os

    return f"CPU {cpu} ({os.cpu_count()} cores)"


def commit() -> str:
    """The code's commit: $SEQLAB_COMMIT when set (copies without git history), else git's HEAD."""
    import os

    if os.environ.get("SEQLAB_COMMIT"):
        return os.environ["SEQLAB_COMMIT"]
    try:
        return subprocess.check_output(["git", "rev-parse", "--short", "HEAD"], text=True,
                                       cwd=Path(__file__).parent).strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def command_line() -> str:
    return " ".join(["python", *sys.argv])


def entry(metric: str, value: float, unit: str, command: str | None = None) -> dict:
    return {"metric": metric, "value": value, "unit": unit, "device": device_name(), "commit": commit(),
            "command": command or command_line(), "date": datetime.date.today().isoformat()}


def write(name: str, entries: list[dict]) -> Path:
    """Merge entries into benchmarks/results/<name>.json (same metric and device replaced)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    old = json.loads(path.read_text()) if path.exists() else []
    keys = {(e["metric"], e["device"]) for e in entries}
    merged = [e for e in old if (e["metric"], e["device"]) not in keys] + entries
    path.write_text(json.dumps(merged, indent=2) + "\n")
    return path
