"""Ancestral sampling and the token-level mixture as one fixed-shape loop, eager or captured as CUDA graphs.

Every random draw of a whole call is made up front: ``uniforms`` [steps, rows, D] (one ``torch.rand``), and
each step turns its slice into tokens by inverse-CDF sampling (:func:`inverse_cdf`).  A step is then a fixed
sequence of tensor ops on preallocated buffers with no host sync: the decoder step, the model draw, the
component and reward draws of the mixture (the reward increments over the vocabulary from a device-side
state, :class:`seqlab.rewards.increments.NextTokenBleu`), EOS at the length limit and PAD after the end.
Finished rows are masked, not removed; the host reads one flag every few steps (the outputs do not depend on it).

Three ways to run the same step, all on the same random stream (so they give the same tokens):

* ``dynamic``: the model's own cache (``model.step``), any model, exact shapes (CPU and the GPU fallback);
* ``static``: the Transformer's static KV cache (``static_step``) on bucketed shapes, eager;
* ``graph``: ``static`` captured once per shape bucket as CUDA graphs, one per chunk of CHUNK_STEPS steps, and
  replayed (CUDA only, opt-in with ``SEQLAB_SAMPLING_GRAPHS=1`` until measured on a GPU; ``SEQLAB_CUDA_GRAPHS=0``
  turns it off).

A static step t attends to the t + 1 cache positions written so far, not the whole budget (the rest is masked:
the same result for less work).

Loops run one at a time, so the static loops of all shapes share their largest buffers: the self- and
cross-attention K/V caches are views of one memory (:data:`SHARED`), and captured loops share one graph memory
pool for their temporaries.  A loop then owns only its token, log-prob and uniform buffers, and the graph cache
can keep a loop for every shape bucket of an epoch (one Multi30k epoch has 22; ``benchmarks/shape_keys.py``).
"""

from __future__ import annotations

import functools
import inspect
import os
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import torch

from seqlab.data.vocab import BOS_ID, EOS_ID, PAD_ID
from seqlab.decoding.graphs import (
    SOURCE_BUCKET,
    STEP_BUCKET,
    SharedBuffers,
    evict,
    graph_cache_bytes,
    pad_encoded,
    precision_key,
    round_up,
    static_step_of,
    tensor_bytes,
    warm_up,
)
from seqlab.decoding.static import CHUNK_STEPS
from seqlab.erpo.engine import row_widths
from seqlab.models.base import Encoded, mask_special
from seqlab.rewards._common import content_lengths, masked_content

#: the uniforms' columns in the mixture: the component z, the model's token, the reward draw's token
COMPONENT, MODEL, REWARD = 0, 1, 2
MAX_LOOPS = 24
REF_BUCKET = 8
#: eager loops read "all finished?" this often (a captured loop once per CHUNK_STEPS)
EAGER_CHECK_EVERY = 4
#: how many loops were captured so far (benchmarks read it: a capture costs far more than a replay)
CAPTURES = [0]


def sampling_graphs_enabled(model: Any, device: torch.device) -> bool:
    """Captured sampling loops: CUDA, a model with a static step in eval mode (no dropout draws in a graph), and
    SEQLAB_SAMPLING_GRAPHS=1 (opt-in until graph == eager and its speed are measured on a GPU; SEQLAB_CUDA_GRAPHS=0
    turns every captured path off)."""
    return (
        device.type == "cuda"
        and hasattr(model, "static_step")
        and not model.training
        and os.environ.get("SEQLAB_CUDA_GRAPHS", "1") != "0"
        and os.environ.get("SEQLAB_SAMPLING_GRAPHS", "0") == "1"
    )


def sampling_loop_mode(model: Any, device: torch.device) -> str:
    """How a training algorithm's sampling loop runs unless told: ``graph`` (captured, :func:`sampling_graphs_enabled`),
    ``static`` (the fixed-shape loop run eagerly: SEQLAB_SAMPLING_GRAPHS=static, a model with a static step in eval
    mode; with SEQLAB_COMPILE_DECODE=1 its compiled step serves every shape without a capture per shape) or
    ``dynamic`` (``model.step`` on exact shapes, the default)."""
    if sampling_graphs_enabled(model, device):
        return "graph"
    fixed = os.environ.get("SEQLAB_SAMPLING_GRAPHS") == "static" and hasattr(model, "static_step")
    return "static" if fixed and not model.training else "dynamic"


