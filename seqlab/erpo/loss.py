"""The one loss of seqlab:  L = - sum_i sum_t < c_{i,t}, log p_theta(. | y_<t^(i), x) >  (c detached).

Every algorithm reduces to proposals ``y`` plus coefficients ``c``. Coefficients come in three shapes:

* sparse: ``weights`` [N, T] on the proposal's own tokens (c = w * one-hot(y_t)): MLE, RAML, PG, ...
* uniform: ``uniform`` [N, T], mass spread evenly over the generated vocabulary (label smoothing).
* dense: ``dense`` [N, T, V] over the vocabulary: VAML targets, actor-critic.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from seqlab.data.vocab import BOS_ID, EOS_ID, PAD_ID

#: PAD and BOS are never generated (their log-probabilities are -inf): vocabulary sums start here.
#: This assumes the last axis of ``log_probs`` is the token vocabulary; distributions over other
#: categories (NAT action or length classes) are shifted past these ids first (seqlab.nat.imitation).
FIRST_GENERATED_ID = EOS_ID
assert PAD_ID < FIRST_GENERATED_ID and BOS_ID < FIRST_GENERATED_ID


@dataclass
class Coefficients:
    """Detached per-token coefficients for the one loss; ``normalizer`` divides the summed loss."""

    weights: torch.Tensor | None = None  # [N, T]
    uniform: torch.Tensor | None = None  # [N, T]: mass spread evenly over the vocabulary
    dense: torch.Tensor | None = None  # [N, T, V]
    normalizer: float | torch.Tensor = 1.0


def one_loss(log_probs: torch.Tensor, targets: torch.Tensor, coef: Coefficients) -> torch.Tensor:
    """Weighted negative log-likelihood. ``log_probs`` [N, T, V], ``targets`` [N, T] (PAD ignored)."""
    is_valid = targets.ne(PAD_ID)
    valid = is_valid.to(log_probs.dtype)
    total = log_probs.new_zeros(())
    if coef.weights is not None:
        tok = log_probs.gather(-1, targets.unsqueeze(-1)).squeeze(-1).masked_fill(~is_valid, 0.0)  # PAD: -inf
        total = total - (coef.weights.detach().to(tok.dtype) * tok).sum()
    generated = log_probs[..., FIRST_GENERATED_ID:]
    if coef.uniform is not None:
        mean_logp = generated.mean(-1)
        total = total - (coef.uniform.detach().to(mean_logp.dtype) * mean_logp * valid).sum()
    if coef.dense is not None:
        per_pos = (coef.dense[..., FIRST_GENERATED_ID:].detach().to(log_probs.dtype) * generated).sum(-1)
        total = total - (per_pos * valid).sum()
    return total / coef.normalizer


def smoothed_targets(targets: torch.Tensor, vocab_size: int, epsilon: float) -> Coefficients:
    """MLE with label smoothing as coefficients: (1-eps) one-hot + eps/V uniform, per token."""
    n_tokens = targets.ne(PAD_ID).sum().clamp(min=1)
    ones = torch.ones_like(targets, dtype=torch.float)
    if epsilon == 0.0:
        return Coefficients(weights=ones, normalizer=n_tokens)
    return Coefficients(weights=(1.0 - epsilon) * ones, uniform=epsilon * ones, normalizer=n_tokens)
