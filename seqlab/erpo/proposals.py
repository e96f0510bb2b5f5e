"""E-step proposals: distributions q that build target sequences from a batch.

Every proposal returns a :class:`Proposal`: sequences [N, T] (tokens, EOS, PAD), the source row each
belongs to (``group``), and, where the proposal density is known in closed form, ``log_q`` [N] (needed by
self-normalised importance weights).  Random draws use torch's global generator, so checkpoints restore them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch.profiler import record_function

from seqlab.data.vocab import EOS_ID, PAD_ID
from seqlab.decoding.graphs import STEP_BUCKET, graphs_enabled, round_up, stepper_for
from seqlab.decoding.search import Hypotheses, max_lengths, sample
from seqlab.models.base import Encoded, Seq2SeqModel, mask_special
from seqlab.rewards._common import content_lengths, ref_lengths
from seqlab.utils import eval_mode

FIRST_REGULAR_ID = 4  # ids below are PAD, BOS, EOS, UNK


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
    src = body[:, :width] if body.size(1) >= width else torch.cat(
        [body, body.new_full((n, width - body.size(1)), PAD_ID)], dim=1)
    out = torch.where(keep, src, out)
    out.scatter_(1, lengths[:, None], EOS_ID)
    return out


def random_tokens(shape: tuple[int, ...], vocab_size: int, device: torch.device) -> torch.Tensor:
    return torch.randint(FIRST_REGULAR_ID, vocab_size, shape, device=device)


def hamming_edits(tgt: torch.Tensor, num_samples: int, vocab_size: int, max_edit_frac: float = 0.2,
                  max_edits: int | None = None, include_reference: bool = True) -> Proposal:
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
    log_q = (-torch.log((cap + 1).float()) - log_binomial(m, e) - e.float() * math.log(max(n_regular - 1, 1)))
    return Proposal(tokens, group, log_q, is_ref)


def log_binomial(n: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    n, k = n.float(), k.float()
    return torch.lgamma(n + 1) - torch.lgamma(k + 1) - torch.lgamma(n - k + 1)


def ngram_replacement(tgt: torch.Tensor, num_samples: int, vocab_size: int, max_n: int = 4,
                      include_reference: bool = True) -> Proposal:
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


def model_samples(model: Seq2SeqModel, src: torch.Tensor, num_samples: int, temperature: float = 1.0,
                  enc: Encoded | None = None, max_len_a: float = 1.5, max_len_b: int = 10,
                  max_len: int = 256) -> tuple[Proposal, Hypotheses]:
    """K ancestral samples per source from the model (cached sampler); log_q = log p_theta(y)."""
    with eval_mode(model), record_function("seqlab.model_samples"):
        hyp = sample(model, src, num_samples=num_samples, temperature=temperature, enc=enc,
                     max_len_a=max_len_a, max_len_b=max_len_b, max_len=max_len)
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


def reward_draw_logits(delta: torch.Tensor, scale: float, unit: str = "range",
                       refs: torch.Tensor | None = None) -> torch.Tensor:
    """Logits c · ΔR(w | y_<t, y*) of the reward draw over the vocabulary [N, V] (PAD and BOS excluded), with
    ΔR in ``unit`` (see ``REWARD_UNITS``; ``length`` needs the references ``refs``)."""
    if unit == "range":
        tokens = delta[:, EOS_ID + 1:]  # the range over the word tokens (EOS's increment is 0 by convention)
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


def _in_reference(tok: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
    """[N] bool: token ``tok[i]`` occurs in reference row i (its final EOS included)."""
    return (tgt.eq(tok[:, None]) & tgt.ne(PAD_ID)).any(1)


@torch.no_grad()
def token_mixture(model: Seq2SeqModel, enc: Encoded, tgt: torch.Tensor, lambdas: torch.Tensor,
                  reward_name: str = "bleu", reward_scale: float = 1.0, model_temperature: float = 1.0,
                  data_prefix: torch.Tensor | None = None, max_len_a: float = 1.5, max_len_b: int = 10,
                  max_len: int = 256, reward_draw: str = "reward", reward_unit: str = "range",
                  first_token_data: bool = True) -> MixtureDraw:
    """The interpolation algorithm's E-step: every token of every sequence draws its own component
    z ~ Cat(lambda1, lambda2, lambda3) and then its token from the model p_theta(.|y_<t) (z=1), from the
    reward distribution softmax(c * dR(w | y_<t, y*)) (z=2; dR in ``reward_unit``, see :func:`reward_draw_logits`)
    or copies the data token y*_t (z=3).

    ``lambdas``: [3] or [T, 3] (per position) mixture weights; ``data_prefix`` [N]: positions t < m are
    forced to z=3 (MIXER's data prefix); ``first_token_data``: the first token is always the data's (as in
    Texar: at t = 0 every BLEU increment ties, so a reward draw there is uniform).  A copy past the
    reference's end copies EOS.
    """
    if reward_draw not in REWARD_DRAWS:
        raise ValueError(f"reward_draw must be one of {REWARD_DRAWS}, got {reward_draw!r}")
    n, device = tgt.size(0), tgt.device
    ref_len = seq_lengths(tgt)
    limits = torch.maximum(max_lengths(tgt, max_len_a, max_len_b, max_len), ref_len + 1)
    steps = int(limits.max())
    lam = lambdas.to(device).float()
    need_model = bool((lam[..., 0] > 0).any())
    need_reward = bool((lam[..., 1] > 0).any())
    stepper = None
    if need_model and graphs_enabled(model, device):  # fixed-shape steps replayed as a CUDA graph (fp32)
        with torch.autocast(device_type="cuda", enabled=False):
            stepper = stepper_for(model, enc, round_up(steps, STEP_BUCKET), graph=True)
    state = model.init_state(enc) if need_model and stepper is None else None
    prev = torch.full((n,), 1, dtype=torch.long, device=device)  # BOS
    done = torch.zeros(n, dtype=torch.bool, device=device)
    tokens, comps = [], []
    entropy_sum = torch.zeros((), device=device)
    in_ref_sum = torch.zeros((), device=device)
    reward_count = torch.zeros((), device=device)
    ref_padded = torch.cat([tgt, tgt.new_full((n, steps + 1), PAD_ID)], 1)
    for t in range(steps):
        lam_t = lam if lam.dim() == 1 else lam[min(t, lam.size(0) - 1)]
        z = torch.multinomial(lam_t.expand(n, 3), 1).squeeze(1) + 1
        if data_prefix is not None:
            z = torch.where(t < data_prefix, torch.full_like(z, 3), z)
        if first_token_data and t == 0:
            z = torch.full_like(z, 3)
        data_tok = ref_padded[:, t]
        data_tok = torch.where(t >= ref_len, torch.full_like(data_tok, EOS_ID), data_tok)
        tok = data_tok.clone()
        if need_model:
            if stepper is not None:
                with torch.autocast(device_type="cuda", enabled=False):
                    logits = stepper.step(prev)
            else:
                logits, state = model.step(enc, prev, state)
            probs = (mask_special(logits) / model_temperature).softmax(-1)
            tok = torch.where(z == 1, torch.multinomial(probs, 1).squeeze(1), tok)
        if need_reward and bool((z == 2).any()):
            if reward_draw == "uniform":
                logits_r = mask_special(torch.zeros(n, model.vocab_size, device=device))
            else:
                from seqlab.rewards import next_token_rewards

                prefix = torch.stack(tokens, 1) if tokens else tgt.new_zeros((n, 0))
                delta = next_token_rewards(reward_name, prefix, tgt, model.vocab_size)
                logits_r = reward_draw_logits(delta, reward_scale, reward_unit, tgt)
            dist = logits_r.softmax(-1)
            drawn = torch.multinomial(dist, 1).squeeze(1)
            is_reward = (z == 2) & ~done
            entropy = -(dist * dist.clamp_min(1e-30).log()).sum(-1)
            entropy_sum += (entropy * is_reward).sum()
            in_ref_sum += (_in_reference(drawn, tgt) & is_reward).sum()
            reward_count += is_reward.sum()
            tok = torch.where(z == 2, drawn, tok)
        tok = torch.where(t + 1 >= limits, torch.full_like(tok, EOS_ID), tok)
        tok = tok.masked_fill(done, PAD_ID)
        tokens.append(tok)
        comps.append(z.masked_fill(done, 0))
        done = done | tok.eq(EOS_ID)
        prev = tok
        if bool(done.all()):
            break
    count = float(reward_count)
    ent = float(entropy_sum) / count if count else float("nan")
    in_ref = float(in_ref_sum) / count if count else float("nan")
    return MixtureDraw(torch.stack(tokens, 1), torch.stack(comps, 1), ent, in_ref)
