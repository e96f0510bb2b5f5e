"""NAT, imitate-NAT and the demonstrator: copying, imitation losses, decoding, algorithms, distillation."""

from __future__ import annotations

import math

import helpers
import pytest
import torch
import torch.nn.functional as F

from seqlab.data.vocab import EOS_ID, PAD_ID
from seqlab.decoding import beam_search
from seqlab.models import build_model, shift_right
from seqlab.models.base import Encoded
from seqlab.nat.decoding import length_parallel_decode, nat_candidates, rescore
from seqlab.nat.imitation import action_regularizer, imitation_kl, redistribute
from seqlab.nat.models import init_from_teacher, scaled_copy_stride, soft_copy_weights, uniform_copy_indices

V = 29
SMALL = dict(d_model=32, n_heads=4, ffn_dim=64, encoder_layers=2, decoder_layers=2, dropout=0.0, n_actions=8)


def make(arch: str, seed: int = 0, **extra):
    torch.manual_seed(seed)
    return build_model(arch, V, V, **{**SMALL, **extra}).eval()


def batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(4, V, (3, 8), generator=g)
    tgt = torch.randint(4, V, (3, 7), generator=g)
    for row, (ls, lt) in enumerate([(8, 7), (5, 3), (3, 5)]):
        src[row, ls - 1], src[row, ls:] = EOS_ID, PAD_ID
        tgt[row, lt - 1], tgt[row, lt:] = EOS_ID, PAD_ID
    return src, tgt


# ------------------------------------------------------------------------------------------ copying
def test_uniform_copy_indices():
    idx = uniform_copy_indices(torch.tensor([4, 6, 5, 3]), torch.tensor([8, 3, 2, 6]), 8)
    assert idx[0].tolist() == [0, 1, 1, 2, 2, 3, 3, 4]  # round(4t/8), half-up
    assert idx[1, :3].tolist() == [0, 2, 4]  # round(6t/3)
    assert idx[2, :2].tolist() == [0, 3]  # round(2.5) = 3, not banker's 2
    assert idx[3, :6].tolist() == [0, 1, 1, 2, 2, 3]  # round(3t/6): 0, .5, 1, 1.5, 2, 2.5
    assert idx[1, 3:].eq(0).all() and idx[2, 2:].eq(0).all()  # padding positions


def test_soft_copy_weights_follow_formula_and_sum_to_one():
    pad = torch.tensor([[False] * 5, [False, False, False, True, True]])
    tau = torch.tensor(0.7, requires_grad=True)
    w = soft_copy_weights(6, pad, tau)
    assert w.shape == (2, 6, 5)
    assert torch.allclose(w.sum(-1), torch.ones(2, 6))
    for b, n in ((0, 5), (1, 3)):
        for t in range(6):
            e = torch.tensor([math.exp(-abs(t - j) / 0.7) for j in range(n)])
            assert torch.allclose(w[b, t, :n], e / e.sum(), atol=1e-6)
            assert w[b, t, n:].eq(0).all()
    w[0, 0, 0].backward()
    assert tau.grad is not None and tau.grad.abs() > 0  # τ is learnable


@pytest.mark.parametrize("copy", ["uniform", "softcopy"])
def test_nat_decoder_inputs_copy_source_embeddings_by_default(copy):
    """The papers (Gu et al. 2018, Wei et al. 2019) and fairseq copy the scaled source embeddings; ``copy_source:
    encoder`` copies the top encoder states."""
    src, _ = batch()
    lengths = torch.tensor([4, 2, 6])
    idx = uniform_copy_indices(torch.tensor([7, 4, 2]), lengths, 6)  # S′ = source tokens without EOS
    for source in ("embeddings", "encoder"):
        model = make("nat", copy=copy) if source == "embeddings" else make("nat", copy=copy, copy_source=source)
        enc = model.encode(src)
        states = enc.memory if source == "encoder" else model.encoder.embed(src) * math.sqrt(32)
        assert not torch.allclose(states, enc.memory if source == "embeddings" else model.encoder.embed(src))
        x = model.decoder_inputs(enc, lengths)
        if copy == "uniform":
            for b in range(3):
                for t in range(int(lengths[b])):
                    assert torch.equal(x[b, t], states[b, idx[b, t]])
        else:
            w = soft_copy_weights(6, enc.pad_mask, model.tau)
            assert torch.allclose(x, torch.bmm(w, states), atol=1e-6)


