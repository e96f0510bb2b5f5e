"""Data noising (Xie et al. 2017): MLE on targets whose tokens are replaced by unigram draws with rate gamma
(ERPO: a noised delta-reward, alpha -> 0, beta = 1)."""

from __future__ import annotations

import torch

from seqlab.algorithms.base import Algorithm, AlgorithmContext, Progress, register
from seqlab.erpo.engine import reference_tokens, weighted_sequence_loss
from seqlab.erpo.proposals import unigram_noise


@register("noising")
class Noising(Algorithm):
    def __init__(self, ctx: AlgorithmContext, gamma: float = 0.1):
        super().__init__(ctx)
        if ctx.unigram is None:
            raise ValueError("noising needs the target unigram distribution (the trainer provides it)")
        self.gamma = gamma
        self.register_buffer("unigram", ctx.unigram.float().clone())

    def loss(self, model, batch, progress: Progress):
        prop = unigram_noise(batch.tgt, self.gamma, self.unigram)
        loss = weighted_sequence_loss(model, model.encode(batch.src), prop.tokens, prop.group,
                                      torch.ones(len(prop), device=batch.tgt.device), reference_tokens(batch.tgt),
                                      label_smoothing=self.ctx.label_smoothing)
        return loss, {}
