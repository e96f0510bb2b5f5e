"""Model protocol, cached decoding and search on both architectures (small CPU models)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from seqlab.data.vocab import BOS_ID, EOS_ID, PAD_ID
from seqlab.decoding import beam_search, greedy_search, sample
from seqlab.models import build_model, shift_right

ARCHS = {
    "transformer": dict(d_model=32, n_heads=4, ffn_dim=64, encoder_layers=2, decoder_layers=2, dropout=0.0),
    "lstm": dict(embed_dim=16, hidden_dim=32, layers=2, dropout=0.0),
}
V = 23


def make_model(arch: str, seed: int = 0):
    torch.manual_seed(seed)
    return build_model(arch, V, V, **ARCHS[arch]).eval()


def batch(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(4, V, (4, 9), generator=g)
    tgt = torch.randint(4, V, (4, 7), generator=g)
    for row, (ls, lt) in enumerate([(9, 7), (5, 3), (7, 6), (2, 1)]):
        src[row, ls - 1] = EOS_ID
        src[row, ls:] = PAD_ID
        tgt[row, lt - 1] = EOS_ID
        tgt[row, lt:] = PAD_ID
    return src, tgt


@pytest.mark.parametrize("arch", ARCHS)
def test_cached_decoding_equals_full_recomputation(arch):
    model = make_model(arch)
    src, tgt = batch()
    full = model(src, shift_right(tgt))
    enc = model.encode(src)
    state = model.init_state(enc)
    inputs = shift_right(tgt)
    steps = []
    for t in range(inputs.size(1)):
        logits, state = model.step(enc, inputs[:, t], state)
        steps.append(logits)
    assert torch.allclose(torch.stack(steps, 1), full, atol=1e-5)


@pytest.mark.parametrize("arch", ARCHS)
def test_score_equals_teacher_forced_loss(arch):
    model = make_model(arch)
    src, tgt = batch()
    scores = model.score(src, tgt)
    logits = model(src, shift_right(tgt)).float()
    logits[..., PAD_ID] = float("-inf")
    logits[..., BOS_ID] = float("-inf")
    nll = F.cross_entropy(logits.transpose(1, 2), tgt, ignore_index=PAD_ID, reduction="sum")
    assert torch.allclose(-scores.sum(), nll, atol=1e-4)
    assert (scores[tgt.eq(PAD_ID)] == 0).all()


@pytest.mark.parametrize("arch", ARCHS)
def test_padding_does_not_change_outputs(arch):
    model = make_model(arch)
    src, tgt = batch()
    padded_src = F.pad(src, (0, 5), value=PAD_ID)
    assert torch.allclose(model.score(src, tgt), model.score(padded_src, tgt), atol=1e-5)


@pytest.mark.parametrize("arch", ARCHS)
def test_beam_one_equals_greedy(arch):
    model = make_model(arch, seed=3)
    src, _ = batch(1)
    g = greedy_search(model, src, max_len_b=6)
    b = beam_search(model, src, beam_size=1, max_len_b=6)
    assert torch.equal(g.tokens, b.tokens)


@pytest.mark.parametrize("arch", ARCHS)
def test_beam_search_scores_and_lengths(arch):
    model = make_model(arch, seed=4)
    src, _ = batch(2)
    out = beam_search(model, src, beam_size=4, n_best=4, length_penalty=0.0, max_len_a=0.0, max_len_b=5)
    assert out.tokens.size(0) == src.size(0) * 4
    assert out.tokens.size(1) <= 5
    # every hypothesis ends with EOS within the limit and its score is its log-probability
    assert out.tokens.eq(EOS_ID).any(1).all()
    scores = model.score(src.repeat_interleave(4, 0), out.tokens).sum(1)
    assert torch.allclose(scores, out.scores, atol=1e-4)
    # n-best is sorted and the best beats greedy (beam search never does worse on its own objective)
    best = out.scores.view(-1, 4)
    assert (best[:, :-1] >= best[:, 1:] - 1e-6).all()
    greedy = greedy_search(model, src, max_len_a=0.0, max_len_b=5)
    assert (best[:, 0] >= greedy.scores - 1e-4).all()


@pytest.mark.parametrize("arch", ARCHS)
def test_sampling_log_probs_match_score(arch):
    torch.manual_seed(0)
    model = make_model(arch, seed=5)
    src, _ = batch(3)
    out = sample(model, src, num_samples=3, max_len_b=6)
    assert out.tokens.size(0) == 12
    scored = model.score(src.repeat_interleave(3, 0), out.tokens)
    assert torch.allclose(scored, out.token_log_probs, atol=1e-4)


def test_sampling_temperature_zero_limit_is_greedy():
    torch.manual_seed(0)
    model = make_model("transformer", seed=6)
    src, _ = batch(4)
    cold = sample(model, src, temperature=1e-4, max_len_b=6)
    assert torch.equal(cold.tokens, greedy_search(model, src, max_len_b=6).tokens)


def test_unknown_model_options_are_rejected():
    with pytest.raises(ValueError, match="unknown option"):
        build_model("transformer", 10, 10, d_modle=16)
    with pytest.raises(ValueError, match="unknown model architecture"):
        build_model("rnn", 10, 10)


def test_static_cache_decoding_equals_dynamic():
    """The fixed-shape step (captured as a CUDA graph on GPUs) gives the dynamic step's outputs."""
    torch.manual_seed(0)
    model = make_model("transformer", seed=7)
    src, _ = batch(5)
    dyn = greedy_search(model, src, max_len_b=6, static=False)
    sta = greedy_search(model, src, max_len_b=6, static=True)
    assert torch.equal(dyn.tokens, sta.tokens)
    assert torch.allclose(dyn.token_log_probs, sta.token_log_probs, atol=1e-5)
    torch.manual_seed(3)
    a = sample(model, src, num_samples=3, max_len_b=6, static=False)
    torch.manual_seed(3)
    b = sample(model, src, num_samples=3, max_len_b=6, static=True)
    assert torch.equal(a.tokens, b.tokens)
    # step by step: logits at every position agree with full recomputation
    from seqlab.decoding.graphs import StaticStepper

    enc = model.encode(src)
    _, tgt = batch()
    stepper = StaticStepper(model, enc, max_len=16, graph=False)
    inputs = shift_right(tgt)
    steps = torch.stack([stepper.step(inputs[:, t]) for t in range(inputs.size(1))], 1)
    assert torch.allclose(steps, model(src, inputs), atol=1e-5)


