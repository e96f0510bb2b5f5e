"""ERPO taking (reward R, alpha, beta) directly: the E-step q(y) ∝ exp((alpha log p_theta + R) / (alpha + beta)),
estimated by self-normalised weights over proposals, then the weighted likelihood M-step.

Special cases: (delta, alpha -> 0, beta = 1) is MLE; (task reward, alpha -> 0, beta = tau) is RAML (with the
same proposals and weighting rule as ``raml``); (task reward, alpha > 0, beta = 0) with model samples is SPG.
``reward="delta"`` uses the log-delta reward (0 for the reference, -inf otherwise)."""

from __future__ import annotations

import torch

from seqlab.algorithms.base import AlgorithmContext, register
from seqlab.algorithms.raml import PROPOSALS, ReweightedProposals
from seqlab.erpo.weightings import erpo_log_target


def log_delta_reward(tokens: torch.Tensor, refs: torch.Tensor) -> torch.Tensor:
    """0 where the sequence equals its reference, -inf elsewhere (the delta reward in log space)."""
    width = max(tokens.size(1), refs.size(1))
    a = torch.nn.functional.pad(tokens, (0, width - tokens.size(1)))
    b = torch.nn.functional.pad(refs, (0, width - refs.size(1)))
    same = a.eq(b).all(1)
    return torch.where(same, torch.zeros(len(same), device=tokens.device),
                       torch.full((len(same),), float("-inf"), device=tokens.device))


@register("erpo")
class ERPO(ReweightedProposals):
    """Proposals: ``ngram`` (default, as RAML), ``hamming`` or ``model`` (K samples of p_θ, divided by their
    density p_θ: with beta = 0 this is SPG).  ``reward_scale`` multiplies the task reward."""

    def __init__(self, ctx: AlgorithmContext, reward: str = "bleu", alpha: float = 0.0, beta: float = 1.0,
                 reward_scale: float = 1.0, **options):
        super().__init__(ctx, reward="delta" if reward == "delta" else reward, **options)
        self.alpha, self.beta, self.scale = alpha, beta, reward_scale
        self.log_delta = reward == "delta"

    @staticmethod
    def proposals() -> tuple[str, ...]:
        return (*PROPOSALS, "model")

    def reward(self, tokens, refs):
        return log_delta_reward(tokens, refs) if self.log_delta else self.scale * super().reward(tokens, refs)

    def log_target(self, reward, log_p, lengths):
        return erpo_log_target(log_p, reward, self.alpha, self.beta)
