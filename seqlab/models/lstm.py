"""Attentional LSTM encoder-decoder (Luong et al. 2015): bidirectional encoder, input feeding."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from seqlab.data.vocab import PAD_ID
from seqlab.models.base import Encoded, Seq2SeqModel


@dataclass
class LSTMConfig:
    src_vocab_size: int
    tgt_vocab_size: int
    embed_dim: int = 256
    hidden_dim: int = 256
    layers: int = 1
    attention: str = "general"  # "dot" or "general"
    dropout: float = 0.2
    tie_embeddings: bool = True  # output projection shares the target embedding when sizes allow


class LuongAttention(nn.Module):
    def __init__(self, dim: int, kind: str):
        super().__init__()
        if kind not in ("dot", "general"):
            raise ValueError(f"attention must be 'dot' or 'general', got {kind!r}")
        self.proj = nn.Linear(dim, dim, bias=False) if kind == "general" else nn.Identity()
        self.combine = nn.Linear(2 * dim, dim, bias=False)

    def forward(
        self, h: torch.Tensor, memory: torch.Tensor, pad_mask: torch.Tensor, keys: torch.Tensor | None = None
    ) -> torch.Tensor:
        """h [B, H], memory [B, S, H] -> attentional hidden state tanh(W [c; h]) [B, H]."""
        keys = self.proj(memory) if keys is None else keys
        scores = torch.bmm(keys, h.unsqueeze(2)).squeeze(2).masked_fill(pad_mask, float("-inf"))
        context = torch.bmm(scores.softmax(-1).unsqueeze(1), memory).squeeze(1)
        return torch.tanh(self.combine(torch.cat([context, h], dim=-1)))


class AttentionalLSTM(Seq2SeqModel):
    def __init__(self, cfg: LSTMConfig):
        super().__init__()
        self.cfg, self.vocab_size = cfg, cfg.tgt_vocab_size
        h = cfg.hidden_dim
        if h % 2:
            raise ValueError("hidden_dim must be even (bidirectional encoder halves)")
        self.src_embed = nn.Embedding(cfg.src_vocab_size, cfg.embed_dim, padding_idx=PAD_ID)
        self.tgt_embed = nn.Embedding(cfg.tgt_vocab_size, cfg.embed_dim, padding_idx=PAD_ID)
        self.encoder = nn.LSTM(
            cfg.embed_dim,
            h // 2,
            cfg.layers,
            batch_first=True,
            bidirectional=True,
            dropout=cfg.dropout if cfg.layers > 1 else 0.0,
        )
        self.bridge_h = nn.Linear(h, h)
        self.bridge_c = nn.Linear(h, h)
        self.decoder = nn.LSTM(
            cfg.embed_dim + h, h, cfg.layers, batch_first=True, dropout=cfg.dropout if cfg.layers > 1 else 0.0
        )
        self.attention = LuongAttention(h, cfg.attention)
        self.drop = nn.Dropout(cfg.dropout)
        self.pre_out = nn.Linear(h, cfg.embed_dim) if cfg.tie_embeddings else nn.Identity()
        self.out = nn.Linear(cfg.embed_dim if cfg.tie_embeddings else h, cfg.tgt_vocab_size)
        if cfg.tie_embeddings:
            self.out.weight = self.tgt_embed.weight

    def encode(self, src: torch.Tensor) -> Encoded:
        pad_mask = src.eq(PAD_ID)
        lengths = (~pad_mask).sum(1).clamp(min=1).cpu()
        packed = nn.utils.rnn.pack_padded_sequence(
            self.drop(self.src_embed(src)), lengths, batch_first=True, enforce_sorted=False
        )
        out, (h, c) = self.encoder(packed)
        memory, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=src.size(1))

        def merge(s: torch.Tensor) -> torch.Tensor:  # [2L, B, H/2] -> [L, B, H]
            return s.view(self.cfg.layers, 2, s.size(1), -1).transpose(1, 2).reshape(self.cfg.layers, s.size(1), -1)

        extra = {
            "h0": torch.tanh(self.bridge_h(merge(h))).transpose(0, 1),
            "c0": self.bridge_c(merge(c)).transpose(0, 1),
        }
        return Encoded(memory, pad_mask, extra)

    def init_state(self, enc: Encoded) -> dict:
        b = enc.memory.size(0)
        return {
            "h": enc.extra["h0"],
            "c": enc.extra["c0"],  # batch-first [B, L, H]
            "feed": enc.memory.new_zeros(b, self.cfg.hidden_dim),
            "keys": self.attention.proj(enc.memory),
        }

    def _step_features(self, enc: Encoded, tokens: torch.Tensor, state: dict) -> tuple[torch.Tensor, dict]:
        """One step: the attentional hidden state [B, H] (before the output dropout) and the updated cache."""
        x = torch.cat([self.drop(self.tgt_embed(tokens)), state["feed"]], dim=-1).unsqueeze(1)
        hc = (state["h"].transpose(0, 1).contiguous(), state["c"].transpose(0, 1).contiguous())
        out, (h, c) = self.decoder(x, hc)
        att = self.attention(out[:, 0], enc.memory, enc.pad_mask, state["keys"])
        return att, {"h": h.transpose(0, 1), "c": c.transpose(0, 1), "feed": att, "keys": state["keys"]}

    def step(self, enc: Encoded, tokens: torch.Tensor, state: dict) -> tuple[torch.Tensor, dict]:
        att, state = self._step_features(enc, tokens, state)
        return self.out(self.pre_out(self.drop(att))), state

    def decode(self, enc: Encoded, tgt_in: torch.Tensor) -> torch.Tensor:
        state, outs = self.init_state(enc), []
        for t in range(tgt_in.size(1)):
            logits, state = self.step(enc, tgt_in[:, t], state)
            outs.append(logits)
        return torch.stack(outs, dim=1)

    def decode_features(self, enc: Encoded, tgt_in: torch.Tensor) -> torch.Tensor:
        """The attentional hidden states tanh(W [c; h]) [B, T, hidden_dim] (the output layer's input)."""
        state, outs = self.init_state(enc), []
        for t in range(tgt_in.size(1)):
            att, state = self._step_features(enc, tgt_in[:, t], state)
            outs.append(att)
        return self.drop(torch.stack(outs, dim=1))

    @property
    def feature_dim(self) -> int:
        return self.cfg.hidden_dim
