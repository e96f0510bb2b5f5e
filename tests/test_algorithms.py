"""Every algorithm trains through the one trainer from an MLE checkpoint (tiny task, finite losses)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from helpers import tiny_overrides

from seqlab.config import load_config
from seqlab.train.trainer import train

ERPO_ALGORITHMS = {
    "noising": {"gamma": 0.2},
    "raml": {"tau": 0.5, "num_samples": 4, "reward": "neg_edit"},
    "alpha_dimt": {"alpha": 0.5, "tau": 0.5, "num_samples": 4},
    "spg": {"alpha": 0.2, "num_samples": 3},
    "pg": {"baseline": "greedy", "num_samples": 2, "mle_weight": 0.5},
    "mixer": {
        "num_samples": 2,
        "prefix": {"type": "step", "start": 3, "delta": -1, "every": 2, "lower": 0, "unit": "step"},
    },
    "scheduled_sampling": {"k": 5.0},
    "interpolation": {"reward_scale": 10.0},
    "mixer_anneal": {"prefix": 2},
    "erpo": {"alpha": 0.1, "beta": 0.5, "proposal": "model", "num_samples": 3},
}


@pytest.fixture(scope="module")
def mle_checkpoint(tmp_path_factory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("algos")
    cfg = load_config(None, tiny_overrides(tmp, "mle", **{"train.max_steps": "40"}))
    train(cfg, console=False)
    return tmp, Path(cfg.run_dir) / "checkpoint_last.pt"


@pytest.mark.parametrize("name", sorted(ERPO_ALGORITHMS))
def test_algorithm_trains_from_mle_checkpoint(mle_checkpoint, name):
    tmp, ckpt = mle_checkpoint
    opts = json.dumps(ERPO_ALGORITHMS[name])
    cfg = load_config(
        None,
        tiny_overrides(
            tmp,
            name,
            **{
                "algorithm.name": name,
                "algorithm.options": opts,
                "train.init_from": str(ckpt),
                "train.max_steps": "6",
                "train.log_every_steps": "1",
                "train.lr": "0.0005",
                "train.allow_short_schedules": "true",
            },
        ),
    )  # a smoke run: the schedules cannot move in 6 steps
    results = train(cfg, console=False)
    assert results["steps"] == 6
    records = [json.loads(x) for x in (Path(cfg.run_dir) / "log.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if r["kind"] == "train"]
    assert len(losses) == 6 and all(math.isfinite(v) for v in losses)


def test_interpolation_logs_component_shares_and_schedule(mle_checkpoint):
    tmp, ckpt = mle_checkpoint
    opts = json.dumps({"lambdas": [0.2, 0.3, 0.5], "reward_scale": 5.0})
    cfg = load_config(
        None,
        tiny_overrides(
            tmp,
            "interp_stats",
            **{
                "algorithm.name": "interpolation",
                "algorithm.options": opts,
                "train.init_from": str(ckpt),
                "train.max_steps": "4",
                "train.log_every_steps": "1",
            },
        ),
    )
    train(cfg, console=False)
    rec = [json.loads(x) for x in (Path(cfg.run_dir) / "log.jsonl").read_text().splitlines()][0]
    assert rec["lambda1"] == pytest.approx(0.2) and rec["lambda3"] == pytest.approx(0.5)
    assert abs(rec["share_model"] + rec["share_reward"] + rec["share_data"] - 1.0) < 1e-6
    assert rec["reward_entropy"] > 0


def test_unknown_algorithm_and_option_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="unknown algorithm"):
        train(load_config(None, tiny_overrides(tmp_path, "x", **{"algorithm.name": "ppo"})), console=False)
    with pytest.raises(ValueError, match="unexpected keyword|unknown option"):
        train(
            load_config(
                None,
                tiny_overrides(tmp_path, "y", **{"algorithm.name": "raml", "algorithm.options": "{temperature: 2}"}),
            ),
            console=False,
        )


def test_finetune_lr_warning_for_algorithms_that_learn_from_their_own_samples():
    """PG / SPG / MIXER / MIXER-alike anneal, AC and ERAC collapse when fine-tuned at MLE learning rates: the trainer
    warns."""
    import warnings
    from types import SimpleNamespace

    from seqlab.algorithms.base import ALGORITHMS, load_plugins
    from seqlab.train.trainer import warn_finetune_lr

    load_plugins()
    limited = {name for name, cls in ALGORITHMS.items() if cls.max_finetune_lr is not None}
    assert {"pg", "spg", "mixer", "mixer_anneal", "ac", "erac"} <= limited
    assert not limited & {
        "mle",
        "raml",
        "alpha_dimt",
        "interpolation",
        "noising",
        "scheduled_sampling",
        "vaml",
    }
    pg = SimpleNamespace(name="pg", max_finetune_lr=ALGORITHMS["pg"].max_finetune_lr)
    with pytest.warns(UserWarning, match="train.lr=5e-05"):
        warn_finetune_lr(pg, SimpleNamespace(init_from="mle.pt", lr=2e-4))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warn_finetune_lr(pg, SimpleNamespace(init_from="mle.pt", lr=2e-5))  # below the limit
        warn_finetune_lr(pg, SimpleNamespace(init_from=None, lr=1e-3))  # from scratch: no checkpoint to protect
        raml = SimpleNamespace(name="raml", max_finetune_lr=None)
        warn_finetune_lr(raml, SimpleNamespace(init_from="mle.pt", lr=1e-3))
