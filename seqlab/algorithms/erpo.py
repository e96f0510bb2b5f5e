"""ERPO taking (reward R, alpha, beta) directly: the E-step q(y) ∝ exp((alpha log p_theta + R) / (alpha + beta)),
estimated by self-normalised weights over proposals, then the weighted likelihood M-step.

Special cases: (delta, alpha -> 0, beta = 1) is MLE; (task reward, alpha -> 0, beta = tau) is RAML (with the
same proposals and weighting rule as ``raml``); (task reward, alpha > 0, beta = 0) with model samples is SPG.
``reward="delta"`` uses the log-delta reward (0 for the reference, -inf otherwise)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from seqlab.algorithms.base import register
from seqlab.algorithms.raml import PROPOSALS, ProposalOptions, ReweightedProposals
from seqlab.algorithms.sequence import KLOptions
from seqlab.erpo.weightings import erpo_log_target


def log_delta_reward(tokens: torch.Tensor, refs: torch.Tensor) -> torch.Tensor:
    """0 where the sequence equals its reference, -inf elsewhere (the delta reward in log space)."""
    width = max(tokens.size(1), refs.size(1))
    a = torch.nn.functional.pad(tokens, (0, width - tokens.size(1)))
    b = torch.nn.functional.pad(refs, (0, width - refs.size(1)))
    same = a.eq(b).all(1)
    return torch.where(
        same,
        torch.zeros(len(same), device=tokens.device),
        torch.full((len(same),), float("-inf"), device=tokens.device),
    )


@dataclass
class ERPOOptions(KLOptions, ProposalOptions):
    alpha: float = 0.0
    beta: float = 1.0
    reward_scale: float = 1.0
    PROPOSALS: ClassVar[tuple[str, ...]] = (*PROPOSALS, "model")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.alpha + self.beta <= 0:
            raise ValueError("ERPO needs alpha + beta > 0")
        if self.kl_coef > 0 and self.proposal != "model":
            raise ValueError(
                "kl_coef needs proposal: model (the KL to the starting model is estimated on the model's own samples)"
            )


@register("erpo")
class ERPO(ReweightedProposals):
    """Proposals: ``ngram`` (default, as RAML), ``hamming`` or ``model`` (K samples of p_θ, divided by their
    density p_θ: with beta = 0 this is SPG).  ``reward_scale`` multiplies the task reward."""

    Options = ERPOOptions
    summary = "ERPO with (reward, alpha, beta) given directly: the general reweighted-proposal algorithm"
    display_name = "ERPO"

    def reward(self, tokens, refs, src=None):
        if self.options.reward == "delta":
            return log_delta_reward(tokens, refs)
        return self.options.reward_scale * super().reward(tokens, refs, src)

    def log_target(self, reward, log_p, lengths):
        return erpo_log_target(log_p, reward, self.options.alpha, self.options.beta)
