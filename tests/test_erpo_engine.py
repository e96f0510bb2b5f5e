"""The one loss on proposals in chunks (gradient accumulation inside the step) gives the one-pass gradient."""

from __future__ import annotations

import pytest
import torch
from tiny import TinyBatch

from seqlab.algorithms.base import AlgorithmContext, Progress, build_algorithm
from seqlab.data.vocab import EOS_ID, PAD_ID
from seqlab.erpo.engine import length_chunks, loss_chunk_tokens, row_widths, weighted_sequence_loss
from seqlab.models import build_model

VOCAB = 24


def tiny_model(arch: str = "transformer", seed: int = 0):
    torch.manual_seed(seed)
    if arch == "transformer":
        return build_model(
            "transformer",
            VOCAB,
            VOCAB,
            d_model=16,
            n_heads=2,
            ffn_dim=32,
            encoder_layers=1,
            decoder_layers=2,
            dropout=0.0,
        )
    return build_model("lstm", VOCAB, VOCAB, embed_dim=12, hidden_dim=16, layers=1, dropout=0.0)


def tiny_batch(n: int = 5, seed: int = 1) -> TinyBatch:
    g = torch.Generator().manual_seed(seed)

    def seqs(max_len: int) -> torch.Tensor:
        lens = torch.randint(2, max_len, (n,), generator=g)
        out = torch.full((n, max_len + 1), PAD_ID, dtype=torch.long)
        for i, m in enumerate(lens.tolist()):
            out[i, :m] = torch.randint(4, VOCAB, (m,), generator=g)
            out[i, m] = EOS_ID
        return out

    return TinyBatch(seqs(7), seqs(6))


def step_grads(model, algo, batch, chunk: int | None, seed: int = 3) -> tuple[float, list[torch.Tensor]]:
    """Loss and parameter gradients of one training step (the trainer's order: loss, then one backward)."""
    model.zero_grad(set_to_none=True)
    model.train()
    torch.manual_seed(seed)  # the same samples with and without chunking
    with loss_chunk_tokens(chunk):
        loss, _ = algo.loss(model, batch, Progress(step=0, epoch=0))
    loss.backward()
    return float(loss.detach()), [torch.zeros_like(p) if p.grad is None else p.grad.clone() for p in model.parameters()]


def assert_same_step(model, algo, batch, chunk: int):
    loss_one, grads_one = step_grads(model, algo, batch, None)
    loss_chunked, grads_chunked = step_grads(model, algo, batch, chunk)
    assert loss_chunked == pytest.approx(loss_one, rel=1e-5, abs=1e-6)
    assert any(g.abs().sum() > 0 for g in grads_one)
    for a, b in zip(grads_one, grads_chunked, strict=True):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-6), (a - b).abs().max()


ALGOS = {
    "pg": {"num_samples": 4, "reward": "neg_edit"},
    "pg_mean_mle": {"num_samples": 3, "reward": "neg_edit", "baseline": "mean", "mle_weight": 0.3},
    "spg": {"num_samples": 4, "reward": "neg_edit", "alpha": 0.5},
    "mixer": {"num_samples": 3, "reward": "neg_edit", "prefix": 2},
    "interpolation": {"lambdas": [0.4, 0.3, 0.3], "reward": "neg_edit"},
    "noising": {"gamma": 0.3},
}


@pytest.mark.parametrize("key", sorted(ALGOS))
@pytest.mark.parametrize("chunk", [1, 16, 40])
def test_chunked_step_has_the_one_pass_gradient(key, chunk):
    name = key.split("_")[0]
    ctx = AlgorithmContext(
        vocab_size=VOCAB,
        label_smoothing=0.1,
        unigram=torch.full((VOCAB,), 1.0 / (VOCAB - 4)).index_fill(0, torch.arange(4), 0.0),
    )
    algo = build_algorithm(name, ctx, ALGOS[key])
    assert_same_step(tiny_model(), algo, tiny_batch(), chunk)


