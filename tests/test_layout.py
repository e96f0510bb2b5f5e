"""The test suite's own layout: helpers live in helper modules (never imported from another test file), test files
are named after the seqlab package or module they test, and every registered algorithm has an exact test."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def imported_modules(path: Path) -> set[str]:
    """Top-level names of every module ``path`` imports, imports inside functions included."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_no_test_file_imports_another_test_file():
    test_modules = {p.stem for p in TESTS.glob("test_*.py")}
    offenders = {p.name: sorted(imported_modules(p) & test_modules) for p in sorted(TESTS.glob("test_*.py"))}
    offenders = {name: mods for name, mods in offenders.items() if mods}
    assert not offenders, f"move the shared helpers into tests/helpers.py (or tiny.py, ...): {offenders}"


def test_the_import_check_sees_imports_inside_functions(tmp_path):
    sample = tmp_path / "test_sample.py"
    sample.write_text("def test_x():\n    from test_trainer import tiny_overrides\n    import test_erpo.sub\n")
    assert {"test_trainer", "test_erpo"} <= imported_modules(sample)


# ------------------------------------------------------------------------------- names mirror modules
SEQLAB = TESTS.parent / "seqlab"

#: test files that check the suite or the package as a whole, named for what they check
SUITE_CHECKS = {
    "test_imports.py": "no import cycles between seqlab's modules",
    "test_layout.py": "this file: the test suite's own layout",
}

#: files added by a concurrent change, named before the scheme; the lead places them (issue 21 item 6)
NOT_YET_PLACED: dict[str, str] = {}


def unit_under_test(test_file: str) -> str | None:
    """The seqlab package or top-level module a ``test_<unit>[_<module or aspect>].py`` name points to."""
    stem = test_file.removeprefix("test_").removesuffix(".py")
    units = {p.name for p in SEQLAB.iterdir() if (p / "__init__.py").exists()}
    units |= {p.stem for p in SEQLAB.glob("*.py") if p.stem != "__init__"}
    matches = [u for u in units if stem == u or stem.startswith(u + "_")]
    return max(matches, key=len) if matches else None


def test_every_test_file_is_named_after_the_package_or_module_it_tests():
    """tests/test_<package>_<module>.py tests seqlab/<package>/<module>.py; tests/test_<package>.py (or
    test_<package>_<aspect>.py) tests a package across its modules; tests/test_<module>.py a top-level module."""
    named_otherwise = SUITE_CHECKS.keys() | NOT_YET_PLACED.keys()
    unplaced = sorted(
        p.name for p in TESTS.glob("test_*.py") if p.name not in named_otherwise and unit_under_test(p.name) is None
    )
    assert not unplaced, f"name these after the seqlab package or module they test (tests/README.md): {unplaced}"


def test_a_test_file_name_maps_to_its_module():
    assert unit_under_test("test_erpo_engine.py") == "erpo"
    assert unit_under_test("test_train_trainer.py") == "train"
    assert unit_under_test("test_cli.py") == "cli"
    assert unit_under_test("test_newcomer.py") is None


# ------------------------------------------------------------------------------- one exact test per algorithm
#: every registered algorithm -> the tests that check its loss exactly: against a hand computation, an
#: enumeration of every sequence, an algorithm it must equal, or the values recorded before the port
#: (test_algorithms_port.py, ids of tests/algorithm_golden.py's CASES)
EXACT_TESTS: dict[str, list[str]] = {
    "mle": [
        "test_registry.py::test_a_plugin_algorithm_is_a_few_lines_and_gives_the_mle_loss_and_gradient",
        "test_algorithms_port.py::test_same_loss_and_gradient_as_before_the_port[mle]",
    ],
    "noising": ["test_algorithms_port.py::test_same_loss_and_gradient_as_before_the_port[noising]"],
    "raml": [
        "test_erpo.py::test_raml_gradient_converges_to_enumeration",
        "test_erpo_fidelity.py::test_raml_weights_are_self_normalised_exp_reward_over_the_drawn_samples",
    ],
    "alpha_dimt": [
        "test_erpo.py::test_alpha_dimt_gradient_converges_to_enumeration",
        "test_erpo.py::test_alpha_dimt_limit_zero_is_raml",
    ],
    "erpo": [
        "test_erpo.py::test_erpo_delta_algorithm_equals_mle_loss",
        "test_erpo_fidelity.py::test_raml_preset_and_erpo_special_case_share_the_weighting_rule",
    ],
    "spg": ["test_algorithms_port.py::test_same_loss_and_gradient_as_before_the_port[spg]"],
    "pg": ["test_erpo.py::test_policy_gradient_converges_to_enumeration"],
    "mixer": ["test_algorithms_port.py::test_same_loss_and_gradient_as_before_the_port[mixer]"],
    "mixer_anneal": ["test_algorithms_port.py::test_same_loss_and_gradient_as_before_the_port[mixer_anneal]"],
    "interpolation": [
        "test_erpo.py::test_interpolation_token_frequencies_match_lambdas",
        "test_algorithms_port.py::test_same_loss_and_gradient_as_before_the_port[interpolation]",
    ],
    "scheduled_sampling": [
        "test_algorithms_port.py::test_same_loss_and_gradient_as_before_the_port[scheduled_sampling]"
    ],
    "vaml": ["test_credit.py::test_vaml_phase_two_coefficients"],
    "ac": ["test_credit.py::test_ac_is_erac_with_tau_zero"],
    "erac": ["test_credit.py::test_erac_algorithm_wires_the_formulas"],
    "nat": ["test_nat.py::test_nat_loss_is_the_token_nll_at_the_reference_length_plus_the_weighted_length_nll"],
    "imitate_nat": ["test_nat.py::test_imitate_nat_loss_is_the_nat_loss_plus_the_weighted_sum_of_layer_kls"],
    "dat": ["test_nat.py::test_dat_loss_is_mle_plus_the_weighted_kl_to_the_redistributed_actions"],
}


def defined_tests(path: Path) -> set[str]:
    """Names of the module-level test functions of ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {node.name for node in tree.body if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")}


def test_every_registered_algorithm_has_an_exact_test():
    from algorithm_golden import CASES

    from seqlab.algorithms import ALGORITHMS  # names() imports every registering module (credit, nat)

    missing = sorted(set(ALGORITHMS.names()) - set(EXACT_TESTS))
    assert not missing, f"registered algorithms without an exact test (add one, list it in EXACT_TESTS): {missing}"
    stale = sorted(set(EXACT_TESTS) - set(ALGORITHMS.names()))
    assert not stale, f"EXACT_TESTS names algorithms that are not registered: {stale}"
    golden_ids = {case[0] for case in CASES}
    for algorithm, node_ids in EXACT_TESTS.items():
        for node_id in node_ids:
            file, _, test = node_id.partition("::")
            name, _, param = test.partition("[")
            assert name in defined_tests(TESTS / file), f"{algorithm}: {node_id} does not exist"
            if file == "test_algorithms_port.py":
                assert param.rstrip("]") in golden_ids, f"{algorithm}: no golden case {param.rstrip(']')!r}"
