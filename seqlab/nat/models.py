"""Non-autoregressive Transformer (NAT) and the autoregressive demonstrator with imitation modules (DAT).

``dat``: the pre-norm Transformer of :mod:`seqlab.models.transformer` with an
:class:`~seqlab.nat.imitation.ImitationModule` before every decoder layer.  It keeps the autoregressive
protocol (encode / decode / init_state / step), so beam search, ``score`` and the MLE path work on it,
and adds :meth:`DAT.decode_with_actions` returning the per-layer action log-distributions.

``nat``: the same encoder; a non-causal decoder whose inputs are copies of the source embeddings (the papers'
choice; ``copy_source: encoder`` copies the top encoder states instead) — UniformCopy (source position
round(S′ t / L)) or SoftCopy (w_tj = softmax_j(−|c_t − j| / τ), τ learnable, c_t = t or, with
``softcopy_positions: scaled``, t scaled to the source length) — plus sinusoidal positions; a length
predictor (classification over the target length or over its offset from the source length, from the
mean-pooled encoder output); optional imitation modules.  All target
tokens come out of one decoder pass.  Parameter names mirror ``dat`` (``tgt_embed``, ``encoder``,
``layers``, ``norm``, ``imitation``) so :func:`init_from_teacher` can copy a demonstrator's weights.

Length convention: the NAT predicts the L tokens of a target *without* its EOS; outputs carry EOS after
the L tokens (seqlab's target convention), and EOS is never generated inside the L positions.
Source length S′ counts the source tokens without EOS (the EOS state can still be copied / attended).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from seqlab.data.vocab import EOS_ID, PAD_ID
from seqlab.decoding.search import Hypotheses
from seqlab.models import register_model
from seqlab.models.base import Encoded, Seq2SeqModel, mask_special
from seqlab.models.transformer import (
    DecoderLayer,
    Transformer,
    TransformerConfig,
    TransformerEncoder,
    key_padding_bias,
    sinusoidal_positions,
)
from seqlab.nat.imitation import ImitationModule


# ---------------------------------------------------------------------------------------------- copying
def uniform_copy_indices(src_lengths: torch.Tensor, tgt_lengths: torch.Tensor, width: int) -> torch.Tensor:
    """UniformCopy (Gu et al. 2018): decoder position t copies source position round(S′ t / L).

    ``src_lengths`` S′ [B], ``tgt_lengths`` L [B] -> indices [B, width] (0 at positions t >= L).
    Rounding is half-up (floor(x + 0.5)), not banker's rounding."""
    t = torch.arange(width, device=tgt_lengths.device)[None, :]
    s, length = src_lengths[:, None].long(), tgt_lengths[:, None].clamp(min=1).long()
    idx = torch.div(2 * s * t + length, 2 * length, rounding_mode="floor")  # exact floor(s t / L + 1/2)
    idx = torch.minimum(idx, src_lengths[:, None])
    return idx.masked_fill(t >= tgt_lengths[:, None], 0)


def soft_copy_weights(
    width: int, src_pad_mask: torch.Tensor, tau: torch.Tensor | float, stride: torch.Tensor | None = None
) -> torch.Tensor:
    """SoftCopy (Wei et al. 2019): w_tj = softmax_j(−|c_t − j| / τ) over the non-padding source positions j,
    with c_t = t, or c_t = stride_b · t given a per-row ``stride`` [B] (source positions per target position).

    Returns [B, width, S]; every row sums to one."""
    s = src_pad_mask.size(1)
    t = torch.arange(width, device=src_pad_mask.device, dtype=torch.float)
    j = torch.arange(s, device=src_pad_mask.device, dtype=torch.float)
    tau = torch.as_tensor(tau, device=src_pad_mask.device, dtype=torch.float)
    centers = t[None, :] if stride is None else stride.float()[:, None] * t[None, :]  # [1 or B, T]
    logits = -(centers[:, :, None] - j[None, None, :]).abs() / tau  # [1 or B, T, S]
    logits = logits.expand(src_pad_mask.size(0), -1, -1)
    logits = logits.masked_fill(src_pad_mask[:, None, :], float("-inf"))
    return logits.softmax(-1)


def scaled_copy_stride(src_lengths: torch.Tensor, tgt_lengths: torch.Tensor) -> torch.Tensor:
    """Source positions per target position that map the first and last of L target positions onto the first and
    last of S′ source tokens, (S′ − 1) / (L − 1) (0 for L = 1): fairseq's uniform assignment, unrounded."""
    stride = (src_lengths.float() - 1) / (tgt_lengths.float() - 1).clamp(min=1)
    return stride.masked_fill(tgt_lengths <= 1, 0.0)


def source_lengths(enc: Encoded) -> torch.Tensor:
    """S′: non-padding source positions minus the EOS, at least 1."""
    return ((~enc.pad_mask).sum(1) - 1).clamp(min=1)


