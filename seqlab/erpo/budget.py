"""Do an algorithm's schedules move within the training budget?

A schedule in epochs that never changes within a short fine-tuning run silently turns an algorithm into
another one (the interpolation stuck at its first λ, scheduled sampling that always feeds the truth).  Before
training, :func:`schedule_stages` replays every schedule an algorithm declares (``Algorithm.schedules``) over
the budget's steps and counts the *stages* it passes: the distinct values it takes, read at a resolution of
0.01 (so a continuous decay from 0.999 to 0.998 is one stage, a step schedule's every change is one more).
:func:`check_schedule_budget` refuses a budget in which any schedule passes fewer than ``MIN_STAGES``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from seqlab.config import ConfigError
from seqlab.erpo.schedules import Schedule

if TYPE_CHECKING:
    from seqlab.algorithms.base import Algorithm, Progress

#: a scheduled algorithm must pass at least this many stages of each schedule within its budget
MIN_STAGES = 3
#: values closer than this count as one stage
RESOLUTION = 0.01


def _stage_key(value: Any) -> tuple[float, ...]:
    values = value if isinstance(value, (tuple, list)) else (value,)
    return tuple(round(float(v) / RESOLUTION) for v in values)


def moving_schedules(algorithm: Algorithm) -> dict[str, Callable[[Progress], Any]]:
    """The algorithm's declared schedules as functions of the progress, constant ones left out (they are not
    schedules to move, and never refused)."""
    moving: dict[str, Callable[[Progress], Any]] = {}
    for name, schedule in algorithm.schedules().items():
        if isinstance(schedule, Schedule) and (schedule.constant or getattr(schedule, "adaptive", False)):
            continue  # constant, or moved by validation scores (nothing to count before training)
        if isinstance(schedule, Schedule):
            moving[name] = lambda p, s=schedule: s.value(p.step, p.epoch)
        else:
            moving[name] = schedule
    return moving


def schedule_stages(algorithm: Algorithm, steps_per_epoch: int, total_steps: int) -> dict[str, int]:
    """Number of stages each of the algorithm's moving schedules passes over steps 0..total_steps-1."""
    from seqlab.algorithms.base import Progress

    stages: dict[str, int] = {}
    per_epoch = max(int(steps_per_epoch), 1)
    for name, value_at in moving_schedules(algorithm).items():
        seen = {
            _stage_key(
                value_at(Progress(step=s, epoch=s // per_epoch, fraction=s / total_steps, total_steps=total_steps))
            )
            for s in range(total_steps)
        }
        stages[name] = len(seen)
    return stages


def check_schedule_budget(
    algorithm: Algorithm, steps_per_epoch: int, total_steps: int | None, allow_short: bool = False
) -> dict[str, int]:
    """The stages of every schedule (see :func:`schedule_stages`); raises :class:`ConfigError` naming the option
    when one passes fewer than ``MIN_STAGES`` and ``allow_short`` is false.  Without a step budget (minutes
    only) nothing can be checked and ``{}`` is returned."""
    if not total_steps or not moving_schedules(algorithm):
        return {}
    stages = schedule_stages(algorithm, steps_per_epoch, total_steps)
    short = {name: n for name, n in stages.items() if n < MIN_STAGES}
    if short and not allow_short:
        name, n = next(iter(short.items()))
        epochs = total_steps / max(steps_per_epoch, 1)
        raise ConfigError(
            f"algorithm.options.{name}: the {algorithm.name} schedule passes {n} stage(s) in the budget of "
            f"{total_steps} steps ({epochs:.1f} epochs of {steps_per_epoch} steps); it needs {MIN_STAGES} to move. "
            f"Shorten its period, raise the budget, or pass --allow-short-schedules"
        )
    return stages
