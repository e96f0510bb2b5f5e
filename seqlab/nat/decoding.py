"""NAT decoding: one length (argmax), or length-parallel decoding (LPD) with autoregressive rescoring.

LPD (Gu et al. 2018; Wei et al. 2019): for each source take the 2ΔT+1 lengths L̂ − ΔT .. L̂ + ΔT around
the predicted length L̂ (clamped to at least 1), decode all (2ΔT+1)·B candidates in one NAT pass, score
all of them in one teacher-forced pass of the autoregressive teacher, and keep per source the candidate
with the highest teacher log-likelihood.  By default that log-likelihood is normalised by length (mean
over the candidate's tokens and its EOS): the summed log-likelihood systematically prefers the shortest
candidate, which costs BLEU through the brevity penalty.  ``normalize=False`` uses the sum.
Without a teacher the NAT rescores its own candidates (log p(y | x, L), normalised by the L positions it decoded,
also when repeat removal has shortened a candidate since).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from seqlab.decoding.search import Hypotheses
from seqlab.nat.candidates import (
    Candidates,
    append_eos,
    best_candidates,
    candidate_width,
    collapse_repeats,
    nat_candidates,
    rescore,
)
from seqlab.nat.graphs import captured_decoder, nat_graphs_enabled

__all__ = [
    "Candidates",
    "append_eos",
    "best_candidates",
    "candidate_width",
    "collapse_repeats",
    "length_parallel_decode",
    "make_nat_decoder",
    "nat_candidates",
    "rescore",
]


@torch.no_grad()
def length_parallel_decode(
    model: Any,
    src: torch.Tensor,
    delta_t: int = 0,
    teacher: Any | None = None,
    normalize: bool = True,
    max_len: int = 256,
    dedupe: bool = False,
    graphs: bool | None = None,
) -> Hypotheses:
    """Best candidate per source (tokens, EOS, PAD) with its rescoring score.  Small batches on CUDA replay a
    captured graph of the whole decode (encoder, lengths, NAT pass, teacher rescoring; see
    :mod:`seqlab.nat.graphs`) unless ``graphs`` is False; the result is the same."""
    if graphs is None:
        graphs = nat_graphs_enabled(model, teacher, src)
    if graphs:
        tokens, scores, lengths = captured_decoder(model, src, delta_t, teacher, normalize, max_len, dedupe)(src)
    else:
        tokens, scores, lengths = best_candidates(model, src, delta_t, teacher, normalize, max_len, dedupe)
    return Hypotheses(tokens[:, : int(lengths.max()) + 1], scores)


def make_nat_decoder(
    delta_t: int = 0,
    teacher: Any | None = None,
    normalize: bool = True,
    max_len: int = 256,
    dedupe: bool = False,
    graphs: bool | None = None,
) -> Callable[[Any, torch.Tensor], Hypotheses]:
    """A ``decoder(model, src)`` for :func:`seqlab.train.evaluate.evaluate_corpus` / ``decode_ids``."""

    def decoder(model: Any, src: torch.Tensor) -> Hypotheses:
        return length_parallel_decode(
            model,
            src,
            delta_t=delta_t,
            teacher=teacher,
            normalize=normalize,
            max_len=max_len,
            dedupe=dedupe,
            graphs=graphs,
        )

    return decoder
