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
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from seqlab.algorithms.base import AlgorithmContext, register
from seqlab.algorithms.sequence import Candidates, RewardAlgorithm, RewardOptions, Step, Weights
from seqlab.data.vocab import PAD_ID
from seqlab.erpo.engine import reference_tokens
from seqlab.erpo.proposals import hamming_edits, model_samples, ngram_replacement
from seqlab.erpo.weightings import effective_sample_size, importance_weights
from seqlab.utils import masked_mean

PROPOSALS = ("ngram", "hamming")
CORRECTIONS = ("auto", "none", "exact")

#: warn when the reference's mean weight stays below this over ``WEIGHT_WINDOW`` steps
LOW_REFERENCE_WEIGHT = 0.01
WEIGHT_WINDOW = 50


class ReferenceWeightMonitor:
    """Warns once when the weight on the reference averages below a threshold over a window of steps.  The values
    stay on the device; they are read once per window (a read every step would wait for the device)."""

    def __init__(self, name: str, threshold: float = LOW_REFERENCE_WEIGHT, window: int = WEIGHT_WINDOW):
        self.name, self.threshold = name, threshold
        self.values: deque[float | torch.Tensor] = deque(maxlen=window)
        self.warned, self.seen = False, 0

    def update(self, weight_on_reference: float | torch.Tensor) -> None:
        self.values.append(weight_on_reference)
        self.seen += 1
        if self.warned or self.seen % self.values.maxlen:
            return
        mean = float(sum(self.values)) / len(self.values)
        if mean < self.threshold:
            self.warned = True
            warnings.warn(
                f"{self.name}: the reference's mean importance weight is "
                f"{mean:.4f} over the last {len(self.values)} steps "
                f"(< {self.threshold}); the weights favour the perturbed samples (is "
                f"proposal_correction: exact on?  is tau too large for this reward?)",
                stacklevel=2,
            )


@dataclass
class ProposalOptions(RewardOptions):
    num_samples: int = 10
    proposal: str = "ngram"
    max_n: int = 4
    max_edit_frac: float = 0.2
    max_edits: int | None = None
    proposal_correction: str = "auto"
    #: the proposals this algorithm draws from
    PROPOSALS: ClassVar[tuple[str, ...]] = PROPOSALS

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.proposal not in self.PROPOSALS:
            raise ValueError(f"proposal must be one of {self.PROPOSALS}, got {self.proposal!r}")
        if self.proposal_correction not in CORRECTIONS:
            raise ValueError(f"proposal_correction must be one of {CORRECTIONS}, got {self.proposal_correction!r}")
        if self.proposal_correction == "exact" and self.proposal == "ngram":
            raise ValueError(
                "proposal_correction: exact needs a proposal with a known density (hamming or model); "
                "n-gram replacement's density is not tracked"
            )
        if self.num_samples < 1:
            raise ValueError(f"num_samples must be at least 1, got {self.num_samples}")


