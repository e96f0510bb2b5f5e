"""Algorithms that learn from the model's own samples: policy gradient / self-critical (SCST), softmax
policy gradient (SPG), and MIXER (Ranzato et al. 2016)."""

from __future__ import annotations

import torch
from torch.profiler import record_function

from seqlab.algorithms.base import AlgorithmContext, Progress, register
from seqlab.algorithms.common import RewardAlgorithm
from seqlab.data.vocab import PAD_ID
from seqlab.decoding.search import greedy_search
from seqlab.erpo.engine import reference_tokens, weighted_sequence_loss
from seqlab.erpo.loss import one_loss, smoothed_targets
from seqlab.erpo.proposals import model_samples, token_mixture
from seqlab.erpo.schedules import Whole, make_schedule
from seqlab.erpo.weightings import group_mean, pg_advantages, spg_weights
from seqlab.utils import eval_mode


class SamplingAlgorithm(RewardAlgorithm):
    """Draws K samples per source from the model; optionally mixes in an MLE term with weight ``mle_weight``."""

    #: sample-based fine-tuning collapses above it (measured on Multi30k: BENCHMARKS.md, ERPO family)
    max_finetune_lr = 5e-5

    def __init__(self, ctx: AlgorithmContext, reward: str = "bleu", num_samples: int = 4,
                 temperature: float = 1.0, mle_weight: float = 0.0, max_len_a: float = 1.5, max_len_b: int = 10):
        super().__init__(ctx, reward)
        self.num_samples, self.temperature, self.mle_weight = num_samples, temperature, mle_weight
        self.max_len_a, self.max_len_b = max_len_a, max_len_b

    def mle_term(self, model, enc, tgt):
        log_probs = model.token_log_probs(enc, tgt)
        return one_loss(log_probs, tgt, smoothed_targets(tgt, log_probs.size(-1), self.ctx.label_smoothing))

    def sample(self, model, batch, enc):
        prop, _ = model_samples(model, batch.src, self.num_samples, self.temperature, enc=enc,
                                max_len_a=self.max_len_a, max_len_b=self.max_len_b)
        return prop

    def combine(self, model, enc, batch, rl_loss: torch.Tensor) -> torch.Tensor:
        if self.mle_weight > 0:
            return (1 - self.mle_weight) * rl_loss + self.mle_weight * self.mle_term(model, enc, batch.tgt)
        return rl_loss


@register("pg")
class PolicyGradient(SamplingAlgorithm):
    """REINFORCE with a baseline: ``greedy`` (self-critical sequence training, the default) or ``mean``
    (leave-one-out over the K samples).  Coefficients (R(y) - b) on each sampled token."""

    def __init__(self, ctx: AlgorithmContext, baseline: str = "greedy", **options):
        super().__init__(ctx, **options)
        self.baseline = baseline

    def loss(self, model, batch, progress: Progress):
        enc = model.encode(batch.src)
        prop = self.sample(model, batch, enc)
        refs = batch.tgt.index_select(0, prop.group)
        reward = self.reward(prop.tokens, refs)
        base_r = None
        if self.baseline == "greedy":
            with torch.no_grad(), eval_mode(model), record_function("seqlab.greedy_baseline"):
                greedy = greedy_search(model, batch.src, enc=enc, max_len_a=self.max_len_a,
                                       max_len_b=self.max_len_b)
            base_r = self.reward(greedy.tokens, batch.tgt)
        adv = pg_advantages(reward, prop.group, self.baseline, base_r)
        loss = weighted_sequence_loss(model, enc, prop.tokens, prop.group, adv, len(prop))
        stats = {"reward": float(reward.mean()), "advantage_abs": float(adv.abs().mean())}
        return self.combine(model, enc, batch, loss), stats


@register("spg")
class SoftmaxPolicyGradient(SamplingAlgorithm):
    """SPG (Ding & Soricut 2017) as ERPO with alpha > 0, beta = 0: targets q ∝ p_theta exp(R/alpha)."""

    def __init__(self, ctx: AlgorithmContext, alpha: float = 0.1, **options):
        super().__init__(ctx, **options)
        self.alpha = alpha

    def loss(self, model, batch, progress: Progress):
        enc = model.encode(batch.src)
        prop = self.sample(model, batch, enc)
        refs = batch.tgt.index_select(0, prop.group)
        reward = self.reward(prop.tokens, refs)
        w = spg_weights(reward, self.alpha, prop.group)
        loss = weighted_sequence_loss(model, enc, prop.tokens, prop.group, w, reference_tokens(batch.tgt),
                                      label_smoothing=self.ctx.label_smoothing)
        return self.combine(model, enc, batch, loss), {"reward": float(reward.mean())}


@register("mixer")
class MIXER(SamplingAlgorithm):
    """MIXER: the first m target tokens from the data (cross-entropy), the rest sampled from the model and
    trained by REINFORCE with a mean baseline; m follows a schedule (default: shrinks by ``delta`` tokens
    every ``every`` epochs from ``start``)."""

    def __init__(self, ctx: AlgorithmContext, prefix: float | dict | None = None, **options):
        super().__init__(ctx, **options)
        self.prefix = Whole(make_schedule(prefix if prefix is not None else
                                          {"type": "step", "start": 10, "delta": -2, "every": 1, "lower": 0}))

    def schedules(self):
        return {"prefix": self.prefix}

    def loss(self, model, batch, progress: Progress):
        enc = model.encode(batch.src)
        k = self.num_samples
        src_rows = torch.arange(batch.tgt.size(0), device=batch.tgt.device).repeat_interleave(k)
        tgt = batch.tgt.index_select(0, src_rows)
        m = self.prefix.value(progress.step, progress.epoch)
        data_prefix = torch.full((tgt.size(0),), m, device=tgt.device)
        with eval_mode(model):
            draw = token_mixture(model, enc.select(src_rows), tgt, torch.tensor([1.0, 0.0, 0.0]),
                                 data_prefix=data_prefix, max_len_a=self.max_len_a, max_len_b=self.max_len_b,
                                 first_token_data=False)  # MIXER's data prefix is its own (m = 0: all sampled)
        reward = self.reward(draw.tokens, tgt)
        adv = reward - group_mean(reward, src_rows)
        is_data = draw.components.eq(3)
        ones = torch.ones_like(draw.tokens, dtype=torch.float)
        weights = torch.where(is_data, ones, adv[:, None].expand_as(draw.tokens))
        weights = weights.masked_fill(draw.tokens.eq(PAD_ID), 0.0)
        loss = weighted_sequence_loss(model, enc, draw.tokens, src_rows, weights, len(src_rows))
        return self.combine(model, enc, batch, loss), {"reward": float(reward.mean()), "prefix": m}
