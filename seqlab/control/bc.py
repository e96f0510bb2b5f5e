"""Behaviour cloning baseline: the same sampled demonstration pairs, a two-layer tanh network of 128 units.

The policy is deterministic: mean-squared error between its action and the expert's (max likelihood
under a fixed-variance Gaussian), observations normalised by the demonstration pairs' statistics.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from seqlab.control.config import ControlConfig
from seqlab.control.demos import DemoDataset
from seqlab.control.envs import env_id
from seqlab.control.evaluate import evaluate, summary


class BCPolicy(nn.Module):
    def __init__(self, obs_dim: int, act_dim: int, hidden=(128, 128), obs_mean=None, obs_std=None):
        super().__init__()
        layers: list[nn.Module] = []
        d = obs_dim
        for h in hidden:
            layers += [nn.Linear(d, h), nn.Tanh()]
            d = h
        layers.append(nn.Linear(d, act_dim))
        self.net = nn.Sequential(*layers)
        self.register_buffer(
            "obs_mean", torch.zeros(obs_dim) if obs_mean is None else torch.as_tensor(obs_mean, dtype=torch.float32)
        )
        self.register_buffer(
            "obs_std",
            (torch.ones(obs_dim) if obs_std is None else torch.as_tensor(obs_std, dtype=torch.float32)).clamp_min(1e-2),
        )

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net((obs - self.obs_mean) / self.obs_std)

    @torch.no_grad()
    def __call__(self, obs: Any) -> Any:  # type: ignore[override]
        if isinstance(obs, np.ndarray):
            return self.forward(torch.as_tensor(np.atleast_2d(obs), dtype=torch.float32)).numpy()
        return self.forward(obs)


def train_bc(
    obs: np.ndarray,
    actions: np.ndarray,
    steps: int = 5000,
    batch_size: int = 64,
    lr: float = 1e-3,
    weight_decay: float = 1e-4,
    hidden=(128, 128),
    seed: int = 0,
) -> BCPolicy:
    torch.manual_seed(seed)
    policy = BCPolicy(obs.shape[1], actions.shape[1], hidden, obs.mean(0), obs.std(0))
    o = torch.as_tensor(obs, dtype=torch.float32)
    a = torch.as_tensor(actions, dtype=torch.float32)
    opt = torch.optim.Adam(policy.parameters(), lr=lr, weight_decay=weight_decay)
    gen = torch.Generator().manual_seed(seed)
    with torch.enable_grad():
        for _ in range(steps):
            idx = torch.randint(len(o), (min(batch_size, len(o)),), generator=gen)
            loss = ((policy.forward(o[idx]) - a[idx]) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    return policy


def train_bc_run(cfg: ControlConfig, demos: str | Path | DemoDataset, run_dir: str | Path) -> dict[str, Any]:
    """BC on the same pairs GAIL would see (first ``gail.n_demos`` trajectories, 50 pairs each)."""
    g, b = cfg.gail, cfg.bc
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    ds = demos if isinstance(demos, DemoDataset) else DemoDataset.load(demos)
    sub = ds.subset(g.n_demos)
    obs, act, _ = sub.sample_pairs(g.pairs_per_trajectory, np.random.default_rng(cfg.seed), g.subsample)
    policy = train_bc(obs, act, b.steps, b.batch_size, b.lr, b.weight_decay, tuple(b.hidden), cfg.seed)
    torch.save(
        {"state_dict": policy.state_dict(), "obs_dim": obs.shape[1], "act_dim": act.shape[1], "hidden": list(b.hidden)},
        run_dir / "bc.pt",
    )
    rets = evaluate(cfg.env, policy, g.final_eval_episodes, max_episode_steps=cfg.max_episode_steps)
    result = {
        "method": "bc",
        "env_id": env_id(cfg.env),
        "n_demos": g.n_demos,
        "seed": cfg.seed,
        **summary(rets),
        "returns": rets.tolist(),
        "expert_pairs": int(len(obs)),
        "config": b.__dict__,
    }
    (run_dir / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def load_bc(run_dir: str | Path) -> BCPolicy:
    path = Path(run_dir) / "bc.pt"
    if not path.exists():
        raise FileNotFoundError(f"no BC policy in {run_dir}")
    state = torch.load(path, weights_only=False)
    policy = BCPolicy(state["obs_dim"], state["act_dim"], tuple(state["hidden"]))
    policy.load_state_dict(state["state_dict"])
    return policy
