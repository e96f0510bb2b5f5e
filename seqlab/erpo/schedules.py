"""Hyperparameter schedules over training progress (per step or per epoch).

A schedule maps a progress counter (a step or an epoch number, chosen by ``unit``) to a value: a float,
or a tuple such as the interpolation weights (lambda1, lambda2, lambda3).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


class Schedule:
    """Base class: ``value(step, epoch)`` returns the scheduled value."""

    unit: str = "step"

    def at(self, t: float) -> Any:
        raise NotImplementedError

    @property
    def constant(self) -> bool:
        """Whether the value never changes (a constant is not a schedule that must move within the budget)."""
        return False

    def value(self, step: int = 0, epoch: int = 0) -> Any:
        return self.at(step if self.unit == "step" else epoch)


@dataclass
class Constant(Schedule):
    v: Any
    unit: str = "step"

    def at(self, t: float) -> Any:
        return self.v

    @property
    def constant(self) -> bool:
        return True


@dataclass
class Whole(Schedule):
    """Another schedule's value rounded down to a whole number (e.g. MIXER's prefix length)."""

    inner: Schedule

    def __post_init__(self) -> None:
        self.unit = self.inner.unit

    def at(self, t: float) -> int:
        return int(self.inner.at(t))

    @property
    def constant(self) -> bool:
        return self.inner.constant


@dataclass
class Linear(Schedule):
    """From ``start`` to ``end`` over ``duration`` units after ``begin``; constant outside."""

    start: float
    end: float
    duration: float
    begin: float = 0.0
    unit: str = "step"

    def at(self, t: float) -> float:
        frac = min(max((t - self.begin) / max(self.duration, 1e-12), 0.0), 1.0)
        return self.start + frac * (self.end - self.start)


@dataclass
class Step(Schedule):
    """``start + delta * floor(t / every)``, elementwise for tuples, clipped to [lower, upper].

    With ``normalize`` the clipped tuple is renormalised to sum to one (mixture weights), so the
    interpolation schedule (0.12, 0.16, 0.72) + k (0.12, 0.16, -0.28) clamps lambda3 at zero and ends at
    (0.4286, 0.5714, 0) instead of going negative.
    """

    start: Any
    delta: Any
    every: float
    lower: float | None = None
    upper: float | None = None
    normalize: bool = False
    unit: str = "epoch"

    def at(self, t: float) -> Any:
        k = math.floor(t / self.every)
        if isinstance(self.start, (tuple, list)):
            vals = [self._clip(s + k * d) for s, d in zip(self.start, self.delta, strict=True)]
            if self.normalize:
                total = sum(vals)
                if total <= 0:
                    raise ValueError(f"step schedule weights all clipped to zero at t={t}")
                vals = [v / total for v in vals]
            return tuple(vals)
        return self._clip(self.start + k * self.delta)

    def _clip(self, v: float) -> float:
        if self.lower is not None:
            v = max(v, self.lower)
        if self.upper is not None:
            v = min(v, self.upper)
        return v


@dataclass
class InverseSigmoid(Schedule):
    """Scheduled sampling's decay k / (k + exp(t / k)): starts near 1, decays to 0 (Bengio et al. 2015)."""

    k: float = 10.0
    unit: str = "step"

    def at(self, t: float) -> float:
        return self.k / (self.k + math.exp(min(t / self.k, 700.0)))


@dataclass
class Exponential(Schedule):
    start: float
    rate: float
    unit: str = "step"

    def at(self, t: float) -> float:
        return self.start * self.rate**t


SCHEDULES = {
    "constant": Constant,
    "linear": Linear,
    "step": Step,
    "inverse_sigmoid": InverseSigmoid,
    "exponential": Exponential,
}


def make_schedule(spec: Any) -> Schedule:
    """Build a schedule from a config value: a number/list (constant) or ``{"type": ..., **kwargs}``."""
    if isinstance(spec, Schedule):
        return spec
    if isinstance(spec, dict):
        spec = dict(spec)
        kind = spec.pop("type", "constant")
        if kind not in SCHEDULES:
            raise ValueError(f"unknown schedule type {kind!r}; choose from {sorted(SCHEDULES)}")
        for key in ("start", "delta", "v"):
            if isinstance(spec.get(key), list):
                spec[key] = tuple(spec[key])
        return SCHEDULES[kind](**spec)
    if isinstance(spec, list):
        spec = tuple(spec)
    return Constant(spec)