def test_scaled_soft_copy_maps_first_and_last_positions_onto_each_other():
    """``softcopy_positions: scaled``: c_t = t (S′ − 1) / (L − 1), fairseq's uniform assignment unrounded."""
    pad = torch.tensor([[False] * 9, [False] * 4 + [True] * 5, [False] * 3 + [True] * 6])  # S′ = 8, 3, 2
    src_lengths, tgt_lengths = torch.tensor([8, 3, 2]), torch.tensor([4, 3, 1])
    stride = scaled_copy_stride(src_lengths, tgt_lengths)
    assert stride.tolist() == pytest.approx([7 / 3, 1.0, 0.0])
    w = soft_copy_weights(4, pad, 0.5, stride)
    for b, (s, n) in enumerate([(9, 4), (4, 3), (3, 1)]):
        for t in range(n):
            center = t * float(stride[b])
            e = torch.tensor([math.exp(-abs(center - j) / 0.5) for j in range(s)])
            assert torch.allclose(w[b, t, :s], e / e.sum(), atol=1e-6)
    assert w[0, 3].argmax() == 7 and w[0, 0].argmax() == 0  # last target position <-> last source token
    assert torch.allclose(w[1, :3], soft_copy_weights(3, pad[1:2], 0.5)[0], atol=1e-6)  # S′ = L: unscaled
    model = make("nat", softcopy_positions="scaled")
    src, _ = batch()
    enc = model.encode(src)
    lengths = torch.tensor([3, 6, 2])
    want = soft_copy_weights(6, enc.pad_mask, model.tau, scaled_copy_stride(torch.tensor([7, 4, 2]), lengths))
    assert torch.allclose(model.decoder_inputs(enc, lengths), torch.bmm(want, enc.extra["embedded"]), atol=1e-6)


def test_nat_initialisation_does_not_depend_on_memory_addresses(monkeypatch):
    """With unshared embeddings the two tables are drawn in a fixed order (a set's order follows the objects'
    hashes, i.e. their addresses): force both orders of the old set and get the same weights."""
    from torch import nn

    def build():
        torch.manual_seed(0)
        return build_model("nat", V, V + 2, **SMALL).state_dict()

    monkeypatch.setattr(nn.Embedding, "__hash__", lambda self: self.num_embeddings)  # slots 29 & 7, 31 & 7
    first = build()
    monkeypatch.setattr(nn.Embedding, "__hash__", lambda self: -self.num_embeddings)  # the other order
    second = build()
    assert not torch.equal(first["encoder.embed.weight"][:V], first["tgt_embed.weight"][:V])
    assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)


# ------------------------------------------------------------------------------------------ NAT decoder
def test_nat_decoder_is_non_causal_and_runs_once_per_batch():
    model = make("nat")
    assert all(not layer.causal for layer in model.layers)
    src, _ = batch()
    enc = model.encode(src)
    lengths = torch.tensor([5, 5, 5])
    base = model.decoder_inputs(enc, lengths)
    logits, _ = model.decode_with_actions(enc, lengths)
    bump = torch.zeros_like(base)
    bump[:, 4] = torch.randn(3, 32)  # change the decoder input at the last position only
    model.decoder_inputs = lambda enc, lengths, width=None: base + bump
    changed, _ = model.decode_with_actions(enc, lengths)
    del model.decoder_inputs
    assert not torch.allclose(logits[:, 0], changed[:, 0])  # position 0 sees position 4

    calls = []
    model.layers[0].register_forward_hook(lambda *args: calls.append(1))
    out = model.generate(src)
    assert len(calls) == 1
    assert out.tokens.size(0) == 3
    model.cfg.length_delta = 2
    calls.clear()
    model.generate(src)
    assert len(calls) == 1  # all 2ΔT+1 candidates of all sources in one pass


def test_nat_score_is_the_nat_factorisation():
    model = make("nat", copy="uniform")
    src, tgt = batch()
    scores = model.score(src, tgt).detach()
    enc = model.encode(src)
    lengths = tgt.ne(PAD_ID).sum(1) - 1
    logp = model.log_probs(enc, lengths)
    len_logp = F.log_softmax(model.length_logits(enc), -1)
    for b in range(3):
        n = int(lengths[b])
        want = sum(float(logp[b, t, tgt[b, t]].detach()) for t in range(n))
        want += float(len_logp[b, model.length_to_class(enc, lengths)[b]].detach())
        assert float(scores[b].sum()) == pytest.approx(want, abs=1e-4)
        assert scores[b, n + 1 :].eq(0).all()


def test_nat_length_classes_round_trip():
    for mode in ("offset", "absolute"):
        model = make("nat", length_mode=mode, max_length_offset=4)
        src, _ = batch()
        enc = model.encode(src)
        lengths = torch.tensor([9, 2, 5])  # S′ = 7, 4, 2
        back = model.class_to_length(enc, model.length_to_class(enc, lengths))
        assert back.tolist() == lengths.tolist()


# ------------------------------------------------------------------------------------------ DAT
def test_dat_keeps_the_autoregressive_protocol():
    model = make("dat")
    src, tgt = batch()
    enc = model.encode(src)
    full, log_pis = model.decode_with_actions(enc, shift_right(tgt))
    assert len(log_pis) == 2 and log_pis[0].shape == (3, 7, 8)
    assert torch.allclose(log_pis[0].exp().sum(-1), torch.ones(3, 7), atol=1e-5)
    state, steps = model.init_state(enc), []
    for t in range(tgt.size(1)):
        logits, state = model.step(enc, shift_right(tgt)[:, t], state)
        steps.append(logits)
    assert torch.allclose(torch.stack(steps, 1), full, atol=1e-5)
    assert torch.allclose(model.decode(enc, shift_right(tgt)), full)
    hyp = beam_search(model, src, beam_size=3, max_len=12)
    assert hyp.tokens.size(0) == 3
    assert model.score(src, tgt).shape == tgt.shape


