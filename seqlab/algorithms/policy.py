"""Algorithms that learn from the model's own samples: policy gradient / self-critical (SCST), softmax
policy gradient (SPG), and MIXER (Ranzato et al. 2016)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch.profiler import record_function

from seqlab.algorithms.base import Progress, register
from seqlab.algorithms.sequence import (
    NORMALIZE_HELP,
    Candidates,
    KLOptions,
    RewardAlgorithm,
    RewardOptions,
    Step,
    Weights,
    normalize_advantages,
)
from seqlab.data.vocab import PAD_ID
from seqlab.decoding.search import greedy_search
from seqlab.erpo.engine import reference_tokens
from seqlab.erpo.proposals import model_samples, token_mixture
from seqlab.erpo.schedules import Whole, make_schedule
from seqlab.erpo.weightings import group_mean, pg_advantages, spg_weights
from seqlab.utils import eval_mode

BASELINES = ("greedy", "mean", "none")
#: MIXER's default prefix schedule: m = 10 data tokens, 2 fewer every epoch
DEFAULT_PREFIX = {"type": "step", "start": 10, "delta": -2, "every": 1, "lower": 0}


def prefix_schedule(option: Any) -> Whole:
    """The data prefix m of MIXER and the MIXER-alike anneal: the ``prefix`` option's schedule, or
    :data:`DEFAULT_PREFIX`."""
    return Whole(make_schedule(option if option is not None else DEFAULT_PREFIX))


class PrefixScheduled:
    """Mixin of the algorithms that keep a data prefix of m tokens (MIXER, the MIXER-alike anneal): m follows the
    ``prefix`` option's schedule (:func:`prefix_schedule`), logged and checkpointed as the schedule ``prefix``."""

    options: Any

    def __init__(self, ctx: Any, options: Any = None):
        super().__init__(ctx, options)  # the algorithm base class next in the MRO
        self.prefix = prefix_schedule(self.options.prefix)

    def schedules(self) -> dict[str, Whole]:
        return {"prefix": self.prefix}


@dataclass
class SamplingOptions(KLOptions, RewardOptions):
    normalize_advantages: bool = field(default=False, metadata={"help": NORMALIZE_HELP})
    num_samples: int = 4
    temperature: float = 1.0
    mle_weight: float = 0.0
    max_len_a: float = 1.5
    max_len_b: int = 10

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.num_samples < 1:
            raise ValueError(f"num_samples must be at least 1, got {self.num_samples}")
        if not 0.0 <= self.mle_weight <= 1.0:
            raise ValueError(f"mle_weight must be in [0, 1], got {self.mle_weight}")


class SamplingAlgorithm(RewardAlgorithm):
    """Proposes K samples per source from the model; optionally mixes in an MLE term with weight ``mle_weight``."""

    Options = SamplingOptions
    #: sample-based fine-tuning collapses above it (measured on Multi30k: BENCHMARKS.md, ERPO family)
    max_finetune_lr = 5e-5

    def controlled(self) -> bool:
        """Whether a stability control is on (then the reward's std is logged too)."""
        return self.options.kl_coef > 0 or self.options.normalize_advantages

    def reward_stats(self, reward: torch.Tensor) -> dict[str, float]:
        stats = {"reward": reward.mean()}  # on the device until the trainer logs it
        if self.controlled():
            stats["reward_std"] = reward.std(unbiased=False)
        return stats

    def propose(self, model, batch, enc, progress=None) -> Candidates:
        o = self.options
        prop, _ = model_samples(
            model, batch.src, o.num_samples, o.temperature, enc=enc, max_len_a=o.max_len_a, max_len_b=o.max_len_b
        )
        return Candidates.of(prop)


@dataclass
class PGOptions(SamplingOptions):
    # leave-one-out by default: self-critical training (greedy) collapsed on Multi30k from a label-smoothed MLE
    # checkpoint (its samples score below the greedy decode, so nearly every sampled token is pushed down)
    baseline: str = "mean"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.baseline not in BASELINES:
            raise ValueError(f"baseline must be one of {BASELINES}, got {self.baseline!r}")


