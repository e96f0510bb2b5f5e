"""Scheduled sampling (Bengio et al. 2015), the baseline: decoder inputs are sometimes the model's own
predictions, the loss still targets y*_t (model tokens are inputs only, never targets).

The probability of feeding the ground truth follows an inverse-sigmoid decay k / (k + exp(step / k)).
Model tokens come from one teacher-forced pass without gradient (the parallel form of Duckworth et al.
2019), then the loss pass runs on the mixed inputs."""

from __future__ import annotations

import torch

from seqlab.algorithms.base import Algorithm, AlgorithmContext, Progress, register
from seqlab.erpo.loss import one_loss, smoothed_targets
from seqlab.erpo.schedules import InverseSigmoid, make_schedule
from seqlab.models.base import mask_special, shift_right


@register("scheduled_sampling")
class ScheduledSampling(Algorithm):
    def __init__(self, ctx: AlgorithmContext, k: float = 1000.0, truth_prob: float | dict | None = None,
                 sample: bool = True):
        super().__init__(ctx)
        self.truth_prob = make_schedule(truth_prob) if truth_prob is not None else InverseSigmoid(k=k)
        self.sample_tokens = sample

    def loss(self, model, batch, progress: Progress):
        tgt = batch.tgt
        enc = model.encode(batch.src)
        gold_in = shift_right(tgt)
        eps = float(self.truth_prob.value(progress.step, progress.epoch))
        with torch.no_grad():
            logits = mask_special(model.decode(enc, gold_in))
            pred = (torch.distributions.Categorical(logits=logits).sample() if self.sample_tokens
                    else logits.argmax(-1))
        model_in = shift_right(pred)
        use_model = torch.rand(tgt.shape, device=tgt.device) >= eps
        use_model[:, 0] = False  # BOS stays
        mixed_in = torch.where(use_model, model_in, gold_in)
        log_probs = torch.log_softmax(mask_special(model.decode(enc, mixed_in)), -1)
        coef = smoothed_targets(tgt, log_probs.size(-1), self.ctx.label_smoothing)
        return one_loss(log_probs, tgt, coef), {"truth_prob": eps}