def test_imitation_module_adds_the_expected_action_embedding():
    model = make("dat", decoder_layers=1)
    module = model.imitation[0]
    x = torch.randn(2, 3, 32)
    u, log_pi = module(x)
    pi = F.softmax(module.policy(module.norm(x)), -1)
    assert torch.allclose(log_pi.exp(), pi, atol=1e-6)
    assert torch.allclose(u, pi @ module.actions, atol=1e-6)


def test_init_from_teacher_copies_matching_weights():
    teacher, student = make("dat", seed=1), make("nat", seed=2, imitation=True)
    copied = init_from_teacher(student, teacher)
    t = teacher.state_dict()
    for name, value in student.state_dict().items():
        if name in copied:
            assert torch.equal(value, t[name])
    assert "layers.1.self_attn.qkv.weight" in copied and "imitation.1.actions" in copied
    assert "encoder.layers.0.attn.qkv.weight" in copied and "tgt_embed.weight" in copied
    assert "length_head.weight" not in copied


def test_nat_algorithm_starts_from_the_demonstrator(monkeypatch):
    """``nat`` with ``init_from`` (and ``imitate_nat`` at any imitation weight, 0 included): at the first step
    the NAT's embeddings, encoder, decoder layers and output norm (and imitation modules, when it has them)
    equal the demonstrator's; the length head keeps its own; a resumed run is not re-initialised."""
    from tiny import TinyBatch

    import seqlab.inference
    from seqlab.algorithms.base import AlgorithmContext, Progress, build_algorithm
    from seqlab.inference import LoadedModel

    teacher = make("dat", seed=1)
    teacher_state = {k: v.clone() for k, v in teacher.state_dict().items()}
    loaded = LoadedModel(None, teacher, None, None, torch.device("cpu"))
    monkeypatch.setattr(seqlab.inference, "load_checkpoint_model", lambda path, device: loaded)
    src, tgt = batch()
    ctx = AlgorithmContext(vocab_size=V)
    for name, options, imitation in [
        ("nat", {"init_from": "dat.pt"}, False),
        ("imitate_nat", {"teacher": "dat.pt", "imitation_weight": 0.0}, True),
    ]:
        student = make("nat", seed=2, imitation=imitation).train()
        fresh = {k: v.clone() for k, v in student.state_dict().items()}
        algo = build_algorithm(name, ctx, options)
        algo.loss(student, TinyBatch(src, tgt), Progress())
        state = student.state_dict()
        shared = [k for k in state if k in teacher_state]
        assert {
            "tgt_embed.weight",
            "encoder.embed.weight",
            "encoder.layers.1.ffn.0.weight",
            "encoder.norm.weight",
            "layers.1.self_attn.qkv.weight",
            "layers.0.cross_attn.kv.bias",
            "layers.1.norm3.weight",
            "norm.weight",
        } <= set(shared)
        assert any(k.startswith("imitation.") for k in shared) == imitation
        assert all(torch.equal(state[k], teacher_state[k]) for k in shared)
        assert torch.equal(state["length_head.weight"], fresh["length_head.weight"])
        assert int(algo.initialized) == 1
        resumed = build_algorithm(name, ctx, options)
        resumed._host["initialized"] = 0  # a host copy read before the state loaded: the load drops it
        resumed.load_state_dict(algo.state_dict())
        with torch.no_grad():
            student.layers[0].ffn[0].weight.add_(1.0)  # "trained" since
        resumed.loss(student, TinyBatch(src, tgt), Progress())
        assert not torch.equal(student.layers[0].ffn[0].weight, teacher_state["layers.0.ffn.0.weight"])
    plain = build_algorithm("nat", ctx, {})
    assert "initialized" not in plain.state_dict()  # runs without init_from keep their checkpoint layout


# ------------------------------------------------------------------------------------------ losses
def test_redistribution_and_regularizer_kl():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 5, generator=g, requires_grad=True)
    usage = torch.tensor([0.1, 0.3, 0.2, 0.25, 0.15])
    pi = logits.softmax(-1)
    target = redistribute(pi.detach(), usage)
    manual = pi.detach() ** 2 / usage
    assert torch.allclose(target, manual / manual.sum(-1, keepdim=True))
    mask = torch.tensor([[4, 4, 2], [4, 2, PAD_ID]])  # last position padding
    n = 5
    loss = action_regularizer(F.log_softmax(logits, -1), usage, mask, n)
    valid = mask.ne(PAD_ID).float()
    kl = (target * (target.log() - pi.detach().log())).sum(-1)
    assert loss.item() == pytest.approx(float((kl * valid).sum() / n), abs=1e-6)
    loss.backward()
    # gradient of CE(π′, π) with π′ fixed: (π − π′) / n at valid positions
    assert torch.allclose(logits.grad, (pi.detach() - target) * valid.unsqueeze(-1) / n, atol=1e-6)


