"""Exact math of the ERPO engine on problems small enough to enumerate every sequence."""

from __future__ import annotations

import math

import pytest
import torch
from tiny import TableModel, TinyBatch, all_sequences, all_sequences_up_to, make_targets, seq_log_probs

from seqlab.algorithms.base import AlgorithmContext, Progress, build_algorithm
from seqlab.data.vocab import EOS_ID, PAD_ID
from seqlab.erpo.loss import Coefficients, one_loss, smoothed_targets
from seqlab.erpo.proposals import hamming_edits, ngram_replacement, seq_lengths, token_mixture, unigram_noise
from seqlab.erpo.schedules import make_schedule
from seqlab.erpo.weightings import erpo_log_target, group_softmax, pg_advantages

REGULAR = [4, 5, 6]
V = 7


def ctx() -> AlgorithmContext:
    return AlgorithmContext(vocab_size=V, label_smoothing=0.0)


def table_reward(tokens: torch.Tensor, refs: torch.Tensor) -> torch.Tensor:
    """A deterministic reward on token ids: matches with the reference minus 0.3 per token."""
    width = max(tokens.size(1), refs.size(1))
    a = torch.nn.functional.pad(tokens, (0, width - tokens.size(1)))
    b = torch.nn.functional.pad(refs, (0, width - refs.size(1)))
    body = a.ne(EOS_ID) & a.ne(PAD_ID)
    return (a.eq(b) & body).sum(1).float() - 0.3 * seq_lengths(tokens).float()


def grads(model: torch.nn.Module, loss: torch.Tensor) -> torch.Tensor:
    model.zero_grad()
    loss.backward()
    return model.table.grad.detach().clone().flatten()


def assert_close_direction(est: torch.Tensor, exact: torch.Tensor, rel: float) -> None:
    err = (est - exact).norm() / exact.norm()
    assert err < rel, f"relative gradient error {err:.4f} >= {rel}"


# --------------------------------------------------------------------------- E-step special cases
def test_erpo_e_step_special_cases():
    model = TableModel(seed=1)
    src = torch.tensor([[4, EOS_ID]])
    ref = make_targets([[5, 6]])
    ys = all_sequences(REGULAR, 2)
    log_p = seq_log_probs(model, src, ys).detach()
    reward = table_reward(ys, ref.expand(len(ys), -1))
    group = torch.zeros(len(ys), dtype=torch.long)

    # MLE: (delta reward, alpha -> 0, beta = 1) puts all mass on the data
    from seqlab.algorithms.erpo import log_delta_reward

    q = group_softmax(erpo_log_target(log_p, log_delta_reward(ys, ref.expand(len(ys), -1)), 1e-8, 1.0), group)
    is_ref = ys.eq(torch.nn.functional.pad(ref, (0, ys.size(1) - ref.size(1)))).all(1)
    assert torch.allclose(q, is_ref.float())

    # RAML: (R, alpha -> 0, beta = tau) gives exp(R / tau) / Z
    tau = 0.7
    q = group_softmax(erpo_log_target(log_p, reward, 0.0, tau), group)
    assert torch.allclose(q, torch.softmax(reward / tau, 0), atol=1e-6)

    # SPG: (R, alpha, beta = 0) gives p_theta exp(R / alpha) / Z
    alpha = 0.5
    q = group_softmax(erpo_log_target(log_p, reward, alpha, 0.0), group)
    expect = torch.softmax(log_p + reward / alpha, 0)
    assert torch.allclose(q, expect, atol=1e-6)


def test_erpo_delta_algorithm_equals_mle_loss():
    torch.manual_seed(0)
    model = TableModel(seed=2)
    batch = TinyBatch(torch.tensor([[4, EOS_ID], [5, EOS_ID]]), make_targets([[5, 6], [4, 4]]))
    erpo = build_algorithm(
        "erpo",
        ctx(),
        {"reward": "delta", "alpha": 0.0, "beta": 1.0, "num_samples": 6, "max_edits": 2, "proposal": "hamming"},
    )
    mle = build_algorithm("mle", ctx(), {"label_smoothing": 0.0})
    a, _ = erpo.loss(model, batch, Progress())
    b, _ = mle.loss(model, batch, Progress())
    assert torch.allclose(a, b, atol=1e-6)


# --------------------------------------------------------------------------- estimated vs enumerated gradients
def _raml_like_exact(model, src, ref, tau: float, alpha: float) -> torch.Tensor:
    ys = all_sequences(REGULAR, 2)
    log_p = seq_log_probs(model, src, ys)
    reward = table_reward(ys, ref.expand(len(ys), -1))
    target = torch.softmax(alpha * log_p.detach() + (1 - alpha) * reward / tau, 0)
    n_ref_tokens = int(ref.ne(PAD_ID).sum())
    return grads(model, -(target * log_p).sum() / n_ref_tokens)


