"""``validation_anneal``: the interpolation's weights move when validation stops improving, and the run returns to
the previous validation's model and optimizer state, as the ERPO paper's released code anneals and restores."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from helpers import tiny_overrides

from seqlab.config import load_config
from seqlab.erpo.budget import moving_schedules
from seqlab.erpo.schedules import make_schedule
from seqlab.train.trainer import Trainer

ANNEAL = "{type: validation_anneal, start: [0.04, 0.0, 0.96], delta: 0.06}"


def test_moves_follow_the_released_pattern():
    """The first move and every fifth after it go to the model, the others to the reward; a move resets the best,
    so the next score is the first under the new weights."""
    s = make_schedule({"type": "validation_anneal", "start": [0.04, 0.0, 0.96]})
    moved = [s.observe(v) for v in (10, 12, 11, 13, 12, 14, 13, 15, 14, 16, 15, 17, 16)]
    assert moved == [False, False, True] + [False, True] * 5
    assert s.at(0) == pytest.approx((0.16, 0.24, 0.60))  # model +0.06 twice, reward +0.06 four times
    lower = make_schedule({"type": "validation_anneal", "start": [0.0, 0.0, 1.0]})
    assert [lower.observe(v, higher_is_better=False) for v in (5.0, 4.0, 4.5)] == [False, False, True]
    restored = make_schedule({"type": "validation_anneal", "start": [0.04, 0.0, 0.96]})
    restored.load_state_dict(s.state_dict())
    assert restored.at(0) == s.at(0) and restored.observe(15) == s.observe(15)
    with pytest.raises(ValueError, match="distinct"):
        make_schedule({"type": "validation_anneal", "start": [0.1, 0.9], "source": 1, "target": 1})


def scripted(trainer: Trainer, scores: list[float]) -> list[dict]:
    """Replace validation by scripted scores of the primary metric; returns the models' states at each one."""
    seen: list[dict] = []
    real = trainer.evaluate

    def evaluate(split, beam_size=1, max_examples=None):
        if len(seen) == len(scores):  # the final scoring of the best checkpoint
            return real(split, beam_size=beam_size, max_examples=max_examples)
        seen.append({k: v.clone() for k, v in trainer.model.state_dict().items()})
        return {trainer.primary_metric: scores[len(seen) - 1]}, []

    trainer.evaluate = evaluate
    return seen


def test_a_worse_validation_moves_the_weights_and_rolls_the_model_back(tmp_path):
    over = {"train.max_steps": "12", "train.eval_every_steps": "3", "train.max_epochs": "1000"}
    over.update({"algorithm.name": "interpolation", "algorithm.options.lambdas": ANNEAL})
    trainer = Trainer(load_config(None, tiny_overrides(tmp_path, "anneal", **over)), console=False)
    assert "lambdas" not in moving_schedules(trainer.algorithm)  # adaptive: no stage count before training
    # wer: lower is better; the third validation is worse than the second
    seen = scripted(trainer, [60.0, 50.0, 55.0, 40.0])
    trainer.fit()
    lambdas = trainer.algorithm.lambdas.at(0)
    assert lambdas == pytest.approx((0.10, 0.0, 0.90))
    records = [json.loads(line) for line in (Path(trainer.cfg.run_dir) / "log.jsonl").read_text().splitlines()]
    anneal = [r for r in records if r["kind"] == "anneal"]
    assert len(anneal) == 1 and anneal[0]["step"] == 9 and anneal[0]["rolled_back_to_step"] == 6
    assert anneal[0]["lambdas_1"] == pytest.approx(0.10)
    drawn = [r["lambda3"] for r in records if r["kind"] == "train" and "lambda3" in r]
    assert drawn[0] == pytest.approx(0.96) and drawn[-1] == pytest.approx(0.90)
    # after the roll-back the model trained on from the second validation's weights: the fourth validation's
    # model differs from the third's, and training continued from the step-6 state (the snapshot)
    assert any(not torch.equal(seen[3][k], seen[2][k]) for k in seen[2])


def test_the_roll_back_restores_the_previous_validations_state_and_resume_is_exact(tmp_path):
    over = {"train.eval_every_steps": "3", "train.max_epochs": "1000", "algorithm.name": "interpolation"}
    over["algorithm.options.lambdas"] = ANNEAL
    scores = [60.0, 50.0, 55.0, 40.0]
    full = Trainer(
        load_config(None, tiny_overrides(tmp_path, "full", **over, **{"train.max_steps": "12"})), console=False
    )
    seen = scripted(full, scores)
    states = {}
    original = full._anneal_on_validation

    def spy(score):
        original(score)
        states[full.step] = {k: v.clone() for k, v in full.model.state_dict().items()}

    full._anneal_on_validation = spy
    full.fit()
    for k in seen[1]:  # at step 9 the model is back at step 6's weights
        assert torch.equal(states[9][k], seen[1][k]), k
    # the same run stopped at step 7 (between validations) and resumed gives the same model
    first = Trainer(
        load_config(None, tiny_overrides(tmp_path, "split", **over, **{"train.max_steps": "7"})), console=False
    )
    scripted(first, scores)
    first.fit()
    resumed = Trainer(
        load_config(None, tiny_overrides(tmp_path, "split", **over, **{"train.max_steps": "12"})), console=False
    )
    scripted(resumed, scores[2:])
    resumed.fit()
    assert resumed.algorithm.lambdas.at(0) == full.algorithm.lambdas.at(0)
    for (name, a), (_, b) in zip(full.model.state_dict().items(), resumed.model.state_dict().items(), strict=True):
        assert torch.allclose(a, b, atol=1e-6), name


@pytest.mark.slow
def test_two_process_gloo_ddp_shares_the_validation_score(tmp_path):
    """Under DDP only rank 0 validates; every rank's schedule observes its broadcast score (no hang, one state)."""
    import os
    import subprocess
    import sys

    from helpers import REPO

    over = {"train.max_steps": "12", "train.max_tokens": "120", "train.eval_every_steps": "3"}
    over.update({"algorithm.name": "interpolation", "algorithm.options.lambdas": ANNEAL})
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29531"]
    proc = subprocess.run(
        [*command, "-m", "seqlab.cli", "train", *tiny_overrides(tmp_path, "ddp", **over)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    state = torch.load(tmp_path / "ddp" / "checkpoint_last.pt", weights_only=False)
    assert state["schedules"]["lambdas"]["best"] is not None or state["schedules"]["lambdas"]["moves"] > 0
