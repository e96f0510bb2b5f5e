"""The README's idea as an interface: an algorithm is a **proposal** (which target sequences to learn from), a
**weighting** (a detached coefficient per sequence or token) and **one loss**.

:class:`SequenceAlgorithm` owns the one ``loss()``: encode -> :meth:`~SequenceAlgorithm.propose` -> score (the
reward of each proposal, and log p_θ when the weighting needs it) -> :meth:`~SequenceAlgorithm.weigh` -> the
weighted likelihood :func:`~seqlab.erpo.engine.weighted_sequence_loss` (chunked past ``train.loss_chunk_tokens``)
-> an optional MLE term -> an optional KL term to the frozen starting model (option ``kl_coef``).  A new algorithm
overrides the two hooks and declares its options.

RL stability controls for the algorithms that learn from their own samples: ``kl_coef`` (:class:`KLOptions`) adds
``kl_coef`` * KL(p_θ || p_ref) to the loss, p_ref the model as it was at the first step (``train.init_from``'s
weights when fine-tuning), estimated on the proposals by :func:`sequence_kl`; ``normalize_advantages`` makes the
advantages of a batch zero-mean and unit-std (:func:`normalize_advantages`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn
from torch.profiler import record_function

from seqlab.algorithms.base import Algorithm, AlgorithmContext, Progress
from seqlab.data.vocab import PAD_ID
from seqlab.erpo.engine import reference_tokens, sequence_log_prob, weighted_sequence_loss
from seqlab.erpo.loss import one_loss, smoothed_targets
from seqlab.models.base import Encoded, Seq2SeqModel


@dataclass
class Step:
    """What the hooks see of one training step."""

    model: Seq2SeqModel
    batch: Any  # src [B, S], tgt [B, T]
    enc: Encoded | None  # the batch's encoding (None while an ``encode_first = False`` algorithm proposes)
    progress: Progress


@dataclass
class Candidates:
    """The proposal: target sequences and the batch row each belongs to."""

    tokens: torch.Tensor  # [N, T] tokens, EOS, PAD
    group: torch.Tensor  # [N] the source row of the batch
    log_q: torch.Tensor | None = None  # [N] log proposal density, when known
    is_reference: torch.Tensor | None = None  # [N] bool: the unchanged reference
    components: torch.Tensor | None = None  # [N, T] where each token came from (1 model, 2 reward, 3 data)
    stats: dict[str, float] = field(default_factory=dict)  # logged with the step

    def __len__(self) -> int:
        return self.tokens.size(0)

    @classmethod
    def of(cls, proposal: Any, **stats: float) -> Candidates:
        """From a :class:`~seqlab.erpo.proposals.Proposal`."""
        return cls(proposal.tokens, proposal.group, proposal.log_q, proposal.is_reference, stats=stats)


@dataclass
class Weights:
    """The weighting: detached coefficients and what they are normalised by."""

    coef: torch.Tensor  # [N] per sequence or [N, T] per token
    normalizer: float | torch.Tensor  # reference tokens (likelihood terms) or samples (policy-gradient terms)
    smoothed: bool = True  # train.label_smoothing applies (non-negative coefficients; never advantages)
    stats: dict[str, float] = field(default_factory=dict)


class SequenceAlgorithm(Algorithm):
    """propose -> score -> weigh -> the one loss.  Subclasses override :meth:`propose` and :meth:`weigh` (the
    default weighting is 1 per proposal, normalised by the reference's tokens: the likelihood of the proposals).
    Options are read from ``self.options`` (also as attributes: ``self.tau`` is ``self.options.tau``)."""

    #: the weighting reads log p_θ(y) of each proposal (the loss then reuses that pass)
    needs_log_p: bool = False
    #: encode before proposing (False: propose from the data first, as data noising does)
    encode_first: bool = True

    def propose(
        self, model: Seq2SeqModel, batch: Any, enc: Encoded | None, progress: Progress | None = None
    ) -> Candidates:
        """The target sequences to learn from (``enc`` is None when ``encode_first`` is False)."""
        raise NotImplementedError

    def score(self, cand: Candidates, batch: Any) -> torch.Tensor | None:
        """The reward of each proposal against its reference [N] (None: the algorithm has no reward)."""
        return None

    def weigh(self, cand: Candidates, reward: torch.Tensor | None, log_p: torch.Tensor | None, step: Step) -> Weights:
        """The coefficients of the proposals; ``log_p`` (log p_θ(y), detached) only when ``needs_log_p``."""
        return Weights(torch.ones(len(cand), device=cand.tokens.device), reference_tokens(step.batch.tgt))

    def loss(self, model: Seq2SeqModel, batch: Any, progress: Progress) -> tuple[torch.Tensor, dict[str, float]]:
        step = Step(model, batch, model.encode(batch.src) if self.encode_first else None, progress)
        cand = self.propose(model, batch, step.enc, progress)
        if step.enc is None:
            step.enc = model.encode(batch.src)
        log_probs = log_p = None
        kl_coef = getattr(self.options, "kl_coef", 0.0)
        if self.needs_log_p or kl_coef > 0:  # one pass for the weighting, the KL and the loss
            log_probs = model.token_log_probs(step.enc.select(cand.group), cand.tokens)
        if self.needs_log_p:
            log_p = sequence_log_prob(log_probs, cand.tokens).detach()
        reward = self.score(cand, batch)
        w = self.weigh(cand, reward, log_p, step)
        smoothing = self.ctx.label_smoothing if w.smoothed else 0.0
        loss = weighted_sequence_loss(
            model,
            step.enc,
            cand.tokens,
            cand.group,
            w.coef,
            w.normalizer,
            log_probs=log_probs,
            label_smoothing=smoothing,
        )
        mle_weight = getattr(self.options, "mle_weight", 0.0)  # an added MLE term: (1 - w) loss + w MLE
        if mle_weight > 0:
            loss = (1 - mle_weight) * loss + mle_weight * self.mle_term(model, step.enc, batch.tgt)
        stats = {**cand.stats, **w.stats}
        if kl_coef > 0:
            kl = self.reference.kl(model, batch.src, cand.group, cand.tokens, log_probs)
            loss = loss + kl_coef * kl
            stats["kl"] = float(kl.detach())
        return loss, stats

    def mle_term(self, model: Seq2SeqModel, enc: Encoded, tgt: torch.Tensor) -> torch.Tensor:
        log_probs = model.token_log_probs(enc, tgt)
        return one_loss(log_probs, tgt, smoothed_targets(tgt, log_probs.size(-1), self.ctx.label_smoothing))


@dataclass
class RewardOptions:
    """``reward``: a token-id reward of :data:`seqlab.rewards.REWARDS`, a registered text reward or a text reward
    as ``module:function`` (:mod:`seqlab.rewards.text`)."""

    reward: str = field(
        default="bleu",
        metadata={
            "help": "token-id reward by name (seqlab list rewards), a registered "
            "text reward, or a text reward as module:function"
        },
    )
    #: the algorithm learns from token increments ΔR(w | y_<t, y*): its reward must decompose over tokens
    NEEDS_INCREMENTS: ClassVar[bool] = False

    def __post_init__(self) -> None:
        from seqlab.rewards import resolve_reward

        spec = resolve_reward(self.reward)  # ValueError: unknown name, or a module:function that is not there
        if self.NEEDS_INCREMENTS and not spec.decomposes:
            raise ValueError(
                f"algorithm.options.reward={self.reward} does not decompose over tokens, and this "
                "algorithm learns from its token increments ΔR(w | y_<t); use a decomposable reward "
                "(e.g. bleu) or a sequence-level algorithm (pg, spg, raml, mixer)"
            )


class RewardAlgorithm(SequenceAlgorithm):
    """Scores its proposals with a task reward R(y | y*) (option ``reward``): a token-id reward of
    :mod:`seqlab.rewards`, or a text reward on the decoded hypotheses, references and sources."""

    Options = RewardOptions

    def __init__(self, ctx: AlgorithmContext, options: Any = None):
        super().__init__(ctx, options)
        from seqlab.rewards import bind_reward, get_reward

        self.reward_name = self.options.reward
        if getattr(self.options, "kl_coef", 0.0) > 0:
            self.reference = ReferencePolicy(ctx)  # the frozen starting model of the KL term
        #: what the token-increment code scores with: a token-id reward's name, or a text reward's adapter
        self.reward_fn = bind_reward(self.reward_name, ctx.tgt_tokenizer, ctx.src_tokenizer)
        self.text_reward = not isinstance(self.reward_fn, str)
        self._reward = self.reward_fn if self.text_reward else get_reward(self.reward_name)

    def reward(self, tokens: torch.Tensor, refs: torch.Tensor, src: torch.Tensor | None = None) -> torch.Tensor:
        """R of each row of ``tokens`` against ``refs``; ``src`` (the rows' sources) reaches a text reward."""
        with torch.no_grad(), record_function("seqlab.reward"):
            if self.text_reward:
                return self._reward(tokens, refs, src).float()
            return self._reward(tokens, refs).float()

    def score(self, cand: Candidates, batch: Any) -> torch.Tensor | None:
        src = batch.src.index_select(0, cand.group) if self.text_reward else None
        return self.reward(cand.tokens, batch.tgt.index_select(0, cand.group), src)


# --------------------------------------------------------------------------- RL stability controls
@dataclass
class KLOptions:
    """Mixin of the options of an algorithm that learns from its own samples: ``kl_coef``."""

    kl_coef: float = field(
        default=0.0,
        metadata={"help": "weight of KL(p_theta || p_ref) to the frozen starting model, added to the loss (0: off)"},
    )

    def __post_init__(self) -> None:
        if self.kl_coef < 0:
            raise ValueError(f"kl_coef must be >= 0, got {self.kl_coef}")
        parent = super()
        if hasattr(parent, "__post_init__"):
            parent.__post_init__()  # type: ignore[misc]


#: the help line of the ``normalize_advantages`` option
NORMALIZE_HELP = "advantages of each batch made zero-mean and unit-std"


def sequence_kl(log_probs: torch.Tensor, ref_log_probs: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Σ_t KL(p_θ(· | y_<t) || p_ref(· | y_<t)) over each sequence's positions (EOS included, PAD excluded), [N]:
    the full-vocabulary KL at every visited prefix.  For y ~ p_θ its expectation is the sequence-level
    KL(p_θ || p_ref) (chain rule); the gradient flows through ``log_probs`` only.  Ids that neither model can emit
    (log p = -inf in both: PAD, BOS) contribute 0."""
    log_probs, ref_log_probs = log_probs.float(), ref_log_probs.detach().float()
    probs = log_probs.exp()
    diff = torch.where(probs > 0, log_probs - ref_log_probs, torch.zeros_like(log_probs))
    per_position = (probs * diff).sum(-1)
    return per_position.masked_fill(tokens.eq(PAD_ID), 0.0).sum(1)


def normalize_advantages(adv: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """``adv`` [N] with the batch's mean subtracted and divided by its standard deviation (population form; all
    equal: zeros)."""
    centred = adv - adv.mean()
    return centred / (centred.pow(2).mean().sqrt() + eps)


class ReferencePolicy(nn.Module):
    """A frozen copy of the model as it was at the first :meth:`kl` call (the run's first step; kept in the
    algorithm's state, so a resumed run keeps its reference).  Built from ``ctx.build_model``."""

    def __init__(self, ctx: AlgorithmContext):
        super().__init__()
        if ctx.build_model is None:
            raise ValueError("kl_coef > 0 needs a way to build the reference model (AlgorithmContext.build_model)")
        self.model = ctx.build_model()
        self.model.requires_grad_(False)
        self.model.eval()
        self.register_buffer("ready", torch.zeros((), dtype=torch.bool))

    def train(self, mode: bool = True) -> ReferencePolicy:
        super().train(mode)
        self.model.eval()  # no dropout: p_ref is one fixed distribution
        return self

    @torch.no_grad()
    def log_probs(self, src: torch.Tensor, group: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """log p_ref(· | y_<t, x) [N, T, V] of ``tokens`` (rows of sources ``src[group]``)."""
        return self.model.token_log_probs(self.model.encode(src).select(group), tokens)

    def kl(
        self, model: nn.Module, src: torch.Tensor, group: torch.Tensor, tokens: torch.Tensor, log_probs: torch.Tensor
    ) -> torch.Tensor:
        """The mean over the N proposals of :func:`sequence_kl` (``log_probs``: p_θ's, with their gradient)."""
        if not bool(self.ready):
            self.model.load_state_dict(model.state_dict())
            self.ready.fill_(True)
        return sequence_kl(log_probs, self.log_probs(src, group, tokens), tokens).sum() / max(len(tokens), 1)
