"""The one model protocol every algorithm trains and every decoder drives.

Conventions (token ids from :mod:`seqlab.data.vocab`):

* ``src``: LongTensor [B, S], source tokens followed by EOS, right-padded with PAD.
* ``tgt``: LongTensor [B, T], target tokens followed by EOS, right-padded with PAD (no BOS).
* Teacher forcing feeds ``shift_right(tgt)`` = [BOS, y_1, ..., y_{T-1}].

A model implements ``encode``, ``decode`` (all positions at once), ``init_state`` and ``step``
(one position with a cache).  ``score`` and ``forward`` are derived here.  Models never know which
algorithm trains them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from seqlab.data.vocab import BOS_ID, PAD_ID
from seqlab.utils import select_rows


@dataclass
class Encoded:
    """Encoder output: ``memory`` [B, S, D], ``pad_mask`` [B, S] (True at padding), model extras."""

    memory: torch.Tensor
    pad_mask: torch.Tensor
    extra: dict[str, Any] = field(default_factory=dict)

    def select(self, index: torch.Tensor) -> Encoded:
        return Encoded(
            self.memory.index_select(0, index), self.pad_mask.index_select(0, index), select_rows(self.extra, index)
        )

    def repeat(self, k: int) -> Encoded:
        """Each row repeated k times consecutively (row b -> rows b*k .. b*k+k-1)."""
        index = torch.arange(self.memory.size(0), device=self.memory.device).repeat_interleave(k)
        return self.select(index)


assert (PAD_ID, BOS_ID) == (0, 1), "mask_special fills PAD and BOS as one slice"


def mask_special(logits: torch.Tensor) -> torch.Tensor:
    """Float logits with PAD and BOS excluded: the distribution that decoding samples from and ``score`` scores."""
    logits = logits.float()
    logits[..., PAD_ID : BOS_ID + 1] = float("-inf")  # ids 0 and 1: one fill
    return logits


def shift_right(tgt: torch.Tensor) -> torch.Tensor:
    """[y1..yT] -> [BOS, y1..y_{T-1}] (decoder inputs for teacher forcing)."""
    bos = torch.full_like(tgt[:, :1], BOS_ID)
    return torch.cat([bos, tgt[:, :-1]], dim=1)


class _IndexAddEmbedding(torch.autograd.Function):
    """``F.embedding`` whose backward sums the gradient rows with ``index_add_``.  PyTorch's CUDA backward sorts
    more than 3,072 indices and reads a count back to the host, which a CUDA graph capture refuses
    (pytorch/pytorch#82886); ``index_add_`` reads nothing back (its atomic sums may differ in the last bits)."""

    @staticmethod
    def forward(ctx: Any, ids: torch.Tensor, weight: torch.Tensor, padding_idx: int | None) -> torch.Tensor:
        ctx.save_for_backward(ids)
        ctx.shape, ctx.padding_idx = weight.shape, padding_idx
        return F.embedding(ids, weight, padding_idx)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[None, torch.Tensor, None]:
        (ids,) = ctx.saved_tensors
        flat, rows = ids.reshape(-1), grad.reshape(-1, grad.size(-1))
        if ctx.padding_idx is not None:  # the padding row gets no gradient, as in nn.Embedding
            rows = rows.masked_fill(flat.eq(ctx.padding_idx).unsqueeze(1), 0.0)
        return None, rows.new_zeros(ctx.shape).index_add_(0, flat, rows), None


def embed_tokens(embedding: nn.Embedding, ids: torch.Tensor) -> torch.Tensor:
    """``embedding(ids)``; while a CUDA graph captures a training step, through :class:`_IndexAddEmbedding`, whose
    backward the capture accepts (:mod:`seqlab.train.graphed`)."""
    capturing = ids.is_cuda and torch.is_grad_enabled() and torch.cuda.is_current_stream_capturing()
    if capturing and embedding.weight.requires_grad:
        return _IndexAddEmbedding.apply(ids, embedding.weight, embedding.padding_idx)
    return embedding(ids)


class Seq2SeqModel(nn.Module):
    """Base class of seq2seq models (Transformer, attentional LSTM, captioning decoder)."""

    vocab_size: int

    def encode(self, src: torch.Tensor) -> Encoded:
        raise NotImplementedError

    def decode(self, enc: Encoded, tgt_in: torch.Tensor) -> torch.Tensor:
        """Logits [B, T, V] for all positions of ``tgt_in`` at once (causal)."""
        raise NotImplementedError

    def decode_features(self, enc: Encoded, tgt_in: torch.Tensor) -> torch.Tensor:
        """The decoder's final states [B, T, ``feature_dim``] for all positions of ``tgt_in`` (causal): what the
        output layer reads, for heads that other modules put on the decoder (e.g. a critic's own Q head)."""
        raise NotImplementedError(f"{type(self).__name__} does not expose its decoder states (decode_features)")

    @property
    def feature_dim(self) -> int:
        """The width of :meth:`decode_features`."""
        raise NotImplementedError(f"{type(self).__name__} does not expose its decoder states (feature_dim)")

    def init_state(self, enc: Encoded) -> Any:
        """Empty decoding cache for a batch encoded as ``enc``."""
        raise NotImplementedError

    def step(self, enc: Encoded, tokens: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
        """One decoding step: previous tokens [B] -> logits [B, V], updated cache."""
        raise NotImplementedError

    def select_state(self, state: Any, index: torch.Tensor) -> Any:
        """Reorder / repeat cache rows (beam search, K samples per source)."""
        return select_rows(state, index)

    def forward(self, src: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(src), tgt_in)

    def token_log_probs(self, enc: Encoded, tgt: torch.Tensor) -> torch.Tensor:
        """Full log-distributions [B, T, V] under teacher forcing on ``tgt``."""
        return F.log_softmax(mask_special(self.decode(enc, shift_right(tgt))), dim=-1)

    def score(self, src: torch.Tensor, tgt: torch.Tensor, enc: Encoded | None = None) -> torch.Tensor:
        """Per-token log-probabilities log p(y_t | y_<t, x) [B, T]; 0 at padding."""
        enc = self.encode(src) if enc is None else enc
        logp = self.token_log_probs(enc, tgt)
        out = logp.gather(-1, tgt.unsqueeze(-1)).squeeze(-1)
        return out.masked_fill(tgt.eq(PAD_ID), 0.0)
