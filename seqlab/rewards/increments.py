"""Token-level rewards: R of every prefix, increments ΔR_t, and ΔR(w | prefix, y*) for every vocabulary id.

Conventions (chosen on purpose, see the docstrings):

* An unfinished prefix y_<=t is scored as the finished sequence ``y_<=t, EOS``.  So R(empty) is the
  reward of the empty hypothesis, the increments sum to R(y) − R(empty), and the EOS step itself
  has increment 0 (its effect is already in every prefix's brevity penalty / recall).
* ``scale_by_length``: the sentence reward is multiplied by the reference length (mean length of the
  non-missing references with several).  ERAC (Dai et al. 2018) scales sentence BLEU this way so
  the per-token increments are O(1) instead of O(1 / length).  Default: off (plain [0, 1] BLEU).
* For BLEU the brevity penalty exp(1 − |y*| / t) makes every ΔR tiny while the prefix is much
  shorter than the reference (at t = 0 all reference tokens tie), so a draw ∝ exp(c·ΔR) needs a
  large c (or ``scale_by_length``) to follow the reference early in the sentence.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from seqlab.data.vocab import EOS_ID, PAD_ID
from seqlab.rewards._common import (
    HYP_FILL,
    REF_FILL,
    Refs,
    content_lengths,
    expand_refs,
    masked_content,
    missing_refs,
    ref_lengths,
    ref_list,
)
from seqlab.rewards.bleu import bleu_from_stats, bleu_stats, closest_ref_len, sentence_bleu
from seqlab.rewards.registry import RewardFn, get_reward

# Stands for "any token that occurs in no reference" among the next-token candidates.
OTHER = -3


def _finish(tokens: torch.Tensor, lengths: torch.Tensor, extra: int) -> torch.Tensor:
    """Content of ``tokens`` (first ``lengths``), then PAD, widened by ``extra`` columns."""
    return F.pad(masked_content(tokens, lengths, PAD_ID), (0, extra), value=PAD_ID)


def prefix_rewards(
    reward_fn: str | RewardFn, seq: torch.Tensor, ref: Refs, scale_by_length: bool = False, **reward_kwargs: Any
) -> torch.Tensor:
    """R(y_<=t, y*) for t = 0..T, [N, T+1] (index 0: the empty prefix), scored as prefix + EOS.

    All N*(T+1) prefixes are scored in one batched call of the reward.  Prefixes longer than the
    content of ``seq`` equal the full sequence."""
    fn = get_reward(reward_fn, **reward_kwargs)
    n, width = seq.shape
    steps = torch.arange(width + 1, device=seq.device)
    base = F.pad(seq, (0, 1), value=PAD_ID)  # [N, T+1]
    keep = steps[None, :] < steps[:, None]  # [prefix length t, position]
    rows = torch.where(keep[None], base[:, None, :], torch.full_like(base[:, None, :], PAD_ID))
    rows = torch.where((steps[None, :] == steps[:, None])[None], torch.full_like(rows, EOS_ID), rows)
    index = torch.arange(n, device=seq.device).repeat_interleave(width + 1)
    rewards = fn(rows.reshape(n * (width + 1), width + 1), expand_refs(ref, index)).view(n, width + 1).float()
    if scale_by_length:
        rewards = rewards * ref_lengths(ref)[:, None]
    return rewards


def reward_increments(
    reward_fn: str | RewardFn, seq: torch.Tensor, ref: Refs, scale_by_length: bool = False, **reward_kwargs: Any
) -> torch.Tensor:
    """ΔR_t = R(y_<=t) − R(y_<t) for every position, [N, T]; 0 at padding (and at EOS, see module doc)."""
    r = prefix_rewards(reward_fn, seq, ref, scale_by_length, **reward_kwargs)
    inc = r[:, 1:] - r[:, :-1]
    return inc.masked_fill(seq.eq(PAD_ID), 0.0)


def _candidates(refs: list[torch.Tensor]) -> torch.Tensor:
    """[N, C]: every reference content token (OTHER elsewhere) and one final OTHER column."""
    cols = [masked_content(r, content_lengths(r), OTHER) for r in refs]
    cols.append(torch.full_like(refs[0][:, :1], OTHER))
    return torch.cat(cols, 1)


def _scatter_vocab(delta: torch.Tensor, cand: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """Spread candidate values [N, C] over the vocabulary: reference ids get their own value, every
    other id the OTHER column's, EOS and PAD get 0."""
    n = delta.size(0)
    out = delta[:, -1:].expand(n, vocab_size + 1).clone()
    index = torch.where(cand >= 0, cand, torch.full_like(cand, vocab_size))
    out.scatter_(1, index, delta)
    out = out[:, :vocab_size]
    out[:, EOS_ID] = 0.0
    out[:, PAD_ID] = 0.0
    return out


