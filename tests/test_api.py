"""The Python API (issue 22 item 5): seqlab.train / load / compare, a Python callable as the reward, and the
README's Python snippets, run as written."""

from __future__ import annotations

import contextlib
import io
import json
import re
import textwrap
from pathlib import Path

import pytest
import torch
from tiny_task import write_task

import seqlab
from seqlab.api import build_config, importable_name
from seqlab.config import ConfigError, load_config

REPO = Path(__file__).resolve().parents[1]
FAST = {"train.max_steps": 6, "train.eval_every_steps": 3}


def python_blocks(markdown: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", markdown, flags=re.S)


def test_the_api_is_exported_and_train_and_compare_stay_callable():
    import seqlab.compare.runner  # noqa: F401  (importing the packages sets their names on seqlab)
    import seqlab.train.trainer  # noqa: F401

    assert callable(seqlab.train) and callable(seqlab.compare) and callable(seqlab.load)
    assert seqlab.train.trainer.Trainer is not None  # the package is still the package
    assert {"train", "load", "compare", "text_reward", "register_text_reward"} <= set(seqlab.__all__)


def test_train_then_load_translates_scores_and_samples(tmp_path):
    config = write_task(tmp_path)
    results = seqlab.train(config, overrides={**FAST, "run_dir": str(tmp_path / "mle")})
    assert results["steps"] == 6 and Path(results["checkpoint"]).is_file()
    model = seqlab.load(results["checkpoint"], device="cpu")
    from seqlab.data.corpus import read_parallel

    cfg = load_config(config)
    sources, _ = read_parallel(cfg.task.options["test"]["src"], cfg.task.options["test"]["tgt"]).references()
    hyps = model.translate(sources, beam_size=1)
    assert all(isinstance(h, str) for h in hyps) and len(hyps) == len(sources)
    # the trainer's own test decoding of the best checkpoint (decode.beam_size = 1 in the tiny config)
    assert hyps == (tmp_path / "mle" / "test.hyp.txt").read_text().splitlines()
    assert len(model.translate(sources[:3], beam_size=3)) == 3

    # samples and their log-probabilities: sampled log p == scored log p (the same distribution)
    from seqlab.decoding import sample
    from seqlab.train.evaluate import pad_batch, strip_ids

    torch.manual_seed(5)
    drawn = model.sample(sources[:4], num_samples=3, temperature=1.0)
    assert [len(d) for d in drawn] == [3] * 4 and all(isinstance(s, str) for d in drawn for s in d)
    torch.manual_seed(5)
    d = model.config.decode
    hyp = sample(
        model.model,
        pad_batch(model._source_ids(sources[:4]), model.device),
        num_samples=3,
        max_len_a=d.max_len_a,
        max_len_b=d.max_len_b,
        max_len=d.max_len,
    )
    texts = [model.tgt_tokenizer.decode(strip_ids(r)) for r in hyp.tokens.tolist()]
    assert [t for row in drawn for t in row] == texts
    repeated = [s for s in sources[:4] for _ in range(3)]
    scores = model.score(repeated, texts)
    assert scores == pytest.approx(hyp.scores.tolist(), abs=1e-4)
    lengths = [len(model.tgt_tokenizer.encode(t)) + 1 for t in texts]
    normalized = model.score(repeated, texts, normalize=True)
    assert normalized == pytest.approx([s / n for s, n in zip(scores, lengths, strict=True)], rel=1e-6)
    with pytest.raises(TypeError, match="list of sentences"):
        model.translate("a b c")


def test_a_python_callable_reward_trains_in_process(tmp_path):
    calls: list[tuple[str, list[str], str]] = []

    def overlap(hyps, refs, sources, **fields):  # a closure: not importable by name anywhere
        calls.extend(zip(hyps, refs, sources, strict=True))
        return [
            len(set(h.split()) & set(r[0].split())) / max(len(r[0].split()), 1) for h, r in zip(hyps, refs, strict=True)
        ]

    config = write_task(tmp_path)
    results = seqlab.train(
        config,
        overrides=[
            f"run_dir={tmp_path / 'pg'}",
            "algorithm.name=pg",
            "algorithm.options.num_samples=2",
            "train.max_steps=3",
        ],
        reward=overlap,
    )
    assert results["steps"] == 3 and calls
    assert all(isinstance(h, str) and r and s for h, r, s in calls)
    train_sources = set((tmp_path / "data" / "train.src").read_text().splitlines())
    assert {s for _, _, s in calls} <= train_sources  # the decoded sources of the training examples
    saved = load_config(tmp_path / "pg" / "config.yaml")
    assert (
        saved.algorithm.options["reward"] == "python:test_api.test_a_python_callable_reward_trains_in_process"
        ".<locals>.overlap"
    )
    with pytest.raises(TypeError, match="importable"):
        importable_name(overlap)
    with pytest.raises(TypeError, match="subprocesses"):
        seqlab.compare(config, ["mle", "pg"], tmp_path / "cmp", budget_steps=2, reward=overlap)
    assert not (tmp_path / "cmp").exists()


def test_overrides_as_strings_or_a_mapping_and_one_line_errors(tmp_path):
    config = write_task(tmp_path)
    a = build_config(config, ["train.lr=0.001", "algorithm.name=pg", "algorithm.options.num_samples=3"])
    b = build_config(str(config), {"train.lr": 0.001, "algorithm.name": "pg", "algorithm.options.num_samples": 3})
    c = build_config(a, None)
    assert a.to_dict() == b.to_dict() == c.to_dict()
    assert build_config(json.loads(config.read_text()), {"train.seed": 7}).train.seed == 7
    for bad, words in (
        ({"train.lrr": 0.1}, "lrr"),
        ({"algorithm.options.num_sample": 2, "algorithm.name": "pg"}, "num_samples"),
        ({"algorithm.name": "pgg"}, "did you mean"),
    ):
        with pytest.raises(ConfigError, match=words) as err:
            seqlab.train(config, overrides={"run_dir": str(tmp_path / "never"), **bad})
        assert "\n" not in str(err.value)
    assert not (tmp_path / "never").exists()


def test_readme_python_snippets_run_as_written(tmp_path, monkeypatch):
    blocks = python_blocks((REPO / "README.md").read_text(encoding="utf-8"))
    assert blocks, "the README has a Python snippet"
    monkeypatch.chdir(tmp_path)
    out = io.StringIO()
    namespace: dict = {"__name__": "__readme__"}
    with contextlib.redirect_stdout(out):
        for block in blocks:
            exec(compile(textwrap.dedent(block), "README.md", "exec"), namespace)  # noqa: S102
    printed = out.getvalue()
    assert "[" in printed and (tmp_path / "runs" / "api_pg" / "checkpoint_best.pt").is_file()
    assert namespace["pg"]["steps"] == 5
    reward = load_config(tmp_path / "runs" / "api_pg" / "config.yaml").algorithm.options["reward"]
    assert reward.startswith("python:") and reward.endswith("phoneme_f1")


@pytest.mark.slow
def test_compare_from_python_with_a_module_function_reward(tmp_path, monkeypatch):
    (tmp_path / "api_rewards.py").write_text(
        textwrap.dedent("""
        def overlap(hyps, refs, sources, **fields):
            return [len(set(h.split()) & set(r[0].split())) / max(len(r[0].split()), 1)
                    for h, r in zip(hyps, refs)]
    """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    import api_rewards

    assert importable_name(api_rewards.overlap) == "api_rewards:overlap"
    summary = seqlab.compare(
        write_task(tmp_path),
        ["mle", "pg"],
        tmp_path / "cmp",
        seeds=[1],
        budget_steps=2,
        pretrain_steps=4,
        reward=api_rewards.overlap,
        report=False,
        echo=lambda s: None,
        algorithm_overrides={"pg": ["algorithm.options.num_samples=2"]},
    )
    assert summary["failed"] == [], summary
    cfg = load_config(tmp_path / "cmp" / "runs" / "pg" / "seed1" / "config.yaml")
    assert cfg.algorithm.options["reward"] == "api_rewards:overlap"
    assert json.loads((tmp_path / "cmp" / "runs" / "pg" / "seed1" / "results.json").read_text())["steps"] == 2