@pytest.mark.parametrize("arch", ["transformer", "dat"])
def test_every_static_step_computes_the_teacher_forced_model(arch):
    """Every architecture with a fixed-shape step (what CUDA-graph decoding replays) gives, position by position,
    the logits of teacher forcing: a subclass that adds to its decoder (the DAT's imitation modules) cannot
    leave the step behind.  The parametrisation must list every such architecture."""
    from seqlab.decoding.graphs import StaticStepper
    from seqlab.models import MODELS, load_model_plugins

    load_model_plugins()
    assert sorted(name for name, cls in MODELS.items() if hasattr(cls, "static_step")) == ["dat", "transformer"]
    torch.manual_seed(11)
    model = build_model(arch, V, V, **ARCHS["transformer"]).eval()
    src, tgt = batch(3)
    inputs = shift_right(tgt)
    stepper = StaticStepper(model, model.encode(src), max_len=16, graph=False)
    steps = torch.stack([stepper.step(inputs[:, t]) for t in range(inputs.size(1))], 1)
    assert torch.allclose(steps, model(src, inputs), atol=1e-5)


def test_bucketed_encoder_states_do_not_change_static_steps():
    from seqlab.decoding.graphs import StaticStepper, bucketed

    model = make_model("transformer", seed=8)
    src, tgt = batch(6)
    enc = model.encode(src[:3, :7])
    inputs = shift_right(tgt[:3])
    plain = StaticStepper(model, enc, max_len=16, graph=False)
    padded = StaticStepper(model, bucketed(enc), max_len=16, graph=False)
    padded.rows = 3
    assert bucketed(enc).memory.shape[:2] == (4, 8)
    for t in range(inputs.size(1)):
        assert torch.allclose(plain.step(inputs[:, t]), padded.step(inputs[:, t]), atol=1e-5)


def test_graph_cache_is_bounded_by_count_and_by_bytes(monkeypatch):
    """Captured steppers are evicted least-recently-used first once there are too many or they hold too many
    bytes together (training samples change shape every batch); the newest always stays."""
    from collections import OrderedDict
    from types import SimpleNamespace

    from seqlab.decoding.graphs import StaticStepper, evict, graph_cache_bytes, tensor_bytes

    cache = OrderedDict((k, SimpleNamespace(nbytes=n)) for k, n in [("a", 40), ("b", 30), ("c", 20), ("d", 50)])
    evict(cache, max_entries=3, max_bytes=1000)
    assert list(cache) == ["b", "c", "d"]
    evict(cache, max_entries=3, max_bytes=75)
    assert list(cache) == ["c", "d"]
    evict(cache, max_entries=3, max_bytes=10)
    assert list(cache) == ["d"]
    assert tensor_bytes({"k": [torch.zeros(2, 3), torch.zeros(4, dtype=torch.long)], "t": 1}) == 2 * 3 * 4 + 4 * 8
    model = make_model("transformer", seed=8)
    src, _ = batch(3)
    stepper = StaticStepper(model, model.encode(src), max_len=16, graph=False)
    assert stepper.nbytes == tensor_bytes([stepper.state, stepper.tokens]) > 0
    monkeypatch.setenv("SEQLAB_GRAPH_CACHE_MB", "1.5")
    assert graph_cache_bytes() == 3 * 2**19


