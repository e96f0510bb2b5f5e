"""Text rewards (issue 22 item 3): fn(hyps, refs, sources) on decoded text gives the same losses as the token-id
rewards it reimplements, reaches every algorithm (sources included), is refused by the algorithms that need token
increments when it does not decompose, and a module:function reward reaches a `seqlab compare` subprocess."""

from __future__ import annotations

import json
import os
import textwrap

import pytest
import sacrebleu
import torch
from tiny import TableModel, TinyBatch, make_targets
from tiny_task import write_task

from seqlab.algorithms import AlgorithmContext, build_algorithm
from seqlab.algorithms.base import Progress
from seqlab.catalog import check_config
from seqlab.config import ConfigError
from seqlab.config import load_config as _load_config
from seqlab.data.tokenizers import SymbolTokenizer
from seqlab.rewards import TEXT_REWARDS, add_text_reward, register_text_reward, resolve_reward, text_reward

V = 7
WORDS = ["a", "b", "c"]  # ids 4, 5, 6
TOK = SymbolTokenizer(["<pad>", "<s>", "</s>", "<unk>", *WORDS])
SRC_TOK = SymbolTokenizer(["<pad>", "<s>", "</s>", "<unk>", "x", "y", "z"])


def sacre_bleu(hyps: list[str], refs: list[list[str]], sources: list[str], **fields) -> list[float]:
    """sacrebleu's sentence BLEU / 100 on the decoded text (the built-in token-id `bleu` on ids written as words)."""
    return [sacrebleu.sentence_bleu(h, r, tokenize="none").score / 100 for h, r in zip(hyps, refs, strict=True)]


def levenshtein(a: list[str], b: list[str]) -> int:
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, y in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (x != y))
    return row[-1]


@text_reward(decomposes=True)
def neg_edit_text(hyps, refs, sources, **fields):
    """-Levenshtein distance on whitespace symbols to the closest reference (the token-id `neg_edit`)."""
    return [-min(levenshtein(h.split(), r.split()) for r in rs) for h, rs in zip(hyps, refs, strict=True)]


def load_config(path, overrides):
    """A config checked as `seqlab train` checks it before loading anything."""
    cfg = _load_config(path, overrides)
    check_config(cfg)
    return cfg


def ctx() -> AlgorithmContext:
    return AlgorithmContext(vocab_size=V, tgt_tokenizer=TOK, src_tokenizer=SRC_TOK, build_model=lambda: TableModel(V))


def batch() -> TinyBatch:
    return TinyBatch(src=make_targets([[4, 5], [6], [5, 5, 4]]), tgt=make_targets([[4, 5, 6], [6, 4], [5, 5]]))


def loss_of(algorithm: str, options: dict, seed: int = 0) -> tuple[torch.Tensor, list[torch.Tensor], dict]:
    torch.manual_seed(123)
    model = TableModel(V, positions=5, eos_at=3)
    algo = build_algorithm(algorithm, ctx(), options)
    torch.manual_seed(seed)
    loss, stats = algo.loss(model, batch(), Progress(step=3, epoch=1, total_steps=100))
    grads = torch.autograd.grad(loss, list(model.parameters()))
    return loss.detach(), grads, stats


@pytest.fixture
def text_rewards():
    register_text_reward("test_sacre_bleu")(sacre_bleu)
    register_text_reward("test_neg_edit")(neg_edit_text)
    yield
    TEXT_REWARDS.remove("test_sacre_bleu")
    TEXT_REWARDS.remove("test_neg_edit")


