"""The benchmark driver behind ``python benchmarks/run.py SUITE [STEP ...]``.

A suite is a YAML file in ``benchmarks/suites/`` (or any path) of one of two kinds:

* a **step suite**: ``vars`` (defaults, overridden by ``--set NAME=VALUE``) and ``steps``, each a ``name``, a
  command ``run`` (``{var}`` placeholders filled in; split like a shell line, no shell; ``python`` is this
  interpreter) and a ``timeout`` in seconds.  Steps run in order, each in its own process group (killed whole
  at its timeout), with the checkout on ``PYTHONPATH``; a failed step does not stop the next ones (their figures
  are independent), but the driver exits non-zero.  Naming steps runs only those.
* a **comparison suite** (anything ``seqlab compare --compare-config`` reads): the driver runs
  ``seqlab compare --compare-config SUITE --export-results`` with the arguments after ``--``.

Device calls are limited in time, so a suite can also run detached and be waited for across calls:
``--detach`` starts it in a session of its own (its log in ``<work>/suite.log``) and waits up to ``--wait``
seconds; ``--attach`` only waits for a detached run; ``--stop`` ends it.  A detached run works in a snapshot of
the checkout (``<tmp>/seqlab-detached/<suite>``, without ``.git``, ``runs`` and checkpoints), so that replacing
the checkout while it runs (as each device call does when it sends the working tree again) cannot pull its code,
configs or data away from the jobs it starts later.  Its figures still go to this checkout's
``benchmarks/results`` (or ``$SEQLAB_RESULTS_DIR``); other relative paths (``work``, ``--out``) resolve inside the
snapshot, so give absolute ones to keep its outputs.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from seqlab.bench.results import REPO, commit, results_dir
from seqlab.config import ConfigError
from seqlab.launch import job_env

SUITES = REPO / "benchmarks" / "suites"


@dataclass
class Step:
    """One command of a step suite."""

    name: str
    run: str
    timeout: float | None = None


@dataclass
class Suite:
    """A step suite: its defaults and its steps."""

    path: Path
    description: str
    vars: dict[str, Any] = field(default_factory=dict)
    steps: list[Step] = field(default_factory=list)

    def command(self, step: Step, values: dict[str, Any]) -> list[str]:
        """The step's argv with the values filled in."""
        try:
            argv = shlex.split(step.run.format(**{k: _text(v) for k, v in values.items()}))
        except KeyError as e:
            raise ConfigError(
                f"{self.path}: step {step.name!r} uses {{{e.args[0]}}}, which vars: does not define"
            ) from None
        return [sys.executable if arg == "python" else arg for arg in argv]  # this interpreter (python3 on a device)


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "null" if value is None else str(value)


def suite_path(name: str) -> Path:
    """``name`` as a path, else ``benchmarks/suites/<name>.yaml``."""
    for candidate in (Path(name), SUITES / name, SUITES / f"{name}.yaml"):
        if candidate.is_file():
            return candidate
    known = ", ".join(sorted(p.stem for p in SUITES.glob("*.yaml")))
    raise ConfigError(f"no suite {name!r} (a path, or one of: {known})")


def _description(path: Path) -> str:
    lines = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        lines.append(line[1:].strip())
    return " ".join(lines)


def load_suite(path: Path) -> Suite | None:
    """The step suite at ``path``; None for a comparison suite (no ``steps``)."""
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
    if "steps" not in data:
        return None
    unknown = set(data) - {"vars", "steps"}
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {sorted(unknown)} of a step suite (vars, steps)")
    steps = []
    for i, raw in enumerate(data["steps"] or []):
        if not isinstance(raw, dict) or not {"name", "run"} <= set(raw) or set(raw) - {"name", "run", "timeout"}:
            raise ConfigError(f"{path}: step {i + 1} must have name and run (and optionally timeout), got {raw!r}")
        steps.append(Step(str(raw["name"]), str(raw["run"]), raw.get("timeout")))
    names = [s.name for s in steps]
    if len(set(names)) != len(names):
        raise ConfigError(f"{path}: step names must be unique, got {names}")
    return Suite(path, _description(path), dict(data.get("vars") or {}), steps)


def parse_sets(items: list[str], known: dict[str, Any], path: Path) -> dict[str, Any]:
    """``NAME=VALUE`` (YAML values) over the suite's vars; an unknown name is an error."""
    values = dict(known)
    for item in items:
        name, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--set {item!r}: expected NAME=VALUE")
        if name not in known:
            raise ConfigError(f"--set {name}: {path} has no such var (vars: {', '.join(sorted(known))})")
        values[name] = yaml.safe_load(value) if value else ""
    return values