def inverse_cdf(probs: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Index i with cdf[i-1] <= u * total < cdf[i] for every row of ``probs`` [N, V] (u [N] in [0, 1)): a draw
    from the (unnormalised) distribution; ids of probability 0 are never drawn."""
    cdf = probs.cumsum(-1)
    total = cdf[:, -1:]
    x = torch.minimum(u[:, None] * total, torch.nextafter(total, torch.zeros_like(total)))
    return torch.searchsorted(cdf, x, right=True).squeeze(1).clamp_(max=probs.size(1) - 1)


def component_thresholds(lambdas: torch.Tensor) -> torch.Tensor:
    """[S, 2] thresholds of the component draw z = 1 + [u >= c1] + [u >= c2] from weights [S, 3]: the cumulative
    normalised weights, and 2 (never reached) where no later component has weight."""
    lam = lambdas.float()
    cum = (lam / lam.sum(-1, keepdim=True)).cumsum(-1)[:, :2]
    later = torch.stack([lam[:, 1:].gt(0).any(-1), lam[:, 2].gt(0)], -1)
    return torch.where(later, cum, torch.full_like(cum, 2.0))


def bucket_sample_rows(n: int) -> int:
    """Row buckets of the sampling loops: powers of two up to 16, then at most 1/8 above ``n`` (few shapes for
    the K x batch rows of training samples)."""
    if n <= 16:
        return 1 << (n - 1).bit_length()
    return round_up(n, max(16, 1 << ((n - 1).bit_length() - 4)))


@dataclass(frozen=True)
class DrawSpec:
    """What every step draws; fixed for a loop (part of a captured loop's key)."""

    model: bool = True  # tokens from the model (z = 1 possible)
    greedy: bool = False  # the model's token is its argmax (no uniform used)
    mixture: bool = False  # the token-level mixture (components drawn); otherwise every token from the model
    reward: tuple | None = None  # the mixture's reward draw (its settings, e.g. name, kind, scale, unit); None: none
    temperature: float = 1.0
    top_k: int = 0
    first_token_data: bool = False
    log_probs: bool = True  # record log p_theta of every token (sampling); the mixture does not need them

    @property
    def draws(self) -> int:
        """Uniforms per row and step."""
        return 3 if self.mixture else 1


@dataclass
class LoopOutput:
    tokens: torch.Tensor  # [n, T] tokens, EOS, PAD (trailing all-PAD columns dropped)
    log_probs: torch.Tensor  # [n, T] log p_theta (temperature 1) of each token, 0 at padding (0 without them)
    components: torch.Tensor  # [n, T] z in {1, 2, 3}, 0 at padding (all 1 outside the mixture)
    stats: list[float]  # the reward draw: [sum of entropies, draws in the reference, number of draws]


class SamplingLoop:
    """Buffers and the step of one fixed shape: ``rows`` rows, ``steps`` steps, references ``ref_width`` wide.

    ``mode``: ``dynamic`` (``model.step``, exact shapes), ``static`` (``model.static_step``) or ``graph`` (static,
    captured).  ``reward_draw(rows, ref_width)`` builds the mixture's reward draw (when ``spec.reward``): an object
    with ``load(ref)``, ``reset()``, ``logits(history, t, ref)`` ([rows, V] logits of the draw at prefix length t)
    and ``advance(token)`` (the prefix grew by ``token``), all fixed-shape tensor ops for ``graph``."""

    @torch.no_grad()
    def __init__(
        self,
        model: Any,
        spec: DrawSpec,
        enc: Encoded | None,
        rows: int,
        steps: int,
        ref_width: int,
        vocab_size: int,
        device: torch.device,
        mode: str,
        reward_draw: Any = None,
    ):
        self.model, self.spec, self.rows, self.steps, self.mode = model, spec, rows, steps, mode
        # the static step, compiled under SEQLAB_COMPILE_DECODE=1 (the dynamic mode steps ``model.step``)
        self.decoder_step = None if mode == "dynamic" else static_step_of(model)
        self.vocab_size, self.enc = vocab_size, enc
        self.t = torch.zeros(1, dtype=torch.long, device=device)
        self.prev = torch.full((rows,), BOS_ID, dtype=torch.long, device=device)
        self.done = torch.zeros(rows, dtype=torch.bool, device=device)
        self.limits = torch.ones(rows, dtype=torch.long, device=device)
        self.uniforms = torch.zeros(steps, rows, spec.draws, device=device)
        self.history = torch.full((rows, steps), PAD_ID, dtype=torch.long, device=device)
        self.logps = torch.zeros(rows, steps, device=device)
        self.components = torch.zeros(rows, steps, dtype=torch.long, device=device)
        self.stats = torch.zeros(3, device=device)
        self.state: Any = None
        shared = 0
        if spec.model and mode != "dynamic":
            if takes_shared_buffers(model):  # the K/V caches: views of memory every loop shares
                self.state = model.init_static_state(enc, steps, buffers=SHARED)
                shared = tensor_bytes(
                    [self.state["mem_k"], self.state["mem_v"], [c["kv_buf"] for c in self.state["self"]]]
                )
            else:
                self.state = model.init_static_state(enc, steps)
        self.generation = SHARED.generation
        if spec.mixture:
            self.thresholds = torch.full((steps, 2), 2.0, device=device)
            self.data = torch.full((rows, steps), EOS_ID, dtype=torch.long, device=device)
            self.data_prefix = torch.zeros(rows, dtype=torch.long, device=device)
            self.ref = torch.full((rows, ref_width), PAD_ID, dtype=torch.long, device=device)
        self.reward_draw = reward_draw(rows, ref_width) if spec.reward is not None else None
        self.graphs: list[torch.cuda.CUDAGraph] = []  # one per chunk of the budget (``graph`` mode)
        if mode == "graph":
            self._capture()
        self.nbytes = tensor_bytes([self.state, self.history, self.logps, self.components, self.uniforms]) - shared

    # ------------------------------------------------------------------ loading a batch
    @torch.no_grad()
    def load(
        self,
        enc: Encoded | None,
        limits: torch.Tensor,
        uniforms: torch.Tensor,
        lambdas: torch.Tensor | None = None,
        tgt: torch.Tensor | None = None,
        data_prefix: torch.Tensor | None = None,
    ) -> SamplingLoop:
        """A batch of n <= rows rows (extra rows finish at once): its encoder states (bucketed to this loop's
        shape when static), length limits [n], uniforms [S, n, D] (S <= steps), and for the mixture the
        per-step weights [S, 3], the references [n, w] and the data prefix lengths [n]."""
        n = limits.size(0)
        if self.spec.model:
            if self.mode == "dynamic":
                self.enc, self.state = enc, self.model.init_state(enc)
            else:
                self.model.write_static_memory(self.state, enc)
        self.limits.fill_(1)
        self.limits[:n].copy_(limits)
        self.uniforms.zero_()
        self.uniforms[: uniforms.size(0), :n].copy_(uniforms)
        if self.spec.mixture:
            assert lambdas is not None and tgt is not None
            s = lambdas.size(0)
            self.thresholds[:s].copy_(component_thresholds(lambdas))
            self.thresholds[s:].copy_(self.thresholds[s - 1 : s].expand(self.steps - s, 2))
            self.ref.fill_(PAD_ID)
            self.ref[:n, : tgt.size(1)].copy_(tgt)
            width = min(self.ref.size(1), self.steps)
            self.data.fill_(EOS_ID)
            self.data[:, :width].copy_(masked_content(self.ref[:, :width], content_lengths(self.ref), EOS_ID))
            self.data_prefix.zero_()
            if data_prefix is not None:
                self.data_prefix[:n].copy_(data_prefix)
            if self.reward_draw is not None:
                self.reward_draw.load(self.ref)
        self.reset()
        return self

    def reset(self) -> None:
        self.t.zero_()
        if self.state is not None and self.mode != "dynamic":
            self.state["t"].zero_()
        self.prev.fill_(BOS_ID)
        self.done.zero_()
        self.history.fill_(PAD_ID)
        self.logps.zero_()
        self.components.zero_()
        self.stats.zero_()
        if self.reward_draw is not None:
            self.reward_draw.reset()

    # ------------------------------------------------------------------ one step
    def _model_logits(self, written: int | None) -> torch.Tensor:
        if self.mode == "dynamic":
            logits, self.state = self.model.step(self.enc, self.prev, self.state)
        else:
            logits = self.decoder_step(self.prev, self.state, window=written)
        return mask_special(logits)

    def _step(self, written: int | None = None) -> None:
        """One step; ``written``: the cache positions filled after it (step t: t + 1), the only ones a static
        step attends to (None: the whole budget)."""
        spec, t = self.spec, self.t
        u = self.uniforms.index_select(0, t)[0]  # [rows, D]
        if spec.mixture:
            cut = self.thresholds.index_select(0, t)  # [1, 2]
            uc = u[:, COMPONENT : COMPONENT + 1]
            z = 1 + (uc >= cut[:, :1]).long().squeeze(1) + (uc >= cut[:, 1:]).long().squeeze(1)
            z = torch.where(t < self.data_prefix, torch.full_like(z, 3), z)
            if spec.first_token_data:
                z = torch.where(t == 0, torch.full_like(z, 3), z)
            tok = self.data.index_select(1, t).squeeze(1)
        else:
            z = torch.ones_like(self.prev)
            tok = torch.full_like(self.prev, EOS_ID)
        logp = None
        if spec.model:
            logits = self._model_logits(written)
            if spec.log_probs:
                logp = torch.log_softmax(logits, dim=-1)
            if spec.greedy:
                drawn = logits.argmax(-1)
            else:
                scaled = logits / spec.temperature if spec.temperature != 1.0 else logits
                if spec.top_k > 0:
                    kth = scaled.topk(spec.top_k, dim=-1).values[:, -1:]
                    scaled = scaled.masked_fill(scaled < kth, float("-inf"))
                drawn = inverse_cdf(scaled.softmax(-1), u[:, MODEL if spec.mixture else 0])
            tok = torch.where(z == 1, drawn, tok)
        if spec.reward is not None:
            tok = self._reward_draw(z, u[:, REWARD], tok)
        tok = torch.where(t + 1 >= self.limits, torch.full_like(tok, EOS_ID), tok)
        tok = tok.masked_fill(self.done, PAD_ID)
        self.history.index_copy_(1, t, tok[:, None])
        self.components.index_copy_(1, t, z.masked_fill(self.done, 0)[:, None])
        if logp is not None:
            self.logps.index_copy_(1, t, logp.gather(1, tok[:, None]).masked_fill(self.done[:, None], 0.0))
        if self.reward_draw is not None:
            self.reward_draw.advance(tok)
        self.done.logical_or_(tok.eq(EOS_ID))
        self.prev.copy_(tok)
        self.t.add_(1)

    def _reward_draw(self, z: torch.Tensor, u: torch.Tensor, tok: torch.Tensor) -> torch.Tensor:
        dist = self.reward_draw.logits(self.history, self.t, self.ref).softmax(-1)
        drawn = inverse_cdf(dist, u)
        is_reward = (z == 2) & ~self.done
        entropy = -(dist * dist.clamp_min(1e-30).log()).sum(-1)
        in_ref = (self.ref.eq(drawn[:, None]) & self.ref.ne(PAD_ID)).any(1)
        self.stats.add_(
            torch.stack([(entropy * is_reward).sum(), (in_ref & is_reward).sum().float(), is_reward.sum().float()])
        )
        return torch.where(z == 2, drawn, tok)

    # ------------------------------------------------------------------ running
    def _chunk(self, index: int) -> None:
        """The steps index * CHUNK_STEPS ... + CHUNK_STEPS - 1, each attending to the positions written by then."""
        for j in range(CHUNK_STEPS):
            self._step(index * CHUNK_STEPS + j + 1)

    def _capture(self) -> None:
        """One graph per chunk of the budget (each with its own attention width)."""
        CAPTURES[0] += 1
        chunks = range(self.steps // CHUNK_STEPS)
        warm_up(lambda: (self.reset(), [self._chunk(i) for i in chunks]))
        self.reset()
        self.graphs = []
        for index in chunks:
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=shared_graph_pool()):  # loops never replay at the same time
                self._chunk(index)
            self.graphs.append(graph)
        self.reset()

    @torch.no_grad()
    def run(self, n: int, steps: int) -> LoopOutput:
        """Run at most ``steps`` steps (stopping once every row finished, checked after every captured chunk or
        every EAGER_CHECK_EVERY eager steps); the outputs of the first ``n`` rows."""
        taken = 0
        while taken < steps:
            if self.graphs:
                self.graphs[taken // CHUNK_STEPS].replay()
                taken += CHUNK_STEPS
            else:  # eager: a host read every EAGER_CHECK_EVERY steps (fewer steps past the end)
                for _ in range(min(EAGER_CHECK_EVERY, steps - taken)):
                    self._step(taken + 1)
                    taken += 1
            if bool(self.done.all()):  # one host read per chunk
                break
        tokens = self.history[:n, :taken]
        width = max(int(row_widths(tokens).max()), 1) if tokens.numel() else 1  # one host read
        return LoopOutput(
            tokens[:, :width].clone(),
            self.logps[:n, :width].clone(),
            self.components[:n, :width].clone(),
            self.stats.tolist(),
        )


# ---------------------------------------------------------------------- choosing, bucketing and caching loops
_CACHE: OrderedDict[tuple, SamplingLoop] = OrderedDict()


def run_loop(
    model: Any,
    spec: DrawSpec,
    enc: Encoded | None,
    limits: torch.Tensor,
    uniforms: torch.Tensor,
    mode: str,
    vocab_size: int,
    lambdas: torch.Tensor | None = None,
    tgt: torch.Tensor | None = None,
    data_prefix: torch.Tensor | None = None,
    reward_draw: Any = None,
) -> LoopOutput:
    """Sample n = ``limits.size(0)`` rows for S = ``uniforms.size(0)`` steps (every limit <= S) in ``mode``
    (``dynamic``, ``static`` or ``graph``, see the module doc); ``reward_draw``: see :class:`SamplingLoop`."""
    n, steps, device = limits.size(0), uniforms.size(0), limits.device
    ref_width = tgt.size(1) if tgt is not None else 0
    if mode == "dynamic":
        loop = SamplingLoop(model, spec, None, n, steps, ref_width, vocab_size, device, mode, reward_draw)
        return loop.load(enc, limits, uniforms, lambdas, tgt, data_prefix).run(n, steps)
    rows, budget = bucket_sample_rows(n), round_up(steps, STEP_BUCKET)
    ref_width = round_up(max(ref_width, 1), REF_BUCKET)
    if spec.model:
        enc = pad_encoded(enc, rows, round_up(enc.memory.size(1), SOURCE_BUCKET))
    width = enc.memory.size(1) if spec.model else 0
    dtype = enc.memory.dtype if spec.model else None
    key = (id(model), spec, rows, width, budget, ref_width, dtype, device, precision_key())
    loop = _CACHE.get(key) if mode == "graph" else None
    if loop is None or loop.model is not model or loop.generation != SHARED.generation:
        loop = SamplingLoop(model, spec, enc, rows, budget, ref_width, vocab_size, device, mode, reward_draw)
        if mode == "graph":
            if any(cached.generation != loop.generation for cached in _CACHE.values()):
                _CACHE.clear()  # the shared buffers grew: the older loops' graphs point at the old memory
            _CACHE[key] = loop
            evict(_CACHE, MAX_LOOPS, graph_cache_bytes() - SHARED.nbytes())
    else:
        _CACHE.move_to_end(key)
    return loop.load(enc, limits, uniforms, lambdas, tgt, data_prefix).run(n, budget)


def clear_loops() -> None:
    """Drop every captured sampling loop and the memory their K/V caches share."""
    _CACHE.clear()
    SHARED.clear()


#: the memory the static loops' K/V caches share (:class:`seqlab.decoding.graphs.SharedBuffers`)
SHARED = SharedBuffers()


@functools.cache
def shared_graph_pool() -> Any:
    """One CUDA graph memory pool for every captured sampling loop: their temporaries can share memory because
    loops run one at a time and keep nothing in the pool between replays (outputs go to their own buffers)."""
    return torch.cuda.graph_pool_handle()


def takes_shared_buffers(model: Any) -> bool:
    """Whether ``model.init_static_state`` accepts ``buffers`` (shared K/V cache memory)."""
    return "buffers" in inspect.signature(model.init_static_state).parameters