@register("pg")
class PolicyGradient(SamplingAlgorithm):
    """REINFORCE with a baseline: ``mean`` (the default: the mean reward of the source's other K - 1 samples,
    Kool et al. 2019) or ``greedy`` (self-critical sequence training, Rennie et al. 2017: the reward of the greedy
    decode).  Coefficients (R(y) - b) on each sampled token.

    Measured on Multi30k from a label-smoothed MLE checkpoint (BENCHMARKS.md, ERPO family): the greedy baseline
    collapsed at every learning rate tried (validation BLEU 41.5 -> 26.4 within 62 steps at a peak lr of 2e-5 on
    an H200; on the CPU check's smaller model the sample reward fell 0.14 -> 0.02 in 40 steps at 1e-4, with the
    optimizer continued or fresh), while the leave-one-out baseline held and rose (0.14 -> 0.17 at 1e-4)."""

    Options = PGOptions
    summary = "REINFORCE (leave-one-out baseline) or self-critical training (greedy baseline): K model samples"
    display_name = "policy gradient (PG)"
    breadth = 5

    def weigh(self, cand: Candidates, reward, log_p, step: Step) -> Weights:
        base_r = self.greedy_reward(step) if self.options.baseline == "greedy" else None
        adv = pg_advantages(reward, cand.group, self.options.baseline, base_r)
        if self.options.normalize_advantages:
            adv = normalize_advantages(adv)
        return Weights(
            adv,
            len(cand),
            smoothed=False,
            stats={**self.reward_stats(reward), "advantage_abs": adv.abs().mean()},
        )

    def greedy_reward(self, step: Step) -> torch.Tensor:
        """The reward of the greedy decode of each source [B] (the self-critical baseline).  The decode is eager
        (``static=False``): training batches have more shapes than the CUDA-graph cache holds (26 greedy keys in
        one Multi30k epoch, benchmarks/shape_keys.py), so a captured search would be captured anew at almost every
        step; on one H200 PG's step took 833 ms with the captured baseline and 760 ms without any graph even while
        six other runs shared the GPU (BENCHMARKS.md, step time per algorithm)."""
        with torch.no_grad(), eval_mode(step.model), record_function("seqlab.greedy_baseline"):
            greedy = greedy_search(
                step.model,
                step.batch.src,
                enc=step.enc,
                max_len_a=self.options.max_len_a,
                max_len_b=self.options.max_len_b,
                static=False,
            )
        return self.reward(greedy.tokens, step.batch.tgt, step.batch.src)


@dataclass
class SPGOptions(SamplingOptions):
    alpha: float = 0.1


@register("spg")
class SoftmaxPolicyGradient(SamplingAlgorithm):
    """SPG (Ding & Soricut 2017) as ERPO with alpha > 0, beta = 0: targets q ∝ p_theta exp(R/alpha), estimated by
    self-normalised weights softmax(R/alpha) over K samples of the model.  Ding & Soricut draw their samples
    differently: token by token, from the model or (their bang-bang variant) from the reward increments, and learn
    the drawn sequences' likelihood; that sampler is close to the token mixture of ``interpolation`` with
    lambda3 = 0 (e.g. ``lambdas: [0.5, 0.5, 0.0]``; its first token still comes from the data)."""

    Options = SPGOptions
    summary = "softmax policy gradient: K model samples weighted by softmax(R/alpha) (Ding & Soricut 2017)"
    display_name = "SPG"
    breadth = 4

    def weigh(self, cand: Candidates, reward, log_p, step: Step) -> Weights:
        """softmax(R / alpha) per source; ``normalize_advantages``: R whitened over the batch first (alpha in units
        of the batch's reward std; the per-source softmax ignores the shift)."""
        scaled = normalize_advantages(reward) if self.options.normalize_advantages else reward
        w = spg_weights(scaled, self.options.alpha, cand.group)
        return Weights(w, reference_tokens(step.batch.tgt), stats=self.reward_stats(reward))


@dataclass
class MIXEROptions(SamplingOptions):
    prefix: float | dict | None = None


@register("mixer")
class MIXER(PrefixScheduled, SamplingAlgorithm):
    """MIXER: the first m target tokens from the data (cross-entropy), the rest sampled from the model and
    trained by REINFORCE with a mean baseline; m follows a schedule (default: shrinks by ``delta`` tokens
    every ``every`` epochs from ``start``)."""

    Options = MIXEROptions
    summary = "MIXER: a data prefix of m tokens, model samples after it; m shrinks (Ranzato et al. 2016)"
    display_name = "MIXER"
    breadth = 3
    annealed = True

    def propose(self, model, batch, enc, progress=None) -> Candidates:
        progress = progress or Progress()
        rows = torch.arange(batch.tgt.size(0), device=batch.tgt.device).repeat_interleave(self.options.num_samples)
        m = self.prefix.value(progress.step, progress.epoch)
        prefix = torch.full((len(rows),), m, device=rows.device)
        with eval_mode(model):
            draw = token_mixture(
                model,
                enc.select(rows),
                batch.tgt.index_select(0, rows),
                torch.tensor([1.0, 0.0, 0.0]),
                data_prefix=prefix,
                max_len_a=self.options.max_len_a,
                max_len_b=self.options.max_len_b,
                first_token_data=False,
            )  # MIXER's data prefix is its own (m = 0: all sampled)
        return Candidates(draw.tokens, rows, components=draw.components, stats={"prefix": m})

    def weigh(self, cand: Candidates, reward, log_p, step: Step) -> Weights:
        """1 on the data prefix, R - mean_source(R) on the sampled tokens."""
        adv = reward - group_mean(reward, cand.group)
        if self.options.normalize_advantages:
            adv = normalize_advantages(adv)
        coef = torch.where(
            cand.components.eq(3), torch.ones_like(cand.tokens, dtype=torch.float), adv[:, None].expand_as(cand.tokens)
        )
        return Weights(
            coef.masked_fill(cand.tokens.eq(PAD_ID), 0.0), len(cand), smoothed=False, stats=self.reward_stats(reward)
        )