def step_env() -> dict[str, str]:
    """The environment of every step: the checkout first on PYTHONPATH, unbuffered output (a job's environment,
    :func:`seqlab.launch.job_env`, on the GPUs this process sees)."""
    return job_env(None)


class Terminated(Exception):
    """The driver was sent SIGTERM (``kill``, ``timeout(1)``): its running step is ended with it."""


def _terminated(signum: int, frame: Any) -> None:
    raise Terminated


def _end_group(proc: subprocess.Popen, sig: int) -> None:
    """Send ``sig`` to the step's process group, then SIGKILL if it is still there after 30 s."""
    try:
        os.killpg(proc.pid, sig)
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        proc.wait()


def run_command(argv: list[str], timeout: float | None, env: dict[str, str] | None = None) -> int:
    """Run ``argv`` from the checkout's root in its own process group; at ``timeout`` the whole group is killed
    (exit status 124, as ``timeout(1)``).  The group is ended too when the driver is interrupted or terminated
    (SIGTERM is then raised here as :class:`Terminated`), so that no step outlives the driver."""
    proc = subprocess.Popen(argv, cwd=REPO, env=env or step_env(), start_new_session=True)
    main_thread = threading.current_thread() is threading.main_thread()  # only it may set a signal handler
    previous = signal.signal(signal.SIGTERM, _terminated) if main_thread else None
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        _end_group(proc, signal.SIGTERM)
        return 124
    except KeyboardInterrupt:
        _end_group(proc, signal.SIGINT)
        raise
    except Terminated:
        _end_group(proc, signal.SIGTERM)
        raise
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)


def run_steps(suite: Suite, values: dict[str, Any], only: list[str], dry_run: bool = False) -> int:
    """Run the suite's steps (``only`` those named, in the suite's order); non-zero when one failed."""
    unknown = set(only) - {s.name for s in suite.steps}
    if unknown:
        names = ", ".join(s.name for s in suite.steps)
        raise ConfigError(f"{suite.path}: no step(s) {sorted(unknown)} (steps: {names})")
    failed = []
    for step in suite.steps:
        if only and step.name not in only:
            continue
        argv = suite.command(step, values)
        print(
            f"[suite] {step.name}: {shlex.join(argv)}" + (f"  (timeout {step.timeout:g} s)" if step.timeout else ""),
            flush=True,
        )
        if dry_run:
            continue
        start = time.time()
        rc = run_command(argv, step.timeout)
        print(f"[suite] {step.name}: exit {rc} after {time.time() - start:.0f} s", flush=True)
        if rc:
            failed.append(step.name)
    if failed:
        print(f"[suite] failed: {', '.join(failed)}", flush=True)
    return 1 if failed else 0


def compare_command(path: Path, extra: list[str]) -> list[str]:
    """``seqlab compare`` on a comparison suite, exporting its figures."""
    return [sys.executable, "-m", "seqlab.cli", "compare", "--compare-config", str(path), "--export-results", *extra]


# ---------------------------------------------------------------------------------------------- detached runs
def _detached_files(values: dict[str, Any], path: Path) -> tuple[Path, Path]:
    work = Path(str(values.get("work") or REPO / "runs" / "suites" / path.stem))
    work = work if work.is_absolute() else REPO / work
    return work / "suite.pid", work / "suite.log"


def _alive(pid_file: Path) -> int | None:
    if not pid_file.exists():
        return None
    pid = int(pid_file.read_text().strip())
    try:
        if os.waitpid(pid, os.WNOHANG)[0]:  # our own child (detached by this process) that has ended
            return None
    except ChildProcessError:  # started by an earlier call: not ours to reap
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    return pid


#: what a detached run's snapshot of the checkout leaves out
SNAPSHOT_IGNORE = shutil.ignore_patterns(".git", "runs", "__pycache__", "*.pt", ".venv", ".pytest_cache")


def snapshot_checkout(dest: Path, source: Path = REPO) -> Path:
    """A fresh copy of the checkout ``source`` at ``dest`` (replacing an old one), less :data:`SNAPSHOT_IGNORE`.
    Links stay links (a linked corpus is not copied); relative ones are pointed at their absolute targets."""
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(source, dest, ignore=SNAPSHOT_IGNORE, symlinks=True)
    for link in [p for p in dest.rglob("*") if p.is_symlink()]:
        target = Path(os.readlink(link))
        if not target.is_absolute():
            link.unlink()
            link.symlink_to(os.path.normpath(source / link.parent.relative_to(dest) / target))
    return dest


