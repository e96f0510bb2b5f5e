"""ERPO taking (reward R, alpha, beta) directly: the E-step q(y) ∝ exp((alpha log p_theta + R) / (alpha + beta)),
estimated by self-normalised importance sampling from a proposal, then the weighted likelihood M-step.

Special cases: (delta, alpha -> 0, beta = 1) is MLE; (task reward, alpha -> 0, beta = tau) is RAML;
(task reward, alpha > 0, beta = 0) is SPG.  ``reward="delta"`` uses the log-delta reward (0 for the
reference, -inf otherwise)."""

from __future__ import annotations

import torch

from seqlab.algorithms.base import AlgorithmContext, Progress, register
from seqlab.algorithms.common import RewardAlgorithm
from seqlab.erpo.engine import reference_tokens, sequence_log_prob, weighted_sequence_loss
from seqlab.erpo.proposals import hamming_edits, model_samples
from seqlab.erpo.weightings import erpo_log_target, importance_weights


def log_delta_reward(tokens: torch.Tensor, refs: torch.Tensor) -> torch.Tensor:
    """0 where the sequence equals its reference, -inf elsewhere (the delta reward in log space)."""
    width = max(tokens.size(1), refs.size(1))
    a = torch.nn.functional.pad(tokens, (0, width - tokens.size(1)))
    b = torch.nn.functional.pad(refs, (0, width - refs.size(1)))
    same = a.eq(b).all(1)
    return torch.where(same, torch.zeros(len(same), device=tokens.device),
                       torch.full((len(same),), float("-inf"), device=tokens.device))


@register("erpo")
class ERPO(RewardAlgorithm):
    def __init__(self, ctx: AlgorithmContext, reward: str = "bleu", alpha: float = 0.0, beta: float = 1.0,
                 reward_scale: float = 1.0, proposal: str = "hamming", num_samples: int = 8,
                 max_edit_frac: float = 0.2, max_edits: int | None = None):
        super().__init__(ctx, "delta" if reward == "delta" else reward)
        if proposal not in ("hamming", "model"):
            raise ValueError("proposal must be 'hamming' (edits of the reference) or 'model' (samples of p_theta)")
        self.alpha, self.beta, self.scale = alpha, beta, reward_scale
        self.proposal, self.num_samples = proposal, num_samples
        self.max_edit_frac, self.max_edits = max_edit_frac, max_edits
        self.log_delta = reward == "delta"

    def task_reward(self, tokens, refs):
        return log_delta_reward(tokens, refs) if self.log_delta else self.scale * self.reward(tokens, refs)

    def loss(self, model, batch, progress: Progress):
        enc = model.encode(batch.src)
        if self.proposal == "hamming":
            prop = hamming_edits(batch.tgt, self.num_samples, self.ctx.vocab_size, self.max_edit_frac, self.max_edits)
        else:
            prop, _ = model_samples(model, batch.src, self.num_samples, enc=enc)
        log_probs = model.token_log_probs(enc.select(prop.group), prop.tokens)
        log_p = sequence_log_prob(log_probs, prop.tokens).detach()
        reward = self.task_reward(prop.tokens, batch.tgt.index_select(0, prop.group))
        w = importance_weights(erpo_log_target(log_p, reward, self.alpha, self.beta), prop.log_q, prop.group)
        loss = weighted_sequence_loss(model, enc, prop.tokens, prop.group, w, reference_tokens(batch.tgt),
                                      log_probs=log_probs)
        return loss, {"reward": float(reward[torch.isfinite(reward)].mean()) if torch.isfinite(reward).any() else 0.0}
