"""The ERPO family as the papers define it: self-normalised RAML-family weights, a reward draw that follows the
reward on a realistic vocabulary, schedules that move within the budget (issue: 'The MLE↔RL family as the
papers define it')."""

from __future__ import annotations

import gzip
import math
import warnings
from pathlib import Path

import pytest
import torch
from tiny import TableModel, TinyBatch, make_targets

from seqlab.algorithms.base import AlgorithmContext, Progress, build_algorithm
from seqlab.config import ConfigError
from seqlab.data.vocab import EOS_ID, PAD_ID
from seqlab.erpo.budget import check_schedule_budget, schedule_stages
from seqlab.erpo.engine import weighted_sequence_loss
from seqlab.erpo.loss import Coefficients, one_loss
from seqlab.erpo.proposals import ngram_replacement, reward_draw_logits, seq_lengths, token_mixture
from seqlab.rewards import next_token_rewards, sentence_bleu

MULTI30K = Path(__file__).resolve().parents[2] / "shared" / "data" / "multi30k"
REAL_V = 8000


def ctx(vocab: int = 7, smoothing: float = 0.0) -> AlgorithmContext:
    return AlgorithmContext(vocab_size=vocab, label_smoothing=smoothing)


# --------------------------------------------------------------------------- RAML-family weights
def test_raml_weights_are_self_normalised_exp_reward_over_the_drawn_samples():
    torch.manual_seed(0)
    model = TableModel(seed=3)
    batch = TinyBatch(torch.tensor([[4, EOS_ID], [5, EOS_ID]]), make_targets([[5, 6, 4, 6], [4, 4, 5, 6]]))
    algo = build_algorithm("raml", ctx(), {"tau": 0.4, "num_samples": 6, "proposal": "hamming", "max_edits": 2})
    prop = algo.propose(model, batch, None)
    reward = sentence_bleu(prop.tokens, batch.tgt.index_select(0, prop.group))
    w = algo.weights(prop, reward, torch.zeros(len(prop)))
    for g in range(2):
        rows = prop.group == g
        assert torch.allclose(w[rows], torch.softmax(reward[rows] / 0.4, 0), atol=1e-6)
    # the reference has the largest reward (BLEU 1) and so the largest weight of its source
    for g in range(2):
        rows = (prop.group == g).nonzero().squeeze(1)
        assert prop.is_reference[rows[w[rows].argmax()]]


def test_exact_density_correction_hands_the_weight_to_the_most_edited_sample_on_a_real_vocabulary():
    """Why the default does not divide by the proposal density: with V = 8000 each edit multiplies the
    importance weight by ≈ V, far more than exp(ΔBLEU / τ) can undo."""
    torch.manual_seed(0)
    tgt = make_targets([list(range(10, 26))] * 8)
    src = torch.tensor([[4, EOS_ID]] * 8)
    with pytest.warns(UserWarning, match="most-edited"):
        exact = build_algorithm(
            "raml", ctx(REAL_V), {"proposal": "hamming", "proposal_correction": "exact", "num_samples": 8}
        )
    plain = build_algorithm("raml", ctx(REAL_V), {"proposal": "hamming", "num_samples": 8})
    prop = exact.propose(None, TinyBatch(src, tgt), None)
    reward = sentence_bleu(prop.tokens, tgt.index_select(0, prop.group))
    zeros = torch.zeros(len(prop))
    assert float(exact.weights(prop, reward, zeros)[prop.is_reference].mean()) < 1e-6
    plain_w = plain.weights(prop, reward, zeros)
    assert float(plain_w[prop.is_reference].mean()) > 1.25 / 8  # above uniform: the reference has BLEU 1
    for g in range(8):
        rows = (prop.group == g).nonzero().squeeze(1)
        assert prop.is_reference[rows[plain_w[rows].argmax()]]