@pytest.mark.parametrize("alpha", [0.0, 0.3, 0.5, 0.7, 1.0])
def test_alpha_dimt_gradient_converges_to_enumeration(alpha):
    torch.manual_seed(0)
    model = TableModel(seed=3)
    src, ref = torch.tensor([[4, EOS_ID]]), make_targets([[5, 6]])
    exact = _raml_like_exact(model, src, ref, tau=0.8, alpha=alpha)
    algo = build_algorithm(
        "alpha_dimt",
        ctx(),
        {
            "alpha": alpha,
            "tau": 0.8,
            "num_samples": 40000,
            "max_edits": 2,
            "proposal_correction": "exact",
            "length_normalize": False,
        },
    )
    algo._reward = table_reward
    loss, _ = algo.loss(model, TinyBatch(src, ref), Progress())
    assert_close_direction(grads(model, loss), exact, rel=0.05)


def test_raml_gradient_converges_to_enumeration():
    torch.manual_seed(1)
    model = TableModel(seed=4)
    src, ref = torch.tensor([[4, EOS_ID]]), make_targets([[6, 4]])
    exact = _raml_like_exact(model, src, ref, tau=0.5, alpha=0.0)
    algo = build_algorithm(
        "raml",
        ctx(),
        {"tau": 0.5, "num_samples": 40000, "max_edits": 2, "proposal": "hamming", "proposal_correction": "exact"},
    )
    algo._reward = table_reward
    loss, _ = algo.loss(model, TinyBatch(src, ref), Progress())
    assert_close_direction(grads(model, loss), exact, rel=0.05)


def test_alpha_dimt_limit_zero_is_raml():
    torch.manual_seed(0)
    model = TableModel(seed=5)
    batch = TinyBatch(torch.tensor([[4, EOS_ID]]), make_targets([[5, 6]]))
    raml = build_algorithm("raml", ctx(), {"tau": 0.8, "num_samples": 64, "max_edits": 2, "proposal": "hamming"})
    dimt = build_algorithm("alpha_dimt", ctx(), {"alpha": 0.0, "tau": 0.8, "num_samples": 64, "max_edits": 2})
    raml._reward = dimt._reward = table_reward
    torch.manual_seed(7)
    a, _ = raml.loss(model, batch, Progress())
    torch.manual_seed(7)
    b, _ = dimt.loss(model, batch, Progress())
    assert torch.allclose(a, b)


def test_policy_gradient_converges_to_enumeration():
    torch.manual_seed(0)
    model = TableModel(seed=6)
    src, ref = torch.tensor([[4, EOS_ID]]), make_targets([[5, 6]])
    ys = all_sequences_up_to([3, 4, 5, 6], 2)
    log_p = seq_log_probs(model, src, ys)
    assert math.isclose(float(log_p.detach().exp().sum()), 1.0, rel_tol=1e-5)
    reward = table_reward(ys, ref.expand(len(ys), -1))
    exact = grads(model, -(log_p.exp() * reward).sum())  # gradient of -E_p[R]
    algo = build_algorithm("pg", ctx(), {"baseline": "mean", "num_samples": 60000})
    algo._reward = table_reward
    loss, _ = algo.loss(model, TinyBatch(src, ref), Progress())
    assert_close_direction(grads(model, loss), exact, rel=0.06)


# --------------------------------------------------------------------------- weightings
def test_importance_weights_are_normalised_per_source():
    logits = torch.tensor([0.0, 1.0, 2.0, 5.0, 5.0])
    group = torch.tensor([0, 0, 0, 1, 1])
    w = group_softmax(logits, group)
    assert torch.allclose(w[:3].sum(), torch.tensor(1.0)) and torch.allclose(w[3:], torch.tensor([0.5, 0.5]))
    assert torch.allclose(w[:3], torch.softmax(logits[:3], 0))


def test_pg_baselines():
    r = torch.tensor([1.0, 2.0, 3.0, 10.0])
    g = torch.tensor([0, 0, 0, 1])
    loo = pg_advantages(r, g, "mean")
    assert torch.allclose(loo, torch.tensor([1 - 2.5, 2 - 2.0, 3 - 1.5, 10.0]))
    sc = pg_advantages(r, g, "greedy", baseline_reward=torch.tensor([2.0, 4.0]))
    assert torch.allclose(sc, torch.tensor([-1.0, 0.0, 1.0, 6.0]))


