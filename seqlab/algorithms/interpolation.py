"""The interpolation algorithm (ERPO paper, Alg. 1) and the MIXER-alike anneal: maximise the likelihood of
sequences whose every token is drawn from a mixture of model (z=1), reward (z=2) and data (z=3)."""

from __future__ import annotations

import contextlib
import math
import warnings
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch.profiler import record_function

from seqlab.algorithms.base import AlgorithmContext, Progress, register
from seqlab.algorithms.policy import PrefixScheduled
from seqlab.algorithms.sequence import Candidates, KLOptions, RewardAlgorithm, RewardOptions
from seqlab.erpo.proposals import REWARD_DRAWS, REWARD_UNITS, token_mixture
from seqlab.erpo.schedules import make_schedule
from seqlab.utils import eval_mode, masked_mean

#: the paper's schedule after MLE pre-training: (0.12, 0.16, 0.72), +(0.12, 0.16, -0.28) every 4 epochs,
#: clamped at zero and renormalised (ends at (0.43, 0.57, 0))
DEFAULT_LAMBDAS = {
    "type": "step",
    "start": [0.12, 0.16, 0.72],
    "delta": [0.12, 0.16, -0.28],
    "every": 4,
    "lower": 0.0,
    "normalize": True,
    "unit": "epoch",
}


#: warn when the reward draw's mean entropy exceeds this fraction of log V (a uniform draw is noise)
HIGH_ENTROPY_FRACTION = 0.9


@dataclass
class MixtureOptions(KLOptions, RewardOptions):
    NEEDS_INCREMENTS: ClassVar[bool] = True  # the reward draw exp(c · ΔR(w | y_<t, y*))
    reward_scale: float = 10.0
    reward_unit: str = "range"
    reward_draw: str = "reward"
    model_temperature: float = 1.0
    max_len_a: float = 1.5
    max_len_b: int = 10

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.reward_draw not in REWARD_DRAWS:
            raise ValueError(f"reward_draw must be one of {REWARD_DRAWS}, got {self.reward_draw!r}")
        if self.reward_unit not in REWARD_UNITS:
            raise ValueError(f"reward_unit must be one of {REWARD_UNITS}, got {self.reward_unit!r}")


class MixtureAlgorithm(RewardAlgorithm):
    """Every token drawn from a mixture of model (z = 1), reward (z = 2) and data (z = 3); the proposals are
    learnt with coefficient 1 (their likelihood).  Subclasses give the mixture weights in :meth:`propose`.

    The reward draw (z = 2) samples w ∝ exp(c · ΔR(w | y_<t, y*)): ``reward_scale`` is c and ``reward_unit`` the
    unit of the increments (default ``range``: divided by their range over the vocabulary at that prefix, so c is
    the log-odds of the best next token against the worst at every position).  The default c = 10 makes the draw
    land on a token of the reference's remainder about three times in four on on-track prefixes of Multi30k
    validation references with the 8K BPE vocabulary, at every position (benchmarks/reward_draw.py, README).
    ``reward_draw: uniform`` replicates what the released Texar code does in effect (a uniform draw)."""

    Options = MixtureOptions
    breadth = 3
    annealed = True

    def __init__(self, ctx: AlgorithmContext, options: Any = None):
        super().__init__(ctx, options)
        self._warned_entropy = self.options.reward_draw == "uniform"  # uniform on purpose: no warning

    def draw(
        self,
        model,
        enc,
        tgt,
        lambdas: torch.Tensor,
        data_prefix: torch.Tensor | None = None,
        src: torch.Tensor | None = None,
    ) -> Candidates:
        """The mixed sequences (one per reference), with their component shares and reward-draw statistics
        (``src``: the batch's sources, which a decomposable text reward sees)."""
        o = self.options
        sources = (
            self.reward_fn.batch_sources(src, tgt) if self.text_reward and src is not None else contextlib.nullcontext()
        )
        with eval_mode(model), record_function("seqlab.token_mixture"), sources:
            out = token_mixture(
                model,
                enc,
                tgt,
                lambdas,
                reward_name=self.reward_fn,
                reward_scale=o.reward_scale,
                model_temperature=o.model_temperature,
                data_prefix=data_prefix,
                max_len_a=o.max_len_a,
                max_len_b=o.max_len_b,
                reward_draw=o.reward_draw,
                reward_unit=o.reward_unit,
            )
        self._check_entropy(out.reward_entropy)
        rows = torch.arange(tgt.size(0), device=tgt.device)
        return Candidates(out.tokens, rows, components=out.components, stats=self.stats(out))

    def _check_entropy(self, entropy: float) -> None:
        limit = HIGH_ENTROPY_FRACTION * math.log(self.ctx.vocab_size)
        if not self._warned_entropy and entropy > limit:  # NaN (no reward draw this step) compares False
            self._warned_entropy = True
            warnings.warn(
                f"{self.name}: the reward draw's entropy is {entropy:.2f} nats (> 0.9 log V = {limit:.2f}): "
                f"it is close to uniform noise; raise algorithm.options.reward_scale "
                f"(now {self.options.reward_scale:g})",
                stacklevel=2,
            )

    def score(self, cand: Candidates, batch: Any) -> None:
        return None  # the reward shaped the draw; the mixed sequences are learnt as they are

    @staticmethod
    def stats(draw) -> dict[str, float | torch.Tensor]:
        valid = draw.components.gt(0)
        share = [masked_mean(draw.components.eq(z).float(), valid) for z in (1, 2, 3)]  # on the device
        return {
            "share_model": share[0],
            "share_reward": share[1],
            "share_data": share[2],
            "reward_entropy": draw.reward_entropy,
            "reward_draw_in_reference": draw.reward_in_reference,
        }