@pytest.mark.parametrize(
    ("algorithm", "options"),
    [
        ("pg", {"num_samples": 4, "baseline": "mean"}),
        ("pg", {"num_samples": 3, "baseline": "greedy"}),
        ("spg", {"num_samples": 4}),
        ("raml", {"num_samples": 5}),
        ("mixer", {"num_samples": 2, "prefix": 1}),
    ],
)
def test_text_bleu_gives_the_token_bleu_loss(text_rewards, algorithm, options):
    want, want_grads, _ = loss_of(algorithm, {**options, "reward": "bleu"})
    got, got_grads, stats = loss_of(algorithm, {**options, "reward": "test_sacre_bleu"})
    assert got.item() == pytest.approx(want.item(), rel=1e-6, abs=1e-7)
    for g, w in zip(got_grads, want_grads, strict=True):
        assert torch.allclose(g, w, atol=1e-6)
    assert want.item() != 0.0


@pytest.mark.parametrize(
    ("algorithm", "options"),
    [
        ("interpolation", {"lambdas": [0.3, 0.5, 0.2], "reward_scale": 2.0}),
        ("mixer_anneal", {"prefix": 1, "reward_scale": 2.0}),
        ("vaml", {"num_samples": 3}),
        ("erac", {"num_samples": 2}),
    ],
)
def test_a_decomposable_text_reward_gives_the_token_reward_increments(text_rewards, algorithm, options):
    """Token increments of a text reward (prefixes decoded and scored, every vocabulary id drawn) = neg_edit's."""
    kw = {"q_steps": 0} if algorithm == "vaml" else {}
    with pytest.warns(UserWarning) if algorithm == "vaml" else _nothing():
        want, want_grads, _ = loss_of(algorithm, {**options, **kw, "reward": "neg_edit"})
    with pytest.warns(UserWarning) if algorithm == "vaml" else _nothing():
        got, got_grads, _ = loss_of(algorithm, {**options, **kw, "reward": "test_neg_edit"})
    assert got.item() == pytest.approx(want.item(), rel=1e-6, abs=1e-7)
    for g, w in zip(got_grads, want_grads, strict=True):
        assert torch.allclose(g, w, atol=1e-6)


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_the_reward_sees_decoded_hypotheses_references_and_sources(text_rewards):
    seen: list[tuple[str, list[str], str]] = []

    def spy(hyps, refs, sources, **fields):
        seen.extend(zip(hyps, refs, sources, strict=True))
        assert fields == {}
        return [0.5] * len(hyps)

    name = add_text_reward(spy)
    assert name.startswith("python:") and resolve_reward(name).kind == "text"
    loss_of("pg", {"num_samples": 2, "baseline": "mean", "reward": name})
    pairs = {(r[0], s) for _, r, s in seen}
    assert pairs == {("a b c", "x y"), ("c a", "z"), ("b b", "y y x")}  # each target with its own source
    assert all(set(h.split()) <= {*WORDS, "<unk>"} for h, _, _ in seen)
    TEXT_REWARDS.remove(name)


def test_increment_algorithms_find_each_rows_source(text_rewards):
    seen: set[tuple[str, str]] = set()

    @text_reward(decomposes=True)
    def spy(hyps, refs, sources, **fields):
        seen.update((r[0], s) for r, s in zip(refs, sources, strict=True))
        return neg_edit_text(hyps, refs, sources)

    name = add_text_reward(spy)
    loss_of("interpolation", {"lambdas": [0.0, 1.0, 0.0], "reward_scale": 2.0, "reward": name})
    loss_of("erac", {"num_samples": 1, "reward": name})
    assert seen == {("a b c", "x y"), ("c a", "z"), ("b b", "y y x")}
    TEXT_REWARDS.remove(name)


@pytest.mark.parametrize("algorithm", ["interpolation", "mixer_anneal", "vaml", "ac", "erac"])
def test_a_non_decomposable_reward_is_refused_naming_the_option(text_rewards, algorithm):
    with pytest.raises(ConfigError) as err:
        load_config(None, [f"algorithm.name={algorithm}", "algorithm.options.reward=test_sacre_bleu"])
    msg = str(err.value)
    assert "\n" not in msg and "algorithm.options.reward=test_sacre_bleu" in msg and "decompose" in msg
    with pytest.raises(ValueError, match="algorithm.options.reward"):
        build_algorithm(algorithm, ctx(), {"reward": "test_sacre_bleu"})
    load_config(None, [f"algorithm.name={algorithm}", "algorithm.options.reward=test_neg_edit"])  # decomposes


