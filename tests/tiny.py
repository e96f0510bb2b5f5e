"""Tiny enumerable models and batches for exact tests."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch
from torch import nn

from seqlab.data.vocab import EOS_ID, PAD_ID
from seqlab.models.base import Encoded, Seq2SeqModel, shift_right


class TableModel(Seq2SeqModel):
    """logits[t] = W[t, previous token] + a fixed EOS bias per position (so lengths stay enumerable).

    With ``eos_at`` = L the EOS bias at position L is +60: every sequence ends within L+1 tokens."""

    def __init__(self, vocab_size: int = 7, positions: int = 4, eos_at: int = 2, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.vocab_size = vocab_size
        self.table = nn.Parameter(torch.randn(positions, vocab_size, vocab_size, generator=g))
        bias = torch.zeros(positions, vocab_size)
        bias[eos_at:, EOS_ID] = 60.0
        self.register_buffer("eos_bias", bias)

    def encode(self, src: torch.Tensor) -> Encoded:
        return Encoded(torch.zeros(src.size(0), 1, 1), torch.zeros(src.size(0), 1, dtype=torch.bool))

    def decode(self, enc: Encoded, tgt_in: torch.Tensor) -> torch.Tensor:
        t = torch.arange(tgt_in.size(1)).clamp(max=self.table.size(0) - 1)
        return self.table[t[None, :], tgt_in] + self.eos_bias[t][None]

    def init_state(self, enc: Encoded) -> dict:
        return {"t": 0}

    def step(self, enc: Encoded, tokens: torch.Tensor, state: dict):
        t = min(state["t"], self.table.size(0) - 1)
        return self.table[t, tokens] + self.eos_bias[t], {"t": state["t"] + 1}


@dataclass
class TinyBatch:
    src: torch.Tensor
    tgt: torch.Tensor


def make_targets(seqs: list[list[int]]) -> torch.Tensor:
    width = max(len(s) for s in seqs) + 1
    out = torch.full((len(seqs), width), PAD_ID, dtype=torch.long)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = torch.tensor(s, dtype=torch.long)
        out[i, len(s)] = EOS_ID
    return out


def all_sequences(tokens: list[int], length: int) -> torch.Tensor:
    """Every sequence of exactly ``length`` tokens (then EOS)."""
    return make_targets([list(p) for p in itertools.product(tokens, repeat=length)])


def all_sequences_up_to(tokens: list[int], max_length: int) -> torch.Tensor:
    seqs = [list(p) for n in range(max_length + 1) for p in itertools.product(tokens, repeat=n)]
    return make_targets(seqs)


def seq_log_probs(model: Seq2SeqModel, src: torch.Tensor, seqs: torch.Tensor) -> torch.Tensor:
    return model.score(src.expand(seqs.size(0), -1), seqs).sum(1)


__all__ = [
    "TableModel",
    "TinyBatch",
    "make_targets",
    "all_sequences",
    "all_sequences_up_to",
    "seq_log_probs",
    "shift_right",
]


#: the vocabulary of the decoding tests' tiny models
DECODING_VOCAB = 30


def random_sources(seed: int, rows: int = 5, longest: int = 11, vocab: int = DECODING_VOCAB) -> torch.Tensor:
    """Random sources of varied lengths (EOS, then PAD), padded to the longest (the decoding tests' inputs)."""
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(4, vocab, (rows, longest), generator=g)
    lens = torch.randint(2, longest + 1, (rows,), generator=g)
    lens[0] = longest
    for r, n in enumerate(lens.tolist()):
        src[r, n - 1] = EOS_ID
        src[r, n:] = PAD_ID
    return src
