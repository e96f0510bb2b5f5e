"""Batched sentence BLEU on token ids, equal to sacrebleu's ``sentence_bleu`` on the ids written as words.

Scale: **[0, 1]** (sacrebleu's score / 100).  Clipped n-gram matches come from exact equality matrices
[N, T_hyp, T_ref] built order by order (E_n = E_{n-1} shifted AND E_1 shifted), so there is no hashing
and no collision; the only loops are over the n-gram order and the references.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from seqlab.rewards._common import (
    HYP_FILL,
    REF_FILL,
    Refs,
    content_lengths,
    masked_content,
    missing_refs,
    ref_list,
)

SMOOTH_DEFAULTS: dict[str, float | None] = {"none": None, "floor": 0.1, "add-k": 1.0, "exp": None}


class BleuStats(NamedTuple):
    """Sufficient statistics of sentence BLEU: clipped matches and totals per order [N, K], lengths [N]."""

    correct: torch.Tensor
    total: torch.Tensor
    hyp_len: torch.Tensor
    ref_len: torch.Tensor


def clipped_matches(
    hyp: torch.Tensor,
    hyp_len: torch.Tensor,
    refs: list[torch.Tensor],
    ref_lens: list[torch.Tensor],
    missing: torch.Tensor,
    max_order: int,
) -> torch.Tensor:
    """Clipped n-gram matches [N, max_order]: sum over distinct hypothesis n-grams of
    min(count in hypothesis, max over the non-missing references of the count in that reference).

    Written as sum over hypothesis positions i of [rank_i < ref_count_i], where rank_i counts the
    earlier occurrences of the same n-gram in the hypothesis (k occurrences contribute min(k, ref_count)).
    Equality matrices are uint8 (0/1): products and uint8 sums are much faster than bool ops on CPU."""
    n_rows, th = hyp.shape
    h = masked_content(hyp, hyp_len, HYP_FILL)
    rs = [masked_content(r, rl, REF_FILL) for r, rl in zip(refs, ref_lens, strict=True)]
    earlier = torch.ones(th, th, dtype=torch.bool, device=hyp.device).tril(-1)
    e1_hh = ((h[:, :, None] == h[:, None, :]) & earlier).view(torch.uint8)  # j < i only
    e1_hr = [(h[:, :, None] == r[:, None, :]).view(torch.uint8) for r in rs]
    acc = torch.uint8 if max([th] + [r.size(1) for r in rs]) < 256 else torch.int32
    pos = torch.arange(th, device=hyp.device)
    out = torch.zeros(n_rows, max_order, dtype=torch.long, device=hyp.device)
    e_hh, e_hr = e1_hh, list(e1_hr)
    for n in range(1, max_order + 1):
        if n > 1:
            e_hh = e_hh[:, :-1, :-1] * e1_hh[:, n - 1 :, n - 1 :]
            e_hr = [e[:, :-1, :-1] * e1[:, n - 1 :, n - 1 :] for e, e1 in zip(e_hr, e1_hr, strict=True)]
        width = e_hh.size(1)
        if width == 0:
            break
        # An n-gram that runs past the content holds a fill id and equals no complete n-gram, so the
        # counts below need no masks; only the summed positions must be complete n-grams.
        valid = pos[None, :width] + n <= hyp_len[:, None]
        rank = e_hh.sum(-1, dtype=acc)
        cnt_r = torch.stack([e.sum(-1, dtype=acc) for e in e_hr])
        cnt_r = cnt_r.masked_fill(missing[:, :, None], 0).amax(0)
        out[:, n - 1] = ((rank < cnt_r) & valid).sum(-1)
    return out


def closest_ref_len(hyp_len: torch.Tensor, ref_lens: torch.Tensor, missing: torch.Tensor) -> torch.Tensor:
    """sacrebleu's rule: the reference length closest to the hypothesis length, the shorter on ties.

    ``hyp_len`` [...], ``ref_lens`` and ``missing`` [K, ...]."""
    key = (hyp_len[None] - ref_lens).abs() * (1 << 31) + ref_lens  # no host sync, lengths < 2^31
    key = key.masked_fill(missing, torch.iinfo(torch.long).max)
    return ref_lens.gather(0, key.argmin(0, keepdim=True)).squeeze(0)


def bleu_stats(hyp: torch.Tensor, ref: Refs, max_order: int = 4) -> BleuStats:
    """Sufficient statistics of sentence BLEU for every row (see :func:`sentence_bleu` for ``ref``)."""
    refs, multi = ref_list(ref)
    missing = missing_refs(refs, multi)
    hyp_len = content_lengths(hyp)
    rls = [content_lengths(r) for r in refs]
    correct = clipped_matches(hyp, hyp_len, refs, rls, missing, max_order)
    orders = torch.arange(1, max_order + 1, device=hyp.device)
    total = (hyp_len[:, None] - orders[None, :] + 1).clamp(min=0)
    ref_len = closest_ref_len(hyp_len, torch.stack(rls), missing)
    return BleuStats(correct, total, hyp_len, ref_len)


def bleu_from_stats(
    correct: torch.Tensor,
    total: torch.Tensor,
    hyp_len: torch.Tensor,
    ref_len: torch.Tensor,
    smooth: str = "exp",
    smooth_value: float | None = None,
    effective_order: bool = True,
    brevity_penalty: bool = True,
) -> torch.Tensor:
    """BLEU in [0, 1] from statistics with any leading shape ([..., K] counts, [...] lengths).

    Mirrors ``sacrebleu.metrics.BLEU.compute_bleu`` (2.x): no match at any order gives 0; 'add-k'
    adds k to matches and totals of orders >= 2; the order loop stops at the first order with no
    n-gram; 'exp' halves the smoothed precision at each zero-match order; with ``effective_order``
    the geometric mean runs over the orders before that stop.  ``brevity_penalty=False`` leaves the
    penalty out (the n-gram precisions alone: for unfinished prefixes, whose length is not final)."""
    if smooth not in SMOOTH_DEFAULTS:
        raise ValueError(f"unknown smoothing {smooth!r}; choose from {sorted(SMOOTH_DEFAULTS)}")
    k = SMOOTH_DEFAULTS[smooth] if smooth_value is None else float(smooth_value)
    correct, total = correct.float(), total.float()
    hl, rl = hyp_len.float(), ref_len.float()
    bp = torch.where(hl < rl, torch.exp(1.0 - rl / hl.clamp(min=1.0)) * (hl > 0), torch.ones_like(hl))
    if not brevity_penalty:
        bp = torch.ones_like(hl)
    any_match = (correct > 0).any(-1)
    if smooth == "add-k":
        add = torch.zeros_like(correct)
        add[..., 1:] = k
        correct, total = correct + add, total + add
    max_order = correct.size(-1)
    active = (total > 0).long().cumprod(-1).bool()
    zero = correct == 0
    safe_total = torch.where(total > 0, total, torch.ones_like(total))
    if smooth == "exp":
        halvings = (zero & active).long().cumsum(-1).float()
        zero_prec = 1.0 / (torch.pow(2.0, halvings) * safe_total)
    elif smooth == "floor":
        zero_prec = k / safe_total
    else:
        zero_prec = torch.zeros_like(total)
    prec = torch.where(zero, zero_prec, correct / safe_total)
    prec = torch.where(active, prec, torch.zeros_like(prec))
    logp = torch.where(prec > 0, prec.clamp(min=1e-30).log(), torch.full_like(prec, float("-inf")))
    if effective_order:
        eff = active.sum(-1)
    else:
        eff = torch.full_like(active[..., 0], max_order, dtype=torch.long)
    included = torch.arange(max_order, device=correct.device) < eff[..., None]
    mean_log = torch.where(included, logp, torch.zeros_like(logp)).sum(-1) / eff.clamp(min=1).float()
    score = bp * torch.exp(mean_log)
    return torch.where(any_match, score, torch.zeros_like(score))


def sentence_bleu(
    hyp: torch.Tensor,
    ref: Refs,
    max_order: int = 4,
    smooth: str = "exp",
    smooth_value: float | None = None,
    effective_order: bool = True,
    brevity_penalty: bool = True,
) -> torch.Tensor:
    """Sentence BLEU of every row, in **[0, 1]**, [N] float.

    Equal to ``sacrebleu.sentence_bleu(h, refs, tokenize="none", smooth_method=smooth,
    smooth_value=smooth_value, use_effective_order=effective_order).score / 100`` with every token id
    written as a word.  ``hyp`` [N, T]; ``ref`` [N, T'] or several references as a list of [N, T_k]
    or a tensor [N, K, T'] (an all-PAD row is a missing reference).  With several references the
    clipped counts use the max over references and the brevity penalty the closest reference length.
    Smoothing: 'exp' (default, sacrebleu's), 'floor' (smooth_value 0.1), 'add-k' (1), 'none'."""
    stats = bleu_stats(hyp, ref, max_order)
    return bleu_from_stats(
        *stats,
        smooth=smooth,
        smooth_value=smooth_value,
        effective_order=effective_order,
        brevity_penalty=brevity_penalty,
    )
