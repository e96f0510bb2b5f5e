"""RAML (Norouzi et al. 2016), α-DiMT (α-divergence minimisation training) and their common shape: propose
perturbations of the reference (the reference always among them), score them, weight them by self-normalised
weights per source, maximise the weighted likelihood.

Weights.  The papers' released code (Texar's RAML example, the α-DiMT code) self-normalises the target
exp(R/τ) (α-DiMT: p_θ^α exp(R/τ)^(1−α)) over one source's drawn samples and does *not* divide by the
proposal's density; so does seqlab by default (``proposal_correction: none``).  The proposal then picks the
candidates (a neighbourhood of y*) and the reward ranks them.  ``proposal_correction: exact`` divides by the
exact Hamming density instead (an unbiased estimate of exp(R/τ)/Z over *all* sequences): each edit lowers that
density by a factor ≈ V, which outweighs any [0, 1] reward, so all weight goes to the most-edited sample — on
Multi30k (V = 8000, K = 8) the reference got weight 0.0000.  It stays for exact tests and small vocabularies.
"""

from __future__ import annotations

import warnings
from collections import deque
from typing import Any

import torch

from seqlab.algorithms.base import AlgorithmContext, Progress, register
from seqlab.algorithms.common import RewardAlgorithm
from seqlab.data.vocab import PAD_ID
from seqlab.erpo.engine import reference_tokens, sequence_log_prob, weighted_sequence_loss
from seqlab.erpo.proposals import Proposal, hamming_edits, model_samples, ngram_replacement
from seqlab.erpo.weightings import effective_sample_size, importance_weights

PROPOSALS = ("ngram", "hamming")
CORRECTIONS = ("auto", "none", "exact")

#: warn when the reference's mean weight stays below this over ``WEIGHT_WINDOW`` steps
LOW_REFERENCE_WEIGHT = 0.01
WEIGHT_WINDOW = 50


class ReferenceWeightMonitor:
    """Warns once when the weight on the reference averages below a threshold over a window of steps."""

    def __init__(self, name: str, threshold: float = LOW_REFERENCE_WEIGHT, window: int = WEIGHT_WINDOW):
        self.name, self.threshold = name, threshold
        self.values: deque[float] = deque(maxlen=window)
        self.warned = False

    def update(self, weight_on_reference: float) -> None:
        self.values.append(weight_on_reference)
        full = len(self.values) == self.values.maxlen
        if full and not self.warned and sum(self.values) / len(self.values) < self.threshold:
            self.warned = True
            warnings.warn(f"{self.name}: the reference's mean importance weight is "
                          f"{sum(self.values) / len(self.values):.4f} over the last {len(self.values)} steps "
                          f"(< {self.threshold}); the weights favour the perturbed samples (is "
                          f"proposal_correction: exact on?  is tau too large for this reward?)", stacklevel=2)


