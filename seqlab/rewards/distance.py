"""Batched edit / Hamming distances and the delta reward on token contents (EOS and PAD ignored).

With several references a distance is the min over references and a reward the max.
"""

from __future__ import annotations

import torch

from seqlab.rewards._common import HYP_FILL, REF_FILL, Refs, content_lengths, masked_content, reduce_refs


def _edit_single(hyp: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    hl, rl = content_lengths(hyp), content_lengths(ref)
    h, r = masked_content(hyp, hl, HYP_FILL), masked_content(ref, rl, REF_FILL)
    n, tr = r.shape
    cols = torch.arange(tr + 1, device=hyp.device)
    prev = cols.expand(n, tr + 1)
    out = rl.clone()  # empty hypothesis: rl insertions
    for i in range(int(hl.max()) if n else 0):
        cost = (h[:, i : i + 1] != r).long()
        b = torch.cat([torch.full_like(prev[:, :1], i + 1), torch.minimum(prev[:, 1:] + 1, prev[:, :-1] + cost)], dim=1)
        prev = (b - cols).cummin(1).values + cols
        out = torch.where(hl == i + 1, prev.gather(1, rl[:, None]).squeeze(1), out)
    return out


def edit_distance(hyp: torch.Tensor, ref: Refs) -> torch.Tensor:
    """Levenshtein distance (unit insert / delete / substitute) [N] long, min over references.

    Row-wise DP vectorised over the batch: with b[j] = min(D[i-1, j] + 1, D[i-1, j-1] + cost(i, j)),
    D[i, j] = j + cummin_k<=j (b[k] - k)."""
    return reduce_refs(lambda h, r: _edit_single(h, r).float(), hyp, ref, "min").long()


def neg_edit_distance(hyp: torch.Tensor, ref: Refs) -> torch.Tensor:
    """−edit distance [N] float (a reward: higher is better)."""
    return -edit_distance(hyp, ref).float()


def _hamming_single(hyp: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    hl, rl = content_lengths(hyp), content_lengths(ref)
    width = max(hyp.size(1), ref.size(1))
    h = torch.nn.functional.pad(masked_content(hyp, hl, HYP_FILL), (0, width - hyp.size(1)), value=HYP_FILL)
    r = torch.nn.functional.pad(masked_content(ref, rl, REF_FILL), (0, width - ref.size(1)), value=REF_FILL)
    pos = torch.arange(width, device=hyp.device)[None, :]
    inside = (pos < hl[:, None]) | (pos < rl[:, None])
    return ((h != r) & inside).sum(1)


def hamming_distance(hyp: torch.Tensor, ref: Refs) -> torch.Tensor:
    """Positions 0..max(len_h, len_r)-1 where the contents differ, [N] long; a position present in only
    one of them counts as a mismatch (so the length difference is included).  Min over references."""
    return reduce_refs(lambda h, r: _hamming_single(h, r).float(), hyp, ref, "min").long()


def neg_hamming(hyp: torch.Tensor, ref: Refs) -> torch.Tensor:
    """−Hamming distance [N] float (a reward)."""
    return -hamming_distance(hyp, ref).float()


def delta_reward(hyp: torch.Tensor, ref: Refs) -> torch.Tensor:
    """δ(y = y*): 1.0 where the content equals a reference exactly, else 0.0, [N] float.

    (1/0 rather than 0/−inf keeps it usable as a plain reward and as exp(R/τ) weights.)"""
    return reduce_refs(lambda h, r: (_hamming_single(h, r) == 0).float(), hyp, ref, "max")