def _next_token_generic(fn: RewardFn, prefix: torch.Tensor, ref: Refs, cand: torch.Tensor) -> torch.Tensor:
    """R(prefix + w) − R(prefix) for every candidate w [N, C], by scoring N*C sequences in one batch."""
    n, c = cand.shape
    lengths = content_lengths(prefix)
    base = _finish(prefix, lengths, 2)  # [N, t+2]
    rows = base[:, None, :].expand(n, c, base.size(1)).clone()
    pos = lengths[:, None, None].expand(n, c, 1)
    rows.scatter_(2, pos, cand[:, :, None])
    rows.scatter_(2, pos + 1, torch.full_like(cand[:, :, None], EOS_ID))
    index = torch.arange(n, device=prefix.device).repeat_interleave(c)
    r_new = fn(rows.view(n * c, -1), expand_refs(ref, index)).view(n, c).float()
    r_old = fn(base, ref).float()
    return r_new - r_old[:, None]


def _next_token_bleu(
    prefix: torch.Tensor, ref: Refs, cand: torch.Tensor, max_order: int = 4, **bleu_kwargs: Any
) -> torch.Tensor:
    """BLEU(prefix + w) − BLEU(prefix) for every candidate w [N, C] from incremental statistics.

    Appending w adds one n-gram per order n (the prefix's last n−1 tokens, then w).  It is a new
    clipped match iff its count in the prefix is below its (max over references) reference count;
    totals grow by one for every order n <= len + 1; the brevity penalty uses the new length."""
    refs, multi = ref_list(ref)
    missing = missing_refs(refs, multi)
    stats = bleu_stats(prefix, ref, max_order)
    r_old = bleu_from_stats(*stats, **bleu_kwargs)
    length = stats.hyp_len  # [N]
    p = masked_content(prefix, length, HYP_FILL)
    rls = [content_lengths(r) for r in refs]
    rs = [masked_content(r, rl, REF_FILL) for r, rl in zip(refs, rls, strict=True)]
    eq_p = cand[:, :, None] == p[:, None, :]  # [N, C, t]
    eq_r = [cand[:, :, None] == r[:, None, :] for r in rs]  # [N, C, T_k]
    # s_p[i] / s_r[m]: the n-gram ending there is complete and its first n-1 tokens equal the prefix's
    # last n-1 tokens (built up order by order)
    s_p = torch.arange(p.size(1), device=p.device)[None, :] < length[:, None]
    s_r = [torch.arange(r.size(1), device=p.device)[None, :] < rl[:, None] for r, rl in zip(rs, rls, strict=True)]
    n_rows, n_cand = cand.shape
    d_correct = torch.zeros(n_rows, n_cand, max_order, dtype=torch.long, device=p.device)
    orders = torch.arange(1, max_order + 1, device=p.device)
    exists = length[:, None] + 1 >= orders[None, :]  # [N, M]: the new n-gram of order n exists
    for n in range(1, max_order + 1):
        if n > 1:
            if p.size(1) == 0:
                break  # empty prefixes: only the unigram exists
            # the new n-gram's first token is s = p[L - n + 1]; compare it with position i - (n - 1)
            s = p.gather(1, (length - n + 1).clamp(min=0)[:, None])
            s_p = s_p & (F.pad(p, (n - 1, 0), value=HYP_FILL)[:, : p.size(1)] == s)
            s_r = [
                sr & (F.pad(r, (n - 1, 0), value=REF_FILL)[:, : r.size(1)] == s) for sr, r in zip(s_r, rs, strict=True)
            ]
        cnt_p = (eq_p & s_p[:, None, :]).sum(-1)
        cnt_r = torch.stack([(e & sr[:, None, :]).sum(-1) for e, sr in zip(eq_r, s_r, strict=True)])
        cnt_r = cnt_r.masked_fill(missing[:, :, None], 0).max(0).values
        d_correct[:, :, n - 1] = ((cnt_p < cnt_r) & exists[:, n - 1 : n]).long()
    correct = stats.correct[:, None, :] + d_correct
    total = (stats.total + exists.long())[:, None, :].expand_as(correct)
    new_len = length + 1
    new_ref_len = closest_ref_len(new_len, torch.stack(rls), missing)
    r_new = bleu_from_stats(
        correct,
        total,
        new_len[:, None].expand(n_rows, n_cand),
        new_ref_len[:, None].expand(n_rows, n_cand),
        **bleu_kwargs,
    )
    return r_new - r_old[:, None]