def test_one_loss_label_smoothing_matches_formula():
    torch.manual_seed(0)
    logits = torch.randn(3, 5, 11)
    logits[..., :2] = float("-inf")  # PAD and BOS are never generated
    tgt = torch.randint(4, 11, (3, 5))
    tgt[2, 3:] = PAD_ID
    log_probs = logits.log_softmax(-1)
    valid = tgt.ne(PAD_ID)
    nll = -log_probs.gather(-1, tgt.unsqueeze(-1)).squeeze(-1).masked_fill(~valid, 0.0)
    smooth = -log_probs[..., 2:].mean(-1)  # uniform over the 9 generated ids
    expect = ((0.9 * nll + 0.1 * smooth) * valid).sum() / valid.sum()
    loss = one_loss(log_probs, tgt, smoothed_targets(tgt, 11, 0.1))
    assert torch.isfinite(loss) and torch.allclose(loss, expect, atol=1e-6)
    # without smoothing it is plain cross-entropy, in sparse and in dense form
    ce = torch.nn.functional.cross_entropy(logits.view(-1, 11), tgt.view(-1), ignore_index=PAD_ID)
    assert torch.allclose(one_loss(log_probs, tgt, smoothed_targets(tgt, 11, 0.0)), ce, atol=1e-6)
    dense = torch.zeros(3, 5, 11).scatter_(-1, tgt.unsqueeze(-1), 1.0)
    as_dense = one_loss(log_probs, tgt, Coefficients(dense=dense, normalizer=int(valid.sum())))
    assert torch.allclose(as_dense, ce, atol=1e-6)


# --------------------------------------------------------------------------- proposals
def test_hamming_proposal_keeps_length_and_reference_and_density():
    torch.manual_seed(0)
    tgt = make_targets([[4, 5, 6, 4, 5], [6, 6]])
    prop = hamming_edits(tgt, 500, V, max_edit_frac=0.5)
    assert torch.equal(seq_lengths(prop.tokens), seq_lengths(tgt).repeat_interleave(500))
    assert torch.equal(prop.tokens[prop.is_reference], tgt)
    assert prop.tokens[(prop.tokens != PAD_ID) & (prop.tokens != EOS_ID)].min() >= 4
    # density: for the 2-token reference with max 1 edit, q(ref) = 1/2, q(each 1-edit) = 1/2 / (2 * 2)
    sub = prop.log_q[prop.group == 1]
    edits = (prop.tokens[prop.group == 1] != tgt[1]).sum(1)
    assert torch.allclose(sub[edits == 0].exp(), torch.tensor(0.5))
    assert torch.allclose(sub[edits == 1].exp(), torch.tensor(0.125))


def test_hamming_proposal_frequencies_match_density():
    torch.manual_seed(0)
    tgt = make_targets([[4, 5]])
    prop = hamming_edits(tgt, 30000, V, max_edits=2, include_reference=False)
    seqs, counts = torch.unique(prop.tokens, dim=0, return_counts=True)
    freq = counts.float() / counts.sum()
    q = torch.stack([prop.log_q[(prop.tokens == s).all(1)][0] for s in seqs]).exp()
    assert torch.allclose(q.sum(), torch.tensor(1.0), atol=1e-5)
    assert (freq - q).abs().max() < 0.01


def test_ngram_and_unigram_proposals_keep_lengths():
    torch.manual_seed(0)
    tgt = make_targets([[4, 5, 6, 4, 5], [6, 6], [5]])
    prop = ngram_replacement(tgt, 5, V, max_n=2)
    assert torch.equal(seq_lengths(prop.tokens), seq_lengths(tgt).repeat_interleave(5))
    assert torch.equal(prop.tokens[prop.is_reference], tgt)
    changed = (prop.tokens != tgt.repeat_interleave(5, 0)).sum(1)
    assert changed.max() <= 2
    noisy = unigram_noise(tgt, 0.5, torch.tensor([0, 0, 0, 0, 1.0, 0, 0]))
    assert torch.equal(seq_lengths(noisy.tokens), seq_lengths(tgt))
    assert set(noisy.tokens[noisy.tokens != tgt].tolist()) <= {4}


def test_interpolation_token_frequencies_match_lambdas():
    torch.manual_seed(0)
    model = TableModel(positions=8, eos_at=6, seed=7)
    tgt = make_targets([[4, 5, 6, 4, 5, 6]] * 3000)
    enc = model.encode(tgt)
    lam = torch.tensor([0.2, 0.3, 0.5])
    draw = token_mixture(model, enc, tgt, lam, reward_name="bleu", reward_scale=1.0)
    assert (draw.components[:, 0] == 3).all() and torch.equal(draw.tokens[:, 0], tgt[:, 0])  # the first token: data
    valid = draw.components[:, 1:] > 0
    share = torch.stack([(draw.components[:, 1:][valid] == z).float().mean() for z in (1, 2, 3)])
    assert torch.allclose(share, lam, atol=0.015)
    free = token_mixture(model, enc, tgt, lam, reward_name="bleu", reward_scale=1.0, first_token_data=False)
    assert (free.components[:, 0] != 3).float().mean() > 0.4
    # data draws copy the reference token at their position
    width = draw.tokens.size(1)
    pos = torch.arange(width)[None].expand_as(draw.tokens)
    is_data = (draw.components == 3) & (pos < 6)
    padded = torch.nn.functional.pad(tgt, (0, max(width - tgt.size(1), 0)))[:, :width]
    assert torch.equal(draw.tokens[is_data], padded[is_data])