def test_regularizer_sharpens_and_rebalances():
    pi = torch.tensor([[0.5, 0.3, 0.2]])
    sharper = redistribute(pi, torch.ones(3) / 3)
    assert sharper[0, 0] > pi[0, 0] and sharper[0, 2] < pi[0, 2]
    rebalanced = redistribute(pi, torch.tensor([0.8, 0.1, 0.1]))  # category 0 over-used
    assert rebalanced[0, 0] < sharper[0, 0]


def test_imitation_loss_zero_for_equal_distributions_and_right_gradient():
    g = torch.Generator().manual_seed(1)
    student_logits = torch.randn(2, 4, 6, generator=g, requires_grad=True)
    mask = torch.tensor([[5, 5, 5, 5], [5, 5, PAD_ID, PAD_ID]])
    same = F.softmax(student_logits.detach(), -1)
    zero = imitation_kl(F.log_softmax(student_logits, -1), same, mask, 6)
    assert abs(zero.item()) < 1e-6
    teacher = torch.randn(2, 4, 6, generator=g).softmax(-1)
    loss = imitation_kl(F.log_softmax(student_logits, -1), teacher, mask, 6)
    valid = mask.ne(PAD_ID).float()
    ce = -(teacher * F.log_softmax(student_logits.detach(), -1)).sum(-1)
    ent = -(teacher * teacher.log()).sum(-1)
    assert float(loss) == pytest.approx(float(((ce - ent) * valid).sum() / 6), abs=1e-5)
    assert float(loss) > 0
    loss.backward()
    expected = (same - teacher) * valid.unsqueeze(-1) / 6  # d CE / d logits = π_NAT − π_AT
    assert torch.allclose(student_logits.grad, expected, atol=1e-6)


# ------------------------------------------------------------------------------------------ decoding
class LengthTeacher:
    """A fake AR teacher whose log-likelihood prefers length ``want[b]`` for source b."""

    def __init__(self, want: list[int]):
        self.want, self.calls = want, 0

    def encode(self, src: torch.Tensor) -> Encoded:
        return Encoded(src.float().unsqueeze(-1), src.eq(PAD_ID), {"row": torch.arange(src.size(0))})

    def score(self, src: torch.Tensor, tgt: torch.Tensor, enc: Encoded | None = None) -> torch.Tensor:
        self.calls += 1
        lengths = tgt.ne(PAD_ID).sum(1) - 1
        want = torch.tensor(self.want)[enc.extra["row"]]
        per_token = -(lengths - want).abs().float() / (lengths + 1).float()
        return per_token[:, None].expand_as(tgt).masked_fill(tgt.eq(PAD_ID), 0.0)


def test_length_parallel_decoding_candidates_and_teacher_choice():
    model = make("nat")
    src, _ = batch()
    cands = nat_candidates(model, src, delta_t=3)
    assert cands.per_source == 7 and cands.tokens.size(0) == 3 * 7
    predicted = model.predict_lengths(model.encode(src))
    for b in range(3):
        lengths = cands.lengths[b * 7 : (b + 1) * 7]
        assert lengths.tolist() == (predicted[b] + torch.arange(-3, 4)).clamp(min=1).tolist()
        for k, n in enumerate(lengths.tolist()):
            row = cands.tokens[b * 7 + k]
            assert row[n] == EOS_ID and row[:n].ne(EOS_ID).all() and row[:n].ne(PAD_ID).all()
    want = [int(predicted[0]) + 2, max(int(predicted[1]) - 3, 1), int(predicted[2])]
    teacher = LengthTeacher(want)
    best = length_parallel_decode(model, src, delta_t=3, teacher=teacher)
    assert teacher.calls == 1  # one scoring batch for all candidates
    got = best.tokens.ne(PAD_ID).sum(1) - 1
    assert got.tolist() == want


def test_length_parallel_decoding_with_a_real_teacher_picks_its_best():
    nat, teacher = make("nat", seed=3), make("dat", seed=4)
    src, _ = batch()
    best = length_parallel_decode(nat, src, delta_t=2, teacher=teacher, normalize=True)
    cands = nat_candidates(nat, src, delta_t=2)
    scores = rescore(cands, src, teacher=teacher, normalize=True)
    for b in range(3):
        one_by_one = []
        for k in range(5):
            row = cands.tokens[b * 5 + k : b * 5 + k + 1]
            row = row[:, : int(row.ne(PAD_ID).sum())]
            one_by_one.append(float(teacher.score(src[b : b + 1], row).sum()) / row.size(1))
        assert scores[b].tolist() == pytest.approx(one_by_one, abs=1e-4)
        k = max(range(5), key=lambda i: one_by_one[i])
        chosen = cands.tokens[b * 5 + k]
        n = int(chosen.ne(PAD_ID).sum())
        assert best.tokens[b, :n].tolist() == chosen[:n].tolist()


