"""M-step weightings: detached sequence coefficients for the one loss.

Importance weights are self-normalised per source (over the samples of one source sentence), never
across the minibatch, so that long or easy sentences cannot dominate (README, 'Decisions the papers leave open').
"""

from __future__ import annotations

import torch


def group_softmax(logits: torch.Tensor, group: torch.Tensor) -> torch.Tensor:
    """Softmax of ``logits`` [N] within each group id of ``group`` [N]."""
    n_groups = group.numel()  # ids are below it: no read of the ids back from the device
    finite = torch.isfinite(logits)
    safe = torch.where(finite, logits, torch.full_like(logits, -1e30))
    gmax = torch.full((n_groups,), -1e30, device=logits.device, dtype=logits.dtype)
    gmax = gmax.scatter_reduce(0, group, safe, reduce="amax", include_self=True)
    ex = torch.exp(safe - gmax[group]) * finite
    denom = torch.zeros(n_groups, device=logits.device, dtype=logits.dtype).index_add_(0, group, ex)
    return ex / denom[group].clamp_min(1e-30)


def group_totals(values: torch.Tensor, group: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per group id, the sum of ``values`` and their count; indexed by id up to ``group.numel()`` (the ids are below
    it, so they are not read back from the device)."""
    n_groups = group.numel()
    total = torch.zeros(n_groups, device=values.device, dtype=values.dtype).index_add_(0, group, values)
    count = torch.zeros(n_groups, device=values.device, dtype=values.dtype).index_add_(
        0, group, torch.ones_like(values)
    )
    return total, count


def group_mean(values: torch.Tensor, group: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` within each group, broadcast back to [N]."""
    total, count = group_totals(values, group)
    return (total / count.clamp_min(1))[group]


def effective_sample_size(weights: torch.Tensor, group: torch.Tensor, n_groups: int | None = None) -> torch.Tensor:
    """Per source, the effective sample size (Σ w)² / Σ w² of its weights [G] (1: one sample has all the
    weight; K: uniform over K samples).  ``n_groups``: G when the caller knows it (else read from ``group``)."""
    if n_groups is None:
        n_groups = int(group.max()) + 1 if group.numel() else 0
    total = torch.zeros(n_groups, device=weights.device, dtype=weights.dtype).index_add_(0, group, weights)
    square = torch.zeros(n_groups, device=weights.device, dtype=weights.dtype).index_add_(0, group, weights**2)
    return total**2 / square.clamp_min(1e-30)


def erpo_log_target(log_p: torch.Tensor, reward: torch.Tensor, alpha: float, beta: float) -> torch.Tensor:
    """Unnormalised log of the ERPO E-step solution q(y) ∝ exp((alpha log p_theta(y) + R(y)) / (alpha + beta))."""
    if alpha + beta <= 0:
        raise ValueError("ERPO needs alpha + beta > 0")
    return (alpha * log_p + reward) / (alpha + beta)


def importance_weights(log_target: torch.Tensor, log_q: torch.Tensor | None, group: torch.Tensor) -> torch.Tensor:
    """Self-normalised importance weights p(y)/q(y) per source; ``log_q`` None means q ∝ 1 on the samples."""
    logits = log_target if log_q is None else log_target - log_q
    return group_softmax(logits, group)


def raml_weights(reward: torch.Tensor, tau: float, log_q: torch.Tensor | None, group: torch.Tensor) -> torch.Tensor:
    """RAML: target exp(R/tau)/Z, estimated from proposal samples."""
    return importance_weights(reward / tau, log_q, group)


def alpha_divergence_weights(
    log_p: torch.Tensor, reward: torch.Tensor, tau: float, alpha: float, log_q: torch.Tensor | None, group: torch.Tensor
) -> torch.Tensor:
    """alpha-DiMT: p~ ∝ p_theta^alpha * q_tau^(1-alpha), q_tau ∝ exp(R/tau); alpha=0 is RAML, alpha=1 is
    the model distribution tilted by nothing but sampled from the proposal (entropy-regularised RL limit)."""
    return importance_weights(alpha * log_p + (1.0 - alpha) * reward / tau, log_q, group)


def pg_advantages(
    reward: torch.Tensor, group: torch.Tensor, baseline: str = "mean", baseline_reward: torch.Tensor | None = None
) -> torch.Tensor:
    """Policy-gradient coefficients R(y) - b: ``mean`` (leave-one-out mean over the source's other
    samples), ``greedy`` (self-critical: the reward of the greedy decode, ``baseline_reward`` [B]), ``none``."""
    if baseline == "none":
        return reward
    if baseline == "greedy":
        if baseline_reward is None:
            raise ValueError("the greedy (self-critical) baseline needs baseline_reward")
        return reward - baseline_reward[group]
    if baseline == "mean":
        total, count = group_totals(reward, group)
        others = (count[group] - 1).clamp_min(1)
        loo = (total[group] - reward) / others
        return torch.where(count[group] > 1, reward - loo, reward)
    raise ValueError(f"unknown baseline {baseline!r}; choose mean, greedy or none")


def spg_weights(reward: torch.Tensor, alpha: float, group: torch.Tensor) -> torch.Tensor:
    """Softmax policy gradient (ERPO with alpha > 0, beta = 0): q ∝ p_theta exp(R/alpha), estimated from
    samples of p_theta, whose importance weights reduce to softmax(R/alpha) per source."""
    return group_softmax(reward / alpha, group)
