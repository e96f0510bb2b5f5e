"""The test suite's own layout: test files import shared helpers from helper modules, never from each other."""

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
