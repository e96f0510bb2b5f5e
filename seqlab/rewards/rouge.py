"""Batched ROUGE-N and ROUGE-L F1 on token ids, equal to ``rouge_score`` on the ids written as words.

Scale: [0, 1].  With several references each score is the max over references (``score_multi``).
"""

from __future__ import annotations

import torch

from seqlab.rewards._common import HYP_FILL, REF_FILL, Refs, content_lengths, masked_content, reduce_refs
from seqlab.rewards.bleu import clipped_matches


def _f1(overlap: torch.Tensor, hyp_count: torch.Tensor, ref_count: torch.Tensor) -> torch.Tensor:
    p = overlap / hyp_count.clamp(min=1)
    r = overlap / ref_count.clamp(min=1)
    denom = p + r
    return torch.where(denom > 0, 2 * p * r / denom.clamp(min=1e-30), torch.zeros_like(denom))


def _rouge_n_single(hyp: torch.Tensor, ref: torch.Tensor, n: int) -> torch.Tensor:
    hl, rl = content_lengths(hyp), content_lengths(ref)
    missing = torch.zeros(1, hyp.size(0), dtype=torch.bool, device=hyp.device)
    overlap = clipped_matches(hyp, hl, [ref], [rl], missing, n)[:, n - 1].float()
    return _f1(overlap, (hl - n + 1).clamp(min=0).float(), (rl - n + 1).clamp(min=0).float())


def rouge_n(hyp: torch.Tensor, ref: Refs, n: int = 1) -> torch.Tensor:
    """ROUGE-N F1 [N] (``rouge_score`` 'rouge{n}' fmeasure); ``ref`` as in :func:`sentence_bleu`."""
    if n < 1:
        raise ValueError("n must be >= 1")
    return reduce_refs(lambda h, r: _rouge_n_single(h, r, n), hyp, ref, "max")


def lcs_length(hyp: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Length of the longest common subsequence of the contents, [N] long.

    Row-wise DP vectorised over the batch: with a[j] = max(L[i-1, j], L[i-1, j-1] + match(i, j)),
    row i is the running max of a (torch.cummax), so the only loop is over hypothesis positions."""
    hl, rl = content_lengths(hyp), content_lengths(ref)
    h, r = masked_content(hyp, hl, HYP_FILL), masked_content(ref, rl, REF_FILL)
    n, tr = r.shape
    prev = torch.zeros(n, tr + 1, dtype=torch.long, device=hyp.device)
    out = torch.zeros(n, dtype=torch.long, device=hyp.device)
    for i in range(int(hl.max()) if n else 0):
        match = (h[:, i : i + 1] == r).long()
        a = torch.cat([prev[:, :1], torch.maximum(prev[:, 1:], prev[:, :-1] + match)], dim=1)
        prev = a.cummax(1).values
        out = torch.where(hl == i + 1, prev.gather(1, rl[:, None]).squeeze(1), out)
    return out


def _rouge_l_single(hyp: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    lcs = lcs_length(hyp, ref).float()
    return _f1(lcs, content_lengths(hyp).float(), content_lengths(ref).float())


def rouge_l(hyp: torch.Tensor, ref: Refs) -> torch.Tensor:
    """ROUGE-L F1 [N] from the LCS (``rouge_score`` 'rougeL' fmeasure, not the summary-level 'rougeLsum')."""
    return reduce_refs(_rouge_l_single, hyp, ref, "max")


def rouge_sum(hyp: torch.Tensor, ref: Refs) -> torch.Tensor:
    """ROUGE-1 + ROUGE-2 + ROUGE-L F1, [N] in [0, 3] (each term maxed over references on its own)."""
    return rouge_n(hyp, ref, 1) + rouge_n(hyp, ref, 2) + rouge_l(hyp, ref)
