"""Maximum likelihood: the data as the only proposal, coefficient one-hot(y*) (optionally smoothed)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from seqlab.algorithms.base import Algorithm, AlgorithmContext, Progress, register
from seqlab.erpo.loss import one_loss, smoothed_targets
from seqlab.models.base import Seq2SeqModel


@dataclass
class MLEOptions:
    label_smoothing: float | None = None  # null: train.label_smoothing

    def __post_init__(self) -> None:
        if self.label_smoothing is not None and not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")


@register("mle")
class MLE(Algorithm):
    """Maximum likelihood: coefficient one-hot(y*), smoothed by label smoothing."""

    Options = MLEOptions
    summary = "maximum likelihood with label smoothing"
    display_name = "MLE"
    breadth = 0
    capturable_step = True

    def __init__(self, ctx: AlgorithmContext, options: Any = None):
        super().__init__(ctx, options)
        smoothing = self.options.label_smoothing
        self.label_smoothing = ctx.label_smoothing if smoothing is None else smoothing

    def loss(self, model: Seq2SeqModel, batch, progress: Progress) -> tuple[torch.Tensor, dict[str, float]]:
        log_probs = model.token_log_probs(model.encode(batch.src), batch.tgt)
        coef = smoothed_targets(batch.tgt, log_probs.size(-1), self.label_smoothing)
        return one_loss(log_probs, batch.tgt, coef), {}
