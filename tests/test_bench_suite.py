"""benchmarks/run.py (seqlab.bench.suite): the suites load, steps run in order with vars, timeouts and failures."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pytest

from seqlab.bench import suite as driver
from seqlab.compare.cli import add_compare_parser, build_spec
from seqlab.config import ConfigError

REPO = Path(__file__).resolve().parents[1]
SUITES = sorted((REPO / "benchmarks" / "suites").glob("*.yaml"))


@pytest.mark.parametrize("path", SUITES, ids=lambda p: p.stem)
def test_every_suite_loads_and_fills_its_commands(path):
    suite = driver.load_suite(path)
    if suite is None:  # a comparison suite: what seqlab compare --compare-config builds
        parser = argparse.ArgumentParser()
        add_compare_parser(parser.add_subparsers())
        spec = build_spec(parser.parse_args(["compare", "--compare-config", str(path)]))
        assert spec.algorithms and spec.seeds
    else:
        assert suite.steps and all(driver.shlex.join(suite.command(s, suite.vars)) for s in suite.steps)


def write_suite(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(body)
    return path


def test_steps_run_in_order_with_vars_and_a_failure_does_not_stop_the_rest(tmp_path, capsys):
    out = tmp_path / "out.txt"
    path = write_suite(
        tmp_path,
        f"""
vars: {{word: a, out: {out}}}
steps:
  - {{name: one, run: "python -c \\"open('{{out}}', 'a').write('{{word}}1 ')\\""}}
  - {{name: bad, run: "python -c \\"raise SystemExit(3)\\""}}
  - {{name: two, run: "python -c \\"open('{{out}}', 'a').write('{{word}}2 ')\\""}}
""",
    )
    assert driver.main([str(path), "--set", "word=b"]) == 1
    assert out.read_text() == "b1 b2 "
    assert "[suite] bad: exit 3" in capsys.readouterr().out
    assert driver.main([str(path), "two"]) == 0 and out.read_text() == "b1 b2 a2 "
    assert driver.main([str(path), "--dry-run"]) == 0 and out.read_text() == "b1 b2 a2 "  # dry run: nothing runs


def test_errors_name_the_problem(tmp_path, capsys):
    path = write_suite(tmp_path, "vars: {a: 1}\nsteps:\n  - {name: s, run: 'python -c pass {b}'}\n")
    assert driver.main([str(path), "--set", "zz=1"]) == 2
    assert "no such var" in capsys.readouterr().err
    assert driver.main([str(path)]) == 2
    assert "{b}" in capsys.readouterr().err
    assert driver.main([str(path), "nostep"]) == 2
    with pytest.raises(ConfigError, match="no suite"):
        driver.suite_path("no_such_suite")


def test_a_step_past_its_timeout_is_killed_with_its_children(tmp_path):
    assert driver.run_command([sys.executable, "-c", "import time; time.sleep(60)"], timeout=1) == 124


def test_detached_run_is_waited_for_and_logged(tmp_path):
    work = tmp_path / "w"
    path = write_suite(tmp_path, f"vars: {{work: {work}}}\nsteps:\n  - {{name: s, run: 'python -c \"print(42)\"'}}\n")
    assert driver.main([str(path), "--detach", "--wait", "60"]) == 0
    assert "42" in (tmp_path / "w" / "suite.log").read_text()
    assert driver.main([str(path), "--attach"]) == 0


def test_no_benchmark_script_patches_sys_path_but_the_driver_entry_point():
    patched = [
        p.relative_to(REPO).as_posix()
        for p in (REPO / "benchmarks").rglob("*.py")
        if "sys.path.insert" in p.read_text(encoding="utf-8")
    ]
    assert patched == ["benchmarks/run.py"]


def test_a_detached_run_works_from_a_snapshot_that_outlives_the_checkout(tmp_path, monkeypatch):
    checkout = tmp_path / "checkout"
    (checkout / "data").mkdir(parents=True)
    (checkout / "data" / "x.txt").write_text("from the snapshot\n")
    (checkout / "runs").mkdir()
    (checkout / "runs" / "big.pt").write_text("not copied")
    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus" / "c.txt").write_text("linked\n")
    (checkout / "linked").symlink_to(Path("..") / "corpus")  # a relative link out of the checkout
    snapshot = driver.snapshot_checkout(tmp_path / "elsewhere" / "snap", source=checkout)
    assert (snapshot / "data" / "x.txt").read_text() == "from the snapshot\n"
    assert (snapshot / "linked").is_symlink() and (snapshot / "linked" / "c.txt").read_text() == "linked\n"
    assert not (snapshot / "runs").exists()

    work = tmp_path / "w"
    step = 'python -c "import os; print(os.getcwd())"'
    path = write_suite(tmp_path, f"vars: {{work: {work}}}\nsteps:\n  - {{name: s, run: '{step}'}}\n")
    monkeypatch.setattr(driver.tempfile, "gettempdir", lambda: str(tmp_path / "tmp"))
    assert driver.main([str(path), "--detach", "--wait", "60"]) == 0
    log = (work / "suite.log").read_text()
    assert str(tmp_path / "tmp" / "seqlab-detached" / path.stem) in log  # the step ran inside the snapshot


def test_a_terminated_driver_ends_its_running_step(tmp_path):
    """SIGTERM to the driver (kill, timeout(1)) ends the step it runs, which sits in a session of its own."""
    import os
    import signal
    import subprocess
    import time

    pid_file = tmp_path / "step.pid"
    step = tmp_path / "step.py"
    step.write_text(f"import os, time\nopen({str(pid_file)!r}, 'w').write(str(os.getpid()))\ntime.sleep(300)\n")
    path = write_suite(tmp_path, f"steps:\n  - {{name: s, run: '{sys.executable} {step}'}}\n")
    driver_proc = subprocess.Popen([sys.executable, str(REPO / "benchmarks" / "run.py"), str(path)], cwd=REPO)
    while not pid_file.exists() or not pid_file.read_text():
        assert driver_proc.poll() is None, "the driver ended before its step started"
        time.sleep(0.1)
    step_pid = int(pid_file.read_text())
    driver_proc.send_signal(signal.SIGTERM)
    assert driver_proc.wait(timeout=120) == 128 + signal.SIGTERM  # a guard against a hang, not a speed check
    with pytest.raises(ProcessLookupError):
        os.kill(step_pid, 0)