def next_token_rewards(
    reward_fn_name: str | RewardFn,
    prefix: torch.Tensor,
    ref: Refs,
    vocab_size: int,
    scale_by_length: bool = False,
    **reward_kwargs: Any,
) -> torch.Tensor:
    """ΔR(w | prefix, y*) = R(prefix + w) − R(prefix) for every vocabulary id w, [N, V].

    ``prefix`` [N, t]: a batch of prefixes (its content, up to a first EOS / PAD, is the prefix; w is
    appended after it); both sides are scored as finished sequences (+ EOS), so ΔR(EOS) = ΔR(PAD) = 0.
    Every registered reward sees a token absent from the references only through its position, so
    all such w share one value: ΔR is computed exactly for the reference tokens plus one stand-in
    and broadcast.  BLEU uses incremental n-gram statistics (only n-grams ending at w change);
    other rewards score the N*(reference length + 1) candidates in one batch.  A custom callable
    must have the same invariance."""
    fn = get_reward(reward_fn_name)
    refs, _ = ref_list(ref)
    cand = _candidates(refs)
    if fn is sentence_bleu:
        delta = _next_token_bleu(prefix, ref, cand, **reward_kwargs)
    else:
        delta = _next_token_generic(get_reward(fn, **reward_kwargs), prefix, ref, cand)
    if scale_by_length:
        delta = delta * ref_lengths(ref)[:, None]
    return _scatter_vocab(delta, cand, vocab_size)


