"""Helpers shared by the batched rewards: content lengths and reference sets.

A sequence is a LongTensor row ``tokens.., EOS, PAD..`` (no BOS).  Its *content* is the tokens before
the first EOS or PAD; everything from there on is ignored.

References come as one tensor [N, T'] (one reference per row), a list of tensors [N, T_k] or a tensor
[N, K, T'] (K references per row).  In the multi-reference forms a reference row made only of PAD
(no EOS) is *missing*, which gives a varying number of references per example; ``EOS, PAD..`` is a
genuine empty reference.  An example whose references are all missing is scored against one empty
reference.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from seqlab.data.vocab import EOS_ID, PAD_ID

Refs = torch.Tensor | Sequence[torch.Tensor]

# Token ids written past the content so that hypothesis and reference padding never match each other.
HYP_FILL = -1
REF_FILL = -2


def content_lengths(tokens: torch.Tensor) -> torch.Tensor:
    """Number of tokens before the first EOS or PAD, [N] (long)."""
    n, width = tokens.shape
    if width == 0:
        return torch.zeros(n, dtype=torch.long, device=tokens.device)
    is_end = tokens.eq(EOS_ID) | tokens.eq(PAD_ID)
    pos = torch.arange(width, device=tokens.device).expand(n, width)
    return torch.where(is_end, pos, torch.full_like(pos, width)).min(1).values


def masked_content(tokens: torch.Tensor, lengths: torch.Tensor, fill: int) -> torch.Tensor:
    """``tokens`` with every position at or past ``lengths`` replaced by ``fill``."""
    pos = torch.arange(tokens.size(1), device=tokens.device)
    return torch.where(pos[None, :] < lengths[:, None], tokens, torch.full_like(tokens, fill))


def ref_list(ref: Refs) -> tuple[list[torch.Tensor], bool]:
    """References as a list of [N, T_k] tensors, and whether the input was multi-reference."""
    if isinstance(ref, torch.Tensor):
        if ref.dim() == 2:
            return [ref], False
        if ref.dim() == 3:
            return list(ref.unbind(1)), True
        raise ValueError(f"reference tensor must be [N, T] or [N, K, T], got {tuple(ref.shape)}")
    refs = list(ref)
    if not refs:
        raise ValueError("at least one reference is needed")
    return refs, True


def missing_refs(refs: list[torch.Tensor], multi: bool) -> torch.Tensor:
    """[K, N] bool: reference k of row n is missing (all PAD) in the multi-reference form.

    Rows whose references are all missing keep their first one (scored as an empty reference)."""
    n = refs[0].size(0)
    if not multi:
        return torch.zeros(1, n, dtype=torch.bool, device=refs[0].device)
    missing = torch.stack(
        [r.eq(PAD_ID).all(1) if r.size(1) else torch.ones(n, dtype=torch.bool, device=r.device) for r in refs]
    )
    all_missing = missing.all(0)
    missing[0] = missing[0] & ~all_missing
    return missing


def reduce_refs(
    fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], hyp: torch.Tensor, ref: Refs, best: str = "max"
) -> torch.Tensor:
    """Score ``hyp`` against each reference with ``fn`` and keep the best (max or min) per row."""
    refs, multi = ref_list(ref)
    if not multi:
        return fn(hyp, refs[0])
    missing = missing_refs(refs, multi)
    scores = torch.stack([fn(hyp, r) for r in refs])
    fill = float("-inf") if best == "max" else float("inf")
    scores = scores.masked_fill(missing, fill)
    return scores.max(0).values if best == "max" else scores.min(0).values


def ref_lengths(ref: Refs) -> torch.Tensor:
    """Mean content length of the (non-missing) references of each row, [N] float."""
    refs, multi = ref_list(ref)
    missing = missing_refs(refs, multi)
    lens = torch.stack([content_lengths(r) for r in refs]).float()
    keep = (~missing).float()
    return (lens * keep).sum(0) / keep.sum(0).clamp(min=1.0)


def expand_refs(ref: Refs, index: torch.Tensor) -> Refs:
    """Select (or repeat) reference rows along the batch dimension, in any reference form."""
    if isinstance(ref, torch.Tensor):
        return ref.index_select(0, index)
    return [r.index_select(0, index) for r in ref]