def test_alpha_dimt_preset_and_length_normalisation():
    algo = build_algorithm("alpha_dimt", ctx(), {})
    assert (algo.reward_name, algo.tau, algo._alpha, algo.proposal) == ("neg_hamming", 3.0, 0.5, "hamming")
    assert not algo.divides_by_density()
    reward, log_p, lengths = torch.tensor([0.0, -1.0]), torch.tensor([-6.0, -2.0]), torch.tensor([3, 2])
    expect = 0.5 * log_p / lengths + 0.5 * reward / 3.0  # geometric-mean token probability
    assert torch.allclose(algo.log_target(reward, log_p, lengths), expect)
    raw = build_algorithm("alpha_dimt", ctx(), {"length_normalize": False})
    assert torch.allclose(raw.log_target(reward, log_p, lengths), 0.5 * log_p + 0.5 * reward / 3.0)


def test_raml_preset_and_erpo_special_case_share_the_weighting_rule():
    raml = build_algorithm("raml", ctx(), {})
    assert (raml.reward_name, raml.tau, raml.num_samples, raml.proposal) == ("bleu", 0.4, 10, "ngram")
    erpo = build_algorithm("erpo", ctx(), {"alpha": 0.0, "beta": 0.4})
    reward, log_p, lengths = torch.tensor([0.3, 0.9, 0.1]), torch.tensor([-3.0, -1.0, -2.0]), torch.tensor([3, 3, 3])
    assert torch.allclose(raml.log_target(reward, log_p, lengths), erpo.log_target(reward, log_p, lengths))
    with pytest.raises(ValueError, match="density"):
        build_algorithm("raml", ctx(), {"proposal_correction": "exact"})  # n-gram density is unknown


def test_ngram_replacement_never_touches_the_final_token_and_keeps_lengths():
    torch.manual_seed(0)
    tgt = make_targets([[10, 11, 12, 13, 14, 15], [20, 21], [30]])
    prop = ngram_replacement(tgt, 400, 100, max_n=4)
    ref = tgt.index_select(0, prop.group)
    m = seq_lengths(ref)
    assert torch.equal(seq_lengths(prop.tokens), m)
    last = (m - 1).clamp(min=0)
    assert torch.equal(prop.tokens.gather(1, last[:, None]), ref.gather(1, last[:, None]))
    changed = prop.tokens.ne(ref).sum(1)
    assert int(changed[m <= 1].max()) == 0  # a one-token reference stays
    assert int(changed.max()) <= 4 and bool((changed[~prop.is_reference & (m == 6)] > 0).float().mean() > 0.9)
    span = [int(r.nonzero().max() - r.nonzero().min() + 1) for r in prop.tokens.ne(ref) if r.any()]
    assert max(span) <= 4  # one contiguous n-gram


def test_reference_weight_monitor_warns_once():
    from seqlab.algorithms.raml import ReferenceWeightMonitor

    monitor = ReferenceWeightMonitor("raml", window=5)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(4):
            monitor.update(0.001)
        assert not caught  # the window is not full yet
        for _ in range(10):
            monitor.update(0.001)
    assert len(caught) == 1 and "reference" in str(caught[0].message)


def test_raml_logs_weight_on_reference_and_effective_samples():
    torch.manual_seed(0)
    model = TableModel(seed=3)
    batch = TinyBatch(torch.tensor([[4, EOS_ID]]), make_targets([[5, 6]]))
    algo = build_algorithm("raml", ctx(), {"num_samples": 4, "proposal": "hamming", "max_edits": 1})
    _, stats = algo.loss(model, batch, Progress())
    assert 0 < stats["weight_on_reference"] <= 1 and 1 <= stats["effective_samples"] <= 4