@pytest.mark.parametrize(
    "options",
    [
        dict(copy="softcopy"),
        dict(copy="uniform"),
        dict(copy="softcopy", length_mode="absolute", max_positions=40),
        dict(copy="softcopy", softcopy_positions="scaled", copy_source="encoder"),
        dict(copy="uniform", copy_source="encoder"),
    ],
)
@pytest.mark.parametrize("delta_t,with_teacher,dedupe", [(0, False, False), (2, True, False), (1, False, True)])
def test_fixed_shape_decode_equals_the_eager_one(options, delta_t, with_teacher, dedupe):
    from seqlab.nat.graphs import CapturedNATDecoder

    nat, teacher = make("nat", seed=5, **options), make("dat", seed=6)
    teacher = teacher if with_teacher else None
    src, _ = batch(seed=2)
    want = length_parallel_decode(nat, src, delta_t, teacher=teacher, dedupe=dedupe, max_len=30, graphs=False)
    for rows, width in [(3, 8), (4, 16)]:  # the exact shape, and padded rows and source positions
        fixed = CapturedNATDecoder(
            nat, teacher, rows, width, delta_t, max_len=30, normalize=True, dedupe=dedupe, graph=False
        )
        tokens, scores, lengths = fixed(src)
        assert tokens.shape == (3, fixed.run.keywords["width"] + 1)
        assert tokens[:, : want.tokens.size(1)].tolist() == want.tokens.tolist()
        assert tokens[:, want.tokens.size(1) :].eq(PAD_ID).all()
        assert lengths.tolist() == (want.tokens.ne(PAD_ID).sum(1) - 1).tolist()
        assert scores.tolist() == pytest.approx(want.scores.tolist(), abs=1e-5)


def test_fixed_shape_decode_never_waits_for_the_device():
    """A full-graph trace fails on any host read of a tensor value (``int(t)``, ``.item()``, data-dependent
    shapes): what traces whole can be captured as one CUDA graph."""
    from seqlab.nat.decoding import best_candidates, candidate_width

    nat, teacher = make("nat", seed=5), make("dat", seed=6)
    src, _ = batch(seed=2)
    width = candidate_width(nat, src.size(1), 2, max_len=30)
    traced = torch.compile(best_candidates, backend="eager", fullgraph=True, dynamic=False)
    got = traced(nat, src, 2, teacher, True, 30, False, width)
    want = best_candidates(nat, src, 2, teacher, True, 30, False, width)
    assert [g.tolist() for g in got] == [w.tolist() for w in want]
    # the check has teeth: without a fixed width the decode reads max(L) on the host
    with pytest.raises(torch._dynamo.exc.TorchDynamoException):
        torch.compile(best_candidates, backend="eager", fullgraph=True, dynamic=False)(
            nat, src, 2, teacher, True, 30, False, None
        )


def test_self_rescoring_after_repeat_removal_divides_by_the_decoded_length():
    """Without a teacher a candidate's score is the NAT's mean log-probability over the L positions it decoded;
    repeat removal shortens the output, not the positions that were scored."""
    model = make("nat", seed=7, copy="uniform")
    src, _ = batch(seed=3)
    plain = nat_candidates(model, src, delta_t=2)
    deduped = nat_candidates(model, src, delta_t=2, dedupe=True)
    assert deduped.lengths.lt(plain.lengths).any()  # repeats were removed somewhere
    assert torch.equal(deduped.nat_scores, plain.nat_scores)
    want = (plain.nat_scores / plain.lengths.float()).view(3, 5)
    assert torch.allclose(rescore(deduped, src, normalize=True), want)
    assert torch.allclose(rescore(plain, src, normalize=True), want)
    best = length_parallel_decode(model, src, delta_t=2, dedupe=True, graphs=False)
    assert torch.allclose(best.scores, want.max(1).values)


def test_generate_uses_attached_rescorer():
    model = make("nat", length_delta=1)
    src, _ = batch()
    enc = model.encode(src)
    predicted = model.predict_lengths(enc)
    model.set_rescorer(LengthTeacher((predicted + 1).tolist()))
    out = model.generate(src)
    assert (out.tokens.ne(PAD_ID).sum(1) - 1).tolist() == (predicted + 1).tolist()
    assert "_rescorer" not in dict(model.named_modules())


# ------------------------------------------------------------------------------------------ algorithms
def test_nat_algorithm_loss_is_finite_with_label_smoothing_and_learns_lengths():
    from tiny import TinyBatch

    from seqlab.algorithms.base import AlgorithmContext, Progress, build_algorithm

    model = make("nat", copy="uniform").train()
    src, tgt = batch()
    ctx = AlgorithmContext(vocab_size=V, label_smoothing=0.1)
    algo = build_algorithm("nat", ctx, {"length_loss_weight": 1.0})
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    first = None
    for _ in range(30):
        loss, stats = algo.loss(model, TinyBatch(src, tgt), Progress())
        assert torch.isfinite(loss)
        first = float(loss) if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss) < first and float(stats["length_acc"]) == 1.0
    model.eval()
    assert (model.generate(src).tokens.ne(PAD_ID).sum(1) - 1).tolist() == [6, 2, 4]


