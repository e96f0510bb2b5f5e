"""E-step proposals: distributions q that build target sequences from a batch.

Every proposal returns a :class:`Proposal`: sequences [N, T] (tokens, EOS, PAD), the source row each
belongs to (``group``), and, where the proposal density is known in closed form, ``log_q`` [N] (needed by
self-normalised importance weights).  Random draws use torch's global generator, so checkpoints restore them.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import torch
from torch.profiler import record_function

from seqlab.data.vocab import EOS_ID, FIRST_REGULAR_ID, PAD_ID
from seqlab.decoding.graphs import loop_precision
from seqlab.decoding.sampling import DrawSpec, run_loop, sampling_loop_mode
from seqlab.decoding.search import Hypotheses, max_lengths, sample
from seqlab.models.base import Encoded, Seq2SeqModel, mask_special
from seqlab.rewards._common import content_lengths, ref_lengths
from seqlab.utils import eval_mode


@dataclass
class Proposal:
    tokens: torch.Tensor  # [N, T]
    group: torch.Tensor  # [N] index of the source row in the batch
    log_q: torch.Tensor | None = None  # [N] log proposal probability, when known
    is_reference: torch.Tensor | None = None  # [N] bool: the row is the unchanged reference

    def __len__(self) -> int:
        return self.tokens.size(0)


def seq_lengths(tokens: torch.Tensor) -> torch.Tensor:
    """Number of tokens before EOS (EOS and padding excluded)."""
    return content_lengths(tokens)


def with_eos(body: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Rebuild the target convention from tokens [N, L] and lengths: body[:len], EOS, PAD..."""
    n, width = body.size(0), int(lengths.max()) + 1 if body.numel() else 1
    out = torch.full((n, width), PAD_ID, dtype=torch.long, device=body.device)
    pos = torch.arange(width, device=body.device)[None, :]
    keep = pos < lengths[:, None]
    src = (
        body[:, :width]
        if body.size(1) >= width
        else torch.cat([body, body.new_full((n, width - body.size(1)), PAD_ID)], dim=1)
    )
    out = torch.where(keep, src, out)
    out.scatter_(1, lengths[:, None], EOS_ID)
    return out


def random_tokens(shape: tuple[int, ...], vocab_size: int, device: torch.device) -> torch.Tensor:
    return torch.randint(FIRST_REGULAR_ID, vocab_size, shape, device=device)


def hamming_edits(
    tgt: torch.Tensor,
    num_samples: int,
    vocab_size: int,
    max_edit_frac: float = 0.2,
    max_edits: int | None = None,
    include_reference: bool = True,
) -> Proposal:
    """Substitute e positions of the reference by other regular tokens, e ~ Uniform{0..E},
    E = floor(max_edit_frac * m) (or ``max_edits``), as in RAML and alpha-DiMT.

    Exact density: q(y) = 1/(E+1) * 1 / (C(m, e) * (V' - 1)^e), V' = number of regular tokens.
    With ``include_reference`` the first sample of every source is the reference itself (e = 0).
    """
    b, device = tgt.size(0), tgt.device
    group = torch.arange(b, device=device).repeat_interleave(num_samples)
    ref = tgt.index_select(0, group)
    m = seq_lengths(ref)
    cap = (m.float() * max_edit_frac).floor().long() if max_edits is None else torch.clamp(m, max=max_edits)
    e = torch.floor(torch.rand(len(group), device=device) * (cap + 1).float()).long()
    is_ref = torch.zeros(len(group), dtype=torch.bool, device=device)
    if include_reference:
        is_ref[::num_samples] = True
        e = e.masked_fill(is_ref, 0)
    # choose e distinct positions among the first m: rank random keys, keep the e smallest
    width = ref.size(1)
    keys = torch.rand(ref.shape, device=device).masked_fill(torch.arange(width, device=device)[None] >= m[:, None], 2.0)
    ranks = keys.argsort(1).argsort(1)
    chosen = ranks < e[:, None]
    # a substitute always differs from the reference token: shift by 1..V'-1 within the regular ids
    n_regular = vocab_size - FIRST_REGULAR_ID
    shift = torch.randint(1, max(n_regular, 2), ref.shape, device=device)
    regular_ref = (ref - FIRST_REGULAR_ID).clamp(min=0)
    substitute = (regular_ref + shift) % n_regular + FIRST_REGULAR_ID
    tokens = torch.where(chosen, substitute, ref)
    log_q = -torch.log((cap + 1).float()) - log_binomial(m, e) - e.float() * math.log(max(n_regular - 1, 1))
    return Proposal(tokens, group, log_q, is_ref)