def detach(argv: list[str], pid_file: Path, log: Path, snapshot: Path) -> None:
    """Start the driver again with ``argv`` in a session of its own (it outlives this process), from a snapshot
    of the checkout at ``snapshot`` (relative paths in ``argv`` resolve inside it)."""
    if _alive(pid_file):
        raise ConfigError(f"a detached run is still going (pid {pid_file.read_text().strip()}); --attach or --stop")
    log.parent.mkdir(parents=True, exist_ok=True)
    code = snapshot_checkout(snapshot)
    env = step_env()
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(code), env.get("PYTHONPATH", "")) if p)
    env.setdefault("SEQLAB_RESULTS_DIR", str(results_dir()))  # figures still land in this checkout
    env.setdefault("SEQLAB_COMMIT", commit())  # the snapshot has no git history
    with open(log, "a", encoding="utf-8") as out:
        out.write(f"[suite] snapshot of {REPO} at {code}\n")
        out.flush()
        proc = subprocess.Popen(
            [sys.executable, "-m", "seqlab.bench.suite", *argv],
            cwd=code,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    pid_file.write_text(f"{proc.pid}\n")
    print(f"[suite] detached (pid {proc.pid}); log {log}", flush=True)


def attach(pid_file: Path, log: Path, seconds: float) -> int:
    """Wait up to ``seconds`` for a detached run, then print the end of its log; 0 when it has ended."""
    deadline = time.time() + seconds
    while _alive(pid_file) and time.time() < deadline:
        time.sleep(1)
    if log.exists():
        print("\n".join(log.read_text(encoding="utf-8", errors="replace").splitlines()[-40:]))
    running = _alive(pid_file)
    print(f"[suite] {f'still running (pid {running})' if running else 'not running'}", flush=True)
    return 3 if running else 0


def stop(pid_file: Path) -> None:
    """End a detached run: its whole process group."""
    pid = _alive(pid_file)
    if pid is None:
        print("[suite] no detached run", flush=True)
        return
    os.killpg(pid, signal.SIGTERM)
    print(f"[suite] stopped pid {pid}", flush=True)


# ---------------------------------------------------------------------------------------------- command line
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python benchmarks/run.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("suite", nargs="?", help="a suite name (benchmarks/suites/NAME.yaml) or path; none: list them")
    p.add_argument("steps", nargs="*", help="only these steps (default: all, in order)")
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="override a var of the suite")
    p.add_argument("--dry-run", action="store_true", help="print the commands only")
    p.add_argument("--detach", action="store_true", help="run in the background (survives this process)")
    p.add_argument("--attach", action="store_true", help="wait for a detached run (see --wait)")
    p.add_argument("--wait", type=float, default=0.0, help="with --detach / --attach: seconds to wait for it")
    p.add_argument("--stop", action="store_true", help="stop a detached run")
    return p


def list_suites() -> None:
    for path in sorted(SUITES.glob("*.yaml")):
        suite = load_suite(path)
        kind = f"steps: {', '.join(s.name for s in suite.steps)}" if suite else "seqlab compare suite"
        print(f"{path.stem:28s} {kind}")


def _without_detach(argv: list[str]) -> list[str]:
    """``argv`` less ``--detach`` and ``--wait S`` (the detached run itself runs in the foreground)."""
    rest, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--wait":
            skip = True
        elif arg != "--detach" and not arg.startswith("--wait="):
            rest.append(arg)
    return rest


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:
        argv, extra = argv[: argv.index("--")], argv[argv.index("--") + 1 :]
    args = build_parser().parse_args(argv)
    try:
        if not args.suite:
            list_suites()
            return 0
        path = suite_path(args.suite)
        suite = load_suite(path)
        values = parse_sets(args.set, suite.vars if suite else {"work": None}, path)
        pid_file, log = _detached_files(values, path)
        if args.stop:
            stop(pid_file)
            return 0
        if args.attach:
            return attach(pid_file, log, args.wait)
        if args.detach:
            snapshot = Path(tempfile.gettempdir()) / "seqlab-detached" / path.stem
            detach(_without_detach(argv) + (["--", *extra] if extra else []), pid_file, log, snapshot)
            return attach(pid_file, log, args.wait) if args.wait else 0
        if suite is None:
            cmd = compare_command(path, extra)
            print(f"[suite] {shlex.join(cmd)}", flush=True)
            return 0 if args.dry_run else run_command(cmd, None)
        if extra:
            raise ConfigError(f"{path}: arguments after -- apply to comparison suites only")
        return run_steps(suite, values, args.steps, args.dry_run)
    except ConfigError as e:
        print(f"run.py: error: {e}", file=sys.stderr)
        return 2
    except Terminated:
        print("[suite] terminated; the running step was ended with it", file=sys.stderr, flush=True)
        return 128 + signal.SIGTERM


if __name__ == "__main__":
    sys.exit(main())