def test_weighted_loss_applies_label_smoothing_to_every_row():
    torch.manual_seed(0)
    model = TableModel(seed=2)
    tgt = make_targets([[5, 6], [4, 4]])
    enc = model.encode(tgt)
    w = torch.tensor([0.7, 0.3])
    loss = weighted_sequence_loss(model, enc, tgt, torch.arange(2), w, 4, label_smoothing=0.1)
    log_probs = model.token_log_probs(enc, tgt)
    expect = one_loss(
        log_probs,
        tgt,
        Coefficients(
            weights=0.9 * w[:, None].expand_as(tgt).float(),
            uniform=0.1 * w[:, None].expand_as(tgt).float(),
            normalizer=4,
        ),
    )
    assert torch.allclose(loss, expect)
    algo = build_algorithm(
        "noising",
        AlgorithmContext(vocab_size=7, label_smoothing=0.1, unigram=torch.tensor([0, 0, 0, 0, 1.0, 1.0, 1.0]) / 3),
        {},
    )
    smoothed, _ = algo.loss(model, TinyBatch(tgt, tgt), Progress())
    algo.ctx.label_smoothing = 0.0
    torch.manual_seed(0)
    plain, _ = algo.loss(model, TinyBatch(tgt, tgt), Progress())
    assert not torch.allclose(smoothed, plain)


# --------------------------------------------------------------------------- the reward draw
def _real_references(n: int = 200) -> torch.Tensor:
    """Word-level ids of real Multi30k validation references in a vocabulary of 8000 ids."""
    path = MULTI30K / "val.en.gz"
    if not path.exists():
        pytest.skip(f"{path} not found (../shared/data)")
    lines = [line.split() for line in gzip.open(path, "rt", encoding="utf-8").read().splitlines()[:n]]
    vocab: dict[str, int] = {}
    for line in lines:
        for word in line:
            vocab.setdefault(word, 4 + len(vocab))
    assert len(vocab) < REAL_V
    return make_targets([[vocab[w] for w in line] for line in lines])


def _on_track_draw(refs: torch.Tensor, scale: float, unit: str) -> tuple[float, float, float]:
    """Over every on-track prefix y*_<t, t ≥ 1: mean P(draw in the reference's remainder), mean entropy, and
    the smallest per-position mean P(in remainder) over t = 1..5."""
    lengths = seq_lengths(refs)
    hit = entropy = count = 0.0
    early = []
    for t in range(1, int(lengths.max())):
        ref = refs[lengths > t]
        probs = reward_draw_logits(next_token_rewards("bleu", ref[:, :t], ref, REAL_V), scale, unit, ref).softmax(-1)
        remaining = torch.zeros_like(probs, dtype=torch.bool).scatter_(1, ref[:, t:], True)
        remaining[:, PAD_ID] = remaining[:, EOS_ID] = False
        row_hit = (probs * remaining).sum(1)
        hit += float(row_hit.sum())
        if t <= 5:
            early.append(float(row_hit.mean()))
        entropy += float(-(probs * probs.clamp_min(1e-30).log()).sum())
        count += len(ref)
    return hit / count, entropy / count, min(early)


def test_reward_draw_follows_the_reward_on_a_realistic_vocabulary():
    refs = _real_references()
    algo = build_algorithm("interpolation", ctx(REAL_V), {})  # the defaults
    assert (algo.reward_scale, algo.reward_unit) == (10.0, "range")
    hit, entropy, early = _on_track_draw(refs, algo.reward_scale, algo.reward_unit)
    assert hit >= 0.5 and early >= 0.5 and entropy < 0.9 * math.log(REAL_V)  # at every position
    old_hit, old_entropy, _ = _on_track_draw(refs, 10.0, "raw")  # the old default: noise
    assert old_hit < 0.01 and old_entropy > 0.99 * math.log(REAL_V)
    _, _, length_early = _on_track_draw(refs, 15.0, "length")  # |y*|-scaled: uniform right after the data token
    assert length_early < 0.05


class _VocabOnly:
    """token_mixture needs only the vocabulary size when no token comes from the model."""

    vocab_size = REAL_V


def test_interpolation_reward_tokens_land_in_the_reference_and_uniform_mode_is_noise():
    refs = _real_references(60)
    torch.manual_seed(0)
    lam = torch.tensor([0.0, 1.0, 0.0])
    draw = token_mixture(_VocabOnly(), None, refs, lam, reward_scale=10.0)
    assert draw.reward_in_reference > 0.5 and draw.reward_entropy < 0.9 * math.log(REAL_V)
    uniform = token_mixture(_VocabOnly(), None, refs, lam, reward_draw="uniform")
    assert uniform.reward_in_reference < 0.01 and uniform.reward_entropy > 0.999 * math.log(REAL_V)


