"""The algorithms ported onto SequenceAlgorithm give the loss, statistics and gradient recorded from the code
before the port (tests/algorithm_golden.py, tests/golden/algorithms.json), on one fixed batch and model."""

from __future__ import annotations

import json

import pytest
from algorithm_golden import CASES, GOLDEN, run_case

RECORDED = json.loads(GOLDEN.read_text())


@pytest.mark.parametrize(("case", "algorithm", "options"), CASES, ids=[c[0] for c in CASES])
def test_same_loss_and_gradient_as_before_the_port(case, algorithm, options):
    got, want = run_case(algorithm, options), RECORDED[case]
    assert got["loss"] == pytest.approx(want["loss"], rel=1e-5, abs=1e-6)
    assert got["grad_norm"] == pytest.approx(want["grad_norm"], rel=1e-5, abs=1e-6)
    assert got["grad_projections"] == pytest.approx(want["grad_projections"], rel=1e-4, abs=1e-5)
    assert got["stats"] == pytest.approx(want["stats"], rel=1e-5, abs=1e-6)
