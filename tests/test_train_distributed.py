"""A 2-process (gloo) run with a wall-clock budget stops every rank at the same step and exits by itself.

Each rank measures its own training time; ranks that stopped at different steps left one of them waiting in a
gradient all-reduce forever after the other's final evaluation (the hang at exit under torchrun).  Rank 1's
clock runs at twice the speed here, so without an agreed stop the ranks always disagree."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

from helpers import REPO, tiny_overrides

SKEWED_CLOCK_RUNNER = '''
import os, sys, time
if os.environ.get("RANK") == "1":
    import seqlab.train.trainer as trainer

    class SkewedTime:
        """The time module, with perf_counter running at twice the speed."""
        def __init__(self):
            self.origin = time.perf_counter()
        def perf_counter(self):
            return self.origin + 2.0 * (time.perf_counter() - self.origin)
        def __getattr__(self, name):
            return getattr(time, name)

    trainer.time = SkewedTime()
from seqlab.cli import main
sys.exit(main(sys.argv[1:]))
'''

#: only a guard against a hang (the test fails if it is reached); a healthy run takes a fraction of it
GUARD_SECONDS = 600


def test_two_process_run_with_a_time_budget_exits_by_itself(tmp_path):
    runner = tmp_path / "skewed_runner.py"
    runner.write_text(SKEWED_CLOCK_RUNNER)
    args = tiny_overrides(
        tmp_path,
        "ddp_time",
        **{
            "train.max_minutes": "0.04",
            "train.max_steps": "null",
            "train.max_epochs": "100000",
            "train.max_tokens": "120",
            "train.eval_every_steps": "null",
            "train.log_every_steps": "1",
        },
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            "2",
            "--master_port",
            "29531",
            str(runner),
            "train",
            *args,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        cwd=tmp_path,
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=GUARD_SECONDS)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        raise AssertionError(f"the 2-process run did not exit within {GUARD_SECONDS} s:\n{out[-3000:]}") from None
    assert proc.returncode == 0, out[-3000:]
    run = tmp_path / "ddp_time"
    results = json.loads((run / "results.json").read_text())
    assert results["world_size"] == 2 and results["steps"] > 0
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert records[-1]["kind"] == "final" and records[-1]["step"] == results["steps"]


def test_deferred_agreement_returns_what_the_previous_exchange_agreed():
    """Each exchange posts this rank's flags and returns the ones agreed one exchange before (all False at first),
    so no rank reads a collective's result while the device may still be computing it."""
    import torch

    from seqlab.train.distributed import DeferredAgreement

    others = iter(torch.tensor([[0, 1], [0, 0], [0, 0]], dtype=torch.int32))

    def reduce_with_other_rank(t: torch.Tensor) -> None:  # a max all-reduce with a second rank's flags
        torch.maximum(t, next(others), out=t)

    agreement = DeferredAgreement(torch.device("cpu"), reduce_with_other_rank)
    assert agreement.exchange((True, False)) == (False, False)  # posted (1, 0); the other rank (0, 1)
    assert agreement.exchange((False, False)) == (True, True)  # the max of both, one exchange late
    assert agreement.exchange((False, False)) == (False, False)
