"""Glue between proposals, weightings and the one loss for sequence-level algorithms."""

from __future__ import annotations

import torch

from seqlab.data.vocab import PAD_ID
from seqlab.erpo.loss import Coefficients, one_loss
from seqlab.models.base import Encoded, Seq2SeqModel


def weighted_sequence_loss(model: Seq2SeqModel, enc: Encoded, tokens: torch.Tensor, group: torch.Tensor,
                           weights: torch.Tensor, normalizer: float | torch.Tensor,
                           log_probs: torch.Tensor | None = None) -> torch.Tensor:
    """The one loss on proposal sequences: coefficient ``weights`` [N] (per sequence) or [N, T] (per token)
    on each sequence's own tokens.  ``log_probs`` may be passed when already computed."""
    if log_probs is None:
        log_probs = model.token_log_probs(enc.select(group), tokens)
    w = weights if weights.dim() == 2 else weights[:, None].expand_as(tokens)
    return one_loss(log_probs, tokens, Coefficients(weights=w.float(), normalizer=normalizer))


def sequence_log_prob(log_probs: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """log p(y) [N] from full log-distributions [N, T, V]."""
    tok = log_probs.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
    return tok.masked_fill(tokens.eq(PAD_ID), 0.0).sum(1)  # log p(PAD) is -inf: mask, never multiply


def reference_tokens(tgt: torch.Tensor) -> torch.Tensor:
    """Number of target tokens (EOS included): the normaliser that puts every algorithm on MLE's scale."""
    return tgt.ne(PAD_ID).sum().clamp(min=1)