def test_module_function_rewards_and_their_errors(tmp_path, monkeypatch):
    (tmp_path / "my_rewards.py").write_text(
        textwrap.dedent("""
        def length(hyps, refs, sources, **fields):
            return [float(len(h.split())) for h in hyps]
        length.decomposes = True
        def chrf(hyps, refs, sources, **fields):
            return [0.0 for h in hyps]
        not_callable = 3
    """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    assert resolve_reward("my_rewards:length").decomposes and not resolve_reward("my_rewards:chrf").decomposes
    load_config(None, ["algorithm.name=interpolation", "algorithm.options.reward=my_rewards:length"])
    loss, _, stats = loss_of("pg", {"num_samples": 2, "baseline": "mean", "reward": "my_rewards:length"})
    assert stats["reward"] > 0
    for spec, words in (
        ("no_such_module:f", "could not be imported"),
        ("my_rewards:nope", "has no 'nope'"),
        ("my_rewards:not_callable", "not callable"),
        ("blue", "did you mean"),
    ):
        with pytest.raises(ConfigError, match=words) as err:
            load_config(None, ["algorithm.name=pg", f"algorithm.options.reward={spec}"])
        assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="returned 1 values for 6"):
        add = add_text_reward(lambda hyps, refs, sources: [1.0], name="python:wrong_count")
        loss_of("pg", {"num_samples": 2, "baseline": "mean", "reward": add})
    TEXT_REWARDS.remove("python:wrong_count")


def test_a_module_function_reward_reaches_a_compare_subprocess(tmp_path, monkeypatch):
    """`seqlab compare` runs are subprocesses (python -m seqlab.compare train): the reward is imported there."""
    from seqlab.compare.runner import Run, subprocess_launcher

    marker = tmp_path / "called.jsonl"
    (tmp_path / "sub_rewards.py").write_text(
        textwrap.dedent(f"""
        import json
        def overlap(hyps, refs, sources, **fields):
            with open({str(marker)!r}, "a") as f:
                f.write(json.dumps({{"hyp": hyps[0], "ref": refs[0], "src": sources[0]}}) + "\\n")
            return [len(set(h.split()) & set(r[0].split())) / max(len(r[0].split()), 1) for h, r in zip(hyps, refs)]
    """)
    )
    config = write_task(tmp_path)
    run_dir = tmp_path / "run"
    run = Run(
        "pg/seed1",
        run_dir,
        [
            "train.progress_bar=false",
            f"run_dir={run_dir}",
            "algorithm.name=pg",
            "algorithm.options.reward=sub_rewards:overlap",
            "algorithm.options.num_samples=2",
            "train.max_steps=2",
            "train.eval_every_steps=2",
        ],
    )
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (str(tmp_path), os.environ.get("PYTHONPATH")) if p))
    code = subprocess_launcher(run, str(config), None)
    assert code == 0, (run_dir / "train.out").read_text()[-3000:]
    calls = [json.loads(line) for line in marker.read_text().splitlines()]
    assert calls and all(c["ref"] and c["src"] for c in calls)
    assert json.loads((run_dir / "results.json").read_text())["steps"] == 2


def test_seqlab_list_rewards_shows_text_rewards_and_whether_they_decompose(text_rewards):
    from seqlab.catalog import listing

    lines = dict(listing("rewards"))
    assert lines["test_sacre_bleu"].startswith("text reward, does not decompose over tokens: sacrebleu's")
    assert lines["test_neg_edit"].startswith("text reward: -Levenshtein")
    assert "bleu" in lines and not lines["bleu"].startswith("text reward")
