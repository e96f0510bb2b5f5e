"""Control configs: YAML files mapped onto dataclasses; ``section.key=value`` overrides any key.

One :class:`ControlConfig` holds every stage (expert, demos, gail, bc, eval) so a single YAML per
environment describes the whole pipeline; the CLI sub-commands read the section they need.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from seqlab.config import ConfigError, apply_overrides, read_yaml_mapping


@dataclass
class PPOSettings:
    """stable-baselines3 PPO settings shared by the expert and GAIL's policy (two tanh layers of 128)."""

    total_steps: int = 1_000_000  # environment steps
    n_envs: int = 8
    n_steps: int = 256  # per environment and iteration: 8 x 256 = 2,048 transitions per update
    batch_size: int = 256
    n_epochs: int = 10
    lr: float = 3e-4
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip_range: float = 0.2
    ent_coef: float = 0.0
    net_arch: list[int] = field(default_factory=lambda: [128, 128])


@dataclass
class ExpertConfig(PPOSettings):
    """PPO on the true reward (stable-baselines3), observations and rewards normalised (VecNormalize)."""

    batch_size: int = 128
    log_std_init: float = 0.0
    checkpoint_every: int = 50_000  # environment steps between checkpoints (resume continues from the last)
    eval_episodes: int = 10


@dataclass
class DemosConfig:
    n_trajectories: int = 25  # rolled out once; training runs take the first n_demos of them
    deterministic: bool = True  # the expert's mean action (clipped to the action bounds)
    seed: int = 10_000  # episode seeds are seed, seed + 1, ...


@dataclass
class GailConfig(PPOSettings):
    """GAIL (``method: gail``) and GAIL with the interpolation schedule (``method: gail_interp``)."""

    method: str = "gail"  # gail | gail_interp
    n_demos: int = 4  # trajectories taken from the front of the demonstration file
    pairs_per_trajectory: int = 50  # state-action pairs sampled per trajectory (Ho & Ermon's protocol)
    subsample: str = "random"  # random: uniform without replacement | stride: every len/50-th step
    # policy: PPOSettings (total_steps counts policy steps only; the demonstration prefix is free)
    normalize_obs: bool = True
    normalize_reward: bool = True
    # discriminator: two tanh layers of 128 units on (normalised obs, action); D = P(pair is expert)
    d_hidden: list[int] = field(default_factory=lambda: [128, 128])
    d_lr: float = 3e-4
    d_steps: int = 8  # minibatch steps per iteration (8 x 256 = one pass over the 2,048 policy pairs)
    d_batch: int = 256
    d_entcoeff: float = 1e-3  # Bernoulli-entropy bonus on D's outputs (GAIL's regulariser)
    reward: str = "gail"  # gail: -log(1 - D) > 0 | airl: log D - log(1 - D) | logd: log D < 0
    # interpolation (gail_interp only): demonstration prefix, then the policy
    prefix_start: int = 500  # maximum prefix length (env steps) at iteration 0
    prefix_anneal_fraction: float = 0.5  # linear to 0 over this fraction of the iterations
    prefix_schedule: Any = None  # explicit schedule spec for seqlab.erpo.schedules (unit: iteration)
    prefix_sampling: str = "uniform"  # uniform: each episode draws its prefix in {0..m} | fixed: m
    reset_states: str = "subsampled"  # subsampled: only the sampled pairs' states | full: every step
    prefix_bc_coef: float = 0.0  # >0: prefix pairs also give a max-likelihood term to the policy
    # bookkeeping
    eval_every: int = 10  # iterations between learning-curve evaluations
    eval_episodes: int = 5
    final_eval_episodes: int = 10
    deterministic_eval: bool = True
    checkpoint_every: int = 10  # iterations


@dataclass
class BCConfig:
    steps: int = 5_000
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-4
    hidden: list[int] = field(default_factory=lambda: [128, 128])


@dataclass
class ControlConfig:
    env: str = "hopper"  # hopper | halfcheetah | walker2d | any gymnasium MuJoCo id
    run_dir: str | None = None  # default runs/control/<env>/<stage>
    seed: int = 0
    max_episode_steps: int | None = None  # None: the environment's own limit (1,000)
    progress_bar: bool = True
    expert: ExpertConfig = field(default_factory=ExpertConfig)
    demos: DemosConfig = field(default_factory=DemosConfig)
    gail: GailConfig = field(default_factory=GailConfig)
    bc: BCConfig = field(default_factory=BCConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_SECTIONS = {"expert": ExpertConfig, "demos": DemosConfig, "gail": GailConfig, "bc": BCConfig}


def _build(cls: type, data: dict[str, Any], where: str) -> Any:
    fields = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        if key not in fields:
            raise ConfigError(f"{where}: unknown key {key!r}; known keys: {sorted(fields)}")
        if cls is ControlConfig and key in _SECTIONS:
            if not isinstance(value, dict):
                raise ConfigError(f"{where}.{key} must be a mapping")
            value = _build(_SECTIONS[key], value, f"{where}.{key}")
        kwargs[key] = value
    cfg = cls(**kwargs)
    if cls is GailConfig:
        _check_gail(cfg, where)
    return cfg


def _check_gail(g: GailConfig, where: str) -> None:
    choices = {
        "method": ("gail", "gail_interp"),
        "reward": ("gail", "airl", "logd"),
        "subsample": ("random", "stride"),
        "prefix_sampling": ("uniform", "fixed"),
        "reset_states": ("subsampled", "full"),
    }
    for key, allowed in choices.items():
        if getattr(g, key) not in allowed:
            raise ConfigError(f"{where}.{key}={getattr(g, key)!r}; choose from {list(allowed)}")
    if g.n_envs * g.n_steps < 2048:
        raise ConfigError(f"{where}: n_envs * n_steps = {g.n_envs * g.n_steps} < 2048 pairs per iteration")


def load_control_config(path: str | Path | None = None, overrides: list[str] | None = None) -> ControlConfig:
    data = apply_overrides(read_yaml_mapping(path), overrides or [])
    return _build(ControlConfig, data, str(path) if path else "control")


def config_from_dict(data: dict[str, Any]) -> ControlConfig:
    return _build(ControlConfig, data, "control")
