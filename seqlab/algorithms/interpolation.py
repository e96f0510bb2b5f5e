"""The interpolation algorithm (ERPO paper, Alg. 1) and the MIXER-alike anneal: maximise the likelihood of
sequences whose every token is drawn from a mixture of model (z=1), reward (z=2) and data (z=3)."""

from __future__ import annotations

import math
import warnings

import torch
from torch.profiler import record_function

from seqlab.algorithms.base import AlgorithmContext, Progress, register
from seqlab.algorithms.common import RewardAlgorithm
from seqlab.erpo.engine import reference_tokens, weighted_sequence_loss
from seqlab.erpo.proposals import REWARD_DRAWS, REWARD_UNITS, token_mixture
from seqlab.erpo.schedules import Whole, make_schedule
from seqlab.utils import eval_mode

#: the paper's schedule after MLE pre-training: (0.12, 0.16, 0.72), +(0.12, 0.16, -0.28) every 4 epochs,
#: clamped at zero and renormalised (ends at (0.43, 0.57, 0))
DEFAULT_LAMBDAS = {"type": "step", "start": [0.12, 0.16, 0.72], "delta": [0.12, 0.16, -0.28], "every": 4,
                   "lower": 0.0, "normalize": True, "unit": "epoch"}


#: warn when the reward draw's mean entropy exceeds this fraction of log V (a uniform draw is noise)
HIGH_ENTROPY_FRACTION = 0.9


class MixtureAlgorithm(RewardAlgorithm):
    """The reward draw (z = 2) samples w ∝ exp(c · ΔR(w | y_<t, y*)): ``reward_scale`` is c and ``reward_unit`` the
    unit of the increments (default ``range``: divided by their range over the vocabulary at that prefix, so c is
    the log-odds of the best next token against the worst at every position).  The default c = 10 makes the draw
    land on a token of the reference's remainder about three times in four on on-track prefixes of Multi30k
    validation references with the 8K BPE vocabulary, at every position (benchmarks/reward_draw.py, README).
    ``reward_draw: uniform`` replicates what the released Texar code does in effect (a uniform draw)."""

    def __init__(self, ctx: AlgorithmContext, reward: str = "bleu", reward_scale: float = 10.0,
                 reward_unit: str = "range", reward_draw: str = "reward", model_temperature: float = 1.0,
                 max_len_a: float = 1.5, max_len_b: int = 10):
        super().__init__(ctx, reward)
        if reward_draw not in REWARD_DRAWS:
            raise ValueError(f"reward_draw must be one of {REWARD_DRAWS}, got {reward_draw!r}")
        if reward_unit not in REWARD_UNITS:
            raise ValueError(f"reward_unit must be one of {REWARD_UNITS}, got {reward_unit!r}")
        self.reward_scale, self.reward_unit, self.reward_draw = reward_scale, reward_unit, reward_draw
        self.model_temperature = model_temperature
        self.max_len_a, self.max_len_b = max_len_a, max_len_b
        self._warned_entropy = reward_draw == "uniform"  # uniform on purpose: no warning

    def draw(self, model, enc, tgt, lambdas: torch.Tensor, data_prefix: torch.Tensor | None = None):
        with eval_mode(model), record_function("seqlab.token_mixture"):
            out = token_mixture(model, enc, tgt, lambdas, reward_name=self.reward_name,
                                reward_scale=self.reward_scale, model_temperature=self.model_temperature,
                                data_prefix=data_prefix, max_len_a=self.max_len_a, max_len_b=self.max_len_b,
                                reward_draw=self.reward_draw, reward_unit=self.reward_unit)
        self._check_entropy(out.reward_entropy)
        return out

    def _check_entropy(self, entropy: float) -> None:
        limit = HIGH_ENTROPY_FRACTION * math.log(self.ctx.vocab_size)
        if not self._warned_entropy and entropy > limit:  # NaN (no reward draw this step) compares False
            self._warned_entropy = True
            warnings.warn(f"{self.name}: the reward draw's entropy is {entropy:.2f} nats (> 0.9 log V = {limit:.2f}): "
                          f"it is close to uniform noise; raise algorithm.options.reward_scale "
                          f"(now {self.reward_scale:g})", stacklevel=2)

    def likelihood(self, model, enc, batch, draw):
        rows = torch.arange(batch.tgt.size(0), device=batch.tgt.device)
        ones = torch.ones(len(rows), device=rows.device)
        return weighted_sequence_loss(model, enc, draw.tokens, rows, ones, reference_tokens(batch.tgt),
                                      label_smoothing=self.ctx.label_smoothing)

    @staticmethod
    def stats(draw) -> dict[str, float]:
        valid = draw.components.gt(0)
        share = [float(draw.components.eq(z)[valid].float().mean()) for z in (1, 2, 3)]
        return {"share_model": share[0], "share_reward": share[1], "share_data": share[2],
                "reward_entropy": draw.reward_entropy, "reward_draw_in_reference": draw.reward_in_reference}


@register("interpolation")
class Interpolation(MixtureAlgorithm):
    """Token-level mixture with annealed weights (lambda1, lambda2, lambda3); ``reward_scale`` is the
    temperature c of the reward draw exp(c * dR) (c = 1 is close to uniform noise for BLEU increments)."""

    def __init__(self, ctx: AlgorithmContext, lambdas: list | dict | None = None, **options):
        super().__init__(ctx, **options)
        self.lambdas = make_schedule(lambdas if lambdas is not None else DEFAULT_LAMBDAS)

    def schedules(self):
        return {"lambdas": self.lambdas}

    def loss(self, model, batch, progress: Progress):
        lam = torch.tensor(self.lambdas.value(progress.step, progress.epoch), dtype=torch.float)
        enc = model.encode(batch.src)
        draw = self.draw(model, enc, batch.tgt, lam)
        return self.likelihood(model, enc, batch, draw), {**self.stats(draw), "lambda1": float(lam[0]),
                                                            "lambda2": float(lam[1]), "lambda3": float(lam[2])}


@register("mixer_anneal")
class MixerAnneal(MixtureAlgorithm):
    """MIXER inside the framework: the first m tokens copied from the data (z=3), the rest drawn from
    (model, reward) with weights ``tail``; m shrinks along the ``prefix`` schedule."""

    max_finetune_lr = 5e-5  # model-drawn suffixes collapse above it (BENCHMARKS.md, Multi30k)

    def __init__(self, ctx: AlgorithmContext, prefix: float | dict | None = None,
                 tail: tuple[float, float] = (0.5, 0.5), **options):
        super().__init__(ctx, **options)
        self.prefix = Whole(make_schedule(prefix if prefix is not None else
                                          {"type": "step", "start": 10, "delta": -2, "every": 1, "lower": 0}))
        self.tail = tail

    def schedules(self):
        return {"prefix": self.prefix}

    def loss(self, model, batch, progress: Progress):
        m = self.prefix.value(progress.step, progress.epoch)
        enc = model.encode(batch.src)
        lam = torch.tensor([self.tail[0], self.tail[1], 0.0], dtype=torch.float)
        prefix = torch.full((batch.tgt.size(0),), m, device=batch.tgt.device)
        draw = self.draw(model, enc, batch.tgt, lam, data_prefix=prefix)
        return self.likelihood(model, enc, batch, draw), {**self.stats(draw), "prefix": m}