class NextTokenBleu:
    """ΔBLEU(w | y_<t, y*) for every vocabulary id along a growing hypothesis, on fixed-shape buffers.

    What :func:`next_token_rewards` gives for sentence BLEU (one reference per row), computed from a fixed-width
    history buffer and a prefix length tensor instead of a prefix of growing width: the prefix's clipped matches
    are carried from step to step (:meth:`advance` adds the chosen token's new matches), so a step is a few
    dozen tensor ops of fixed shapes with no host sync (CUDA-graph safe).  Buffers hold ``rows`` references of
    at most ``ref_width`` tokens; :meth:`load` fills them (fewer rows / narrower references are padded)."""

    def __init__(
        self,
        rows: int,
        ref_width: int,
        vocab_size: int,
        device: torch.device | str,
        max_order: int = 4,
        **bleu_kwargs: Any,
    ):
        self.vocab_size, self.max_order, self.bleu_kwargs = vocab_size, max_order, bleu_kwargs
        self.ref = torch.full((rows, ref_width), PAD_ID, dtype=torch.long, device=device)
        self.ref_len = torch.zeros(rows, dtype=torch.long, device=device)
        self.cand = torch.full((rows, ref_width + 1), OTHER, dtype=torch.long, device=device)
        self.eq_ref = torch.zeros(rows, ref_width + 1, ref_width, dtype=torch.bool, device=device)
        # the reference shifted right by k = 1 .. max_order-1 positions (ref[j - k]; REF_FILL before the start)
        self.ref_shifted = torch.full(
            (max(max_order - 1, 1), rows, ref_width), REF_FILL, dtype=torch.long, device=device
        )
        self.orders = torch.arange(1, max_order + 1, device=device)
        self.correct = torch.zeros(rows, max_order, dtype=torch.long, device=device)
        self.d_correct = torch.zeros(rows, ref_width + 1, max_order, dtype=torch.long, device=device)

    def load(self, ref: torch.Tensor) -> NextTokenBleu:
        """New references [n, w] (n <= rows, w <= ref_width; missing rows are empty references); prefix empty."""
        self.ref.fill_(PAD_ID)
        self.ref[: ref.size(0), : ref.size(1)].copy_(ref)
        self.ref_len.copy_(content_lengths(self.ref))
        content = masked_content(self.ref, self.ref_len, REF_FILL)
        self.cand.copy_(_candidates([self.ref]))
        self.eq_ref.copy_(self.cand[:, :, None] == content[:, None, :])
        width = content.size(1)
        for k in range(1, self.max_order):
            self.ref_shifted[k - 1].copy_(F.pad(content, (k, 0), value=REF_FILL)[:, :width])
        self.reset()
        return self

    def reset(self) -> None:
        """An empty prefix."""
        self.correct.zero_()

    def __call__(self, history: torch.Tensor, length: torch.Tensor) -> torch.Tensor:
        """ΔR [rows, V] of appending each w to the prefix ``history[:, :length]`` ([rows, W], ``length`` [rows]
        or [1]); the prefix's statistics are those accumulated by :meth:`advance`."""
        rows, width = history.shape
        length = length.expand(rows)
        hyp = masked_content(history, length, HYP_FILL)
        eq_hyp = self.cand[:, :, None] == hyp[:, None, :]  # [N, C, W]
        # s_*: the n-gram ending there has its first n-1 tokens equal to the prefix's last n-1 tokens
        s_hyp = torch.ones_like(hyp, dtype=torch.bool)
        s_ref = torch.ones_like(self.ref, dtype=torch.bool)
        d_orders = []
        for n in range(1, self.max_order + 1):
            if n > 1:
                k = n - 1
                last = hyp.gather(1, (length - k).clamp(min=0)[:, None])  # the prefix's k-th last token
                s_hyp = s_hyp & (F.pad(hyp, (k, 0), value=HYP_FILL)[:, :width] == last)
                s_ref = s_ref & (self.ref_shifted[k - 1] == last)
            cnt_hyp = (eq_hyp & s_hyp[:, None, :]).sum(-1)
            cnt_ref = (self.eq_ref & s_ref[:, None, :]).sum(-1)
            d_orders.append(cnt_hyp < cnt_ref)
        exists = length[:, None] + 1 >= self.orders[None, :]  # [N, M]: the new n-gram of order n exists
        self.d_correct.copy_(torch.stack(d_orders, -1) & exists[:, None, :])
        # column 0: the prefix itself, columns 1..C: the prefix + each candidate (one BLEU call for both)
        n_cand = self.cand.size(1)
        total = (length[:, None] - self.orders[None, :] + 1).clamp(min=0)
        correct = torch.cat([self.correct[:, None, :], self.correct[:, None, :] + self.d_correct], 1)
        totals = torch.cat([total[:, None, :], (total + exists.long())[:, None, :].expand(rows, n_cand, -1)], 1)
        lengths = torch.cat([length[:, None], (length + 1)[:, None].expand(rows, n_cand)], 1)
        r = bleu_from_stats(
            correct, totals, lengths, self.ref_len[:, None].expand(rows, n_cand + 1), **self.bleu_kwargs
        )
        return _scatter_vocab(r[:, 1:] - r[:, :1], self.cand, self.vocab_size)

    def advance(self, token: torch.Tensor) -> None:
        """Append ``token`` [rows] (drawn after the last call) to the prefix's statistics."""
        match = self.cand == token[:, None]
        col = torch.where(match.any(1), match.int().argmax(1), torch.full_like(token, self.cand.size(1) - 1))
        self.correct.add_(self.d_correct.gather(1, col[:, None, None].expand(-1, 1, self.max_order)).squeeze(1))


class NextTokenGeneric:
    """:class:`NextTokenBleu`'s interface for any reward, by :func:`next_token_rewards` on the masked history
    (fixed shapes, but the reward itself may sync the host: not for CUDA graphs)."""

    def __init__(self, reward_fn: str | RewardFn, vocab_size: int):
        self.reward_fn, self.vocab_size = reward_fn, vocab_size
        self.ref: torch.Tensor | None = None

    def load(self, ref: torch.Tensor) -> NextTokenGeneric:
        self.ref = ref
        return self

    def reset(self) -> None:
        pass

    def __call__(self, history: torch.Tensor, length: torch.Tensor) -> torch.Tensor:
        prefix = masked_content(history, length.expand(history.size(0)), PAD_ID)
        return next_token_rewards(self.reward_fn, prefix, self.ref, self.vocab_size)

    def advance(self, token: torch.Tensor) -> None:
        pass
