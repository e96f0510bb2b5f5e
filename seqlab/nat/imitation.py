"""The imitation module of Wei et al. (2019) and the two distribution losses built on it.

Each decoder layer l reads its input o_t, forms a policy over ``n`` action categories,
π(o_t) = softmax(FFN(LayerNorm(o_t))), and adds the expected action embedding u_t = Σ_a π(a) e_a to the
layer input: o_{l+1} = Layer(u_t + o_t).  The module is position-wise, so it works in teacher forcing,
in cached autoregressive steps and in a non-autoregressive pass alike.

Both losses are written as the one loss with dense coefficients (a detached target distribution over
action categories), plus a detached entropy constant so that the reported value is the KL divergence
(zero for equal distributions) while the gradient is that of the cross-entropy:

* the action-distribution regularizer of the demonstrator: KL(π′ ‖ π) with π′ ∝ π² / c (c: moving
  average of the action usage), which sharpens π while keeping the categories in use balanced;
* the imitation loss of imitate-NAT: KL(π_AT ‖ π_NAT) = CE(π_AT, π_NAT) − H(π_AT).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from seqlab.data.vocab import BOS_ID, PAD_ID
from seqlab.erpo.loss import Coefficients, one_loss


class ImitationModule(nn.Module):
    """Policy over action categories and their embeddings for one decoder layer."""

    def __init__(self, d_model: int, n_actions: int, hidden: int | None = None):
        super().__init__()
        hidden = hidden or d_model
        self.norm = nn.LayerNorm(d_model)
        self.policy = nn.Sequential(nn.Linear(d_model, hidden), nn.ReLU(), nn.Linear(hidden, n_actions))
        self.actions = nn.Parameter(torch.randn(n_actions, d_model) * d_model**-0.5)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x [..., D] -> (u [..., D] expected action embedding, log π [..., A] in float32)."""
        log_pi = F.log_softmax(self.policy(self.norm(x)).float(), dim=-1)
        u = torch.matmul(log_pi.exp().to(x.dtype), self.actions.to(x.dtype))
        return u, log_pi


#: token ids the one loss treats as never generated (PAD, BOS); distributions over categories are shifted
#: past them so that no category is dropped (the shifted-in entries carry zero coefficient and zero log-prob)
RESERVED_IDS = max(PAD_ID, BOS_ID) + 1


def as_vocabulary(x: torch.Tensor) -> torch.Tensor:
    """[..., K] category values -> [..., RESERVED_IDS + K], zeros in front: the one loss's id layout."""
    return F.pad(x, (RESERVED_IDS, 0), value=0.0)


def distribution_kl(
    log_q: torch.Tensor, target: torch.Tensor, mask_tokens: torch.Tensor, normalizer: float | torch.Tensor
) -> torch.Tensor:
    """KL(p ‖ q) summed over valid positions / ``normalizer``, through the one loss.

    ``log_q`` [B, T, A] model log-distribution, ``target`` [B, T, A] target distribution p (detached),
    ``mask_tokens`` [B, T] token ids whose PAD positions are ignored.  Gradient: that of CE(p, q)."""
    target = target.detach().float()
    ce = one_loss(
        as_vocabulary(log_q.float()), mask_tokens, Coefficients(dense=as_vocabulary(target), normalizer=normalizer)
    )
    valid = mask_tokens.ne(PAD_ID).float()
    neg_entropy = (torch.xlogy(target, target).sum(-1) * valid).sum() / normalizer
    return ce + neg_entropy.detach()


def imitation_kl(
    log_pi_student: torch.Tensor, pi_teacher: torch.Tensor, mask_tokens: torch.Tensor, normalizer: float | torch.Tensor
) -> torch.Tensor:
    """imitate-NAT's per-layer term: CE(π_AT, π_NAT) minus the (constant) teacher entropy."""
    return distribution_kl(log_pi_student, pi_teacher, mask_tokens, normalizer)


def batch_action_usage(log_pi: torch.Tensor, mask_tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Σ_t π(o_t) over valid positions [A] and their count (for a moving average, maybe all-reduced)."""
    valid = mask_tokens.ne(PAD_ID).unsqueeze(-1).float()
    pi = log_pi.detach().float().exp()
    return (pi * valid).sum(dim=tuple(range(pi.dim() - 1))), valid.sum()


def update_usage(usage: torch.Tensor, batch_mean: torch.Tensor, momentum: float = 0.9) -> torch.Tensor:
    """c ← momentum · c + (1 − momentum) · mean_t π(o_t)."""
    return momentum * usage + (1.0 - momentum) * batch_mean


def redistribute(pi: torch.Tensor, usage: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """π′_a ∝ π_a² / c_a, normalised over the last dimension."""
    scaled = pi.float() ** 2 / usage.float().clamp_min(eps)
    return scaled / scaled.sum(-1, keepdim=True).clamp_min(eps)


def action_regularizer(
    log_pi: torch.Tensor, usage: torch.Tensor, mask_tokens: torch.Tensor, normalizer: float | torch.Tensor
) -> torch.Tensor:
    """KL(π′ ‖ π) with π′ = redistribute(π, c) held fixed (the demonstrator's λ1 term)."""
    target = redistribute(log_pi.detach().float().exp(), usage)
    return distribution_kl(log_pi, target, mask_tokens, normalizer)
