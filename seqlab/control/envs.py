"""gymnasium MuJoCo environments, simulator state access, and the demonstration-prefix reset.

The interpolation schedule needs to start an episode in the middle of a demonstration: the simulator is
reset to the demonstration's state with ``env.unwrapped.set_state(qpos, qvel)`` and the observation is
read back from the simulator, so the policy continues exactly where the expert was.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

ENV_IDS = {
    "hopper": "Hopper-v5",
    "halfcheetah": "HalfCheetah-v5",
    "walker2d": "Walker2d-v5",
    "walker": "Walker2d-v5",
    "ant": "Ant-v5",
    "humanoid": "Humanoid-v5",
}


def env_id(name: str) -> str:
    """``hopper`` -> ``Hopper-v5``; a full gymnasium id passes through."""
    return ENV_IDS.get(name.lower(), name)


def short_name(name: str) -> str:
    eid = env_id(name)
    return eid.split("-")[0].lower()


def make_env(name: str, max_episode_steps: int | None = None, seed: int | None = None) -> Any:
    """A gymnasium MuJoCo environment (with its TimeLimit); seeded spaces when ``seed`` is given."""
    kwargs = {"max_episode_steps": max_episode_steps} if max_episode_steps else {}
    env = gym.make(env_id(name), **kwargs)
    if seed is not None:
        env.action_space.seed(seed)
        env.observation_space.seed(seed)
    return env


def horizon(env: Any) -> int:
    """The episode limit of a (TimeLimit-wrapped) environment."""
    spec = getattr(env, "spec", None)
    steps = getattr(spec, "max_episode_steps", None)
    return int(steps) if steps else 1000


def get_state(env: Any) -> tuple[np.ndarray, np.ndarray]:
    """The simulator state (qpos, qvel), copied."""
    data = env.unwrapped.data
    return data.qpos.copy(), data.qvel.copy()


def set_state(env: Any, qpos: np.ndarray, qvel: np.ndarray) -> np.ndarray:
    """Put the simulator in (qpos, qvel) and return the observation of that state."""
    u = env.unwrapped
    u.set_state(np.asarray(qpos, dtype=np.float64), np.asarray(qvel, dtype=np.float64))
    return u._get_obs()


@dataclass
class ResetStates:
    """Demonstration states that an episode may start from, grouped by trajectory.

    ``timesteps[j]`` is sorted; ``qpos[j][i]``/``qvel[j][i]`` is the simulator state at step
    ``timesteps[j][i]`` of trajectory j (the state in which the expert took its action at that step).
    """

    timesteps: list[np.ndarray]
    qpos: list[np.ndarray]
    qvel: list[np.ndarray]
    obs: list[np.ndarray] | None = None
    actions: list[np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self.timesteps)

    def latest_before(self, traj: int, k: int) -> int | None:
        """Index (into trajectory ``traj``) of the last stored state with timestep <= k, or None."""
        ts = self.timesteps[traj]
        i = int(np.searchsorted(ts, k, side="right")) - 1
        return i if i >= 0 else None


class DemoPrefixReset(gym.Wrapper):
    """gymnasium wrapper: each episode replays a demonstration prefix, then the policy acts.

    ``max_prefix`` (set each iteration from the schedule) bounds the prefix length m. On reset the
    episode draws its prefix length k (``uniform`` in {0..m}, or ``fixed`` = m), a demonstration
    trajectory uniformly, and jumps to the last stored demonstration state at or before step k
    (``set_state(qpos, qvel)``: the prefix is the demonstration, it is not re-simulated). The policy then
    acts for the rest of the horizon: the episode is truncated when prefix + policy steps reach the
    environment's limit, so every trajectory has a demonstration's length. With m = 0 (the end of the
    schedule) reset is the environment's own reset: plain GAIL.
    """

    def __init__(self, env: Any, states: ResetStates | None, sampling: str = "uniform", seed: int = 0):
        super().__init__(env)
        self.states = states
        self.sampling = sampling
        self.rng = np.random.default_rng(seed)
        self.max_prefix = 0
        self.horizon = horizon(env)
        self.prefix = 0  # prefix length of the current episode
        self._steps = 0
        self.set_state_calls = 0
        self.prefix_log: list[tuple[int, int]] = []  # (trajectory, index) of the states started from

    def set_max_prefix(self, m: int) -> None:
        self.max_prefix = max(int(m), 0)

    def draw_prefix(self) -> int:
        m = min(self.max_prefix, self.horizon - 1)
        if m <= 0 or self.states is None or len(self.states) == 0:
            return 0
        return m if self.sampling == "fixed" else int(self.rng.integers(0, m + 1))

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        obs, info = self.env.reset(seed=seed, options=options)
        self.prefix, self._steps = 0, 0
        k = self.draw_prefix()
        if k > 0:
            j = int(self.rng.integers(len(self.states)))
            i = self.states.latest_before(j, k)
            t = int(self.states.timesteps[j][i]) if i is not None else 0
            if t > 0:
                obs = set_state(self.env, self.states.qpos[j][i], self.states.qvel[j][i])
                self.prefix = t
                self.set_state_calls += 1
                self.prefix_log.append((j, i))
        info = dict(info)
        info["demo_prefix"] = self.prefix
        return obs, info

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._steps += 1
        if not terminated and self.prefix + self._steps >= self.horizon:
            truncated = True
        return obs, reward, terminated, truncated, info