def test_interpolation_warns_when_the_reward_draw_is_uniform_noise():
    algo = build_algorithm("interpolation", ctx(REAL_V), {"reward_scale": 1.0, "reward_unit": "raw"})
    with pytest.warns(UserWarning, match="entropy"):
        algo._check_entropy(0.95 * math.log(REAL_V))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        algo._check_entropy(0.99 * math.log(REAL_V))  # once only


# --------------------------------------------------------------------------- schedules against the budget
def test_default_interpolation_schedule_is_refused_on_a_short_budget():
    algo = build_algorithm("interpolation", ctx(), {})
    # Multi30k at 8192-token batches: 62 steps an epoch; 200 steps = epochs 0..3, one λ stage
    with pytest.raises(ConfigError, match="algorithm.options.lambdas.*allow-short-schedules"):
        check_schedule_budget(algo, 62, 200)
    assert check_schedule_budget(algo, 62, 200, allow_short=True) == {"lambdas": 1}
    assert schedule_stages(algo, 62, 62 * 13) == {"lambdas": 4}  # epochs 0, 4, 8, 12
    check_schedule_budget(algo, 62, 62 * 9)  # 3 stages pass
    fast = build_algorithm(
        "interpolation",
        ctx(),
        {
            "lambdas": {
                "type": "step",
                "start": [0.12, 0.16, 0.72],
                "delta": [0.12, 0.16, -0.28],
                "every": 1,
                "lower": 0.0,
                "normalize": True,
            }
        },
    )
    assert check_schedule_budget(fast, 62, 200) == {"lambdas": 4}
    assert check_schedule_budget(build_algorithm("interpolation", ctx(), {"lambdas": [0.2, 0.3, 0.5]}), 62, 10) == {}


def test_mixer_prefix_and_scheduled_sampling_against_the_budget():
    mixer = build_algorithm(
        "mixer_anneal",
        ctx(),
        {"prefix": {"type": "step", "start": 10, "delta": -2, "every": 100, "lower": 0, "unit": "step"}},
    )
    with pytest.raises(ConfigError, match="algorithm.options.prefix"):
        check_schedule_budget(mixer, 62, 150)
    assert check_schedule_budget(mixer, 62, 300) == {"prefix": 3}
    fractional = build_algorithm(
        "mixer", ctx(), {"prefix": {"type": "linear", "start": 1.0, "end": 1.5, "duration": 300}}
    )
    with pytest.raises(ConfigError, match="prefix"):  # m = int(prefix) stays 1: it never moves
        check_schedule_budget(fractional, 62, 300)
    assert check_schedule_budget(build_algorithm("mixer_anneal", ctx(), {"prefix": 2}), 62, 10) == {}
    fixed = build_algorithm("scheduled_sampling", ctx(), {"k": 1000.0})
    with pytest.raises(ConfigError, match="truth_prob"):
        check_schedule_budget(fixed, 62, 200)  # P(truth) 0.999 -> 0.998: a no-op
    budgeted = build_algorithm("scheduled_sampling", ctx(), {})
    check_schedule_budget(budgeted, 62, 200)
    start = budgeted.truth_prob(Progress(step=0, total_steps=200))
    end = budgeted.truth_prob(Progress(step=200, total_steps=200))
    assert start > 0.95 and end == pytest.approx(0.5, abs=1e-6)


def test_short_schedule_is_refused_by_the_trainer_before_training(tmp_path):
    from helpers import tiny_overrides

    from seqlab.config import load_config
    from seqlab.train.trainer import train

    cfg = load_config(
        None, tiny_overrides(tmp_path, "short", **{"algorithm.name": "interpolation", "train.max_steps": "3"})
    )
    with pytest.raises(ConfigError, match="allow-short-schedules"):
        train(cfg, console=False)
    assert not (tmp_path / "short" / "log.jsonl").exists() or not (tmp_path / "short" / "log.jsonl").read_text()
