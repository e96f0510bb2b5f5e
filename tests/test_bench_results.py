"""seqlab.bench.results: entries in the house format, merged by (metric, device) into <results dir>/<name>.json."""

from __future__ import annotations

import json

from seqlab.bench import results


def test_write_replaces_same_metric_and_device_and_keeps_the_rest(tmp_path, monkeypatch):
    monkeypatch.setenv("SEQLAB_RESULTS_DIR", str(tmp_path))
    monkeypatch.setenv("SEQLAB_COMMIT", "abc1234")
    old = {**results.entry("a", 1.0, "x", "cmd"), "device": "other GPU"}
    path = results.write("t", [results.entry("a", 1.0, "x", "cmd"), results.entry("b", 2.0, "x", "cmd"), old])
    results.write("t", [results.entry("a", 3.0, "x", "cmd2")])
    rows = json.loads(path.read_text())
    assert path == tmp_path / "t.json"
    assert sorted((r["metric"], r["value"], r["device"] == "other GPU") for r in rows) == [
        ("a", 1.0, True),
        ("a", 3.0, False),
        ("b", 2.0, False),
    ]
    assert {r["commit"] for r in rows if r["device"] != "other GPU"} == {"abc1234"}
    assert set(rows[0]) == {"metric", "value", "unit", "device", "commit", "command", "date"}


def test_entries_name_the_measuring_device_when_exported_elsewhere(monkeypatch):
    monkeypatch.setenv("SEQLAB_DEVICE", "NVIDIA H200")
    assert results.entry("a", 1.0, "x", "cmd")["device"] == "NVIDIA H200"
    monkeypatch.delenv("SEQLAB_DEVICE")
    assert results.entry("a", 1.0, "x", "cmd")["device"] != "NVIDIA H200"
