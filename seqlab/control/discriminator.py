"""GAIL's discriminator: D(s, a) = P(the pair is the expert's), two tanh layers of 128 units.

Inputs are the raw observation (normalised by the demonstration pairs' mean and std, fixed at
construction) and the action as the environment received it (clipped to its bounds).

Rewards (``kind``), with logit l = log D - log(1 - D):

- ``gail`` (default): r = -log(1 - D) = softplus(l) >= 0, log 2 at D = 1/2, ~ l when D -> 1. Positive,
  so it also pays the policy to stay alive in environments that end an episode when the robot falls
  (Hopper, Walker2d) -- the usual choice for these tasks (OpenAI baselines' GAIL).
- ``airl``: r = l = log D - log(1 - D), no sign bias.
- ``logd``: r = log D = -softplus(-l) <= 0, which pays to end episodes early.

Loss: the mean binary cross-entropy on expert pairs (label 1) plus the mean on policy pairs (label 0),
halved, so an uninformed discriminator scores log 2; minus ``entcoeff`` times the mean Bernoulli
entropy of D's outputs.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

REWARDS = ("gail", "airl", "logd")


def reward_from_logits(logits: torch.Tensor, kind: str = "gail") -> torch.Tensor:
    if kind == "gail":
        return F.softplus(logits)
    if kind == "airl":
        return logits
    if kind == "logd":
        return -F.softplus(-logits)
    raise ValueError(f"unknown discriminator reward {kind!r}; choose from {REWARDS}")


class Discriminator(nn.Module):
    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        hidden: tuple[int, ...] | list[int] = (128, 128),
        obs_mean: np.ndarray | None = None,
        obs_std: np.ndarray | None = None,
        reward: str = "gail",
    ):
        super().__init__()
        layers: list[nn.Module] = []
        d = obs_dim + act_dim
        for h in hidden:
            layers += [nn.Linear(d, h), nn.Tanh()]
            d = h
        layers.append(nn.Linear(d, 1))
        self.net = nn.Sequential(*layers)
        mean = torch.zeros(obs_dim) if obs_mean is None else torch.as_tensor(obs_mean, dtype=torch.float32)
        std = torch.ones(obs_dim) if obs_std is None else torch.as_tensor(obs_std, dtype=torch.float32)
        self.register_buffer("obs_mean", mean)
        self.register_buffer("obs_std", std.clamp_min(1e-2))
        self.reward_kind = reward

    @classmethod
    def for_demos(cls, obs: np.ndarray, act_dim: int, hidden=(128, 128), reward: str = "gail") -> Discriminator:
        """Normalisation from the demonstration pairs' observations."""
        return cls(obs.shape[1], act_dim, hidden, obs.mean(0), obs.std(0), reward)

    def forward(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        """Logits of D (expert = 1), shape [B]."""
        x = torch.cat([(obs - self.obs_mean) / self.obs_std, act], dim=-1)
        return self.net(x).squeeze(-1)

    @torch.no_grad()
    def reward(self, obs: np.ndarray, act: np.ndarray) -> np.ndarray:
        o = torch.as_tensor(np.asarray(obs), dtype=torch.float32)
        a = torch.as_tensor(np.asarray(act), dtype=torch.float32)
        return reward_from_logits(self(o, a), self.reward_kind).numpy()


def discriminator_loss(
    disc: Discriminator,
    exp_obs: torch.Tensor,
    exp_act: torch.Tensor,
    pol_obs: torch.Tensor,
    pol_act: torch.Tensor,
    entcoeff: float = 0.0,
) -> tuple[torch.Tensor, dict[str, float]]:
    le = disc(exp_obs, exp_act)
    lp = disc(pol_obs, pol_act)
    bce = 0.5 * (
        F.binary_cross_entropy_with_logits(le, torch.ones_like(le))
        + F.binary_cross_entropy_with_logits(lp, torch.zeros_like(lp))
    )
    logits = torch.cat([le, lp])
    # Bernoulli entropy of sigmoid(l): softplus(l) - l * sigmoid(l)
    entropy = (F.softplus(logits) - logits * torch.sigmoid(logits)).mean()
    loss = bce - entcoeff * entropy
    stats = {
        "d_loss": float(bce.detach()),
        "d_entropy": float(entropy.detach()),
        "d_acc_expert": float((le > 0).float().mean()),
        "d_acc_policy": float((lp < 0).float().mean()),
    }
    return loss, stats


class DiscriminatorTrainer:
    """Adam on :func:`discriminator_loss`; one call = ``steps`` minibatches of policy and expert pairs."""

    def __init__(
        self,
        disc: Discriminator,
        exp_obs: np.ndarray,
        exp_act: np.ndarray,
        lr: float = 3e-4,
        batch: int = 256,
        entcoeff: float = 1e-3,
        seed: int = 0,
    ):
        self.disc = disc
        self.exp_obs = torch.as_tensor(exp_obs, dtype=torch.float32)
        self.exp_act = torch.as_tensor(exp_act, dtype=torch.float32)
        self.opt = torch.optim.Adam(disc.parameters(), lr=lr)
        self.batch = batch
        self.entcoeff = entcoeff
        self.gen = torch.Generator().manual_seed(seed)

    def update(self, pol_obs: np.ndarray, pol_act: np.ndarray, steps: int) -> dict[str, float]:
        po = torch.as_tensor(pol_obs, dtype=torch.float32)
        pa = torch.as_tensor(pol_act, dtype=torch.float32)
        n = len(po)
        perm = torch.randperm(n, generator=self.gen)
        totals: dict[str, float] = {}
        for s in range(steps):
            b = min(self.batch, n)
            start = (s * b) % n
            idx = perm[start : start + b]
            if len(idx) < b:
                idx = torch.cat([idx, perm[: b - len(idx)]])
            eidx = torch.randint(len(self.exp_obs), (b,), generator=self.gen)
            loss, stats = discriminator_loss(
                self.disc, self.exp_obs[eidx], self.exp_act[eidx], po[idx], pa[idx], self.entcoeff
            )
            self.opt.zero_grad()
            loss.backward()
            self.opt.step()
            for k, v in stats.items():
                totals[k] = totals.get(k, 0.0) + v / steps
        return totals

    @torch.no_grad()
    def evaluate(self, pol_obs: np.ndarray, pol_act: np.ndarray) -> dict[str, float]:
        """Loss on all expert pairs and the given policy pairs, without an update."""
        po = torch.as_tensor(pol_obs, dtype=torch.float32)
        pa = torch.as_tensor(pol_act, dtype=torch.float32)
        return discriminator_loss(self.disc, self.exp_obs, self.exp_act, po, pa, 0.0)[1]

    def state_dict(self) -> dict:
        return {"disc": self.disc.state_dict(), "opt": self.opt.state_dict(), "gen": self.gen.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.disc.load_state_dict(state["disc"])
        self.opt.load_state_dict(state["opt"])
        self.gen.set_state(state["gen"])
