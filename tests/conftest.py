"""Test-wide settings: one intra-op thread, and the slow tests by name.

The tests train tiny models (d_model 32, a few hundred examples): their operations are too small for several threads
to pay off, and on a shared 2-core machine threads that wait for each other make a run several times slower.
Subprocesses the tests start inherit ``OMP_NUM_THREADS=1``.

Tests over ~10 s on one core are marked ``slow`` (deselected by the default ``pytest`` run, see pyproject.toml;
``pytest -m slow`` and .ci/run run them): with the decorator in new tests, or listed here by node id where the test
lives in a file another change owns.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)

#: measured at 10-22 s each on one core (benchmarks/results/tests_cpu.json, README "Tests")
SLOW_TESTS = {
    "tests/test_train_trainer.py::test_quickstart_runs_on_a_tiny_budget",
    "tests/test_train_trainer.py::test_two_process_gloo_ddp",
    "tests/test_compare.py::test_compare_resumes_reports_and_refuses_changed_budget",
    "tests/test_compare.py::test_extra_test_sets_are_scored_reported_and_in_the_entries",
    "tests/test_credit.py::test_soft_q_learning_converges_to_q_star",
    "tests/test_train_distributed.py::test_two_process_run_with_a_time_budget_exits_by_itself",
    "tests/test_tasks.py::test_g2p_cmudict_split_disjoint_deterministic_grouped",
    "tests/test_algorithms.py::test_algorithm_trains_from_mle_checkpoint[alpha_dimt]",
}


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.nodeid in SLOW_TESTS:
            item.add_marker(pytest.mark.slow)
