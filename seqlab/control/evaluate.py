"""Policy evaluation on the true reward, and the policies evaluated: PPO (expert / GAIL), BC, random."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from seqlab.control.envs import make_env

BatchActor = Callable[[np.ndarray], np.ndarray]  # raw observations [B, obs_dim] -> actions [B, act_dim]


def evaluate(
    env_name: str, act: BatchActor, n_episodes: int = 10, seed: int = 100_000, max_episode_steps: int | None = None
) -> np.ndarray:
    """Undiscounted true returns of ``n_episodes`` episodes, run side by side (one batched forward a step).

    Episode i is reset with seed ``seed + i``, so every method is scored on the same start states.
    """
    envs = [make_env(env_name, max_episode_steps) for _ in range(n_episodes)]
    obs = np.stack([e.reset(seed=seed + i)[0] for i, e in enumerate(envs)])
    low, high = envs[0].action_space.low, envs[0].action_space.high
    returns = np.zeros(n_episodes)
    active = np.ones(n_episodes, dtype=bool)
    while active.any():
        idx = np.flatnonzero(active)
        actions = np.clip(np.asarray(act(obs[idx]), dtype=np.float32), low, high)
        for a, i in zip(actions, idx, strict=True):
            o, r, term, trunc, _ = envs[i].step(a)
            returns[i] += r
            obs[i] = o
            if term or trunc:
                active[i] = False
    for e in envs:
        e.close()
    return returns


class PPOActor:
    """An SB3 policy with its VecNormalize observation statistics (frozen): raw observations in."""

    def __init__(
        self,
        policy: Any,
        obs_rms: Any = None,
        clip_obs: float = 10.0,
        epsilon: float = 1e-8,
        deterministic: bool = True,
    ):
        self.policy = policy
        # copies: the statistics are frozen at construction even while training goes on
        self.mean = None if obs_rms is None else np.array(obs_rms.mean, dtype=np.float64)
        self.std = None if obs_rms is None else np.sqrt(np.array(obs_rms.var, dtype=np.float64) + epsilon)
        self.clip_obs = clip_obs
        self.deterministic = deterministic

    @classmethod
    def from_vecnormalize(cls, policy: Any, vecnorm: Any, deterministic: bool = True) -> PPOActor:
        if vecnorm is None or not getattr(vecnorm, "norm_obs", False):
            return cls(policy, None, deterministic=deterministic)
        return cls(policy, vecnorm.obs_rms, vecnorm.clip_obs, vecnorm.epsilon, deterministic)

    @classmethod
    def load(cls, run_dir: str | Path, policy_file: str, deterministic: bool = True) -> PPOActor:
        """A saved SB3 PPO (``run_dir/policy_file``) with its ``vecnormalize.pkl`` as a raw-observation actor."""
        import pickle

        from stable_baselines3 import PPO

        run_dir = Path(run_dir)
        if not (run_dir / policy_file).exists():
            raise FileNotFoundError(f"no trained policy {policy_file} in {run_dir}")
        model = PPO.load(str(run_dir / policy_file), device="cpu")
        with open(run_dir / "vecnormalize.pkl", "rb") as f:
            vecnorm = pickle.load(f)
        return cls.from_vecnormalize(model.policy, vecnorm, deterministic)

    def normalize(self, obs: np.ndarray) -> np.ndarray:
        if self.mean is None:
            return np.asarray(obs, dtype=np.float32)
        return np.clip((obs - self.mean) / self.std, -self.clip_obs, self.clip_obs).astype(np.float32)

    @torch.no_grad()
    def __call__(self, obs: np.ndarray) -> np.ndarray:
        x = torch.as_tensor(self.normalize(np.atleast_2d(obs)))
        dist = self.policy.get_distribution(x)
        return dist.get_actions(deterministic=self.deterministic).cpu().numpy()


class RandomActor:
    """Uniform random actions in the action box."""

    def __init__(self, action_space: Any, seed: int = 0):
        self.low, self.high = action_space.low, action_space.high
        self.rng = np.random.default_rng(seed)

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        n = np.atleast_2d(obs).shape[0]
        return self.rng.uniform(self.low, self.high, size=(n, *self.low.shape)).astype(np.float32)


def summary(returns: np.ndarray) -> dict[str, float]:
    return {"return_mean": float(np.mean(returns)), "return_std": float(np.std(returns)), "episodes": int(len(returns))}