# ---------------------------------------------------------------------------------------------- DAT
@dataclass
class DATConfig(TransformerConfig):
    n_actions: int = 512  # action categories of the imitation module
    imitation_hidden: int | None = None  # width of the policy FFN (default d_model)


@register_model("dat", DATConfig)
class DAT(Transformer):
    """Autoregressive Transformer with an imitation module in each decoder layer (the demonstrator)."""

    def __init__(self, cfg: DATConfig):
        super().__init__(cfg)
        self.imitation = nn.ModuleList(
            ImitationModule(cfg.d_model, cfg.n_actions, cfg.imitation_hidden) for _ in range(cfg.decoder_layers)
        )

    def _layer_input(self, i: int, x: torch.Tensor) -> torch.Tensor:
        return x + self.imitation[i](x)[0]  # o_{l+1} = Layer(u + o): every decoding path (step, static step)

    def decode_with_actions(self, enc: Encoded, tgt_in: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Teacher-forced logits [B, T, V] and per-layer action log-distributions [B, T, A]."""
        x = self._embed_tgt(tgt_in, 0)
        bias = key_padding_bias(enc.pad_mask, x.dtype)
        log_pis = []
        for layer, kv, imitation in zip(self.layers, self._memory_kv(enc), self.imitation, strict=True):
            u, log_pi = imitation(x)
            log_pis.append(log_pi)
            x = layer(x + u, kv, bias)
        return self.output_logits(x), log_pis


# ---------------------------------------------------------------------------------------------- NAT
@dataclass
class NATConfig(TransformerConfig):
    copy: str = "softcopy"  # softcopy | uniform
    copy_source: str = "embeddings"  # embeddings (scaled source embeddings, the papers') | encoder (top states)
    softcopy_tau: float = 1.0  # initial τ (learned as log τ)
    softcopy_positions: str = "absolute"  # absolute: c_t = t (the paper) | scaled: t (S′ − 1) / (L − 1)
    imitation: bool = False  # imitation modules in the decoder (imitate-NAT)
    n_actions: int = 512
    imitation_hidden: int | None = None
    length_mode: str = "offset"  # offset: classes L - S′ in [-max_length_offset, max_length_offset]; absolute
    max_length_offset: int = 32
    length_delta: int = 0  # ΔT of generate(): 2ΔT+1 candidate lengths around the predicted one
    length_normalize: bool = True  # rescoring by mean (not summed) per-token log-likelihood
    dedupe_repeats: bool = False  # generate(): collapse consecutive repeated tokens


@register_model("nat", NATConfig)
class NAT(Seq2SeqModel):
    """Non-autoregressive Transformer: length prediction, copied decoder inputs, one non-causal pass."""

    def __init__(self, cfg: NATConfig):
        super().__init__()
        if cfg.copy not in ("softcopy", "uniform"):
            raise ValueError(f"NAT copy must be 'softcopy' or 'uniform', got {cfg.copy!r}")
        if cfg.length_mode not in ("offset", "absolute"):
            raise ValueError(f"NAT length_mode must be 'offset' or 'absolute', got {cfg.length_mode!r}")
        if cfg.copy_source not in ("embeddings", "encoder"):
            raise ValueError(f"NAT copy_source must be 'embeddings' or 'encoder', got {cfg.copy_source!r}")
        if cfg.softcopy_positions not in ("absolute", "scaled"):
            raise ValueError(f"NAT softcopy_positions must be 'absolute' or 'scaled', got {cfg.softcopy_positions!r}")
        self.cfg, self.vocab_size = cfg, cfg.tgt_vocab_size
        self.tgt_embed = nn.Embedding(cfg.tgt_vocab_size, cfg.d_model, padding_idx=PAD_ID)
        shared = cfg.share_embeddings and cfg.src_vocab_size == cfg.tgt_vocab_size
        src_embed = self.tgt_embed if shared else nn.Embedding(cfg.src_vocab_size, cfg.d_model, padding_idx=PAD_ID)
        self.encoder = TransformerEncoder(cfg, src_embed)
        self.layers = nn.ModuleList(DecoderLayer(cfg, causal=False) for _ in range(cfg.decoder_layers))
        self.imitation = (
            nn.ModuleList(
                ImitationModule(cfg.d_model, cfg.n_actions, cfg.imitation_hidden) for _ in range(cfg.decoder_layers)
            )
            if cfg.imitation
            else None
        )
        self.norm = nn.LayerNorm(cfg.d_model)
        self.drop = nn.Dropout(cfg.dropout)
        n_classes = 2 * cfg.max_length_offset + 1 if cfg.length_mode == "offset" else cfg.max_positions
        self.length_head = nn.Linear(cfg.d_model, n_classes)
        if cfg.copy == "softcopy":
            self.log_tau = nn.Parameter(torch.tensor(math.log(cfg.softcopy_tau)))
        positions = sinusoidal_positions(cfg.max_positions, cfg.d_model)
        self.register_buffer("positions", positions, persistent=False)
        for emb in dict.fromkeys([self.tgt_embed, src_embed]):  # a fixed order (a set's depends on addresses)
            nn.init.normal_(emb.weight, std=cfg.d_model**-0.5)
            with torch.no_grad():
                emb.weight[PAD_ID].zero_()
        self.__dict__["_rescorer"] = None  # an AR model for length-parallel decoding; not a submodule

    # ------------------------------------------------------------------ encoder and length
    def encode(self, src: torch.Tensor) -> Encoded:
        """Encoder states, and with ``copy_source: embeddings`` the scaled source embeddings (``extra["embedded"]``,
        [B, S, D], no positions, no dropout: what the decoder inputs copy)."""
        memory, pad_mask = self.encoder(src)
        if self.cfg.copy_source == "encoder":
            return Encoded(memory, pad_mask)
        embedded = self.encoder.embed(src) * self.encoder.scale
        return Encoded(memory, pad_mask, {"embedded": embedded.to(memory.dtype)})

    def copy_states(self, enc: Encoded) -> torch.Tensor:
        """What the decoder inputs copy [B, S, D]: the scaled source embeddings or the top encoder states."""
        return enc.memory if self.cfg.copy_source == "encoder" else enc.extra["embedded"]

    @property
    def tau(self) -> torch.Tensor:
        """SoftCopy temperature τ = exp(log τ)."""
        return self.log_tau.exp()

    def length_logits(self, enc: Encoded) -> torch.Tensor:
        """Length-class logits [B, K] from the mean-pooled encoder output."""
        keep = (~enc.pad_mask).unsqueeze(-1).to(enc.memory.dtype)
        pooled = (enc.memory * keep).sum(1) / keep.sum(1).clamp(min=1)
        return self.length_head(pooled).float()

    def length_to_class(self, enc: Encoded, lengths: torch.Tensor) -> torch.Tensor:
        """Target lengths L [B] -> length classes (clamped into range)."""
        if self.cfg.length_mode == "offset":
            m = self.cfg.max_length_offset
            return (lengths - source_lengths(enc)).clamp(-m, m) + m
        return lengths.clamp(0, self.length_head.out_features - 1)

    def class_to_length(self, enc: Encoded, classes: torch.Tensor) -> torch.Tensor:
        """Length classes [B] -> target lengths L (>= 1)."""
        if self.cfg.length_mode == "offset":
            lengths = source_lengths(enc) + classes - self.cfg.max_length_offset
        else:
            lengths = classes
        return lengths.clamp(min=1, max=self.cfg.max_positions - 1)

    def predict_lengths(self, enc: Encoded) -> torch.Tensor:
        """argmax length L̂ [B]."""
        return self.class_to_length(enc, self.length_logits(enc).argmax(-1))

    # ------------------------------------------------------------------ decoder
    def decoder_inputs(self, enc: Encoded, lengths: torch.Tensor, width: int | None = None) -> torch.Tensor:
        """Copied source states (:meth:`copy_states`) for target lengths ``lengths`` [B] -> [B, width, D] (before
        positions); ``width`` defaults to max L (a device sync: give it, at least max L, for a fixed-shape pass)."""
        width = int(lengths.max()) if width is None else width
        states = self.copy_states(enc)
        if self.cfg.copy == "uniform":
            idx = uniform_copy_indices(source_lengths(enc), lengths, width)
            return states.gather(1, idx.unsqueeze(-1).expand(-1, -1, states.size(-1)))
        stride = (
            scaled_copy_stride(source_lengths(enc), lengths.clamp(min=1))
            if self.cfg.softcopy_positions == "scaled"
            else None
        )
        w = soft_copy_weights(width, enc.pad_mask, self.tau, stride)
        return torch.bmm(w.to(states.dtype), states)

    def decode_with_actions(
        self, enc: Encoded, lengths: torch.Tensor, width: int | None = None
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """One non-causal pass for target lengths [B]: logits [B, W, V] (raw) and per-layer
        action log-distributions [B, W, A] (empty list without imitation modules); W = ``width`` or max L.
        Positions at or past a row's length are padding: they do not change the others."""
        lengths = lengths.clamp(min=1)
        x = self.decoder_inputs(enc, lengths, width)
        width = x.size(1)
        x = self.drop(x + self.positions[:width].to(x.dtype))
        tgt_pad = torch.arange(width, device=x.device)[None, :] >= lengths[:, None]
        self_bias = key_padding_bias(tgt_pad, x.dtype)
        mem_bias = key_padding_bias(enc.pad_mask, x.dtype)
        log_pis: list[torch.Tensor] = []
        for i, layer in enumerate(self.layers):
            if self.imitation is not None:
                u, log_pi = self.imitation[i](x)
                log_pis.append(log_pi)
                x = x + u
            x = layer(x, layer.cross_attn.project_kv(enc.memory), mem_bias, self_mask=self_bias)
        return F.linear(self.norm(x), self.tgt_embed.weight), log_pis

    def log_probs(self, enc: Encoded, lengths: torch.Tensor, width: int | None = None) -> torch.Tensor:
        """Token log-distributions [B, W, V] (W = ``width`` or max L); PAD, BOS and EOS excluded."""
        logits = mask_special(self.decode_with_actions(enc, lengths, width)[0])
        logits[..., EOS_ID] = float("-inf")
        return F.log_softmax(logits, dim=-1)

    # ------------------------------------------------------------------ AR protocol: not applicable
    def decode(self, enc: Encoded, tgt_in: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError(
            "NAT is non-autoregressive: train it with algorithm 'nat' or 'imitate_nat', decode it with generate()"
        )

    def init_state(self, enc: Encoded) -> Any:
        raise NotImplementedError("NAT has no incremental decoding state; use generate()")

    def step(self, enc: Encoded, tokens: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
        raise NotImplementedError("NAT has no incremental decoding; use generate()")

    def score(self, src: torch.Tensor, tgt: torch.Tensor, enc: Encoded | None = None) -> torch.Tensor:
        """Per-position log-probabilities [B, T] of ``tgt`` (tokens, EOS, PAD) under the NAT factorisation:
        log p(y_t | x, L) at the L token positions and log p(L | x) at the EOS position, so that the row
        sum is log p(y | x)."""
        enc = self.encode(src) if enc is None else enc
        lengths = tgt.ne(PAD_ID).sum(1) - 1  # without EOS
        body = tgt.masked_fill(tgt.eq(EOS_ID), PAD_ID)
        out = torch.zeros(tgt.shape, device=tgt.device, dtype=torch.float)
        if int(lengths.max()) > 0:
            logp = self.log_probs(enc, lengths)
            width = logp.size(1)
            tok = body[:, :width]
            got = logp.gather(-1, tok.unsqueeze(-1)).squeeze(-1).masked_fill(tok.eq(PAD_ID), 0.0)
            out[:, :width] = got
        len_logp = (
            F.log_softmax(self.length_logits(enc), -1)
            .gather(1, self.length_to_class(enc, lengths.clamp(min=1)).unsqueeze(1))
            .squeeze(1)
        )
        eos_pos = lengths.clamp(min=0)
        return out.scatter(1, eos_pos.unsqueeze(1), len_logp.unsqueeze(1))

    # ------------------------------------------------------------------ generation
    def set_rescorer(self, model: Seq2SeqModel | None) -> None:
        """Attach an autoregressive model that rescores the length candidates of :meth:`generate`
        (kept outside the module tree: never saved, never trained, never moved by ``.to``)."""
        self.__dict__["_rescorer"] = model

    @property
    def rescorer(self) -> Seq2SeqModel | None:
        return self.__dict__.get("_rescorer")

    @torch.no_grad()
    def generate(self, src: torch.Tensor, decode_cfg: Any = None, beam_size: int | None = None) -> Hypotheses:
        """Decode ``src``: argmax length (``length_delta`` 0), or length-parallel decoding over
        [L̂ − ΔT, L̂ + ΔT] rescored by the attached AR model (by the NAT itself without one).
        ``beam_size`` does not apply to a NAT and is ignored."""
        from seqlab.nat.decoding import length_parallel_decode

        max_len = getattr(decode_cfg, "max_len", self.cfg.max_positions)
        return length_parallel_decode(
            self,
            src,
            delta_t=self.cfg.length_delta,
            teacher=self.rescorer,
            normalize=self.cfg.length_normalize,
            max_len=max_len,
            dedupe=self.cfg.dedupe_repeats,
        )


# ---------------------------------------------------------------------------------------------- init
@torch.no_grad()
def init_from_teacher(student: nn.Module, teacher: nn.Module) -> list[str]:
    """Copy every teacher tensor whose name and shape match the student's.  From a ``dat`` (or ``transformer``)
    demonstrator into a NAT: the embeddings, the encoder, the decoder layers (self-attention, cross-attention,
    feed-forward, their norms), the output norm and, when both have them, the imitation modules; the NAT's
    length head and SoftCopy τ keep their initialisation.  Returns the names copied."""
    src = teacher.state_dict()
    copied = []
    for name, value in student.state_dict().items():
        if name in src and src[name].shape == value.shape:
            value.copy_(src[name].to(value.device, value.dtype))
            copied.append(name)
    return copied
