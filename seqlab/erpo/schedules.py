"""Hyperparameter schedules over training progress (per step or per epoch).

A schedule maps a progress counter (a step or an epoch number, chosen by ``unit``) to a value: a float,
or a tuple such as the interpolation weights (lambda1, lambda2, lambda3).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar


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


@dataclass
class ValidationAnneal(Schedule):
    """Weights that move only when validation stops improving, as the ERPO paper's released interpolation code
    anneals them: after an evaluation that scores below the best reached under the current weights, ``delta`` of
    weight ``source`` moves to weight ``target`` -- the first move and every ``alternate_every``-th after it to
    ``alternate`` instead -- and training returns to the previous evaluation's model and optimizer state
    (:meth:`observe` returns True: roll back).  With the interpolation's order (model, reward, data) the released
    code's settings are ``start: [0.04, 0.0, 0.96], delta: 0.06`` and the defaults below."""

    start: Any
    delta: float = 0.06
    source: int = 2  # the weight that gives (the data's)
    target: int = 1  # the weight that receives (the reward's)
    alternate: int = 0  # the weight that receives the first and every alternate_every-th move (the model's)
    alternate_every: int = 5
    unit: str = "epoch"

    adaptive: ClassVar[bool] = True  # moves with validation, not with the step: no stage count before training

    def __post_init__(self) -> None:
        self.start = tuple(float(v) for v in self.start)
        n = len(self.start)
        if not all(0 <= i < n for i in (self.source, self.target, self.alternate)) or self.source in (
            self.target,
            self.alternate,
        ):
            raise ValueError(f"validation_anneal: source / target / alternate must be distinct indices below {n}")
        if self.delta <= 0 or self.alternate_every < 1:
            raise ValueError("validation_anneal: delta must be positive and alternate_every at least 1")
        self.current, self.moves, self.best = list(self.start), 0, None

    def at(self, t: float) -> tuple:
        return tuple(self.current)

    def observe(self, score: float, higher_is_better: bool = True) -> bool:
        """One validation score; True when it moved the weights (the caller rolls back to the previous state)."""
        worse = self.best is not None and (score < self.best if higher_is_better else score > self.best)
        if not worse:
            self.best = score
            return False
        self.moves += 1
        receiver = self.alternate if (self.moves - 1) % self.alternate_every == 0 else self.target
        moved = min(self.delta, self.current[self.source])
        self.current[self.source] -= moved
        self.current[receiver] += moved
        self.best = None  # the next evaluation is the first under the new weights
        return True

    def state_dict(self) -> dict[str, Any]:
        return {"current": list(self.current), "moves": self.moves, "best": self.best}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.current, self.moves, self.best = list(state["current"]), int(state["moves"]), state["best"]


SCHEDULES = {
    "constant": Constant,
    "linear": Linear,
    "step": Step,
    "inverse_sigmoid": InverseSigmoid,
    "exponential": Exponential,
    "validation_anneal": ValidationAnneal,
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