def log_binomial(n: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    n, k = n.float(), k.float()
    return torch.lgamma(n + 1) - torch.lgamma(k + 1) - torch.lgamma(n - k + 1)


def ngram_replacement(
    tgt: torch.Tensor, num_samples: int, vocab_size: int, max_n: int = 4, include_reference: bool = True
) -> Proposal:
    """Replace one random n-gram of the reference by random regular tokens (the n-gram replacement of RAML's
    released samples): n ~ Uniform{1..min(m − 1, max_n)}, placed uniformly among positions 0..m−2, so the
    final content token (usually the full stop) is never replaced; a one-token reference stays unchanged.
    Lengths are kept.  Density not tracked (``log_q`` None)."""
    b, device = tgt.size(0), tgt.device
    group = torch.arange(b, device=device).repeat_interleave(num_samples)
    ref = tgt.index_select(0, group)
    m = seq_lengths(ref)
    n_max = torch.clamp(m - 1, min=0, max=max_n)
    n = torch.floor(torch.rand(m.shape, device=device) * n_max.float()).long() + 1
    n = torch.minimum(n, n_max)  # 0 where nothing can be replaced
    start = torch.floor(torch.rand(m.shape, device=device) * (m - n).clamp(min=0).float()).long()
    pos = torch.arange(ref.size(1), device=device)[None]
    chosen = (pos >= start[:, None]) & (pos < (start + n)[:, None])
    is_ref = torch.zeros(len(group), dtype=torch.bool, device=device)
    if include_reference:
        is_ref[::num_samples] = True
        chosen &= ~is_ref[:, None]
    tokens = torch.where(chosen, random_tokens(tuple(ref.shape), vocab_size, device), ref)
    return Proposal(tokens, group, None, is_ref)


def unigram_noise(tgt: torch.Tensor, gamma: float, unigram: torch.Tensor) -> Proposal:
    """Data noising (Xie et al. 2017): each token replaced with probability gamma by a unigram draw."""
    body = tgt.ne(EOS_ID) & tgt.ne(PAD_ID)
    replace = (torch.rand(tgt.shape, device=tgt.device) < gamma) & body
    draws = torch.multinomial(unigram, tgt.numel(), replacement=True).view_as(tgt)
    tokens = torch.where(replace, draws, tgt)
    group = torch.arange(tgt.size(0), device=tgt.device)
    return Proposal(tokens, group, None, ~replace.any(1))


def model_samples(
    model: Seq2SeqModel,
    src: torch.Tensor,
    num_samples: int,
    temperature: float = 1.0,
    enc: Encoded | None = None,
    max_len_a: float = 1.5,
    max_len_b: int = 10,
    max_len: int = 256,
) -> tuple[Proposal, Hypotheses]:
    """K ancestral samples per source from the model (cached sampler); log_q = log p_theta(y)."""
    with eval_mode(model), record_function("seqlab.model_samples"):
        hyp = sample(
            model,
            src,
            num_samples=num_samples,
            temperature=temperature,
            enc=enc,
            max_len_a=max_len_a,
            max_len_b=max_len_b,
            max_len=max_len,
        )
    group = torch.arange(src.size(0), device=src.device).repeat_interleave(num_samples)
    log_q = hyp.scores if temperature == 1.0 else None
    return Proposal(hyp.tokens, group, log_q), hyp


# --------------------------------------------------------------------------- token-level mixture
#: how the interpolation's reward component (z = 2) draws its token: ``reward`` from exp(c · ΔR) (the paper's
#: definition), ``uniform`` from the uniform distribution over the vocabulary (what the released Texar code
#: does in effect: its scale leaves the draw at entropy log V; kept for replication)
REWARD_DRAWS = ("reward", "uniform")


#: the unit of ΔR in the reward draw exp(c · ΔR): ``range`` (default) divides the increments of a state by
#: their range over the word tokens (max − min; EOS excluded), so c is the log-odds of the best next token
#: against the worst at every position whatever the reward's scale; ``length`` multiplies them by |y*| (the ERAC
#: scaling); ``raw`` leaves them in the reward's own units.  With BLEU, ``length`` and ``raw`` leave the first
#: positions after the data token close to uniform: the brevity penalty of a short prefix makes every increment
#: tiny there.
REWARD_UNITS = ("range", "length", "raw")


def reward_draw_logits(
    delta: torch.Tensor, scale: float, unit: str = "range", refs: torch.Tensor | None = None
) -> torch.Tensor:
    """Logits c · ΔR(w | y_<t, y*) of the reward draw over the vocabulary [N, V] (PAD and BOS excluded), with
    ΔR in ``unit`` (see ``REWARD_UNITS``; ``length`` needs the references ``refs``)."""
    if unit == "range":
        tokens = delta[:, EOS_ID + 1 :]  # the range over the word tokens (EOS's increment is 0 by convention)
        spread = tokens.max(1, keepdim=True).values - tokens.min(1, keepdim=True).values
        delta = delta / spread.clamp_min(1e-12)
    elif unit == "length":
        if refs is None:
            raise ValueError("the length unit needs the references")
        delta = delta * ref_lengths(refs)[:, None].to(delta.dtype)
    elif unit != "raw":
        raise ValueError(f"reward unit must be one of {REWARD_UNITS}, got {unit!r}")
    return mask_special(scale * delta)


@dataclass
class MixtureDraw:
    tokens: torch.Tensor  # [N, T] the mixed target sequences
    components: torch.Tensor  # [N, T] z in {1: model, 2: reward, 3: data}, 0 at padding
    reward_entropy: float  # mean entropy (nats) of the reward draw's distributions at reward-drawn tokens
    reward_in_reference: float = float("nan")  # fraction of reward-drawn tokens that occur in the reference


class RewardDraw:
    """The mixture's reward draw (z = 2) on fixed-shape buffers, as :class:`seqlab.decoding.sampling.SamplingLoop`
    calls it: logits c · ΔR(w | y_<t, y*) (``draw`` ``reward``; sentence BLEU from the device-side state
    :class:`~seqlab.rewards.increments.NextTokenBleu`, other rewards through ``next_token_rewards``) or
    uniform logits (``draw`` ``uniform``)."""

    def __init__(
        self,
        reward_name: str,
        draw: str,
        scale: float,
        unit: str,
        rows: int,
        ref_width: int,
        vocab_size: int,
        device: torch.device,
    ):
        from seqlab.rewards.increments import NextTokenBleu, NextTokenGeneric

        self.scale, self.unit, self.vocab_size = scale, unit, vocab_size
        self.increments: NextTokenBleu | NextTokenGeneric | None = None
        if draw == "reward":
            self.increments = (
                NextTokenBleu(rows, ref_width, vocab_size, device)
                if is_bleu(reward_name)
                else NextTokenGeneric(reward_name, vocab_size)
            )

    def load(self, ref: torch.Tensor) -> None:
        if self.increments is not None:
            self.increments.load(ref)

    def reset(self) -> None:
        if self.increments is not None:
            self.increments.reset()

    def logits(self, history: torch.Tensor, t: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        if self.increments is None:
            return mask_special(torch.zeros(history.size(0), self.vocab_size, device=history.device))
        return reward_draw_logits(self.increments(history, t), self.scale, self.unit, ref)

    def advance(self, token: torch.Tensor) -> None:
        if self.increments is not None:
            self.increments.advance(token)


def is_bleu(reward_name: str) -> bool:
    from seqlab.rewards import get_reward, sentence_bleu

    return get_reward(reward_name) is sentence_bleu


def per_step_lambdas(lambdas: torch.Tensor, steps: int) -> torch.Tensor:
    """Mixture weights [steps, 3] on the CPU from [3] or per position [T, 3] (the last row repeats)."""
    lam = lambdas.detach().float().cpu()
    if lam.dim() == 1:
        return lam.expand(steps, 3).contiguous()
    return lam.index_select(0, torch.arange(steps).clamp(max=lam.size(0) - 1))


#: how token_mixture runs its loop (:mod:`seqlab.decoding.sampling`): ``None`` picks ``graph`` where it can
#: (CUDA, a static-step model, a BLEU or uniform reward draw, with SEQLAB_SAMPLING_GRAPHS=1), else ``dynamic``
MIXTURE_MODES = ("dynamic", "static", "graph")


@torch.no_grad()
def token_mixture(
    model: Seq2SeqModel,
    enc: Encoded,
    tgt: torch.Tensor,
    lambdas: torch.Tensor,
    reward_name: str = "bleu",
    reward_scale: float = 1.0,
    model_temperature: float = 1.0,
    data_prefix: torch.Tensor | None = None,
    max_len_a: float = 1.5,
    max_len_b: int = 10,
    max_len: int = 256,
    reward_draw: str = "reward",
    reward_unit: str = "range",
    first_token_data: bool = True,
    mode: str | None = None,
) -> MixtureDraw:
    """The interpolation algorithm's E-step: every token of every sequence draws its own component
    z ~ Cat(lambda1, lambda2, lambda3) and then its token from the model p_theta(.|y_<t) (z=1), from the
    reward distribution softmax(c * dR(w | y_<t, y*)) (z=2; dR in ``reward_unit``, see :func:`reward_draw_logits`)
    or copies the data token y*_t (z=3).

    ``lambdas``: [3] or [T, 3] (per position) mixture weights; ``data_prefix`` [N]: positions t < m are
    forced to z=3 (MIXER's data prefix); ``first_token_data``: the first token is always the data's (as in
    Texar: at t = 0 every BLEU increment ties, so a reward draw there is uniform).  A copy past the
    reference's end copies EOS.

    All random draws are one ``torch.rand(steps, N, 3)`` (component, model token, reward token per row and step,
    turned into tokens by inverse-CDF sampling); every ``mode`` (see :data:`MIXTURE_MODES`) gives the same tokens
    from it.  The loop has no host sync but one "all finished?" read every few steps.
    """
    if reward_draw not in REWARD_DRAWS:
        raise ValueError(f"reward_draw must be one of {REWARD_DRAWS}, got {reward_draw!r}")
    n, device = tgt.size(0), tgt.device
    ref_len = seq_lengths(tgt)
    limits = torch.maximum(max_lengths(tgt, max_len_a, max_len_b, max_len), ref_len + 1)
    steps = int(limits.max())
    lam = per_step_lambdas(lambdas, steps)
    need_model, need_reward = bool((lam[:, 0] > 0).any()), bool((lam[:, 1] > 0).any())
    reward = (reward_name, reward_draw, float(reward_scale), reward_unit) if need_reward else None
    spec = DrawSpec(
        model=need_model,
        mixture=True,
        reward=reward,
        temperature=model_temperature,
        first_token_data=first_token_data,
        log_probs=False,
    )
    uniforms = torch.rand(steps, n, 3, device=device)
    if mode is None:
        capturable = reward_draw == "uniform" or not need_reward or is_bleu(reward_name)
        mode = sampling_loop_mode(model, device) if capturable else "dynamic"
    elif mode not in MIXTURE_MODES:
        raise ValueError(f"mode must be one of {MIXTURE_MODES}, got {mode!r}")

    def draw_for(rows: int, ref_width: int) -> RewardDraw:
        return RewardDraw(
            reward_name, reward_draw, reward_scale, reward_unit, rows, ref_width, model.vocab_size, device
        )

    prefix = data_prefix.long() if data_prefix is not None else None
    with loop_precision(device) if mode != "dynamic" else contextlib.nullcontext():
        out = run_loop(
            model,
            spec,
            enc,
            limits,
            uniforms,
            mode,
            model.vocab_size,
            lambdas=lam.to(device),
            tgt=tgt,
            data_prefix=prefix,
            reward_draw=draw_for,
        )
    total, in_ref, count = out.stats
    ent = total / count if count else float("nan")
    return MixtureDraw(out.tokens, out.components, ent, in_ref / count if count else float("nan"))