class ReweightedProposals(RewardAlgorithm):
    """propose → score → self-normalised weights per source → the one loss.  Subclasses give
    :meth:`log_target`, the unnormalised log of the distribution the weights estimate."""

    Options = ProposalOptions
    needs_log_p = True
    breadth = 2

    def __init__(self, ctx: AlgorithmContext, options: Any = None):
        super().__init__(ctx, options)
        if self.options.proposal_correction == "exact" and self.options.proposal == "hamming":
            warnings.warn(
                f"{self.name}: proposal_correction: exact divides by the Hamming density, which falls by "
                "≈ V per edit and hands nearly all weight to the most-edited sample on a real vocabulary "
                "(README, 'Decisions the papers leave open')",
                stacklevel=2,
            )
        self.monitor = ReferenceWeightMonitor(self.name)

    def divides_by_density(self) -> bool:
        """Model samples always need p/q (q = p_θ); edit proposals only when asked (``exact``)."""
        o = self.options
        return o.proposal_correction == "exact" or (o.proposal_correction == "auto" and o.proposal == "model")

    def propose(self, model, batch, enc, progress=None) -> Candidates:
        o = self.options
        if o.proposal == "ngram":
            return Candidates.of(ngram_replacement(batch.tgt, o.num_samples, self.ctx.vocab_size, o.max_n))
        if o.proposal == "hamming":
            return Candidates.of(
                hamming_edits(batch.tgt, o.num_samples, self.ctx.vocab_size, o.max_edit_frac, o.max_edits)
            )
        return Candidates.of(model_samples(model, batch.src, o.num_samples, enc=enc)[0])

    def log_target(self, reward: torch.Tensor, log_p: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def weigh(self, cand: Candidates, reward: torch.Tensor | None, log_p: torch.Tensor | None, step: Step) -> Weights:
        w = self.weights(cand, reward, log_p)
        sources = step.batch.tgt.size(0)
        return Weights(w, reference_tokens(step.batch.tgt), stats=self.weight_stats(w, cand, reward, sources))

    def weights(self, cand: Candidates, reward: torch.Tensor, log_p: torch.Tensor) -> torch.Tensor:
        """Self-normalised weights per source of the proposals [N] from their rewards and log p_θ."""
        lengths = cand.tokens.ne(PAD_ID).sum(1)  # tokens scored, EOS included
        log_q = cand.log_q if self.divides_by_density() else None
        return importance_weights(self.log_target(reward, log_p, lengths), log_q, cand.group)

    def weight_stats(
        self, w: torch.Tensor, cand: Candidates, reward: torch.Tensor, sources: int
    ) -> dict[str, torch.Tensor]:
        """Logged per step, computed on the device (read only when the trainer logs them); ``sources``: the batch's
        rows, every one of which has proposals."""
        finite = torch.isfinite(reward)
        stats = {
            "effective_samples": effective_sample_size(w, cand.group, sources).mean(),
            "reward": torch.where(finite, reward, 0.0).sum() / finite.sum().clamp(min=1),  # 0 when none is finite
        }
        if cand.is_reference is not None:
            stats["weight_on_reference"] = masked_mean(w, cand.is_reference)
            self.monitor.update(stats["weight_on_reference"])
        return stats


@dataclass
class RAMLOptions(ProposalOptions):
    tau: float = 0.4


@register("raml")
class RAML(ReweightedProposals):
    """RAML: the target exp(R/τ)/Z over the reference's neighbourhood.  Defaults as in the papers' setup
    (Texar's RAML example): 10 samples per source including the reference, n-gram replacement proposals
    (one n-gram, n ~ U{1..min(m−1, 4)}, never the final token), sentence BLEU, τ = 0.4."""

    Options = RAMLOptions
    summary = "reward-augmented ML: n-gram replacements of the reference weighted by exp(R/tau) (Norouzi et al. 2016)"
    display_name = "RAML"

    def log_target(self, reward, log_p, lengths):
        return reward / self.options.tau


@dataclass
class AlphaDiMTOptions(ProposalOptions):
    reward: str = "neg_hamming"
    proposal: str = "hamming"
    alpha: float | dict = 0.5
    tau: float = 3.0
    length_normalize: bool = True


@register("alpha_dimt")
class AlphaDiMT(ReweightedProposals):
    """α-DiMT: the target p_θ^α exp(R/τ)^(1−α)/Z; α = 0 is RAML, α → 1 the RL end.  α may follow a
    schedule.  Defaults as in the α-DiMT paper (§6) and its code: reward = negative Hamming distance, τ = 3,
    Hamming proposals with e ~ U{0..⌊0.2 m⌋} (proposal weights ≡ 1), α = 0.5, p_θ length-normalised
    (the geometric mean of the token probabilities, ``length_normalize``)."""

    Options = AlphaDiMTOptions
    summary = "alpha-divergence training: Hamming edits weighted by p^alpha exp(R/tau)^(1-alpha)"
    display_name = "α-DiMT"

    def __init__(self, ctx: AlgorithmContext, options: Any = None):
        super().__init__(ctx, options)
        from seqlab.erpo.schedules import make_schedule

        self.alpha_schedule = make_schedule(self.options.alpha)
        self._alpha = float(self.alpha_schedule.value(0, 0))

    def schedules(self):
        return {"alpha": self.alpha_schedule}

    def log_target(self, reward, log_p, lengths):
        if self.options.length_normalize:
            log_p = log_p / lengths.clamp(min=1).to(log_p.dtype)
        return self._alpha * log_p + (1.0 - self._alpha) * reward / self.options.tau

    def weigh(self, cand, reward, log_p, step):
        self._alpha = float(self.alpha_schedule.value(step.progress.step, step.progress.epoch))
        w = super().weigh(cand, reward, log_p, step)
        w.stats["alpha"] = self._alpha
        return w