@pytest.mark.parametrize("arch", ["transformer", "lstm"])
def test_chunked_engine_loss_matches_one_pass_also_through_encoder_extras(arch):
    """Per-token weights of both signs, every row in its own chunk or a few together; the LSTM's encoder
    hands its final states to the decoder (gradient through ``Encoded.extra``)."""
    model, batch = tiny_model(arch), tiny_batch(n=4)
    group = torch.arange(4).repeat_interleave(3)
    tokens = batch.tgt.index_select(0, group)
    weights = torch.randn(tokens.shape, generator=torch.Generator().manual_seed(5))

    def run(chunk):
        model.zero_grad(set_to_none=True)
        with loss_chunk_tokens(chunk):
            loss = weighted_sequence_loss(model, model.encode(batch.src), tokens, group, weights, 7.0)
        assert ("AccumulatedGrad" in type(loss.grad_fn).__name__) == (chunk is not None)
        (2.5 * loss).backward()  # a scaled loss scales the accumulated gradient
        return loss.detach(), [p.grad.clone() for p in model.parameters()]

    loss_one, grads_one = run(None)
    for chunk in (1, 10, 30):
        loss_c, grads_c = run(chunk)
        assert torch.allclose(loss_c, loss_one, rtol=1e-5)
        for a, b in zip(grads_one, grads_c, strict=True):
            assert torch.allclose(a, b, rtol=1e-4, atol=1e-6)


def test_trimming_trailing_padding_changes_nothing():
    model, batch = tiny_model(), tiny_batch(n=3)
    group = torch.arange(3)
    padded = torch.cat([batch.tgt, torch.full((3, 9), PAD_ID)], 1)
    weights = torch.tensor([1.0, -0.5, 2.0])

    def run(tokens):
        model.zero_grad(set_to_none=True)
        with loss_chunk_tokens(None):
            loss = weighted_sequence_loss(model, model.encode(batch.src), tokens, group, weights, 3.0)
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in model.parameters()]

    loss_a, grads_a = run(batch.tgt)
    loss_b, grads_b = run(padded)
    assert torch.allclose(loss_a, loss_b, rtol=1e-6)
    assert all(torch.allclose(a, b, rtol=1e-5, atol=1e-7) for a, b in zip(grads_a, grads_b, strict=True))


def test_length_chunks_cover_every_row_once_within_budget():
    tokens = torch.full((7, 10), PAD_ID)
    for i, m in enumerate([3, 10, 1, 6, 6, 2, 9]):
        tokens[i, :m] = 5
    widths = row_widths(tokens)
    assert widths.tolist() == [3, 10, 1, 6, 6, 2, 9]
    chunks = length_chunks(widths, budget=20)
    rows = torch.cat([r for r, _ in chunks]).sort().values
    assert rows.tolist() == list(range(7))
    for r, width in chunks:
        assert int(widths[r].max()) == width and (len(r) * width <= 20 or len(r) == 1)
    assert length_chunks(widths, budget=1)[0][1] == 10  # a row longer than the budget is a chunk of its own


def test_small_batches_stay_in_one_pass_and_no_grad_skips_chunking():
    model, batch = tiny_model(), tiny_batch(n=3)
    group = torch.arange(3)
    with loss_chunk_tokens(10_000):
        loss = weighted_sequence_loss(model, model.encode(batch.src), batch.tgt, group, torch.ones(3), 3.0)
    assert loss.grad_fn is not None and "AccumulatedGrad" not in type(loss.grad_fn).__name__
    with loss_chunk_tokens(1), torch.no_grad():
        value = weighted_sequence_loss(model, model.encode(batch.src), batch.tgt, group, torch.ones(3), 3.0)
    assert torch.allclose(value, loss.detach(), rtol=1e-5)
    with pytest.raises(ValueError):
        with loss_chunk_tokens(-1):
            pass
