"""RL stability controls (issue 22 item 7): kl_coef to the frozen starting model and advantage normalisation for
the algorithms that learn from their own samples, on tiny enumerable models, plus what the trainer logs."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from tiny import TableModel, TinyBatch, all_sequences_up_to, make_targets
from tiny_task import write_task

from seqlab.algorithms import AlgorithmContext, Candidates, build_algorithm
from seqlab.algorithms.base import Progress
from seqlab.algorithms.sequence import Step, normalize_advantages, sequence_kl
from seqlab.credit.algorithms import normalized_actor_coefficients
from seqlab.credit.targets import actor_coefficients, finite_log_probs
from seqlab.erpo.loss import Coefficients, one_loss

V = 7
PROGRESS = Progress(step=3, epoch=1, total_steps=100)
#: every algorithm that learns from its own samples, with options small enough for the tiny model
SAMPLING = [
    ("pg", {"num_samples": 4, "baseline": "mean", "reward": "neg_edit"}),
    ("pg", {"num_samples": 2, "baseline": "greedy", "reward": "neg_edit"}),
    ("spg", {"num_samples": 4, "reward": "neg_edit"}),
    ("mixer", {"num_samples": 2, "prefix": 1, "reward": "neg_edit"}),
    ("interpolation", {"lambdas": [0.5, 0.3, 0.2], "reward_scale": 2.0, "reward": "neg_edit"}),
    ("mixer_anneal", {"prefix": 1, "reward_scale": 2.0, "reward": "neg_edit"}),
    ("erpo", {"proposal": "model", "num_samples": 4, "alpha": 0.5, "beta": 0.0, "reward": "neg_edit"}),
    ("erac", {"num_samples": 2, "reward": "neg_edit"}),
    ("ac", {"num_samples": 2, "reward": "neg_edit"}),
]
IDS = [f"{a}-{i}" for i, (a, _) in enumerate(SAMPLING)]


def ctx() -> AlgorithmContext:
    return AlgorithmContext(vocab_size=V, build_model=lambda: TableModel(V, positions=5, eos_at=3, seed=9))


def batch() -> TinyBatch:
    return TinyBatch(src=make_targets([[4, 5], [6], [5, 5, 4]]), tgt=make_targets([[4, 5, 6], [6, 4], [5, 5]]))


def perturbed(model: TableModel, seed: int = 1) -> TableModel:
    """The model after 'training': its table moved by a fixed random step."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        model.table.add_(0.5 * torch.randn(model.table.shape, generator=g))
    return model


def loss_at(algo, model, seed: int = 0):
    torch.manual_seed(seed)
    loss, stats = algo.loss(model, batch(), PROGRESS)
    return loss, stats, torch.autograd.grad(loss, [model.table])[0]


def direct_kl(model: TableModel, ref: TableModel, tokens: torch.Tensor) -> torch.Tensor:
    """Mean over rows of Σ_t Σ_w p(w | y_<t)(log p(w | y_<t) − log p_ref(w | y_<t)), position by position with
    the models' incremental step (no teacher-forced pass), skipping PAD and BOS (neither model emits them)."""
    from seqlab.models.base import mask_special

    total = torch.zeros(())
    for row in tokens.tolist():
        state_p, state_r = model.init_state(None), ref.init_state(None)
        prev = torch.tensor([1])  # BOS
        for tok in row:
            if tok == 0:
                break
            lp_logits, state_p = model.step(None, prev, state_p)
            lr_logits, state_r = ref.step(None, prev, state_r)
            lp = torch.log_softmax(mask_special(lp_logits), -1)[0]
            lr = torch.log_softmax(mask_special(lr_logits), -1)[0]
            keep = lp.isfinite()
            total = total + (lp[keep].exp() * (lp[keep] - lr[keep])).sum()
            prev = torch.tensor([tok])
    return total / tokens.size(0)


