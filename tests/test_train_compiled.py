"""train.compile: compiled layers give the eager layers' loss and gradients; bucketed widths leave the loss."""

from __future__ import annotations

import copy

import torch

from seqlab.data.batching import Batch
from seqlab.data.vocab import EOS_ID, PAD_ID
from seqlab.decoding import greedy_search
from seqlab.erpo.loss import one_loss, smoothed_targets
from seqlab.models import build_model
from seqlab.train import compiled

V = 21


def tiny_batch() -> Batch:
    g = torch.Generator().manual_seed(0)
    src, tgt = torch.randint(4, V, (3, 6), generator=g), torch.randint(4, V, (3, 5), generator=g)
    for row, (ls, lt) in enumerate([(6, 5), (3, 2), (4, 4)]):
        src[row, ls - 1], tgt[row, lt - 1] = EOS_ID, EOS_ID
        src[row, ls:], tgt[row, lt:] = PAD_ID, PAD_ID
    return Batch(src, tgt)


def mle_loss(model, batch: Batch) -> torch.Tensor:
    log_probs = model.token_log_probs(model.encode(batch.src), batch.tgt)
    return one_loss(log_probs, batch.tgt, smoothed_targets(batch.tgt, V, 0.1))


def test_compiled_layers_give_the_eager_loss_and_gradients(monkeypatch):
    monkeypatch.setenv("SEQLAB_COMPILE_BACKEND", "aot_eager")  # dynamo + AOTAutograd, without a C++ build
    monkeypatch.setattr(compiled, "_COMPILED", {})
    torch.manual_seed(0)
    eager = build_model(
        "transformer", V, V, d_model=16, n_heads=2, ffn_dim=32, encoder_layers=2, decoder_layers=2, dropout=0.0
    )
    model = copy.deepcopy(eager)
    assert compiled.compile_layers(model) == 4 and compiled.compile_layers(model) == 0
    batch = tiny_batch()
    for net in (eager, model):
        mle_loss(net, batch).backward()
    assert len(compiled._COMPILED) == 2  # one compiled forward per layer class, shared by the instances
    assert torch.allclose(mle_loss(eager, batch), mle_loss(model, batch), atol=1e-6)
    for (name, p), q in zip(eager.named_parameters(), model.parameters(), strict=True):
        assert torch.allclose(p.grad, q.grad, atol=1e-6), name
    twin = copy.deepcopy(model)  # the copy's layers route to themselves, not to the original's
    assert twin.layers[0].forward.args[0] is twin.layers[0]
    model.eval()  # decoding runs the eager layers (KV cache)
    assert torch.equal(
        greedy_search(model, batch.src, max_len_b=4).tokens, greedy_search(eager.eval(), batch.src, max_len_b=4).tokens
    )


def test_bucketed_widths_leave_the_loss_unchanged():
    torch.manual_seed(1)
    model = build_model(
        "transformer", V, V, d_model=16, n_heads=2, ffn_dim=32, encoder_layers=1, decoder_layers=1, dropout=0.0
    )
    batch = tiny_batch()
    padded = compiled.bucket_batch(batch)
    assert padded.src.shape == (3, 8) and padded.tgt.shape == (3, 8)
    assert padded.num_tgt_tokens == batch.num_tgt_tokens
    assert compiled.bucket_batch(padded) is padded
    assert torch.allclose(mle_loss(model, batch), mle_loss(model, padded), atol=1e-6)