def test_attention_runs_without_cudnn_kernel_and_restores_the_switch(monkeypatch):
    """Every attention call of the Transformer runs with cuDNN's SDPA kernel switched off (it re-plans for every new
    shape) and switches it back on afterwards; the outputs are those of plain SDPA."""
    seen: list[bool] = []
    plain = F.scaled_dot_product_attention

    def spy(*args, **kwargs):
        seen.append(torch.backends.cuda.cudnn_sdp_enabled())
        return plain(*args, **kwargs)

    model = make_model("transformer")
    src, tgt = batch()
    expected = model.decode(model.encode(src), shift_right(tgt))
    assert torch.backends.cuda.cudnn_sdp_enabled()
    monkeypatch.setattr(F, "scaled_dot_product_attention", spy)
    got = model.decode(model.encode(src), shift_right(tgt))
    assert seen and not any(seen)  # encoder self-, decoder self- and cross-attention
    assert torch.backends.cuda.cudnn_sdp_enabled()
    torch.testing.assert_close(got, expected, rtol=0, atol=0)


def test_single_query_attention_mode_picks_matmul_in_float32_by_default_and_refuses_unknown_modes():
    """SEQLAB_SINGLE_QUERY_ATTENTION: unset is ``auto``, which sends float32 queries (fp32 decoding) through the
    matmuls and bfloat16 ones (training's sampling loops under autocast) through SDPA; ``matmul`` / ``sdpa`` force
    one way; anything else is refused by name."""
    from seqlab.models.transformer import single_query_by_matmul, single_query_mode

    assert single_query_mode(None) == "auto" and single_query_mode(" MatMul ") == "matmul"
    fp32, bf16 = torch.zeros(2, 4, 1, 8), torch.zeros(2, 4, 1, 8, dtype=torch.bfloat16)
    assert single_query_by_matmul(fp32, "auto") and not single_query_by_matmul(bf16, "auto")
    assert single_query_by_matmul(bf16, "matmul") and not single_query_by_matmul(fp32, "sdpa")
    assert single_query_by_matmul(bf16, "reduce") and single_query_mode("reduce") == "reduce"
    with pytest.raises(ValueError, match="SEQLAB_SINGLE_QUERY_ATTENTION='flash'"):
        single_query_mode("flash")