def test_the_kl_estimator_is_the_sequence_kl_in_expectation():
    """Σ_y p(y) Σ_t KL_t(y_<t) = KL(p || p_ref) over whole sequences (chain rule), on every sequence enumerated."""
    model, ref = TableModel(V, positions=4, eos_at=2, seed=0), TableModel(V, positions=4, eos_at=2, seed=3)
    model.requires_grad_(False)
    ref.requires_grad_(False)
    seqs = all_sequences_up_to([3, 4, 5, 6], 2)
    src = torch.zeros(len(seqs), 1, dtype=torch.long)
    enc = model.encode(src)
    lp, lr = model.token_log_probs(enc, seqs), ref.token_log_probs(enc, seqs)
    seq_lp, seq_lr = model.score(src, seqs).sum(1), ref.score(src, seqs).sum(1)
    p = seq_lp.exp()
    assert float(p.sum()) == pytest.approx(1.0, abs=1e-6)  # the enumeration covers the distribution
    estimate = (p * sequence_kl(lp, lr, seqs)).sum()
    exact = (p * (seq_lp - seq_lr)).sum()
    assert float(exact) > 0.1
    assert float(estimate) == pytest.approx(float(exact), rel=1e-5)
    assert float(direct_kl(model, ref, seqs[:5])) == pytest.approx(
        float(sequence_kl(lp, lr, seqs)[:5].mean()), rel=1e-5
    )


@pytest.mark.parametrize(("algorithm", "options"), SAMPLING, ids=IDS)
def test_kl_coef_adds_exactly_kl_coef_times_the_kl_estimate(algorithm, options):
    start = TableModel(V, positions=5, eos_at=3, seed=0)
    plain = build_algorithm(algorithm, ctx(), options)
    zero = build_algorithm(algorithm, ctx(), {**options, "kl_coef": 0.0})
    with_kl = build_algorithm(algorithm, ctx(), {**options, "kl_coef": 0.3})
    if algorithm in ("erac", "ac"):  # critic and target critic equal in every copy
        for algo in (zero, with_kl):
            algo.critic.load_state_dict(plain.critic.state_dict())
            algo.target_critic.load_state_dict(plain.target_critic.state_dict())
    first = copy.deepcopy(start)
    loss0, stats0, _ = loss_at(with_kl, first)  # the first step: the reference is the model itself
    assert stats0["kl"] == pytest.approx(0.0, abs=1e-6)
    model = perturbed(copy.deepcopy(start))  # a later step: the model has moved away from its start
    base, _, base_grad = loss_at(plain, copy.deepcopy(model))
    same, _, same_grad = loss_at(zero, copy.deepcopy(model))
    assert same.item() == base.item() and torch.equal(same_grad, base_grad)  # kl_coef = 0: the loss as before
    got, stats, grad = loss_at(with_kl, copy.deepcopy(model))
    assert stats["kl"] > 1e-3
    if algorithm not in ("interpolation", "mixer_anneal", "erpo"):  # those weigh without an advantage
        assert {"reward", "reward_std"} <= set(stats)
    assert got.item() == pytest.approx(base.item() + 0.3 * stats["kl"], rel=1e-6, abs=1e-6)
    # the KL estimate itself, computed directly on the same proposals (replayed from the same seed)
    tokens, group = proposals(with_kl, copy.deepcopy(model))
    with torch.no_grad():
        assert stats["kl"] == pytest.approx(float(direct_kl(model, start, tokens)), rel=1e-5)
    # and its gradient: kl_coef * d KL / d theta on top of the plain loss's
    probe = copy.deepcopy(model)
    src = batch().src
    kl_only = sequence_kl(
        probe.token_log_probs(probe.encode(src).select(group), tokens),
        start.token_log_probs(start.encode(src).select(group), tokens),
        tokens,
    ).mean()
    kl_grad = torch.autograd.grad(kl_only, [probe.table])[0]
    assert torch.allclose(grad, base_grad + 0.3 * kl_grad, atol=1e-5)


def proposals(algo, model) -> tuple[torch.Tensor, torch.Tensor]:
    """The sequences ``algo`` proposes at seed 0 and their source rows (the loss's random stream replayed)."""
    seen = {}
    original = algo.reference.kl

    def spy(model_, src, group, tokens, log_probs):
        seen.update(tokens=tokens, group=group)
        return original(model_, src, group, tokens, log_probs)

    algo.reference.kl = spy
    try:
        loss_at(algo, model)
    finally:
        del algo.reference.kl
    return seen["tokens"], seen["group"]


