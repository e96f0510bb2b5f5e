"""Maximum likelihood: the data as the only proposal, coefficient one-hot(y*) (optionally smoothed)."""

from __future__ import annotations

import torch

from seqlab.algorithms.base import Algorithm, AlgorithmContext, Progress, register
from seqlab.erpo.loss import one_loss, smoothed_targets
from seqlab.models.base import Seq2SeqModel


@register("mle")
class MLE(Algorithm):
    def __init__(self, ctx: AlgorithmContext, label_smoothing: float | None = None):
        super().__init__(ctx)
        self.label_smoothing = ctx.label_smoothing if label_smoothing is None else label_smoothing

    def loss(self, model: Seq2SeqModel, batch, progress: Progress) -> tuple[torch.Tensor, dict[str, float]]:
        log_probs = model.token_log_probs(model.encode(batch.src), batch.tgt)
        coef = smoothed_targets(batch.tgt, log_probs.size(-1), self.label_smoothing)
        return one_loss(log_probs, batch.tgt, coef), {}