@torch.no_grad()
def test_few_rows_linear_as_sums_equals_f_linear_and_leaves_more_rows_autocast_and_training_to_it(monkeypatch):
    """SEQLAB_FEW_ROWS_LINEAR=reduce (and by default inside torch.compile): a linear layer on at most FEW_ROWS rows
    without gradients is sums of products, equal to F.linear (with and without a bias); more rows, autocast, and
    gradients (training) go through F.linear itself; unknown modes are refused."""
    from seqlab.models import transformer
    from seqlab.models.transformer import FEW_ROWS, few_rows_linear_mode, linear

    real = F.linear
    assert few_rows_linear_mode(None) == "auto" and few_rows_linear_mode(" Reduce ") == "reduce"
    with pytest.raises(ValueError, match="SEQLAB_FEW_ROWS_LINEAR='sums'"):
        few_rows_linear_mode("sums")
    g = torch.Generator().manual_seed(0)
    w, x = torch.randn(12, 16, generator=g), torch.randn(1, 16, generator=g)
    traced = []
    monkeypatch.setattr(transformer, "FEW_ROWS_LINEAR", "auto")
    monkeypatch.setattr(transformer.F, "linear", lambda *a: traced.append(a[0].shape) or real(*a))
    assert torch.equal(linear(x, w), real(x, w)) and traced == [x.shape]  # auto: F.linear outside torch.compile
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    torch.testing.assert_close(linear(x, w), real(x, w), rtol=1e-5, atol=1e-5)
    assert traced == [x.shape]  # auto inside torch.compile: sums
    monkeypatch.undo()
    monkeypatch.setattr(transformer, "FEW_ROWS_LINEAR", "reduce")
    w, bias = torch.randn(12, 16, generator=g), torch.randn(12, generator=g)
    calls = []
    monkeypatch.setattr(transformer.F, "linear", lambda *a: calls.append(a[0].shape) or real(*a))
    for shape in [(1, 16), (FEW_ROWS, 1, 16), (2, 3, 16)]:
        x = torch.randn(shape, generator=g)
        torch.testing.assert_close(linear(x, w, bias), real(x, w, bias), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(linear(x, w), real(x, w), rtol=1e-5, atol=1e-5)
    assert calls == []  # all of them as sums
    many = torch.randn(FEW_ROWS + 1, 16, generator=g)
    assert torch.equal(linear(many, w, bias), real(many, w, bias)) and calls == [many.shape]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert linear(many[:1], w, bias).dtype == torch.bfloat16 and calls[-1] == (1, 16)
    with torch.enable_grad():
        linear(many[:2], w.requires_grad_(), bias)
    assert calls[-1] == (2, 16)


def test_a_transformer_decodes_the_same_with_its_few_rows_linear_layers_as_sums(monkeypatch):
    """The decoder step's linear layers (attention projections, feed-forward, tied output) as sums of products give
    the step's logits of F.linear, with no F.linear call left in the step; the parameters keep their names (a
    checkpoint loads either way)."""
    from seqlab.models import transformer
    from seqlab.models.transformer import Transformer, TransformerConfig

    torch.manual_seed(0)
    cfg = TransformerConfig(20, 20, d_model=16, n_heads=2, ffn_dim=32, encoder_layers=2, decoder_layers=2, dropout=0.0)
    model = Transformer(cfg).eval()
    assert {"layers.0.ffn.0.weight", "layers.0.ffn.3.bias"} <= set(model.state_dict())
    src, tokens = torch.randint(4, 20, (3, 5)), torch.randint(4, 20, (3,))
    calls = []
    real = F.linear
    monkeypatch.setattr(transformer.F, "linear", lambda *a: calls.append(a[0].shape) or real(*a))
    with torch.no_grad():
        state = model.init_static_state(model.encode(src), 6)
        expected = model.static_step(tokens, state)
        assert len(calls) > 2 * cfg.decoder_layers * 3
        monkeypatch.setattr(transformer, "FEW_ROWS_LINEAR", "reduce")
        state["t"].zero_()
        calls.clear()
        got = model.static_step(tokens, state)
    assert calls == []
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("mode", ["matmul", "reduce"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_single_query_attention_equals_sdpa_with_boolean_and_additive_masks(dtype, mode, monkeypatch):
    """A decoding step's attention as matmuls (the CUDA path for one query per row), or as sums of products,
    equals F.scaled_dot_product_attention without a mask, with a boolean mask (True attends) and with an additive
    bias."""
    from seqlab.models import transformer
    from seqlab.models.transformer import single_query_attention

    monkeypatch.setattr(transformer, "SINGLE_QUERY_MODE", mode)

    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(shape, generator=g).to(dtype) for shape in [(3, 4, 1, 8), (3, 4, 7, 8), (3, 4, 7, 8)])
    keep = torch.rand(3, 1, 1, 7, generator=g) > 0.3
    keep[..., 0] = True  # every row attends somewhere
    bias = torch.zeros(3, 1, 1, 7, dtype=dtype).masked_fill(~keep, float("-inf"))
    tol = {"rtol": 1e-5, "atol": 1e-5} if dtype == torch.float32 else {"rtol": 2e-2, "atol": 2e-2}
    for mask in (None, keep, bias):
        fp32_mask = mask.float() if mask is not None and mask.dtype != torch.bool else mask
        expected = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), attn_mask=fp32_mask).to(dtype)
        got = single_query_attention(q, k, v, mask)
        assert got.shape == expected.shape and got.dtype == dtype
        torch.testing.assert_close(got.float(), expected.float(), **tol)
    masked = single_query_attention(q, k, v, keep)
    moved = v.masked_fill(~keep.transpose(-2, -1), 1e4)  # values at hidden keys change nothing
    torch.testing.assert_close(single_query_attention(q, k, moved, keep), masked, rtol=0, atol=0)


def test_single_query_attention_adds_its_bias_and_scale_in_one_op_with_the_same_values_at_head_size_64():
    """mask + scale * scores in one ``torch.add``: the two-op result (scale, then the bias) bit for bit where the
    scale is a power of two (head size 64: 1/8), within one rounding elsewhere."""
    from seqlab.models.transformer import single_query_attention

    g = torch.Generator().manual_seed(1)
    for head, exact in ((64, True), (32, False)):
        q, k, v = (torch.randn(shape, generator=g) for shape in [(2, 8, 1, head), (2, 8, 9, head), (2, 8, 9, head)])
        bias = torch.randn(2, 1, 1, 9, generator=g)
        bias[0, ..., 3] = float("-inf")
        two_ops = (torch.matmul(q, k.transpose(-2, -1)) * head**-0.5 + bias).softmax(-1)
        expected = torch.matmul(two_ops, v)
        got = single_query_attention(q, k, v, bias)
        if exact:
            assert torch.equal(got, expected)
        else:
            torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6)