def test_dat_algorithm_keeps_the_usage_average_as_state():
    from tiny import TinyBatch

    from seqlab.algorithms.base import AlgorithmContext, Progress, build_algorithm

    model = make("dat").train()
    src, tgt = batch()
    algo = build_algorithm("dat", AlgorithmContext(vocab_size=V), {"momentum": 0.5})
    loss, stats = algo.loss(model, TinyBatch(src, tgt), Progress())
    assert algo.usage.shape == (2, 8)
    _, log_pis = model.decode_with_actions(model.encode(src), shift_right(tgt))
    valid = tgt.ne(PAD_ID).unsqueeze(-1).float()
    batch_mean = (log_pis[0].exp().detach() * valid).sum((0, 1)) / valid.sum()
    assert torch.allclose(algo.usage[0], 0.5 / 8 + 0.5 * batch_mean, atol=1e-6)
    assert torch.allclose(algo.usage.sum(-1), torch.ones(2), atol=1e-5)
    assert float(stats["action_kl"]) > 0 and torch.isfinite(loss)
    fresh = build_algorithm("dat", AlgorithmContext(vocab_size=V), {})
    fresh.load_state_dict(algo.state_dict())
    assert torch.equal(fresh.usage, algo.usage)


# ------------------------------------------------------------------------------------------ exact losses
def _token_nll(logits: torch.Tensor, targets: torch.Tensor, excluded: tuple[int, ...]) -> torch.Tensor:
    """Mean −log p(y_t) over the non-PAD ``targets``, with the ``excluded`` ids removed from the softmax."""
    logits = logits.float().clone()
    logits[..., list(excluded)] = float("-inf")
    picked = F.log_softmax(logits, -1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    valid = targets.ne(PAD_ID)
    return -picked.masked_fill(~valid, 0.0).sum() / valid.sum()


def _layer_kl(target: torch.Tensor, log_q: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Σ_t KL(target_t ‖ q_t) over the non-PAD ``targets`` / their count."""
    valid = targets.ne(PAD_ID).float()
    kl = (target * (target.log() - log_q)).sum(-1)
    return (kl * valid).sum() / valid.sum()


def test_nat_loss_is_the_token_nll_at_the_reference_length_plus_the_weighted_length_nll():
    """``nat`` by hand: −mean log p(y*_t) over the reference without EOS (PAD, BOS and EOS excluded from the
    softmax), decoded at the reference length, plus length_loss_weight × the length-class cross-entropy."""
    from tiny import TinyBatch

    from seqlab.algorithms.base import AlgorithmContext, Progress, build_algorithm
    from seqlab.data.vocab import BOS_ID

    model = make("nat", copy="uniform")
    src, tgt = batch()
    algo = build_algorithm("nat", AlgorithmContext(vocab_size=V, label_smoothing=0.0), {"length_loss_weight": 0.3})
    loss, _ = algo.loss(model, TinyBatch(src, tgt), Progress())
    lengths = torch.tensor([6, 2, 4])  # the reference lengths without EOS
    body = tgt[:, :6].masked_fill(tgt[:, :6].eq(EOS_ID), PAD_ID)
    enc = model.encode(src)
    logits, _ = model.decode_with_actions(enc, lengths)
    nll = _token_nll(logits, body, (PAD_ID, BOS_ID, EOS_ID))
    length_nll = F.cross_entropy(model.length_logits(enc), model.length_to_class(enc, lengths))
    assert loss.item() == pytest.approx((nll + 0.3 * length_nll).item(), rel=1e-5)


def test_imitate_nat_loss_is_the_nat_loss_plus_the_weighted_sum_of_layer_kls(monkeypatch):
    """``imitate_nat`` by hand: the ``nat`` loss plus imitation_weight × Σ_layers KL(π_AT ‖ π_NAT) over the
    reference tokens without EOS, π_AT from the demonstrator under teacher forcing."""
    from tiny import TinyBatch

    import seqlab.inference
    from seqlab.algorithms.base import AlgorithmContext, Progress, build_algorithm
    from seqlab.inference import LoadedModel

    teacher = make("dat", seed=1)
    loaded = LoadedModel(None, teacher, None, None, torch.device("cpu"))
    monkeypatch.setattr(seqlab.inference, "load_checkpoint_model", lambda path, device: loaded)
    student = make("nat", seed=2, imitation=True)
    src, tgt = batch()
    ctx = AlgorithmContext(vocab_size=V, label_smoothing=0.0)
    options = {"length_loss_weight": 0.3}
    imitate = build_algorithm(
        "imitate_nat", ctx, {**options, "teacher": "dat.pt", "imitation_weight": 0.5, "init_from_teacher": False}
    )
    loss, stats = imitate.loss(student, TinyBatch(src, tgt), Progress())
    nat_loss, _ = build_algorithm("nat", ctx, options).loss(student, TinyBatch(src, tgt), Progress())
    body = tgt[:, :6].masked_fill(tgt[:, :6].eq(EOS_ID), PAD_ID)
    _, student_log_pis = student.decode_with_actions(student.encode(src), torch.tensor([6, 2, 4]))
    _, teacher_log_pis = teacher.decode_with_actions(teacher.encode(src), shift_right(tgt))
    kl = sum(_layer_kl(t[:, :6].exp(), s[:, :6], body) for s, t in zip(student_log_pis, teacher_log_pis, strict=True))
    assert len(student_log_pis) == 2 and kl.item() > 0
    assert stats["imitation_kl"].item() == pytest.approx(kl.item(), rel=1e-5)
    assert loss.item() == pytest.approx((nat_loss + 0.5 * kl).item(), rel=1e-5)


def test_dat_loss_is_mle_plus_the_weighted_kl_to_the_redistributed_actions():
    """``dat`` by hand (eval mode, so the usage c stays uniform): −mean log p(y*_t) over the reference with EOS
    (PAD and BOS excluded) plus regularizer_weight × Σ_layers KL(π′ ‖ π), π′ ∝ π² / c."""
    from tiny import TinyBatch

    from seqlab.algorithms.base import AlgorithmContext, Progress, build_algorithm
    from seqlab.data.vocab import BOS_ID

    model = make("dat")
    src, tgt = batch()
    algo = build_algorithm("dat", AlgorithmContext(vocab_size=V, label_smoothing=0.0), {"regularizer_weight": 0.2})
    loss, _ = algo.loss(model, TinyBatch(src, tgt), Progress())
    logits, log_pis = model.decode_with_actions(model.encode(src), shift_right(tgt))
    nll = _token_nll(logits, tgt, (PAD_ID, BOS_ID))
    uniform = torch.full((log_pis[0].size(-1),), 1.0 / log_pis[0].size(-1))
    assert torch.equal(algo.usage, uniform.expand(len(log_pis), -1))
    reg = 0.0
    for log_pi in log_pis:
        sharpened = log_pi.exp() ** 2 / uniform
        reg = reg + _layer_kl(sharpened / sharpened.sum(-1, keepdim=True), log_pi, tgt)
    assert reg.item() > 0
    assert loss.item() == pytest.approx((nll + 0.2 * reg).item(), rel=1e-5)


# ------------------------------------------------------------------------------------------ distillation
def test_distilled_lines_align_with_input_across_an_interruption(tmp_path):
    from seqlab.nat.distill import distill_lines

    sources = [f"line {i} " + "x" * (i % 7) for i in range(23)]
    calls = []

    def translate(lines):
        calls.append(len(lines))
        return [s.upper()[::-1] for s in lines]

    stopped = distill_lines(translate, sources, tmp_path, chunk_size=5, max_chunks=2, show_progress=False)
    assert stopped is None
    out = distill_lines(translate, sources, tmp_path, chunk_size=5, show_progress=False)
    assert calls == [5, 5, 5, 5, 3]  # the second call resumed at chunk 3
    assert out == [s.upper()[::-1] for s in sources]
    with pytest.raises(ValueError, match="another distillation"):
        distill_lines(translate, sources, tmp_path, chunk_size=4, show_progress=False)


TINY = "{d_model: 32, n_heads: 4, ffn_dim: 64, encoder_layers: 1, decoder_layers: 2, dropout: 0.0, n_actions: 8}"


def write_reverse_task(root, n_train=120, seed=0):
    return helpers.write_reverse_task(root, n_train, seed, n_eval=12)


def run_overrides(run_dir, task_options, arch, algorithm, steps, model=TINY, algo_options="{}"):
    import json

    return [
        f"run_dir={run_dir}",
        "task.name=parallel",
        f"task.options={json.dumps(task_options)}",
        f"model.arch={arch}",
        f"model.options={model}",
        f"algorithm.name={algorithm}",
        f"algorithm.options={algo_options}",
        "train.device=cpu",
        "train.max_tokens=240",
        "train.lr=0.003",
        "train.warmup_steps=5",
        f"train.max_steps={steps}",
        "train.progress_bar=false",
        "train.tensorboard=false",
        "decode.beam_size=2",
        "decode.batch_size=16",
    ]


@pytest.mark.slow
def test_dat_distill_nat_imitate_nat_end_to_end(tmp_path, monkeypatch, capsys):
    import json
    import shutil

    from seqlab.cli import main as cli_main
    from seqlab.config import load_config
    from seqlab.data.batching import collate
    from seqlab.nat import distill as distill_mod
    from seqlab.train.trainer import Trainer, train

    data = tmp_path / "data"
    data.mkdir()
    task = {**write_reverse_task(data), "tokenizer": "symbol", "metrics": ["bleu"]}
    train(load_config(None, run_overrides(tmp_path / "dat", task, "dat", "dat", 40)), console=False)
    teacher = tmp_path / "dat" / "checkpoint_last.pt"
    state = torch.load(teacher, weights_only=False)
    assert state["algorithm"]["usage"].shape == (2, 8)

    # distillation, interrupted after its first chunk, then resumed by a second `seqlab distill`
    real, calls = distill_mod.teacher_translator, []

    def flaky(*args, **kwargs):
        inner = real(*args, **kwargs)

        def translate(lines):
            calls.append(len(lines))
            if len(calls) == 2 and not getattr(flaky, "resumed", False):
                raise KeyboardInterrupt
            return inner(lines)

        return translate

    monkeypatch.setattr(distill_mod, "teacher_translator", flaky)
    out = tmp_path / "distilled"
    args = ["distill", "--teacher", str(teacher), "--output", str(out), "--chunk-size", "50", "--device", "cpu"]
    assert cli_main(args) == 130  # Ctrl-C: one line, the shell's exit code
    flaky.resumed = True
    assert cli_main(args) == 0
    assert calls == [50, 50, 50, 20]  # chunk 1 kept, chunk 2 redone, then the rest
    src_lines = (out / "train.src").read_text().splitlines()
    tgt_lines = (out / "train.tgt").read_text().splitlines()
    assert src_lines == (data / "train.src").read_text().splitlines() and len(tgt_lines) == len(src_lines)
    from seqlab.inference import load_checkpoint_model
    from seqlab.nat.distill import teacher_translator

    loaded = load_checkpoint_model(teacher, "cpu")
    translate = teacher_translator(
        loaded.model, loaded.src_tokenizer, loaded.tgt_tokenizer, loaded.config.decode, loaded.device, beam_size=2
    )
    direct = translate([src_lines[0], src_lines[77]])
    assert direct == [tgt_lines[0], tgt_lines[77]]
    report = json.loads((out / "distill.json").read_text())
    assert 0 <= report["distilled_vs_references"]["bleu"] <= 100 and "bleu" in report["teacher_test"]
    assert not (out / ".chunks").exists()

    # NAT on the distilled corpus (parallel task, the teacher's tokenizers), then imitate-NAT
    dist_task = json.loads((out / "task.json").read_text())
    dist_task.update(tokenizer="symbol")
    for run in ("nat", "inat"):
        shutil.copytree(out / "tokenizers", tmp_path / run / "tokenizers")
    nat_model = TINY.replace("}", ", copy: uniform}")
    nat_options = json.dumps({"init_from": str(teacher)})  # the NAT baseline starts from the demonstrator too
    res = train(
        load_config(None, run_overrides(tmp_path / "nat", dist_task, "nat", "nat", 15, nat_model, nat_options)),
        console=False,
    )
    assert res["steps"] == 15 and "bleu" in res["test"]
    assert int(torch.load(tmp_path / "nat" / "checkpoint_last.pt", weights_only=False)["algorithm"]["initialized"])
    inat_model = TINY.replace("}", ", imitation: true, length_delta: 1}")
    opts = json.dumps({"teacher": str(teacher), "imitation_weight": 0.01})
    cfg = load_config(None, run_overrides(tmp_path / "inat", dist_task, "nat", "imitate_nat", 15, inat_model, opts))
    trainer = Trainer(cfg, console=False)
    teacher_model = trainer.algorithm.teacher
    first = collate(trainer.train_data, next(iter(trainer.sampler))).to(trainer.device)
    trainer.algorithm.loss(trainer.model, first, trainer.progress())  # initialises from the teacher
    assert bool(trainer.algorithm.initialized)
    assert torch.equal(trainer.model.encoder.layers[0].attn.qkv.weight, teacher_model.encoder.layers[0].attn.qkv.weight)
    res = trainer.fit()
    assert res["steps"] == 15
    inat_state = torch.load(tmp_path / "inat" / "checkpoint_last.pt", weights_only=False)
    assert not any(k.startswith("teacher") for k in inat_state["algorithm"])  # the teacher is not saved

    # `seqlab translate` with a NAT checkpoint
    inp = tmp_path / "in.txt"
    inp.write_text("a b c\nd e\nh g f e\n")
    hyp = tmp_path / "hyp.txt"
    assert (
        cli_main(
            [
                "translate",
                str(tmp_path / "inat" / "checkpoint_last.pt"),
                "-i",
                str(inp),
                "-o",
                str(hyp),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    assert len(hyp.read_text().splitlines()) == 3


def test_collapse_repeats():
    from seqlab.nat.decoding import append_eos, collapse_repeats

    tokens = torch.tensor([[5, 5, 6, 6, 6, 7, 9], [4, 4, 4, 8, 8, 8, 8], [5, 6, 5, 6, 7, 7, 7]])
    out, lengths = collapse_repeats(tokens, torch.tensor([6, 3, 7]))
    assert lengths.tolist() == [3, 1, 5]
    assert out[0, :3].tolist() == [5, 6, 7] and out[1, :1].tolist() == [4] and out[2, :5].tolist() == [5, 6, 5, 6, 7]
    assert out[0, 3:].eq(PAD_ID).all() and out[1, 1:].eq(PAD_ID).all()
    with_eos = append_eos(out, lengths)
    assert with_eos.shape == (3, 6) and with_eos[1].tolist() == [4, EOS_ID, 0, 0, 0, 0]
