"""benchmarks/first_decode.py: the first decodes of a fresh process, one mode per process."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import load_script

TINY = """task: {name: multi30k, options: {vocab_size: 64}}
model: {arch: transformer, options: {d_model: 32, n_heads: 4, ffn_dim: 64, encoder_layers: 1, decoder_layers: 1}}
"""


@pytest.fixture
def first(monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))
    return load_script("first_decode")


def test_the_second_source_comes_from_another_width_bucket(first):
    one, other = first.two_buckets([[5] * 3, [6] * 7, [7] * 12, [8] * 2])
    assert one == [5] * 3 and other == [7] * 12  # 3 and 7 tokens share the 8-token bucket
    with pytest.raises(SystemExit, match="every source falls in the 8-token bucket"):
        first.two_buckets([[5] * 3, [6] * 7])


def test_each_mode_runs_in_its_own_process_and_reports_four_decodes(first, tmp_path, capsys):
    config = tmp_path / "tiny.yaml"
    config.write_text(TINY)
    argv = ["--random-model", str(config), "--device", "cpu", "--sentences", "40", "--modes", "default,compiled"]
    assert first.main([*argv, "--no-write"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if "first" in line]
    assert [line.split()[0] for line in lines] == ["default", "compiled"]
    with pytest.raises(SystemExit, match="unknown modes"):
        first.main([*argv[:-1], "fast", "--no-write"])