def test_interpolation_data_prefix_is_copied():
    torch.manual_seed(0)
    model = TableModel(positions=8, eos_at=6, seed=7)
    tgt = make_targets([[4, 5, 6, 4, 5, 6]] * 50)
    draw = token_mixture(model, model.encode(tgt), tgt, torch.tensor([1.0, 0.0, 0.0]), data_prefix=torch.full((50,), 3))
    assert torch.equal(draw.tokens[:, :3], tgt[:, :3])
    assert (draw.components[:, :3] == 3).all() and (draw.components[:, 3][draw.tokens[:, 3] > 0] == 1).all()


def test_large_reward_scale_concentrates_on_reference_next_token():
    from seqlab.models.base import mask_special
    from seqlab.rewards import next_token_rewards

    ref = make_targets([[4, 5, 6, 6, 5, 4]])
    # after a reference prefix (t >= 1; at t = 0 sentence BLEU cannot tell which reference token comes
    # first), exp(c * dR) with a large c puts its mass on the reference's next token (EOS at the end)
    for t in range(1, 7):
        delta = next_token_rewards("bleu", ref[:, :t], ref, V)
        sharp = mask_special(200.0 * delta).softmax(-1)
        assert sharp[0, ref[0, t]] > 0.95, t
        flat = mask_special(1.0 * delta).softmax(-1)  # c = 1: close to uniform over the 5 generated ids
        entropy = -(flat * flat.clamp_min(1e-30).log()).sum()
        assert entropy > 0.95 * math.log(5)
    torch.manual_seed(0)
    model = TableModel(positions=8, eos_at=6, seed=7)
    tgt = ref.expand(200, -1)
    sharp_draw = token_mixture(
        model, model.encode(tgt), tgt, torch.tensor([0.0, 1.0, 0.0]), reward_scale=200.0, reward_unit="raw"
    )
    flat_draw = token_mixture(
        model, model.encode(tgt), tgt, torch.tensor([0.0, 1.0, 0.0]), reward_scale=1.0, reward_unit="raw"
    )
    assert flat_draw.reward_entropy > 1.4 and sharp_draw.reward_entropy < 0.5
    assert sharp_draw.reward_in_reference > 0.95


def test_interpolation_schedule_clamps_and_renormalises():
    from seqlab.algorithms.interpolation import DEFAULT_LAMBDAS

    sched = make_schedule(DEFAULT_LAMBDAS)
    assert sched.value(epoch=0) == pytest.approx((0.12, 0.16, 0.72))
    assert sched.value(epoch=4) == pytest.approx((0.24, 0.32, 0.44))
    final = sched.value(epoch=12)
    assert final == pytest.approx((0.48 / 1.12, 0.64 / 1.12, 0.0), abs=1e-9)
    assert sched.value(epoch=40) == pytest.approx((3 / 7, 4 / 7, 0.0))
    assert all(v >= 0 for e in range(60) for v in sched.value(epoch=e))


def test_sequence_log_prob_of_padded_rows_is_finite_and_alpha_weights_keep_them():
    from seqlab.erpo.engine import sequence_log_prob

    model = TableModel(seed=1)
    tgt = make_targets([[4, 5], [6]])  # the second row is padded
    log_probs = model.token_log_probs(model.encode(tgt), tgt)
    assert torch.allclose(sequence_log_prob(log_probs, tgt), model.score(tgt, tgt).sum(1))
    torch.manual_seed(0)
    algo = build_algorithm("alpha_dimt", ctx(), {"alpha": 0.5, "tau": 0.8, "num_samples": 4, "max_edits": 1})
    algo._reward = table_reward
    prop = algo.propose(model, TinyBatch(torch.tensor([[4, EOS_ID], [5, EOS_ID]]), tgt), None)
    lp = model.token_log_probs(model.encode(tgt).select(prop.group), prop.tokens)
    reward = algo.reward(prop.tokens, tgt.index_select(0, prop.group))
    w = algo.weights(prop, reward, sequence_log_prob(lp, prop.tokens).detach())
    per_source = torch.zeros(2).index_add_(0, prop.group, w)
    assert torch.isfinite(w).all() and torch.allclose(per_source, torch.ones(2))  # the padded source too