def test_the_reference_is_the_starting_model_and_survives_a_state_dict_round_trip():
    algo = build_algorithm("pg", ctx(), {"num_samples": 2, "kl_coef": 0.1, "reward": "neg_edit"})
    model = TableModel(V, positions=5, eos_at=3, seed=0)
    start = model.table.detach().clone()
    loss_at(algo, model)
    perturbed(model)
    loss_at(algo, model)
    assert torch.equal(algo.reference.model.table, start)  # frozen at the first step
    assert not any(p.requires_grad for p in algo.reference.parameters())
    fresh = build_algorithm("pg", ctx(), {"num_samples": 2, "kl_coef": 0.1, "reward": "neg_edit"})
    fresh.load_state_dict(algo.state_dict())  # a resumed run keeps the reference (and knows it is set)
    assert bool(fresh.reference.ready) and torch.equal(fresh.reference.model.table, start)
    with pytest.raises(ValueError, match="kl_coef must be >= 0"):
        build_algorithm("pg", ctx(), {"kl_coef": -1.0})
    with pytest.raises(ValueError, match="proposal: model"):
        build_algorithm("erpo", ctx(), {"kl_coef": 0.1})


def test_normalize_advantages_gives_zero_mean_unit_std_per_batch():
    adv = normalize_advantages(torch.tensor([3.0, -1.0, 0.5, 2.0, 2.0]))
    assert float(adv.mean()) == pytest.approx(0.0, abs=1e-6)
    assert float(adv.std(unbiased=False)) == pytest.approx(1.0, abs=1e-6)
    assert torch.equal(normalize_advantages(torch.ones(4)), torch.zeros(4))
    model = TableModel(V, positions=5, eos_at=3, seed=0)
    b = batch()
    enc = model.encode(b.src)
    tokens = make_targets([[4, 5, 6], [4], [6, 6], [5, 4], [5], [4, 4, 4]])
    group = torch.tensor([0, 0, 1, 1, 2, 2])
    reward = torch.tensor([0.1, 0.9, -2.0, 0.4, 0.3, 0.35])
    step = Step(model, b, enc, PROGRESS)
    cand = Candidates(tokens, group)
    for baseline in ("mean", "none"):
        plain = build_algorithm("pg", ctx(), {"baseline": baseline})
        normed = build_algorithm("pg", ctx(), {"baseline": baseline, "normalize_advantages": True})
        w, wn = plain.weigh(cand, reward, None, step), normed.weigh(cand, reward, None, step)
        assert float(wn.coef.mean()) == pytest.approx(0.0, abs=1e-6)
        assert float(wn.coef.std(unbiased=False)) == pytest.approx(1.0, abs=1e-6)
        assert torch.allclose(wn.coef, normalize_advantages(w.coef))  # the same advantages, whitened
        assert wn.stats["reward_std"] == pytest.approx(float(reward.std(unbiased=False)))
    mixer = build_algorithm("mixer", ctx(), {"prefix": 1, "normalize_advantages": True})
    components = torch.where(tokens.ne(0), torch.full_like(tokens, 1), torch.zeros_like(tokens))
    components[:, 0] = 3  # a data prefix of one token
    wm = mixer.weigh(Candidates(tokens, group, components=components), reward, None, step)
    sampled = wm.coef[:, 1]  # rows with a sampled token at position 1 (PAD elsewhere: 0)
    assert torch.allclose(wm.coef[:, 0], torch.ones(6))
    adv = reward - torch.tensor([0.5, 0.5, -0.8, -0.8, 0.325, 0.325])
    assert torch.allclose(
        sampled[tokens[:, 1].ne(0) & tokens[:, 1].ne(2)],
        normalize_advantages(adv)[tokens[:, 1].ne(0) & tokens[:, 1].ne(2)],
        atol=1e-6,
    )
    spg, spg_n = (
        build_algorithm("spg", ctx(), {"alpha": 0.5}),
        build_algorithm("spg", ctx(), {"alpha": 0.5, "normalize_advantages": True}),
    )
    assert torch.allclose(
        spg_n.weigh(cand, reward, None, step).coef, spg.weigh(cand, normalize_advantages(reward), None, step).coef
    )