@dataclass
class InterpolationOptions(MixtureOptions):
    lambdas: list | dict | None = None


@register("interpolation")
class Interpolation(MixtureAlgorithm):
    """Token-level mixture with annealed weights (lambda1, lambda2, lambda3); ``reward_scale`` is the
    temperature c of the reward draw exp(c * dR) (c = 1 is close to uniform noise for BLEU increments)."""

    Options = InterpolationOptions
    summary = "the ERPO interpolation algorithm: every token from model / reward / data, annealed weights"
    display_name = "interpolation"

    def __init__(self, ctx: AlgorithmContext, options: Any = None):
        super().__init__(ctx, options)
        lambdas = self.options.lambdas
        self.lambdas = make_schedule(lambdas if lambdas is not None else DEFAULT_LAMBDAS)

    def schedules(self):
        return {"lambdas": self.lambdas}

    def propose(self, model, batch, enc, progress=None) -> Candidates:
        progress = progress or Progress()
        values = [float(v) for v in self.lambdas.value(progress.step, progress.epoch)]
        cand = self.draw(model, enc, batch.tgt, torch.tensor(values), src=batch.src)
        cand.stats.update(lambda1=values[0], lambda2=values[1], lambda3=values[2])
        return cand


@dataclass
class MixerAnnealOptions(MixtureOptions):
    prefix: float | dict | None = None
    tail: tuple[float, float] = (0.5, 0.5)


@register("mixer_anneal")
class MixerAnneal(PrefixScheduled, MixtureAlgorithm):
    """MIXER inside the framework: the first m tokens copied from the data (z=3), the rest drawn from
    (model, reward) with weights ``tail``; m shrinks along the ``prefix`` schedule."""

    Options = MixerAnnealOptions
    summary = "MIXER inside the framework: data prefix, then model / reward tokens"
    display_name = "MIXER-alike anneal"
    max_finetune_lr = 5e-5  # model-drawn suffixes collapse above it (BENCHMARKS.md, Multi30k)

    def propose(self, model, batch, enc, progress=None) -> Candidates:
        progress = progress or Progress()
        m = self.prefix.value(progress.step, progress.epoch)
        tail = self.options.tail
        lam = torch.tensor([tail[0], tail[1], 0.0], dtype=torch.float)
        cand = self.draw(
            model,
            enc,
            batch.tgt,
            lam,
            data_prefix=torch.full((batch.tgt.size(0),), m, device=batch.tgt.device),
            src=batch.src,
        )
        cand.stats["prefix"] = m
        return cand
