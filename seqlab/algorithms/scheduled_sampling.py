"""Scheduled sampling (Bengio et al. 2015), the baseline: decoder inputs are sometimes the model's own
predictions, the loss still targets y*_t (model tokens are inputs only, never targets).

The probability of feeding the ground truth follows an inverse-sigmoid decay k / (k + exp(step / k)).  By
default k is fitted to the step budget so that the probability reaches 0.5 at its end (k ln k = budget): a
fixed k = 1000 over a 200-step fine-tuning run fed the truth with probability 0.9988 at its last step.
Model tokens come from one teacher-forced pass without gradient (the parallel form of Duckworth et al.
2019), then the loss pass runs on the mixed inputs."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import torch

from seqlab.algorithms.base import Algorithm, AlgorithmContext, Progress, register
from seqlab.erpo.loss import one_loss, smoothed_targets
from seqlab.erpo.schedules import InverseSigmoid, make_schedule
from seqlab.models.base import mask_special, shift_right

#: the inverse-sigmoid k used when neither k nor the step budget is known (Bengio et al.'s order of magnitude)
FALLBACK_K = 1000.0


@functools.lru_cache(maxsize=64)
def budget_decay_k(total_steps: int | None) -> float:
    """The k at which k / (k + exp(T / k)) = 0.5 at the budget's last step T, i.e. k ln k = T (k ≥ e)."""
    if not total_steps:
        return FALLBACK_K
    lo, hi = math.e, max(float(total_steps), math.e * 2)
    for _ in range(100):  # bisection on the increasing k ln k
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if mid * math.log(mid) < total_steps else (lo, mid)
    return (lo + hi) / 2


@dataclass
class ScheduledSamplingOptions:
    k: float | None = None
    truth_prob: float | dict | None = None
    sample: bool = True

    def __post_init__(self) -> None:
        if self.k is not None and self.k <= 0:
            raise ValueError(f"k must be positive (or null: fitted to the step budget), got {self.k}")


@register("scheduled_sampling")
class ScheduledSampling(Algorithm):
    """Decoder inputs from the model with probability 1 - truth_prob; the loss still targets y*."""

    Options = ScheduledSamplingOptions
    summary = "scheduled sampling: model tokens as decoder inputs, targets from the data"
    display_name = "scheduled sampling"
    breadth = 1
    annealed = True

    def __init__(self, ctx: AlgorithmContext, options: Any = None):
        super().__init__(ctx, options)
        truth_prob = self.options.truth_prob
        self.truth_schedule = make_schedule(truth_prob) if truth_prob is not None else None
        self.sample_tokens = self.options.sample

    def truth_prob(self, progress: Progress) -> float:
        """P(the decoder input is the ground truth) at this point of training."""
        if self.truth_schedule is not None:
            return float(self.truth_schedule.value(progress.step, progress.epoch))
        k = self.k if self.k is not None else budget_decay_k(progress.total_steps)
        return InverseSigmoid(k=k).at(progress.step)

    def schedules(self):
        return {"truth_prob": self.truth_schedule if self.truth_schedule is not None else self.truth_prob}

    def loss(self, model, batch, progress: Progress):
        tgt = batch.tgt
        enc = model.encode(batch.src)
        gold_in = shift_right(tgt)
        eps = self.truth_prob(progress)
        with torch.no_grad():
            logits = mask_special(model.decode(enc, gold_in))
            pred = torch.distributions.Categorical(logits=logits).sample() if self.sample_tokens else logits.argmax(-1)
        model_in = shift_right(pred)
        use_model = torch.rand(tgt.shape, device=tgt.device) >= eps
        use_model[:, 0] = False  # BOS stays
        mixed_in = torch.where(use_model, model_in, gold_in)
        log_probs = torch.log_softmax(mask_special(model.decode(enc, mixed_in)), -1)
        coef = smoothed_targets(tgt, log_probs.size(-1), self.ctx.label_smoothing)
        return one_loss(log_probs, tgt, coef), {"truth_prob": eps}
