"""Glue between proposals, weightings and the one loss for sequence-level algorithms.

Memory.  The one loss on N proposals of width T holds [N, T, V] log-probabilities (and as much again for
their gradient); with K model samples per source that is K times MLE's batch, padded to the longest sample.
:func:`weighted_sequence_loss` therefore trims proposals to their real length and, above
``loss_chunk_tokens`` padded positions, computes the loss and its gradient chunk by chunk (proposals sorted
by length, each chunk trimmed to its own longest row): gradient accumulation inside the step.  The gradient
is the same as one pass's up to float summation order (dropout masks are drawn per chunk); the trainer
still calls ``backward`` once on the returned loss, which hands the accumulated gradients on to the model's
parameters and, through the encoder output, to the encoder.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import torch
from torch.profiler import record_function

from seqlab.config import TrainConfig
from seqlab.data.vocab import PAD_ID
from seqlab.erpo.loss import Coefficients, one_loss
from seqlab.models.base import Encoded, Seq2SeqModel

#: padded target positions (rows x width) scored in one pass of the one loss; larger proposal sets are
#: chunked.  4x MLE's 8192-token batch: MLE-sized passes and small batches never chunk, while K=4 samples
#: of an 8192-token batch ([2400, ~60] on Multi30k) run in a few chunks of ~1 GiB of fp32 log-probs
#: (V = 8000) each.  ``train.loss_chunk_tokens`` sets it (this is its default); None: never chunk.
DEFAULT_LOSS_CHUNK_TOKENS = TrainConfig.loss_chunk_tokens

_CHUNK_TOKENS: ContextVar[int | None] = ContextVar("seqlab_loss_chunk_tokens", default=DEFAULT_LOSS_CHUNK_TOKENS)


@contextmanager
def loss_chunk_tokens(tokens: int | None) -> Iterator[None]:
    """Within this block, the one loss on proposals runs in chunks of at most ``tokens`` padded positions
    (None or 0: one pass).  The trainer sets it from ``train.loss_chunk_tokens``; algorithms never see it."""
    if tokens is not None and tokens < 0:
        raise ValueError(f"loss_chunk_tokens must be positive or None, got {tokens}")
    token = _CHUNK_TOKENS.set(tokens or None)
    try:
        yield
    finally:
        _CHUNK_TOKENS.reset(token)


def proposal_coefficients(
    w: torch.Tensor, normalizer: float | torch.Tensor, label_smoothing: float = 0.0
) -> Coefficients:
    """Coefficients w · one-hot(y_t), or with label smoothing ε: w · ((1 − ε) one-hot(y_t) + ε uniform)."""
    if label_smoothing == 0.0:
        return Coefficients(weights=w, normalizer=normalizer)
    return Coefficients(weights=(1.0 - label_smoothing) * w, uniform=label_smoothing * w, normalizer=normalizer)


def weighted_sequence_loss(
    model: Seq2SeqModel,
    enc: Encoded,
    tokens: torch.Tensor,
    group: torch.Tensor,
    weights: torch.Tensor,
    normalizer: float | torch.Tensor,
    log_probs: torch.Tensor | None = None,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """The one loss on proposal sequences: coefficient ``weights`` [N] (per sequence) or [N, T] (per token)
    on each sequence's own tokens, smoothed by ``label_smoothing`` (meant for non-negative weights: the
    likelihood terms; policy-gradient advantages are never smoothed).  ``log_probs`` may be passed when
    already computed (then it is one pass).

    Without ``log_probs``, proposals are trimmed to their longest real row and, past the
    ``loss_chunk_tokens`` budget, scored and differentiated in chunks (see the module docstring)."""
    w = (weights if weights.dim() == 2 else weights[:, None].expand_as(tokens)).float()
    if log_probs is not None:
        return one_loss(log_probs, tokens, proposal_coefficients(w, normalizer, label_smoothing))
    widths = row_widths(tokens)
    width = max(int(widths.max()), 1) if widths.numel() else 1
    tokens, w = tokens[:, :width], w[:, :width]  # trailing PAD columns: no loss, and causal decoders ignore them
    budget = _CHUNK_TOKENS.get()
    if budget is None or tokens.numel() <= budget or not torch.is_grad_enabled() or tokens.size(0) < 2:
        log_probs = model.token_log_probs(enc.select(group), tokens)
        return one_loss(log_probs, tokens, proposal_coefficients(w, normalizer, label_smoothing))
    return _chunked_loss(model, enc, tokens, group, w, normalizer, length_chunks(widths, budget), label_smoothing)


def row_widths(tokens: torch.Tensor) -> torch.Tensor:
    """Per row, the number of columns up to its last non-PAD token [N] (long)."""
    pos = torch.arange(1, tokens.size(1) + 1, device=tokens.device)
    return (tokens.ne(PAD_ID).long() * pos).amax(1) if tokens.size(1) else tokens.new_zeros(tokens.size(0))


def length_chunks(widths: torch.Tensor, budget: int) -> list[tuple[torch.Tensor, int]]:
    """Rows sorted by width (longest first), cut into chunks of at most ``budget`` padded positions (at
    least one row each): a list of (row indices, chunk width)."""
    order = torch.argsort(widths, descending=True, stable=True)
    sorted_w = widths[order].tolist()
    chunks, start = [], 0
    while start < len(sorted_w):
        width = max(sorted_w[start], 1)
        rows = max(budget // width, 1)
        chunks.append((order[start : start + rows], width))
        start += rows
    return chunks


def _chunked_loss(
    model: Seq2SeqModel,
    enc: Encoded,
    tokens: torch.Tensor,
    group: torch.Tensor,
    w: torch.Tensor,
    normalizer: float | torch.Tensor,
    chunks: list[tuple[torch.Tensor, int]],
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """Sum of the chunks' one losses; each chunk's gradient is taken at once (w.r.t. the encoder output and
    the model's parameters) and freed with its activations, then replayed by ``_AccumulatedGrad``."""
    enc_tensors, rebuild = _flatten_encoded(enc)
    needs = [t.requires_grad for t in enc_tensors]
    leaves = [t.detach().requires_grad_(True) if n else t.detach() for t, n in zip(enc_tensors, needs, strict=True)]
    enc_leaf = rebuild(leaves)
    params = [p for p in model.parameters() if p.requires_grad]
    inputs = [t for t, n in zip(leaves, needs, strict=True) if n] + params
    grads: list[torch.Tensor | None] = [None] * len(inputs)
    total = torch.zeros((), device=tokens.device)
    for rows, width in chunks:
        with record_function("seqlab.loss_chunk"):
            tok = tokens.index_select(0, rows)[:, :width]
            coef = proposal_coefficients(w.index_select(0, rows)[:, :width], normalizer, label_smoothing)
            loss = one_loss(model.token_log_probs(enc_leaf.select(group.index_select(0, rows)), tok), tok, coef)
            chunk_grads = torch.autograd.grad(loss, inputs, allow_unused=True)
        for i, g in enumerate(chunk_grads):
            if g is not None:
                grads[i] = g if grads[i] is None else grads[i] + g
        total = total + loss.detach().float()
        del loss, chunk_grads
    enc_inputs = [t for t, n in zip(enc_tensors, needs, strict=True) if n]
    return _AccumulatedGrad.apply(total, grads, *enc_inputs, *params)


class _AccumulatedGrad(torch.autograd.Function):
    """A loss value whose gradient w.r.t. ``inputs`` was computed already: backward scales the stored one."""

    @staticmethod
    def forward(ctx, value: torch.Tensor, grads: list[torch.Tensor | None], *inputs: torch.Tensor) -> torch.Tensor:
        ctx.grads = grads
        return value.clone()

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        grads, ctx.grads = ctx.grads, None  # backward runs once: free them as they are handed on
        return (None, None, *[None if g is None else g * grad_out.to(g.dtype) for g in grads])


def _flatten_encoded(enc: Encoded):
    """The tensors of an encoder output (memory, pad mask, model extras) and a function rebuilding it."""
    leaves: list[torch.Tensor] = []

    def collect(obj):
        if isinstance(obj, torch.Tensor):
            leaves.append(obj)
        elif isinstance(obj, dict):
            for v in obj.values():
                collect(v)
        elif isinstance(obj, (list, tuple)):
            for v in obj:
                collect(v)

    collect([enc.memory, enc.pad_mask, enc.extra])

    def rebuild(new: list[torch.Tensor]) -> Encoded:
        it = iter(new)

        def put(obj):
            if isinstance(obj, torch.Tensor):
                return next(it)
            if isinstance(obj, dict):
                return {k: put(v) for k, v in obj.items()}
            if isinstance(obj, list):
                return [put(v) for v in obj]
            if isinstance(obj, tuple):
                return tuple(put(v) for v in obj)
            return obj

        memory, pad_mask, extra = put([enc.memory, enc.pad_mask, enc.extra])
        return Encoded(memory, pad_mask, extra)

    return leaves, rebuild


def sequence_log_prob(log_probs: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """log p(y) [N] from full log-distributions [N, T, V]."""
    tok = log_probs.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
    return tok.masked_fill(tokens.eq(PAD_ID), 0.0).sum(1)  # log p(PAD) is -inf: mask, never multiply


def reference_tokens(tgt: torch.Tensor) -> torch.Tensor:
    """Number of target tokens (EOS included): the normaliser that puts every algorithm on MLE's scale."""
    return tgt.ne(PAD_ID).sum().clamp(min=1)
