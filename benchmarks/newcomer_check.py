"""A newcomer's first hour, scripted (issue 20): fresh clone, fresh venv, the README's two commands, then the bad
inputs, an interrupt and a rerun.  Every step is timed; each check passes or fails.

    python benchmarks/newcomer_check.py                    # everything (the quickstart and the default tests)
    python benchmarks/newcomer_check.py --skip-tests       # without the README's second command
    python benchmarks/newcomer_check.py --quickstart-steps 200   # a shorter quickstart (checks only)

The clone is of this checkout's HEAD (commit first).  The venv is fresh (no system site-packages): pip installs
torch as a newcomer's would, from the configured indexes.  Timings go to benchmarks/results/newcomer_cpu.json
(with the load average, since the wall times are only fair on idle cores); exit code 1 when a check fails.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from seqlab.bench import results as results_io

REPO = Path(__file__).resolve().parents[1]


class Check:
    def __init__(self, work: Path, env: dict[str, str]):
        self.work, self.env = work, env
        self.failures: list[str] = []
        self.timings: dict[str, float] = {}

    def run(
        self,
        name: str,
        cmd: str,
        expect_rc: int = 0,
        timeout: float = 7200,
        one_line_error: bool = False,
        expect: str | None = None,
    ) -> subprocess.CompletedProcess:
        start = time.perf_counter()
        proc = subprocess.run(
            cmd, shell=True, cwd=self.work / "seqlab", env=self.env, capture_output=True, text=True, timeout=timeout
        )
        self.timings[name] = round(time.perf_counter() - start, 2)
        problems = []
        if proc.returncode != expect_rc:
            problems.append(f"exit {proc.returncode}, expected {expect_rc}")
        err_lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
        if one_line_error and (len(err_lines) != 1 or "Traceback" in proc.stderr):
            problems.append(f"{len(err_lines)} lines on stderr, expected one")
        if expect and expect not in proc.stdout + proc.stderr:
            problems.append(f"no {expect!r} in the output")
        status = "ok" if not problems else "FAIL: " + "; ".join(problems)
        print(f"[{self.timings[name]:8.1f} s] {name}: {status}", flush=True)
        if problems:
            self.failures.append(name)
            print("    stdout: " + proc.stdout[-1500:].replace("\n", "\n    "))
            print("    stderr: " + proc.stderr[-1500:].replace("\n", "\n    "))
        return proc


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", help="working directory (default: a fresh temporary one, removed after)")
    parser.add_argument("--skip-tests", action="store_true", help="skip the README's second command")
    parser.add_argument("--quickstart-steps", type=int, default=None, help="default: the quickstart's own")
    parser.add_argument("--no-record", action="store_true", help="do not write benchmarks/results")
    args = parser.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="seqlab_newcomer_"))
    load_before = os.getloadavg()[0]
    subprocess.run(["git", "clone", "-q", str(REPO), str(work / "seqlab")], check=True)
    subprocess.run([sys.executable, "-m", "venv", str(work / "venv")], check=True)
    env = {**os.environ, "PATH": f"{work / 'venv' / 'bin'}:{os.environ['PATH']}", "VIRTUAL_ENV": str(work / "venv")}
    env.pop("PYTHONPATH", None)
    c = Check(work, env)
    steps = f" --steps {args.quickstart_steps}" if args.quickstart_steps else ""

    # the README's first command, as written (plus the step option when asked)
    qs = c.run("readme_command_1", f"pip install -q -e . && seqlab quickstart{steps}", expect="test")
    results_path = work / "seqlab" / "runs" / "quickstart" / "results.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    verdict = (qs.stdout.strip().splitlines() or [""])[-1]
    print(f"    quickstart: {results.get('steps')} steps, test {results.get('test')}; {verdict}")
    c.run("quickstart_rerun_finished", f"seqlab quickstart{steps}", expect="has finished")
    c.run("help_top", "seqlab --help", expect="quickstart")
    c.run("help_train", "seqlab train --help", expect="raml")
    c.run("list_algorithms", "seqlab list algorithms", expect="raml")
    c.run("help_algorithm", "seqlab train --help-algorithm raml", expect="tau = 0.4")

    # bad inputs: one line, exit 2, nothing written (config.yaml of the finished run unchanged)
    config_before = (work / "seqlab" / "runs" / "quickstart" / "config.yaml").read_bytes()
    bad = {
        "bad_algorithm": "algorithm.name=rmal",
        "bad_algorithm_option": "algorithm.name=raml algorithm.options.tua=0.4",
        "bad_arch": "model.arch=t5",
        "bad_max_tokens": "train.max_tokens=0",
        "bad_lr": "train.lr=-1",
        "bad_key": "train.lerning_rate=0.1",
    }
    for name, override in bad.items():
        c.run(name, f"seqlab quickstart {override}", expect_rc=2, one_line_error=True)
    if (work / "seqlab" / "runs" / "quickstart" / "config.yaml").read_bytes() != config_before:
        c.failures.append("config_unchanged_after_bad_input")
        print("    FAIL: a failing command changed runs/quickstart/config.yaml")
    data = work / "seqlab" / "data"
    data.mkdir(exist_ok=True)
    (data / "empty.src").write_text("")
    (data / "empty.tgt").write_text("")
    (data / "one.src").write_text("a b\n")
    (data / "one.tgt").write_text("b a\n")
    task = json.dumps(
        {
            "train": {"src": "data/one.src", "tgt": "data/one.tgt"},
            "valid": {"src": "data/empty.src", "tgt": "data/empty.tgt"},
            "test": {"src": "data/one.src", "tgt": "data/one.tgt"},
            "tokenizer": "symbol",
        }
    )
    c.run(
        "empty_valid_file",
        f"seqlab train run_dir=runs/empty task.name=parallel 'task.options={task}'",
        expect_rc=2,
        one_line_error=True,
        expect="empty.src",
    )
    best = work / "seqlab" / "runs" / "quickstart" / "checkpoint_best.pt"
    if best.exists():
        blob = best.read_bytes()
        for kind, content in (("truncated", blob[: len(blob) // 2]), ("random", os.urandom(4096)), ("empty", b"")):
            (work / f"{kind}.pt").write_bytes(content)
            c.run(
                f"corrupt_checkpoint_{kind}", f"seqlab evaluate {work / f'{kind}.pt'}", expect_rc=2, one_line_error=True
            )
    c.run(
        "missing_checkpoint",
        "seqlab evaluate runs/quickstart/checkpoint_nope.pt",
        expect_rc=2,
        one_line_error=True,
        expect="checkpoint_best.pt",
    )

    # Ctrl-C during training: one line, exit 130, a checkpoint; the rerun resumes
    cmd = "seqlab quickstart --steps 100000 run_dir=runs/interrupted train.progress_bar=false"
    start = time.perf_counter()
    # exec: the signal reaches seqlab itself, not a shell around it
    proc = subprocess.Popen(
        "exec " + cmd,
        shell=True,
        cwd=work / "seqlab",
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    log = work / "seqlab" / "runs" / "interrupted" / "log.jsonl"
    while proc.poll() is None and not (log.exists() and '"kind": "train"' in log.read_text()):
        time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=600)
    c.timings["interrupt"] = round(time.perf_counter() - start, 2)
    ok = proc.returncode == 130 and "Traceback" not in err and "run the same command again" in err
    print(f"[{c.timings['interrupt']:8.1f} s] interrupt: {'ok' if ok else 'FAIL'} (exit {proc.returncode})")
    if not ok:
        c.failures.append("interrupt")
        print("    stderr: " + err[-1500:])
    reached = re.search(r"at step (\d+)", err)
    more = int(reached.group(1)) + 10 if reached else 60
    c.run("resume_after_interrupt", cmd.replace("100000", str(more)), expect="resumed from")

    if not args.skip_tests:  # the README's second command
        c.run(
            "readme_command_2",
            'pip install -q -e ".[dev,hf]" && python -m pytest -q -p no:cacheprovider',
            expect="passed",
        )

    load_after = os.getloadavg()[0]
    print(f"load average (1 min): {load_before:.1f} before, {load_after:.1f} after; failures: {c.failures or 'none'}")
    if not args.no_record:
        command = "python benchmarks/newcomer_check.py " + " ".join(sys.argv[1:])
        cores = os.cpu_count()
        entries = [
            results_io.entry(f"newcomer_{name}_s_cpu{cores}", value, "s", command) for name, value in c.timings.items()
        ]
        entries.append(
            results_io.entry(
                f"newcomer_load_avg_cpu{cores}", round(max(load_before, load_after), 2), "load (1 min)", command
            )
        )
        entries.append(results_io.entry("newcomer_checks_failed", len(c.failures), "checks", command))
        if results.get("test"):
            entries.append(
                results_io.entry("newcomer_quickstart_test_wer", round(results["test"]["wer"], 2), "%", command)
            )
        print("wrote", results_io.write("newcomer_cpu", entries))
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if c.failures else 0


if __name__ == "__main__":
    sys.exit(main())
