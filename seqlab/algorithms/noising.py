"""Data noising (Xie et al. 2017): MLE on targets whose tokens are replaced by unigram draws with rate gamma
(ERPO: a noised delta-reward, alpha -> 0, beta = 1)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from seqlab.algorithms.base import AlgorithmContext, register
from seqlab.algorithms.sequence import Candidates, SequenceAlgorithm
from seqlab.erpo.proposals import unigram_noise


@dataclass
class NoisingOptions:
    gamma: float = 0.1

    def __post_init__(self) -> None:
        if not 0.0 <= self.gamma <= 1.0:
            raise ValueError(f"gamma is a probability, got {self.gamma}")


@register("noising")
class Noising(SequenceAlgorithm):
    """Proposal: the reference with each token replaced by a unigram draw with probability gamma; weight 1."""

    Options = NoisingOptions
    summary = "data noising: target tokens replaced by unigram noise at rate gamma (Xie et al. 2017)"
    display_name = "data noising"
    breadth = 1
    encode_first = False  # the noise is drawn before the encoder runs (its dropout draws come after)

    def __init__(self, ctx: AlgorithmContext, options: Any = None):
        super().__init__(ctx, options)
        if ctx.unigram is None:
            raise ValueError("noising needs the target unigram distribution (the trainer provides it)")
        self.register_buffer("unigram", ctx.unigram.float().clone())

    def propose(self, model, batch, enc, progress=None) -> Candidates:
        return Candidates.of(unigram_noise(batch.tgt, self.options.gamma, self.unigram))
