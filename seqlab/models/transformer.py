"""Pre-norm Transformer encoder-decoder with tied embeddings, SDPA attention and a KV cache."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from seqlab.data.vocab import PAD_ID
from seqlab.models.base import Encoded, Seq2SeqModel, embed_tokens

if TYPE_CHECKING:
    from seqlab.decoding.graphs import SharedBuffers


@dataclass
class TransformerConfig:
    src_vocab_size: int
    tgt_vocab_size: int
    d_model: int = 512
    n_heads: int = 8
    ffn_dim: int = 2048
    encoder_layers: int = 6
    decoder_layers: int = 6
    dropout: float = 0.1
    attention_dropout: float = 0.0
    max_positions: int = 1024
    share_embeddings: bool = True  # source and target embeddings (needs a shared vocabulary)


def sinusoidal_positions(n: int, dim: int) -> torch.Tensor:
    pos = torch.arange(n, dtype=torch.float).unsqueeze(1)
    div = torch.exp(torch.arange(0, dim, 2, dtype=torch.float) * (-math.log(10000.0) / dim))
    table = torch.zeros(n, dim)
    table[:, 0::2] = torch.sin(pos * div)
    table[:, 1::2] = torch.cos(pos * div)
    return table


#: cuDNN's attention kernel is switched off around every attention call unless SEQLAB_CUDNN_ATTENTION=1: it builds
#: an execution plan for every new shape, and sampling loops, chunked losses and length-bucketed batches keep bringing
#: new ones (one H200 profile of a PG / AC step: 0.5-1 ms of host time per forward call and up to 9.5 ms per backward
#: call, against 0.05 ms for flash attention; benchmarks/bench_step_time.py --profile).  SDPA then picks flash or
#: memory-efficient attention (math on the CPU).
CUDNN_ATTENTION = os.environ.get("SEQLAB_CUDNN_ATTENTION", "0") == "1"


SINGLE_QUERY_MODES = ("auto", "matmul", "sdpa", "reduce")


def single_query_mode(text: str | None) -> str:
    """SEQLAB_SINGLE_QUERY_ATTENTION, how a decoding step's attention (one query per row, CUDA) runs: ``matmul`` (two
    batched matmuls and a softmax, :func:`single_query_attention`), ``sdpa`` (SDPA's fused kernels, which spend a tile
    of query rows on the one query), ``reduce`` (products and sums, no matrix product: what torch.compile fuses with the
    softmax, where a batch-1 step's matmuls are each a launch-bound cuBLAS kernel), or ``auto`` (the default): matmul
    for float32 queries, SDPA otherwise. In float32 SDPA runs its memory-efficient kernel (45 % of a captured beam-5
    search's GPU time on an H200), and on one H200 matmuls decoded greedy 16-25 % and beam 5 38 % faster, batch-1
    latency within the runs' spread (untrained model, two runs; BENCHMARKS.md, Speed, session 23). In bfloat16 (training
    steps' sampling loops) the flash kernel runs, and matmuls changed those steps by -8 % to +19 % (9520c9f), so SDPA
    stays there."""
    mode = (text or "auto").strip().lower()
    if mode not in SINGLE_QUERY_MODES:
        raise ValueError(f"SEQLAB_SINGLE_QUERY_ATTENTION={text!r}: one of {', '.join(SINGLE_QUERY_MODES)}")
    return mode


SINGLE_QUERY_MODE = single_query_mode(os.environ.get("SEQLAB_SINGLE_QUERY_ATTENTION"))


def as_sums(mode: str) -> bool:
    """Whether products run as sums of elementwise products in ``mode`` (of :func:`single_query_mode` or
    :func:`few_rows_linear_mode`): in ``reduce`` mode, and in ``auto`` mode inside torch.compile, which fuses them."""
    return mode == "reduce" or (mode == "auto" and torch.compiler.is_compiling())


def single_query_by_matmul(q: torch.Tensor, mode: str | None = None) -> bool:
    """Whether queries ``q`` (one per row) go through :func:`single_query_attention` in ``mode``
    (:func:`single_query_mode`; default :data:`SINGLE_QUERY_MODE`): ``matmul`` and ``reduce`` always, ``auto`` in
    float32."""
    mode = SINGLE_QUERY_MODE if mode is None else mode
    return mode in ("matmul", "reduce") or (mode == "auto" and q.dtype == torch.float32)


def single_query_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, attn_mask: torch.Tensor | None = None
) -> torch.Tensor:
    """softmax(q k^T / sqrt(d) + mask) v for queries [B, H, 1, d] against keys [B, H, S, d]; ``attn_mask`` as
    ``F.scaled_dot_product_attention`` takes it (boolean: True attends; float: added), broadcast to [B, H, 1, S].
    Scores and softmax in fp32 (as the fused kernels accumulate).  The two products are sums of elementwise products
    in ``reduce`` mode (:data:`SINGLE_QUERY_MODE`), and in ``auto`` mode inside torch.compile, which fuses them with
    the softmax: one batch-1 greedy step on an H200 took 134 instead of 144 us of GPU time (BENCHMARKS.md, Speed,
    session 25)."""
    by_sums = as_sums(SINGLE_QUERY_MODE)
    scores = (q * k).sum(-1, keepdim=True).transpose(-2, -1) if by_sums else torch.matmul(q, k.transpose(-2, -1))
    scores, scale = scores.float(), q.size(-1) ** -0.5
    if attn_mask is None:
        scores = scores * scale
    elif attn_mask.dtype == torch.bool:
        scores = torch.where(attn_mask, scores * scale, float("-inf"))
    else:  # mask + scale * scores in one kernel (the same values where the scale is a power of two: head size 64)
        scores = torch.add(attn_mask, scores, alpha=scale)
    weights = scores.softmax(-1).to(v.dtype)
    return (weights.transpose(-2, -1) * v).sum(-2, keepdim=True) if by_sums else torch.matmul(weights, v)


FEW_ROWS_LINEAR_MODES = ("auto", "matmul", "reduce")
#: the most input rows (a batch-1 greedy or beam search step's) that a linear layer writes as sums in ``reduce`` mode
FEW_ROWS = 8


def few_rows_linear_mode(text: str | None) -> str:
    """SEQLAB_FEW_ROWS_LINEAR, how the Transformer's linear layers run on at most :data:`FEW_ROWS` rows (decoding: no
    gradients, no autocast): ``matmul`` (``F.linear``: at batch 1 a cuBLAS matrix-vector kernel bound by its launch),
    ``reduce`` (sums of elementwise products, which torch.compile turns into one reduction kernel fused with the bias
    and the elementwise work after it) or ``auto`` (the default): ``reduce`` inside torch.compile (the compiled
    decoding step, ``SEQLAB_COMPILE_DECODE=1``), ``matmul`` elsewhere. On one H200 the compiled batch-1 greedy step
    took 108 instead of 137 us of GPU time, and the search 2.50-2.76 instead of 3.06 ms (BENCHMARKS.md, Speed,
    session 26)."""
    mode = (text or "auto").strip().lower()
    if mode not in FEW_ROWS_LINEAR_MODES:
        raise ValueError(f"SEQLAB_FEW_ROWS_LINEAR={text!r}: one of {', '.join(FEW_ROWS_LINEAR_MODES)}")
    return mode


FEW_ROWS_LINEAR = few_rows_linear_mode(os.environ.get("SEQLAB_FEW_ROWS_LINEAR"))


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``F.linear(x, weight, bias)``; as sums of products for at most :data:`FEW_ROWS` rows of ``x`` without gradients
    (decoding) and outside autocast, where :func:`few_rows_linear_mode` says (``reduce``, or ``auto`` inside
    torch.compile)."""
    if (
        as_sums(FEW_ROWS_LINEAR)
        and x.numel() <= FEW_ROWS * x.size(-1)
        and not torch.is_grad_enabled()
        and not torch.is_autocast_enabled(x.device.type)
    ):
        y = (x.unsqueeze(-2) * weight).sum(-1)
        return y if bias is None else y + bias
    return F.linear(x, weight, bias)


def apply_linear(layer: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    """``layer(x)`` through :func:`linear`."""
    return linear(x, layer.weight, layer.bias)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, **kwargs) -> torch.Tensor:
    """``F.scaled_dot_product_attention`` without cuDNN's kernel (see :data:`CUDNN_ATTENTION`); the global switch
    is restored afterwards (two flag calls, not ``sdpa_kernel``'s ~17 us per call).  A decoding step's single
    query on CUDA without dropout goes through :func:`single_query_attention` where :func:`single_query_by_matmul`."""
    if (
        q.size(-2) == 1
        and q.is_cuda
        and not kwargs.get("dropout_p")
        and not kwargs.get("is_causal")
        and single_query_by_matmul(q)
    ):
        return single_query_attention(q, k, v, kwargs.get("attn_mask"))
    switch = not CUDNN_ATTENTION and not torch.compiler.is_compiling() and torch.backends.cuda.cudnn_sdp_enabled()
    if not switch:
        return F.scaled_dot_product_attention(q, k, v, **kwargs)
    torch.backends.cuda.enable_cudnn_sdp(False)
    try:
        return F.scaled_dot_product_attention(q, k, v, **kwargs)
    finally:
        torch.backends.cuda.enable_cudnn_sdp(True)


class Attention(nn.Module):
    """Multi-head attention on PyTorch's scaled_dot_product_attention (without cuDNN's kernel: :func:`attention`)."""

    def __init__(self, d_model: int, n_heads: int, dropout: float, self_attention: bool):
        super().__init__()
        self.n_heads, self.head_dim, self.dropout = n_heads, d_model // n_heads, dropout
        if self_attention:
            self.qkv = nn.Linear(d_model, 3 * d_model)
        else:
            self.q = nn.Linear(d_model, d_model)
            self.kv = nn.Linear(d_model, 2 * d_model)
        self.out = nn.Linear(d_model, d_model)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        return x.view(b, t, self.n_heads, self.head_dim).transpose(1, 2)

    def project_kv(self, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        k, v = apply_linear(self.kv, memory).chunk(2, dim=-1)
        return self._heads(k), self._heads(v)

    def forward(
        self,
        x: torch.Tensor,
        mask: torch.Tensor | None = None,
        is_causal: bool = False,
        kv: tuple[torch.Tensor, torch.Tensor] | None = None,
        cache: dict[str, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Self-attention if ``kv`` is None (with optional incremental ``cache``), else cross-attention.

        A ``cache`` holding a preallocated ``kv_buf`` [2, B, H, L, dh] (keys, values) and a position tensor ``t`` is
        written in place at ``t``, keys and values in one copy (fixed shapes, so the step can be captured in a CUDA
        graph); ``mask`` then hides the positions after ``t``, and the cache's ``window`` (if set) cuts the attended
        positions to the first ``window``."""
        if kv is None:
            projected = apply_linear(self.qkv, x)
            q, k, v = (self._heads(t) for t in projected.chunk(3, dim=-1))
            if cache is not None and "kv_buf" in cache:
                b, steps, width = projected.shape
                new = projected[..., width // 3 :].view(b, steps, 2, self.n_heads, self.head_dim)
                new = new.permute(2, 0, 3, 1, 4)  # [2, B, H, steps, dh]
                cache["kv_buf"].index_copy_(3, cache["t"], new)
                window = cache.get("window")  # the positions a static step attends to (None: the whole cache)
                k, v = cache["kv_buf"][:, :, :, :window].unbind(0)
            elif cache is not None:
                if "k" in cache:
                    k = torch.cat([cache["k"], k], dim=2)
                    v = torch.cat([cache["v"], v], dim=2)
                cache["k"], cache["v"] = k, v
        else:
            q, (k, v) = self._heads(apply_linear(self.q, x)), kv
        y = attention(q, k, v, attn_mask=mask, is_causal=is_causal, dropout_p=self.dropout if self.training else 0.0)
        b, _, t, _ = y.shape
        return apply_linear(self.out, y.transpose(1, 2).reshape(b, t, -1))


class FeedForward(nn.Sequential):
    def __init__(self, d_model: int, ffn_dim: int, dropout: float):
        super().__init__(nn.Linear(d_model, ffn_dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(ffn_dim, d_model))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        up, relu, drop, down = self
        return apply_linear(down, drop(relu(apply_linear(up, x))))


class EncoderLayer(nn.Module):
    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(cfg.d_model), nn.LayerNorm(cfg.d_model)
        self.attn = Attention(cfg.d_model, cfg.n_heads, cfg.attention_dropout, self_attention=True)
        self.ffn = FeedForward(cfg.d_model, cfg.ffn_dim, cfg.dropout)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = x + self.drop(self.attn(self.norm1(x), mask=mask))
        return x + self.drop(self.ffn(self.norm2(x)))


class DecoderLayer(nn.Module):
    def __init__(self, cfg: TransformerConfig, causal: bool = True):
        super().__init__()
        self.causal = causal
        self.norm1, self.norm2, self.norm3 = (nn.LayerNorm(cfg.d_model) for _ in range(3))
        self.self_attn = Attention(cfg.d_model, cfg.n_heads, cfg.attention_dropout, self_attention=True)
        self.cross_attn = Attention(cfg.d_model, cfg.n_heads, cfg.attention_dropout, self_attention=False)
        self.ffn = FeedForward(cfg.d_model, cfg.ffn_dim, cfg.dropout)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(
        self,
        x: torch.Tensor,
        memory_kv: tuple[torch.Tensor, torch.Tensor],
        memory_mask: torch.Tensor,
        self_mask: torch.Tensor | None = None,
        cache: dict[str, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        causal = self.causal and cache is None and self_mask is None
        x = x + self.drop(self.self_attn(self.norm1(x), mask=self_mask, is_causal=causal, cache=cache))
        x = x + self.drop(self.cross_attn(self.norm2(x), mask=memory_mask, kv=memory_kv))
        return x + self.drop(self.ffn(self.norm3(x)))


def key_padding_bias(pad_mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """[B, S] True-at-padding -> additive bias [B, 1, 1, S] for SDPA."""
    bias = torch.zeros(pad_mask.shape, dtype=dtype, device=pad_mask.device)
    return bias.masked_fill(pad_mask, float("-inf"))[:, None, None, :]


class TransformerEncoder(nn.Module):
    def __init__(self, cfg: TransformerConfig, embed: nn.Embedding):
        super().__init__()
        self.embed, self.scale = embed, math.sqrt(cfg.d_model)
        self.register_buffer("positions", sinusoidal_positions(cfg.max_positions, cfg.d_model), persistent=False)
        self.layers = nn.ModuleList(EncoderLayer(cfg) for _ in range(cfg.encoder_layers))
        self.norm = nn.LayerNorm(cfg.d_model)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, src: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pad_mask = src.eq(PAD_ID)
        x = self.drop(embed_tokens(self.embed, src) * self.scale + self.positions[: src.size(1)])
        bias = key_padding_bias(pad_mask, x.dtype)
        for layer in self.layers:
            x = layer(x, bias)
        return self.norm(x), pad_mask


class Transformer(Seq2SeqModel):
    """Pre-norm Transformer (Vaswani et al. 2017; pre-norm as in Xiong et al. 2020)."""

    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.cfg, self.vocab_size = cfg, cfg.tgt_vocab_size
        self.tgt_embed = nn.Embedding(cfg.tgt_vocab_size, cfg.d_model, padding_idx=PAD_ID)
        shared = cfg.share_embeddings and cfg.src_vocab_size == cfg.tgt_vocab_size
        src_embed = self.tgt_embed if shared else nn.Embedding(cfg.src_vocab_size, cfg.d_model, padding_idx=PAD_ID)
        self.encoder = TransformerEncoder(cfg, src_embed)
        self.layers = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.decoder_layers))
        self.norm = nn.LayerNorm(cfg.d_model)
        self.drop = nn.Dropout(cfg.dropout)
        self.scale = math.sqrt(cfg.d_model)
        self.register_buffer("positions", sinusoidal_positions(cfg.max_positions, cfg.d_model), persistent=False)
        for emb in dict.fromkeys([self.tgt_embed, src_embed]):  # fixed order: reproducible init
            nn.init.normal_(emb.weight, std=cfg.d_model**-0.5)
            with torch.no_grad():
                emb.weight[PAD_ID].zero_()

    def output_logits(self, h: torch.Tensor) -> torch.Tensor:
        """Tied output projection."""
        return linear(self.norm(h), self.tgt_embed.weight)

    def encode(self, src: torch.Tensor) -> Encoded:
        memory, pad_mask = self.encoder(src)
        return Encoded(memory, pad_mask)

    def _memory_kv(self, enc: Encoded) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return [layer.cross_attn.project_kv(enc.memory) for layer in self.layers]

    def _embed_tgt(self, tokens: torch.Tensor, offset: int) -> torch.Tensor:
        pos = self.positions[offset : offset + tokens.size(1)]
        return self.drop(embed_tokens(self.tgt_embed, tokens) * self.scale + pos)

    def _layer_input(self, i: int, x: torch.Tensor) -> torch.Tensor:
        """What decoder layer ``i`` receives given the stream ``x`` (a hook: the DAT adds its action embedding)."""
        return x

    def _decoder_stream(self, enc: Encoded, tgt_in: torch.Tensor) -> torch.Tensor:
        """The residual stream after the last decoder layer (before the final layer norm), [B, T, d_model]."""
        x = self._embed_tgt(tgt_in, 0)
        bias = key_padding_bias(enc.pad_mask, x.dtype)
        for i, (layer, kv) in enumerate(zip(self.layers, self._memory_kv(enc), strict=True)):
            x = layer(self._layer_input(i, x), kv, bias)
        return x

    def decode(self, enc: Encoded, tgt_in: torch.Tensor) -> torch.Tensor:
        return self.output_logits(self._decoder_stream(enc, tgt_in))

    def decode_features(self, enc: Encoded, tgt_in: torch.Tensor) -> torch.Tensor:
        """The final layer-normed decoder states [B, T, d_model] (the tied projection's input)."""
        return self.norm(self._decoder_stream(enc, tgt_in))

    @property
    def feature_dim(self) -> int:
        return self.cfg.d_model

    def init_state(self, enc: Encoded) -> dict:
        kvs = self._memory_kv(enc)
        return {
            "t": 0,
            "mem_k": [k for k, _ in kvs],
            "mem_v": [v for _, v in kvs],
            "mem_bias": key_padding_bias(enc.pad_mask, enc.memory.dtype),
            "self": [{} for _ in self.layers],
        }

    def step(self, enc: Encoded, tokens: torch.Tensor, state: dict) -> tuple[torch.Tensor, dict]:
        x = self._embed_tgt(tokens.unsqueeze(1), state["t"])
        bias = state["mem_bias"].to(x.dtype)
        for i, layer in enumerate(self.layers):
            x = layer(self._layer_input(i, x), (state["mem_k"][i], state["mem_v"][i]), bias, cache=state["self"][i])
        state["t"] = state["t"] + 1
        return self.output_logits(x[:, 0]), state

    # ---------------------------------------------------------------- fixed-shape decoding (CUDA graphs)
    def init_static_state(self, enc: Encoded, max_len: int, buffers: SharedBuffers | None = None) -> dict:
        """A decoding cache of fixed shape: self-attention K/V preallocated for ``max_len`` steps, and the memory's
        K/V.  With ``buffers`` (:class:`seqlab.decoding.graphs.SharedBuffers`) all of them are views of memory that
        fixed-shape loops share: positions past the current step are masked, so what they hold never matters, and
        the memory's K/V are written whole by every load."""
        heads, head_dim = self.cfg.n_heads, self.cfg.d_model // self.cfg.n_heads
        kvs = self._memory_kv(enc)
        b, dev, dt = enc.memory.size(0), enc.memory.device, kvs[0][0].dtype  # projections' dtype (autocast)
        t = torch.zeros(1, dtype=torch.long, device=dev)
        shape = (2, b, heads, max_len, head_dim)  # keys and values

        def cache(name: tuple) -> torch.Tensor:
            if buffers is None:
                return torch.zeros(shape, device=dev, dtype=dt)
            return buffers.view(name, shape, dt, dev)

        def memory(name: str, i: int, kv: torch.Tensor) -> torch.Tensor:
            return kv if buffers is None else buffers.view((name, i), kv.shape, kv.dtype, kv.device).copy_(kv)

        return {
            "t": t,
            "max_len": max_len,
            "mem_k": [memory("mem_k", i, k) for i, (k, _) in enumerate(kvs)],
            "mem_v": [memory("mem_v", i, v) for i, (_, v) in enumerate(kvs)],
            "mem_bias": key_padding_bias(enc.pad_mask, dt),
            # row t: the self-attention bias of step t (0 up to t, -inf after): one kernel a step instead of four
            "causal_bias": torch.full((max_len, max_len), float("-inf"), device=dev).triu(1),
            # "window": the positions a step attends to, set by each step (here from the start, so that the state's
            # keys never change: a compiled step would otherwise recompile for every new cache)
            "self": [{"kv_buf": cache(("self_kv", i)), "t": t, "window": max_len} for i in range(len(self.layers))],
        }

    def write_static_memory(self, state: dict, enc: Encoded) -> None:
        """Write ``enc``'s memory keys and values and its padding bias into a static ``state`` of the same rows and
        width (:meth:`init_static_state`'s), in place: a new batch for buffers a captured graph reads."""
        for i, (k, v) in enumerate(self._memory_kv(enc)):
            state["mem_k"][i].copy_(k)
            state["mem_v"][i].copy_(v)
        bias = state["mem_bias"]
        bias.zero_()
        bias.masked_fill_(enc.pad_mask[:, None, None, :], float("-inf"))

    def static_step(self, tokens: torch.Tensor, state: dict, window: int | None = None) -> torch.Tensor:
        """One decoding step on a static cache (only tensor ops, fixed shapes); advances ``state["t"]``.
        ``window``: attend to the first ``window`` cache positions only, where the caller knows that every position
        written so far lies there (a search's step t has written t + 1): the same result as attending to the whole
        cache, whose later positions are masked, for less work early in a long budget."""
        t = state["t"]
        x = self.drop(self.tgt_embed(tokens.unsqueeze(1)) * self.scale + self.positions.index_select(0, t))
        length = state["max_len"] if window is None else min(window, state["max_len"])
        self_bias = state["causal_bias"].index_select(0, t)[:, :length].to(x.dtype).view(1, 1, 1, -1)
        mem_bias = state["mem_bias"].to(x.dtype)
        for cache in state["self"]:
            cache["window"] = length
        for i, layer in enumerate(self.layers):
            x = layer(
                self._layer_input(i, x),
                (state["mem_k"][i], state["mem_v"][i]),
                mem_bias,
                self_mask=self_bias,
                cache=state["self"][i],
            )
        t.add_(1)
        return self.output_logits(x[:, 0])