class ReweightedProposals(RewardAlgorithm):
    """propose → score → self-normalised weights per source → the one loss.  Subclasses give
    :meth:`log_target`, the unnormalised log of the distribution the weights estimate."""

    def __init__(self, ctx: AlgorithmContext, reward: str = "bleu", num_samples: int = 10, proposal: str = "ngram",
                 max_n: int = 4, max_edit_frac: float = 0.2, max_edits: int | None = None,
                 proposal_correction: str = "auto"):
        super().__init__(ctx, reward)
        if proposal not in self.proposals():
            raise ValueError(f"proposal must be one of {self.proposals()}, got {proposal!r}")
        if proposal_correction not in CORRECTIONS:
            raise ValueError(f"proposal_correction must be one of {CORRECTIONS}, got {proposal_correction!r}")
        if proposal_correction == "exact" and proposal == "ngram":
            raise ValueError("proposal_correction: exact needs a proposal with a known density (hamming or model); "
                             "n-gram replacement's density is not tracked")
        if proposal_correction == "exact" and proposal == "hamming":
            warnings.warn(f"{self.name}: proposal_correction: exact divides by the Hamming density, which falls by "
                          "≈ V per edit and hands nearly all weight to the most-edited sample on a real vocabulary "
                          "(README, 'Decisions the papers leave open')", stacklevel=2)
        self.num_samples, self.proposal = num_samples, proposal
        self.max_n, self.max_edit_frac, self.max_edits = max_n, max_edit_frac, max_edits
        self.correction = proposal_correction
        self.monitor = ReferenceWeightMonitor(self.name)

    @staticmethod
    def proposals() -> tuple[str, ...]:
        return PROPOSALS

    def divides_by_density(self) -> bool:
        """Model samples always need p/q (q = p_θ); edit proposals only when asked (``exact``)."""
        return self.correction == "exact" or (self.correction == "auto" and self.proposal == "model")

    def propose(self, model, batch, enc) -> Proposal:
        tgt = batch.tgt
        if self.proposal == "ngram":
            return ngram_replacement(tgt, self.num_samples, self.ctx.vocab_size, self.max_n)
        if self.proposal == "hamming":
            return hamming_edits(tgt, self.num_samples, self.ctx.vocab_size, self.max_edit_frac, self.max_edits)
        prop, _ = model_samples(model, batch.src, self.num_samples, enc=enc)
        return prop

    def log_target(self, reward: torch.Tensor, log_p: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def loss(self, model, batch, progress: Progress) -> tuple[torch.Tensor, dict[str, float]]:
        enc = model.encode(batch.src)
        prop = self.propose(model, batch, enc)
        log_probs = model.token_log_probs(enc.select(prop.group), prop.tokens)
        log_p = sequence_log_prob(log_probs, prop.tokens).detach()
        reward = self.reward(prop.tokens, batch.tgt.index_select(0, prop.group))
        w = self.weights(prop, reward, log_p)
        loss = weighted_sequence_loss(model, enc, prop.tokens, prop.group, w, reference_tokens(batch.tgt),
                                      log_probs=log_probs, label_smoothing=self.ctx.label_smoothing)
        return loss, self.weight_stats(w, prop, reward)

    def weights(self, prop: Proposal, reward: torch.Tensor, log_p: torch.Tensor) -> torch.Tensor:
        """Self-normalised weights per source of the proposals [N] from their rewards and log p_θ."""
        lengths = prop.tokens.ne(PAD_ID).sum(1)  # tokens scored, EOS included
        log_q = prop.log_q if self.divides_by_density() else None
        return importance_weights(self.log_target(reward, log_p, lengths), log_q, prop.group)

    def weight_stats(self, w: torch.Tensor, prop: Proposal, reward: torch.Tensor) -> dict[str, float]:
        finite = torch.isfinite(reward)
        stats = {"effective_samples": float(effective_sample_size(w, prop.group).mean()),
                 "reward": float(reward[finite].mean()) if bool(finite.any()) else 0.0}
        if prop.is_reference is not None and bool(prop.is_reference.any()):
            stats["weight_on_reference"] = float(w[prop.is_reference].mean())
            self.monitor.update(stats["weight_on_reference"])
        return stats


@register("raml")
class RAML(ReweightedProposals):
    """RAML: the target exp(R/τ)/Z over the reference's neighbourhood.  Defaults as in the papers' setup
    (Texar's RAML example): 10 samples per source including the reference, n-gram replacement proposals
    (one n-gram, n ~ U{1..min(m−1, 4)}, never the final token), sentence BLEU, τ = 0.4."""

    def __init__(self, ctx: AlgorithmContext, tau: float = 0.4, **options: Any):
        super().__init__(ctx, **options)
        self.tau = tau

    def log_target(self, reward, log_p, lengths):
        return reward / self.tau


@register("alpha_dimt")
class AlphaDiMT(ReweightedProposals):
    """α-DiMT: the target p_θ^α exp(R/τ)^(1−α)/Z; α = 0 is RAML, α → 1 the RL end.  α may follow a
    schedule.  Defaults as in the α-DiMT paper (§6) and its code: reward = negative Hamming distance, τ = 3,
    Hamming proposals with e ~ U{0..⌊0.2 m⌋} (proposal weights ≡ 1), α = 0.5, p_θ length-normalised
    (the geometric mean of the token probabilities, ``length_normalize``)."""

    def __init__(self, ctx: AlgorithmContext, alpha: float | dict = 0.5, reward: str = "neg_hamming",
                 tau: float = 3.0, proposal: str = "hamming", length_normalize: bool = True, **options: Any):
        super().__init__(ctx, reward=reward, proposal=proposal, **options)
        self.tau = tau
        from seqlab.erpo.schedules import make_schedule

        self.alpha_schedule = make_schedule(alpha)
        self.length_normalize = length_normalize
        self._alpha = float(self.alpha_schedule.value(0, 0))

    def schedules(self):
        return {"alpha": self.alpha_schedule}

    def log_target(self, reward, log_p, lengths):
        if self.length_normalize:
            log_p = log_p / lengths.clamp(min=1).to(log_p.dtype)
        return self._alpha * log_p + (1.0 - self._alpha) * reward / self.tau

    def loss(self, model, batch, progress: Progress):
        self._alpha = float(self.alpha_schedule.value(progress.step, progress.epoch))
        loss, stats = super().loss(model, batch, progress)
        return loss, {**stats, "alpha": self._alpha}
