"""benchmarks/bench_few_rows_linear.py: each formulation it times computes the same product."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from helpers import load_script


@pytest.fixture
def bench(monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))
    return load_script("bench_few_rows_linear")


@pytest.mark.parametrize("rows", [1, 5])
def test_every_linear_formulation_gives_the_layer_output(bench, rows):
    g = torch.Generator().manual_seed(0)
    x, w, b = torch.randn(rows, 16, generator=g), torch.randn(24, 16, generator=g), torch.randn(24, generator=g)
    forms = bench.linear_forms(x, w, b)
    assert ("addmv" in forms) == (rows == 1)  # a matrix-vector product takes one row
    expected = F.linear(x, w, b)
    for name, fn in forms.items():
        want = F.linear(x, w) if name == "linear_nobias" else expected
        torch.testing.assert_close(fn(), want, rtol=1e-5, atol=1e-5, msg=name)


def test_both_score_formulations_scale_and_mask_alike(bench):
    g = torch.Generator().manual_seed(1)
    q, k = torch.randn(2, 4, 1, 8, generator=g), torch.randn(2, 4, 6, 8, generator=g)
    mask = torch.zeros(2, 1, 1, 6)
    mask[0, ..., -2:] = float("-inf")
    forms = bench.score_forms(q, k, mask)
    expected = torch.matmul(q, k.transpose(-2, -1)) / 8**0.5 + mask
    for name, fn in forms.items():
        got = fn()
        assert got.shape == (2, 4, 1, 6) and torch.equal(got.isinf(), expected.isinf()), name
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5, msg=name)


def test_it_refuses_to_run_without_a_gpu(bench, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit, match="no CUDA device"):
        bench.main(["--no-write"])
