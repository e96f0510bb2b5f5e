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

import pytest
import torch
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


def torchrun_train(tmp_path, run: str, port: int, **extra: str) -> dict:
    """A 2-process ``seqlab train`` run of the tiny task (no dropout, SGD: runs that differ only in padding end with
    the same weights to rounding); its results.json, with the trained weights under "weights"."""
    options = {
        "model.options": NO_DROPOUT,
        "train.max_steps": "16",
        "train.max_tokens": "120",
        "train.optimizer": "sgd",
    }
    args = tiny_overrides(tmp_path, run, **(options | extra))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port)]
    proc = subprocess.run(
        [*command, "-m", "seqlab.cli", "train", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=GUARD_SECONDS,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((tmp_path / run / "results.json").read_text())
    results["weights"] = torch.load(tmp_path / run / "checkpoint_last.pt", weights_only=False)["model"]
    return results


NO_DROPOUT = "{d_model: 32, n_heads: 4, ffn_dim: 64, encoder_layers: 1, decoder_layers: 1, dropout: 0.0}"


def assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-4, atol=1e-5, msg=name)


@pytest.mark.slow
def test_two_process_fixed_shape_steps_train_the_weights_of_plain_ddp(tmp_path):
    """train.cuda_graphs under DDP (gloo; on the CPU the fixed-shape step runs eagerly): every rank pads each step to
    the largest batch of the step, which changes no gradient, so the trained weights are plain DDP's."""
    plain = torchrun_train(tmp_path, "plain", 29541)
    fixed = torchrun_train(tmp_path, "fixed", 29542, **{"train.cuda_graphs": "true"})
    assert fixed["cuda_graphs"] == {"captures": 0, "replays": 0, "capturing": False}
    assert plain["steps"] == fixed["steps"] == 16 and "cuda_graphs" not in plain
    assert_same_weights(plain["weights"], fixed["weights"])


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA devices (NCCL)")
def test_two_gpu_captured_steps_train_the_weights_of_plain_ddp(tmp_path):
    """On two GPUs the captured steps hold DDP's all-reduce: both ranks capture each bucket after the eager steps
    and replay it, and the trained weights are plain DDP's (fp32, so that padding changes nothing but rounding)."""
    cuda = {"train.device": "cuda", "train.bf16": "false", "train.max_steps": "32"}
    plain = torchrun_train(tmp_path, "plain", 29543, **cuda)
    captured = torchrun_train(tmp_path, "captured", 29544, **cuda, **{"train.cuda_graphs": "true"})
    graphs = captured["cuda_graphs"]
    assert graphs["capturing"] and graphs["captures"] > 0 and graphs["replays"] > 0, graphs
    assert_same_weights(plain["weights"], captured["weights"])
