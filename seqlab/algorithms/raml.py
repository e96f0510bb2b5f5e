"""RAML (Norouzi et al. 2016) and alpha-DiMT (alpha-divergence minimisation training).

Both propose Hamming edits of the reference (the reference always among the samples) and weight them by
self-normalised importance weights per source: towards exp(R/tau) for RAML, towards
p_theta^alpha * exp(R/tau)^(1-alpha) for alpha-DiMT (alpha = 0 is RAML, alpha -> 1 the RL end)."""

from __future__ import annotations

from seqlab.algorithms.base import AlgorithmContext, Progress, register
from seqlab.algorithms.common import RewardAlgorithm
from seqlab.erpo.engine import reference_tokens, sequence_log_prob, weighted_sequence_loss
from seqlab.erpo.proposals import hamming_edits
from seqlab.erpo.weightings import alpha_divergence_weights, raml_weights


@register("raml")
class RAML(RewardAlgorithm):
    def __init__(self, ctx: AlgorithmContext, reward: str = "bleu", tau: float = 0.4, num_samples: int = 8,
                 max_edit_frac: float = 0.2, max_edits: int | None = None):
        super().__init__(ctx, reward)
        self.tau, self.num_samples = tau, num_samples
        self.max_edit_frac, self.max_edits = max_edit_frac, max_edits

    def propose(self, batch):
        return hamming_edits(batch.tgt, self.num_samples, self.ctx.vocab_size, self.max_edit_frac, self.max_edits)

    def weights(self, prop, refs, log_p):
        return raml_weights(self.reward(prop.tokens, refs), self.tau, prop.log_q, prop.group)

    def loss(self, model, batch, progress: Progress):
        prop = self.propose(batch)
        enc = model.encode(batch.src)
        log_probs = model.token_log_probs(enc.select(prop.group), prop.tokens)
        refs = batch.tgt.index_select(0, prop.group)
        w = self.weights(prop, refs, sequence_log_prob(log_probs, prop.tokens).detach())
        loss = weighted_sequence_loss(model, enc, prop.tokens, prop.group, w, reference_tokens(batch.tgt),
                                      log_probs=log_probs)
        return loss, {"weight_on_reference": float(w[prop.is_reference].mean())}


@register("alpha_dimt")
class AlphaDiMT(RAML):
    """alpha-divergence minimisation; alpha may follow a schedule (e.g. annealed from 0 towards 1)."""

    def __init__(self, ctx: AlgorithmContext, alpha: float | dict = 0.5, **options):
        super().__init__(ctx, **options)
        from seqlab.erpo.schedules import make_schedule

        self.alpha_schedule = make_schedule(alpha)
        self._alpha = float(self.alpha_schedule.value(0, 0))

    def weights(self, prop, refs, log_p):
        return alpha_divergence_weights(log_p, self.reward(prop.tokens, refs), self.tau, self._alpha,
                                        prop.log_q, prop.group)

    def loss(self, model, batch, progress: Progress):
        self._alpha = float(self.alpha_schedule.value(progress.step, progress.epoch))
        loss, stats = super().loss(model, batch, progress)
        return loss, {**stats, "alpha": self._alpha}