def test_erac_normalized_coefficients_are_zero_mean_unit_std_under_the_policy():
    torch.manual_seed(0)
    n, t = 3, 4
    pad = torch.zeros(V)
    pad[:2] = float("-inf")  # PAD and BOS: never emitted (mask_special)
    logits = torch.randn(n, t, V, requires_grad=True)
    log_pi = torch.log_softmax(logits + pad, -1).detach()
    q = 3 * torch.randn(n, t, V)
    valid = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0], [1, 1, 1, 0]], dtype=torch.bool)
    coef = normalized_actor_coefficients(log_pi, q, 0.1, valid)
    probs = log_pi.exp()
    adv = torch.where(probs > 0, coef / probs.clamp_min(1e-30), torch.zeros_like(coef))
    mean = (probs * adv).sum(-1)
    assert torch.allclose(mean, torch.zeros_like(mean), atol=1e-5)  # zero mean under pi at every position
    var = ((probs * adv.pow(2)).sum(-1) * valid).sum() / valid.sum()
    assert float(var) == pytest.approx(1.0, rel=1e-5)
    # the gradient is the plain coefficients' gradient divided by sigma (computed here from Q and log pi)
    finite = probs > 0
    plain_adv = torch.where(finite, q - 0.1 * log_pi, torch.zeros_like(q))
    centred = torch.where(finite, plain_adv - (probs * plain_adv).sum(-1, keepdim=True), torch.zeros_like(q))
    sigma = float((((probs * centred.pow(2)).sum(-1) * valid).sum() / valid.sum()).sqrt())
    assert torch.allclose(coef, probs * centred / sigma, atol=1e-5)
    tokens = torch.tensor([[4, 5, 6, 2], [5, 2, 0, 0], [6, 6, 2, 0]])
    plain = actor_coefficients(log_pi, q, 0.1)

    def grad_of(dense: torch.Tensor) -> torch.Tensor:  # as ERAC's actor term: the coefficients' own policy
        lp = finite_log_probs(torch.log_softmax(logits + pad, -1))
        return torch.autograd.grad(one_loss(lp, tokens, Coefficients(dense=dense, normalizer=1)), logits)[0]

    g_plain, g_norm = grad_of(plain), grad_of(coef)
    assert torch.allclose(g_norm * sigma, g_plain, atol=1e-4)


def test_the_trainer_logs_kl_and_reward_std_and_keeps_the_start_as_reference(tmp_path):
    from seqlab.api import train
    from seqlab.train import checkpoint

    config = write_task(tmp_path)
    mle = train(config, {"run_dir": str(tmp_path / "mle"), "train.max_steps": 4})
    with pytest.warns(UserWarning, match="fine-tunes"):  # lr 0.01: so that 4 steps move the model visibly
        pg = train(
            config,
            {
                "run_dir": str(tmp_path / "pg"),
                "train.init_from": mle["checkpoint"],
                "train.lr": 0.01,
                "algorithm.name": "pg",
                "algorithm.options.num_samples": 2,
                "train.max_steps": 4,
                "algorithm.options.kl_coef": 0.05,
                "algorithm.options.normalize_advantages": True,
            },
        )
    records = [json.loads(line) for line in (tmp_path / "pg" / "log.jsonl").read_text().splitlines()]
    train_records = [r for r in records if r["kind"] == "train"]
    assert len(train_records) == 4
    assert all({"kl", "reward", "reward_std"} <= set(r) for r in train_records)
    assert train_records[0]["kl"] == pytest.approx(0.0, abs=1e-6) and train_records[-1]["kl"] > 0
    start = checkpoint.load(mle["checkpoint"])["model"]
    state = checkpoint.load(tmp_path / "pg" / "checkpoint_last.pt")
    for name, value in start.items():
        assert torch.equal(state["algorithm"][f"reference.model.{name}"], value), name
    assert pg["steps"] == 4


def test_the_self_critical_baseline_decodes_eagerly(monkeypatch):
    """Training batches have more shapes than the CUDA-graph cache holds: PG's greedy baseline asks for the eager
    search (static=False), and its reward is the greedy decode's."""
    import seqlab.algorithms.policy as policy

    calls = []
    real = policy.greedy_search

    def spy(model, src, **kw):
        calls.append(kw.get("static"))
        return real(model, src, **kw)

    monkeypatch.setattr(policy, "greedy_search", spy)
    algo = build_algorithm("pg", ctx(), {"num_samples": 2, "baseline": "greedy", "reward": "neg_edit"})
    model = ctx().build_model()
    loss, stats, _ = loss_at(algo, model)
    assert calls == [False] and torch.isfinite(loss) and "advantage_abs" in stats
