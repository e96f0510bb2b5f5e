"""Critics and Q-networks conditioned on the reference: Q_phi(y_<t, w; y* [, x]).

A critic is an ordinary seq2seq model of :mod:`seqlab.models` whose *source* is the reference y* (optionally
followed by the source sentence x, whose ids are shifted past the target vocabulary) and whose decoder reads
the prefix y_<t, topped by the critic's own **untied Q head**: a linear layer with a bias on the decoder's final
states (``decode_features``), initialised flat (zero, or U(+-``head_init``) as in the authors' code).  The
model's own output layer is not used: with a projection tied to the input embeddings, a residual decoder
carries the previous token to the output and a fresh critic values "repeat the previous token" far above every
other action (docs/credit.md).  The critic sits behind the same protocol as every model (``encode`` once,
decoder states for all prefix positions), in either architecture and at any size
(``build_model(arch, V_in, V, **options)``).  The critic's ``Encoded`` is its own, never the actor's.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch
from torch import nn

from seqlab.data.vocab import PAD_ID
from seqlab.models import build_model
from seqlab.models.base import Encoded, Seq2SeqModel, mask_special, shift_right


def critic_source(ref: torch.Tensor, src: torch.Tensor | None = None, offset: int = 0) -> torch.Tensor:
    """The critic's input: y* (with EOS), then (if given) x with ids shifted by ``offset``; right-padded."""
    if src is None:
        return ref
    ref_len = ref.ne(PAD_ID).sum(1)
    src_len = src.ne(PAD_ID).sum(1)
    width = int((ref_len + src_len).max())
    n = ref.size(0)
    out = torch.full((n, width), PAD_ID, dtype=torch.long, device=ref.device)
    pos = torch.arange(width, device=ref.device)[None]
    ref_part = torch.nn.functional.pad(ref, (0, max(width - ref.size(1), 0)), value=PAD_ID)[:, :width]
    out = torch.where(pos < ref_len[:, None], ref_part, out)
    # source ids are placed right after the reference's EOS: gather x[pos - ref_len]
    src_idx = (pos - ref_len[:, None]).clamp(min=0, max=max(src.size(1) - 1, 0))
    shifted = torch.where(src.ne(PAD_ID), src + offset, src).gather(1, src_idx)
    in_src = (pos >= ref_len[:, None]) & (pos < (ref_len + src_len)[:, None])
    return torch.where(in_src, shifted, out)


class ReferenceCritic(nn.Module):
    """Q_phi(y_<t, w; y* [, x]) on top of any :class:`Seq2SeqModel` ``net``.

    ``read_source``: the critic also reads x (``src_vocab_size`` then gives the id offset's range).
    ``head_init``: the Q head's weight and bias start at 0 (flat Q, the default) or U(-head_init, head_init).
    ``q_head=False`` reads the net's own outputs as Q-values: only for nets whose outputs are free per state
    (the tabular Q-network of :mod:`seqlab.credit.mdp`), never for a model with a tied output layer."""

    def __init__(
        self,
        net: Seq2SeqModel,
        vocab_size: int,
        read_source: bool = False,
        src_vocab_size: int | None = None,
        head_init: float = 0.0,
        q_head: bool = True,
    ):
        super().__init__()
        if read_source and not src_vocab_size:
            raise ValueError("a critic that reads the source needs src_vocab_size")
        if head_init < 0:
            raise ValueError(f"head_init must be >= 0, got {head_init}")
        self.net, self.vocab_size = net, vocab_size
        self.read_source, self.src_vocab_size = read_source, src_vocab_size
        self.q_head = nn.Linear(net.feature_dim, vocab_size) if q_head else None
        if self.q_head is not None:
            with torch.no_grad():
                for p in self.q_head.parameters():
                    p.uniform_(-head_init, head_init) if head_init > 0 else p.zero_()

    @classmethod
    def build(
        cls,
        vocab_size: int,
        arch: str = "transformer",
        options: dict[str, Any] | None = None,
        read_source: bool = False,
        src_vocab_size: int | None = None,
        head_init: float = 0.0,
    ) -> ReferenceCritic:
        in_vocab = vocab_size + (int(src_vocab_size or 0) if read_source else 0)
        net = build_model(arch, in_vocab, vocab_size, **(options or {}))
        return cls(net, vocab_size, read_source, src_vocab_size, head_init)

    def source(self, ref: torch.Tensor, src: torch.Tensor | None = None) -> torch.Tensor:
        return critic_source(ref, src if self.read_source else None, offset=self.vocab_size)

    def encode(self, ref: torch.Tensor, src: torch.Tensor | None = None) -> Encoded:
        return self.net.encode(self.source(ref, src))

    def q_values(self, enc: Encoded, tokens: torch.Tensor) -> torch.Tensor:
        """Q(y_<t, w) for every position t of ``tokens`` [N, T]: [N, T, V] float, -inf at PAD and BOS."""
        if self.q_head is None:
            return mask_special(self.net.decode(enc, shift_right(tokens)))
        return mask_special(self.q_head(self.net.decode_features(enc, shift_right(tokens))))

    def forward(self, ref: torch.Tensor, tokens: torch.Tensor, src: torch.Tensor | None = None) -> torch.Tensor:
        return self.q_values(self.encode(ref, src), tokens)


def frozen_copy(module: nn.Module) -> nn.Module:
    """A non-trainable copy (target network): requires_grad False, so the trainer's optimizer skips it."""
    twin = copy.deepcopy(module)
    for p in twin.parameters():
        p.requires_grad_(False)
    return twin


@torch.no_grad()
def soft_update(target: nn.Module, source: nn.Module, beta: float) -> None:
    """phi_bar <- beta * phi + (1 - beta) * phi_bar (parameters); buffers are copied."""
    tgt_params = [p for p in target.parameters()]
    src_params = [p.detach() for p in source.parameters()]
    if beta >= 1.0:
        torch._foreach_copy_(tgt_params, src_params)
    else:
        torch._foreach_lerp_(tgt_params, src_params, beta)
    for b_t, b_s in zip(target.buffers(), source.buffers(), strict=True):
        b_t.copy_(b_s)


def load_critic_state(path: str | Path, prefix: str = "critic.") -> dict[str, torch.Tensor]:
    """The critic's weights from a trainer checkpoint (``algorithm`` entries under ``prefix``) or a bare state
    dict."""
    from seqlab.train.checkpoint import load

    return critic_state(load(path), path, prefix)


def critic_state(state: dict[str, Any], source: str | Path, prefix: str = "critic.") -> dict[str, torch.Tensor]:
    """:func:`load_critic_state` on a checkpoint already loaded from ``source`` (named in the error)."""
    if "algorithm" in state:
        sub = {k[len(prefix) :]: v for k, v in state["algorithm"].items() if k.startswith(prefix)}
        if not sub:
            raise ValueError(f"{source}: the checkpoint's algorithm state has no {prefix!r} entries")
        return sub
    return state


__all__ = ["ReferenceCritic", "critic_source", "critic_state", "frozen_copy", "soft_update", "load_critic_state"]
