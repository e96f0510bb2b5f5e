"""NAT candidates: decode 2ΔT+1 lengths per source in one NAT pass, rescore them, keep the best per source.

The pieces of length-parallel decoding (:mod:`seqlab.nat.decoding`) that the captured decode
(:mod:`seqlab.nat.graphs`) replays; with a fixed ``width`` nothing here waits for the device.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from seqlab.data.vocab import EOS_ID, PAD_ID


@dataclass
class Candidates:
    """K = 2ΔT+1 candidates per source, rows b*K .. b*K+K-1."""

    tokens: torch.Tensor  # [B*K, T] tokens, EOS, PAD
    lengths: torch.Tensor  # [B*K] tokens without EOS
    nat_scores: torch.Tensor  # [B*K] sum of the NAT's token log-probabilities over its decoded positions
    per_source: int  # K
    decoded_lengths: torch.Tensor | None = None  # [B*K] positions summed in nat_scores (lengths before dedupe)


def collapse_repeats(tokens: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Drop consecutive duplicates within the first ``lengths`` tokens of each row (left-aligned)."""
    width = tokens.size(1)
    valid = torch.arange(width, device=tokens.device)[None, :] < lengths[:, None]
    keep = valid.clone()
    keep[:, 1:] &= tokens[:, 1:].ne(tokens[:, :-1])
    new_len = keep.sum(1)
    pos = (keep.cumsum(1) - 1).clamp(min=0)
    out = torch.full_like(tokens, PAD_ID)
    out.scatter_(1, torch.where(keep, pos, torch.full_like(pos, width - 1)), torch.where(keep, tokens, out))
    out = out.masked_fill(torch.arange(width, device=tokens.device)[None, :] >= new_len[:, None], PAD_ID)
    return out, new_len


def append_eos(tokens: torch.Tensor, lengths: torch.Tensor, width: int | None = None) -> torch.Tensor:
    """[N, W] tokens valid up to ``lengths`` -> [N, width] tokens, EOS, PAD; ``width`` defaults to
    max(lengths) + 1 (a device sync: a fixed width, at least that, keeps the shapes static)."""
    width = int(lengths.max()) + 1 if width is None else width
    out = torch.full((tokens.size(0), width), PAD_ID, dtype=torch.long, device=tokens.device)
    n = min(width, tokens.size(1))
    out[:, :n] = tokens[:, :n]
    pos = torch.arange(width, device=tokens.device)[None, :]
    out = out.masked_fill(pos >= lengths[:, None], PAD_ID)
    return out.scatter(1, lengths.unsqueeze(1), EOS_ID)


def candidate_width(model: Any, source_width: int, delta_t: int, max_len: int) -> int:
    """An upper bound on every candidate length for sources of ``source_width`` positions, from shapes alone:
    the fixed decoder width of a sync-free (CUDA-graph) pass."""
    cap = min(max_len - 1, model.cfg.max_positions - 1)
    if model.cfg.length_mode == "offset":  # L = S′ + offset, S′ <= source_width - 1 (the EOS)
        cap = min(cap, source_width - 1 + model.cfg.max_length_offset + delta_t)
    return max(cap, 1)


@torch.no_grad()
def nat_candidates(
    model: Any, src: torch.Tensor, delta_t: int = 0, max_len: int = 256, dedupe: bool = False, width: int | None = None
) -> Candidates:
    """Decode 2ΔT+1 lengths per source around the predicted one, all in one NAT batch.  With ``width``
    (see :func:`candidate_width`) every shape is fixed and nothing waits for the device."""
    enc = model.encode(src)
    k = 2 * delta_t + 1
    offsets = torch.arange(-delta_t, delta_t + 1, device=src.device)
    lengths = (model.predict_lengths(enc)[:, None] + offsets[None, :]).reshape(-1)
    lengths = lengths.clamp(1, max(max_len - 1, 1))
    enc_k = enc.repeat(k) if k > 1 else enc
    logp = model.log_probs(enc_k, lengths, width)
    best, tokens = logp.max(-1)
    valid = torch.arange(tokens.size(1), device=src.device)[None, :] < lengths[:, None]
    scores = (best * valid).sum(1)
    tokens = tokens.masked_fill(~valid, PAD_ID)
    decoded = lengths
    if dedupe:
        tokens, lengths = collapse_repeats(tokens, lengths)
    return Candidates(append_eos(tokens, lengths, None if width is None else width + 1), lengths, scores, k, decoded)


@torch.no_grad()
def rescore(
    candidates: Candidates,
    src: torch.Tensor,
    teacher: Any | None = None,
    nat: Any | None = None,
    normalize: bool = True,
) -> torch.Tensor:
    """Scores [B, K] of the candidates: the teacher's log-likelihood (one batch, encoder run once per
    source), or the NAT's own token log-probabilities without a teacher; optionally per token (the teacher's over
    the candidate's tokens and EOS, the NAT's over the positions it decoded, which repeat removal does not change)."""
    k = candidates.per_source
    if teacher is not None:
        enc = teacher.encode(src)
        enc = enc.repeat(k) if k > 1 else enc
        src_k = src.repeat_interleave(k, dim=0)
        total = teacher.score(src_k, candidates.tokens, enc=enc).float().sum(1)
        count = candidates.lengths + 1  # tokens and EOS
    else:
        decoded = candidates.lengths if candidates.decoded_lengths is None else candidates.decoded_lengths
        total, count = candidates.nat_scores, decoded.clamp(min=1)
    scores = total / count.float() if normalize else total
    return scores.view(-1, k)


@torch.no_grad()
def best_candidates(
    model: Any,
    src: torch.Tensor,
    delta_t: int = 0,
    teacher: Any | None = None,
    normalize: bool = True,
    max_len: int = 256,
    dedupe: bool = False,
    width: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per source the best candidate: tokens [B, W+1] (tokens, EOS, PAD), score [B], length [B] (without
    EOS).  ΔT = 0 is argmax-length decoding (no rescoring pass).  Sync-free when ``width`` is given."""
    cands = nat_candidates(model, src, delta_t, max_len=max_len, dedupe=dedupe, width=width)
    if cands.per_source == 1:
        return cands.tokens, cands.nat_scores, cands.lengths
    scores = rescore(cands, src, teacher=teacher, normalize=normalize)
    pick = scores.argmax(1) + torch.arange(scores.size(0), device=src.device) * cands.per_source
    return cands.tokens.index_select(0, pick), scores.max(1).values, cands.lengths.index_select(0, pick)
