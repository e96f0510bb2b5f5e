"""Demonstration datasets: expert rollouts with the simulator states needed to restart from them.

File format (``.npz``, format version 1; every array indexed by global step i unless noted)::

    obs            [N, obs_dim] float32  observation at step t (before the action)
    next_obs       [N, obs_dim] float32  observation after the action (terminal observation at the end)
    actions        [N, act_dim] float32  the expert's action, clipped to the action bounds (what the env got)
    rewards        [N]          float32  the true environment reward
    qpos           [N, nq]      float64  simulator positions at step t: set_state(qpos, qvel) reproduces obs
    qvel           [N, nv]      float64  simulator velocities at step t
    timesteps      [N]          int32    t, the step within its trajectory
    episode_starts [E]          int64    index of each trajectory's first step (trajectory j is
                                         starts[j] : starts[j] + lengths[j])
    lengths        [E]          int64
    returns        [E]          float64  undiscounted true return of each trajectory
    terminated     [E]          bool     ended by the environment (fell) rather than by the time limit
    meta           []           str      JSON: format, env_id, expert (path), expert_return_mean/std,
                                         deterministic, seeds, gymnasium/mujoco versions

A sidecar ``<name>.json`` repeats ``meta`` and the per-trajectory returns for humans.
Training takes the first ``n_demos`` trajectories and samples ``pairs_per_trajectory`` (50) state-action
pairs from each (:meth:`DemoDataset.sample_pairs`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

FORMAT_VERSION = 1
ARRAYS = (
    "obs",
    "next_obs",
    "actions",
    "rewards",
    "qpos",
    "qvel",
    "timesteps",
    "episode_starts",
    "lengths",
    "returns",
    "terminated",
)


@dataclass
class DemoDataset:
    obs: np.ndarray
    next_obs: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    qpos: np.ndarray
    qvel: np.ndarray
    timesteps: np.ndarray
    episode_starts: np.ndarray
    lengths: np.ndarray
    returns: np.ndarray
    terminated: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def n_trajectories(self) -> int:
        return len(self.lengths)

    def trajectory(self, j: int) -> slice:
        s = int(self.episode_starts[j])
        return slice(s, s + int(self.lengths[j]))

    def subset(self, n: int) -> DemoDataset:
        """The first ``n`` trajectories."""
        if n > self.n_trajectories:
            raise ValueError(f"asked for {n} demonstrations, the file has {self.n_trajectories}")
        end = int(self.episode_starts[n - 1] + self.lengths[n - 1])
        meta = dict(self.meta, n_trajectories=n)
        return DemoDataset(
            self.obs[:end],
            self.next_obs[:end],
            self.actions[:end],
            self.rewards[:end],
            self.qpos[:end],
            self.qvel[:end],
            self.timesteps[:end],
            self.episode_starts[:n],
            self.lengths[:n],
            self.returns[:n],
            self.terminated[:n],
            meta,
        )

    def sample_indices(
        self, per_trajectory: int = 50, rng: np.random.Generator | None = None, mode: str = "random"
    ) -> list[np.ndarray]:
        """Per trajectory, the sorted global indices of ``per_trajectory`` sampled steps (all if shorter)."""
        rng = rng if rng is not None else np.random.default_rng(0)
        out = []
        for j in range(self.n_trajectories):
            s, n = int(self.episode_starts[j]), int(self.lengths[j])
            k = min(per_trajectory, n)
            if mode == "stride":
                local = np.linspace(0, n - 1, k).round().astype(np.int64)
            else:
                local = np.sort(rng.choice(n, size=k, replace=False))
            out.append(s + local)
        return out

    def sample_pairs(
        self, per_trajectory: int = 50, rng: np.random.Generator | None = None, mode: str = "random"
    ) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
        """(obs, actions, per-trajectory indices) of the sampled state-action pairs."""
        idx = self.sample_indices(per_trajectory, rng, mode)
        flat = np.concatenate(idx)
        return self.obs[flat], self.actions[flat], idx

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = dict(self.meta, format=FORMAT_VERSION)
        np.savez_compressed(path, **{k: getattr(self, k) for k in ARRAYS}, meta=np.array(json.dumps(meta)))
        if path.suffix != ".npz":  # numpy appends .npz
            path = path.with_name(path.name + ".npz")
        side = dict(
            meta,
            returns=[float(r) for r in self.returns],
            lengths=[int(n) for n in self.lengths],
            return_mean=float(self.returns.mean()),
            return_std=float(self.returns.std()),
        )
        path.with_suffix(".json").write_text(json.dumps(side, indent=2) + "\n")
        return path

    @classmethod
    def load(cls, path: str | Path) -> DemoDataset:
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"demonstration file not found: {path}")
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in ARRAYS if k not in z]
            if missing:
                raise ValueError(f"{path}: not a seqlab demonstration file (missing {missing})")
            arrays = {k: z[k] for k in ARRAYS}
            meta = json.loads(str(z["meta"])) if "meta" in z else {}
        return cls(**arrays, meta=meta)


def rollout(
    env: Any,
    act: Callable[[np.ndarray], np.ndarray],
    n_episodes: int,
    seed: int = 0,
    meta: dict[str, Any] | None = None,
) -> DemoDataset:
    """Run ``act`` (raw observation -> action) for ``n_episodes`` and record a :class:`DemoDataset`."""
    from seqlab.control.envs import get_state

    cols: dict[str, list] = {k: [] for k in ("obs", "next_obs", "actions", "rewards", "qpos", "qvel", "timesteps")}
    starts, lengths, returns, terminated = [], [], [], []
    low, high = env.action_space.low, env.action_space.high
    for ep in range(n_episodes):
        obs, _ = env.reset(seed=seed + ep)
        starts.append(len(cols["obs"]))
        t, ret, done, term = 0, 0.0, False, False
        while not done:
            qpos, qvel = get_state(env)
            action = np.clip(np.asarray(act(obs), dtype=np.float32), low, high)
            nxt, r, term, trunc, _ = env.step(action)
            for k, v in (
                ("obs", obs),
                ("next_obs", nxt),
                ("actions", action),
                ("rewards", r),
                ("qpos", qpos),
                ("qvel", qvel),
                ("timesteps", t),
            ):
                cols[k].append(v)
            ret += float(r)
            t += 1
            obs, done = nxt, term or trunc
        lengths.append(t)
        returns.append(ret)
        terminated.append(bool(term))
    returns_a = np.asarray(returns, dtype=np.float64)
    info = {
        "env_id": env.spec.id if env.spec else None,
        "episode_seeds": [seed, seed + n_episodes - 1],
        "return_mean": float(returns_a.mean()),
        "return_std": float(returns_a.std()),
    }
    try:
        import gymnasium
        import mujoco

        info.update(gymnasium=gymnasium.__version__, mujoco=mujoco.__version__)
    except ImportError:
        pass
    info.update(meta or {})
    return DemoDataset(
        obs=np.asarray(cols["obs"], dtype=np.float32),
        next_obs=np.asarray(cols["next_obs"], dtype=np.float32),
        actions=np.asarray(cols["actions"], dtype=np.float32),
        rewards=np.asarray(cols["rewards"], dtype=np.float32),
        qpos=np.asarray(cols["qpos"], dtype=np.float64),
        qvel=np.asarray(cols["qvel"], dtype=np.float64),
        timesteps=np.asarray(cols["timesteps"], dtype=np.int32),
        episode_starts=np.asarray(starts, dtype=np.int64),
        lengths=np.asarray(lengths, dtype=np.int64),
        returns=returns_a,
        terminated=np.asarray(terminated, dtype=bool),
        meta=info,
    )


def reset_states(demos: DemoDataset, indices: list[np.ndarray] | None = None):
    """:class:`~seqlab.control.envs.ResetStates` from the sampled indices (or every step when None)."""
    from seqlab.control.envs import ResetStates

    if indices is None:
        indices = [np.arange(demos.trajectory(j).start, demos.trajectory(j).stop) for j in range(demos.n_trajectories)]
    return ResetStates(
        timesteps=[demos.timesteps[i].astype(np.int64) for i in indices],
        qpos=[demos.qpos[i] for i in indices],
        qvel=[demos.qvel[i] for i in indices],
        obs=[demos.obs[i] for i in indices],
        actions=[demos.actions[i] for i in indices],
    )
