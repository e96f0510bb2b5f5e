"""Token-level credit assignment (Dai, Xie & Hovy 2018): VAML, actor-critic (AC) and entropy-regularised
actor-critic (ERAC).

Each algorithm owns a critic / Q-network conditioned on the reference (:class:`ReferenceCritic`), trained with
the model by the trainer's optimizer and saved in checkpoints.  Phases run inside one trainer run, chosen from
the trainer's step counter, so a resumed run continues in the right phase:

* ``vaml``: the Q-network is trained by soft Q-learning (the model is untouched); later steps train the model
  towards P_Q = softmax(Q / tau) on RAML-weighted n-gram-replaced samples (the Q-network is frozen).
* ``erac`` / ``ac``: [0, actor_pretrain_steps) MLE; then critic training with the actor fixed; then joint
  training.  ``ac`` is ``erac`` with tau = 0.

A critic-only phase (Q-learning, critic pre-training) ends when the critic's validation TD error has not improved
for ``critic_patience`` evaluations, or after ``q_steps`` / ``critic_pretrain_steps`` steps; its steps are not
counted against ``train.max_steps`` (:meth:`CreditAlgorithm.preparation_steps`).  With ``critic_lr_decay`` < 1 it
ends as the authors' ``train_critic.py`` does: each evaluation without improvement multiplies the
critic's learning rate by ``critic_lr_decay`` (0.5 there), and the phase ends at the evaluation without improvement
that finds ``critic_patience`` such decays made (5 there) over the whole phase.

``critic_from: path`` starts the critic from a checkpoint of an earlier run (any of these algorithms), so
phases can also be split across runs.  Every actor update goes through the one loss
(:func:`seqlab.erpo.loss.one_loss`).
"""

from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from seqlab.algorithms.base import Algorithm, AlgorithmContext, Progress, register
from seqlab.algorithms.sequence import NORMALIZE_HELP, KLOptions, ReferencePolicy, RewardOptions
from seqlab.credit.critic import ReferenceCritic, frozen_copy, load_critic_state, soft_update
from seqlab.credit.targets import (
    action_rewards,
    actor_coefficients,
    critic_loss,
    entropy,
    erac_next_value,
    finite_log_probs,
    other_action_targets,
    preferred_action_stats,
    soft_advantages,
    soft_bellman_residual,
    vaml_coefficients,
)
from seqlab.data.vocab import PAD_ID
from seqlab.erpo.engine import reference_tokens
from seqlab.erpo.loss import Coefficients, one_loss, smoothed_targets
from seqlab.erpo.proposals import model_samples, ngram_replacement
from seqlab.erpo.weightings import group_softmax
from seqlab.models.base import Seq2SeqModel, mask_special, shift_right
from seqlab.rewards._common import ref_lengths
from seqlab.utils import eval_mode, masked_mean

# phases (stored in the algorithm's ``phase`` buffer, so checkpoints record them)
ACTOR_MLE, CRITIC, JOINT = 0, 1, 2  # erac / ac
Q_LEARNING, Q_TARGETS = 1, 2  # vaml
#: logged per step; tensors stay on the device until the trainer logs them (no wait for the device each step)
Stats = dict[str, float | torch.Tensor]
PHASE_NAMES = {
    "erac": {ACTOR_MLE: "actor_mle", CRITIC: "critic", JOINT: "joint"},
    "vaml": {Q_LEARNING: "q_learning", Q_TARGETS: "q_targets"},
}


def _source_vocab_size(ctx: AlgorithmContext) -> int | None:
    """The source vocabulary size, read from a fresh model of the trained architecture."""
    if ctx.build_model is None:
        return None
    cfg = getattr(ctx.build_model(), "cfg", None)
    return getattr(cfg, "src_vocab_size", None)


#: a fixed seed for the samples of the critic's validation, so every evaluation sees the same kind of draw and the
#: training's random stream is untouched (resumed runs stay exact)
VALID_SEED = 1234


@dataclass
class CreditOptions(RewardOptions):
    NEEDS_INCREMENTS: ClassVar[bool] = True  # token rewards r_t = ΔR_t and r(s_t, w)
    scale_by_length: bool = True
    reward_scale: float = 1.0
    critic_arch: str = "transformer"
    critic_options: dict[str, Any] | None = None
    critic_reads_source: bool = False
    source_vocab_size: int | None = None
    critic_from: str | None = None
    critic_lr_scale: float = 1.0
    critic_head_init: float = 0.0
    critic_patience: int | None = 3
    critic_lr_decay: float = 1.0  # < 1: the authors' plateau rule (module docstring), with critic_patience decays
    critic_eval_every: int = 100
    critic_eval_max_examples: int | None = 500

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.critic_patience is not None and self.critic_patience < 1:
            raise ValueError(f"critic_patience must be >= 1 or null, got {self.critic_patience}")
        if self.critic_eval_every < 1:
            raise ValueError(f"critic_eval_every must be >= 1, got {self.critic_eval_every}")
        if not 0.0 < self.critic_lr_decay <= 1.0:
            raise ValueError(f"critic_lr_decay must be in (0, 1], got {self.critic_lr_decay}")
        if self.critic_lr_decay < 1.0 and self.critic_patience is None:
            raise ValueError("critic_lr_decay < 1 needs critic_patience (the number of decays before the phase ends)")


class CreditAlgorithm(Algorithm):
    """Shared parts: the reference-conditioned critic, token rewards, phase bookkeeping, and the critic-only
    phase that ends when the critic's validation TD error stops improving (or at its step cap)."""

    Options = CreditOptions
    has_unused_parameters = True
    critic_only_phases: tuple[int, ...] = ()

    def __init__(self, ctx: AlgorithmContext, options: Any = None):
        super().__init__(ctx, options)
        o = self.options
        self.critic_lr_scale = o.critic_lr_scale  # critic-only phase; the paper pre-trains at 1e-3
        source_vocab_size = o.source_vocab_size
        if o.critic_reads_source and source_vocab_size is None:
            source_vocab_size = _source_vocab_size(ctx)
        self.critic = ReferenceCritic.build(
            ctx.vocab_size,
            o.critic_arch,
            self.critic_settings(),
            o.critic_reads_source,
            source_vocab_size,
            head_init=o.critic_head_init,
        )
        if o.critic_from:
            self.critic.load_state_dict(load_critic_state(o.critic_from))
        from seqlab.rewards import bind_reward

        # a token-id reward's name, or a (decomposable) text reward over the run's tokenizers
        self.reward_fn: Any = bind_reward(o.reward, ctx.tgt_tokenizer, ctx.src_tokenizer)
        self.scale_by_length, self.reward_scale = o.scale_by_length, o.reward_scale
        self.critic_from = o.critic_from
        self.critic_patience, self.critic_eval_every = o.critic_patience, o.critic_eval_every
        self.critic_lr_decay = o.critic_lr_decay
        self.critic_eval_max_examples = o.critic_eval_max_examples
        critic_patience = o.critic_patience
        # the best critic by validation TD error, restored when the critic-only phase ends
        self.best_critic = frozen_copy(self.critic) if critic_patience is not None else None
        self.register_buffer("phase", torch.zeros((), dtype=torch.long))
        self.register_buffer("critic_end", torch.full((), -1, dtype=torch.long))  # first step after; -1: open
        self.register_buffer("critic_steps", torch.zeros((), dtype=torch.long))
        self.register_buffer("best_valid_td", torch.full((), float("inf")))
        self.register_buffer("bad_valid_evals", torch.zeros((), dtype=torch.long))
        self.register_buffer("critic_lr_decays", torch.zeros((), dtype=torch.long))  # over the whole phase

    def critic_settings(self) -> dict[str, Any] | None:
        """The critic model's options (``critic_options``)."""
        return self.options.critic_options

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args: Any, **kwargs: Any) -> None:
        # checkpoints from before ``critic_lr_decay`` existed made no decays
        state_dict.setdefault(prefix + "critic_lr_decays", torch.zeros((), dtype=torch.long))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    # ------------------------------------------------------------------ the critic-only phase
    critic_start = 0  # first step of the critic-only phase
    critic_cap = 0  # its length at most

    def in_critic_phase(self, step: int) -> bool:
        """Whether ``step`` trains only the critic: from ``critic_start`` until the phase ended (validation
        patience) or ``critic_cap`` steps."""
        if step < self.critic_start or self.critic_cap <= 0:
            return False
        end = self.host_value("critic_end")
        return step < (end if end >= 0 else self.critic_start + self.critic_cap)

    def preparation_steps(self) -> int:
        return self.host_value("critic_steps")

    def valid_td(self, model: Seq2SeqModel, batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """Summed |TD error| and token count of one validation batch (no gradient, eval mode)."""
        raise NotImplementedError

    def validate_critic(self, model: Seq2SeqModel) -> float | None:
        """Mean |TD error| of the critic on (up to ``critic_eval_max_examples`` of) the validation set, with the
        model and the critic in eval mode and the samples drawn from a fixed seed; None without validation data."""
        if self.ctx.valid_batches is None:
            return None
        total = torch.zeros((), device=self.phase.device)
        count = torch.zeros((), device=self.phase.device)
        seen = 0
        devices = [self.phase.device] if self.phase.device.type == "cuda" else []
        with eval_mode(model, self.critic), torch.no_grad(), torch.random.fork_rng(devices=devices):
            torch.manual_seed(VALID_SEED)
            for batch in self.ctx.valid_batches():
                td, n = self.valid_td(model, batch)
                total, count = total + td, count + n
                seen += batch.src.size(0)
                if self.critic_eval_max_examples is not None and seen >= self.critic_eval_max_examples:
                    break
        value = total / count.clamp(min=1)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.broadcast(value, 0)  # every rank takes the same decision
        return float(value)

    def update_critic_phase(self, model: Seq2SeqModel, step: int) -> None:
        """At the start of a step of the critic-only phase: every ``critic_eval_every`` critic steps, validate the
        critic (logged as kind ``critic``), keep the best, and end the phase after ``critic_patience`` evaluations
        without improvement (with ``critic_lr_decay`` < 1: decay the lr instead, until ``critic_patience`` decays
        were made) or at ``critic_cap`` steps; the best critic is then restored.  With ``critic_patience`` null the
        phase runs ``critic_cap`` steps and keeps its last critic; the evaluations are only logged."""
        if self.host_value("critic_end") >= 0 or self.critic_cap <= 0 or step < self.critic_start:
            return
        done = step - self.critic_start
        evaluate = done > 0 and (done % self.critic_eval_every == 0 or done >= self.critic_cap)
        stop = done >= self.critic_cap
        if evaluate:
            td = self.validate_critic(model)
            if td is not None:
                if td < float(self.best_valid_td):
                    self.best_valid_td.fill_(td)
                    self.bad_valid_evals.zero_()
                    if self.best_critic is not None:
                        self.best_critic.load_state_dict(self.critic.state_dict())
                elif self.critic_patience is not None:  # (a fixed length only logs its evaluations)
                    stop = self.no_improvement(stop)
                if self.ctx.log is not None:
                    self.ctx.log(
                        "critic",
                        step,
                        {
                            "valid_td": td,
                            "best_valid_td": float(self.best_valid_td),
                            "critic_steps": done,
                            "phase_ends": float(stop),
                            "critic_lr_scale": self.critic_phase_lr_scale(),
                        },
                    )
        if stop:
            if self.best_critic is not None and torch.isfinite(self.best_valid_td):
                self.critic.load_state_dict(self.best_critic.state_dict())
            self.set_host_value("critic_end", step)
            self.on_critic_end()

    def no_improvement(self, stop: bool) -> bool:
        """After an evaluation without improvement: whether the phase ends now (``stop``: it ends anyway).  The
        authors' rule (``critic_lr_decay`` < 1) decays the lr, or ends once ``critic_patience`` decays are spent;
        the patience rule ends after ``critic_patience`` such evaluations in a row."""
        if self.critic_lr_decay < 1.0:
            decays = self.host_value("critic_lr_decays")
            stop = stop or decays >= self.critic_patience
            if not stop:
                self.set_host_value("critic_lr_decays", decays + 1)
            return stop
        self.bad_valid_evals += 1
        return stop or int(self.bad_valid_evals) >= self.critic_patience

    def on_critic_end(self) -> None:
        """Hook when the critic-only phase ends (ERAC restarts its target critic from the critic)."""

    def on_step_end(self, progress: Progress) -> None:
        if self.in_critic_phase(progress.step - 1):  # the step just taken
            self.set_host_value("critic_steps", self.host_value("critic_steps") + 1)

    # ------------------------------------------------------------------ shared helpers
    def reward_sources(self, src: torch.Tensor | None, refs: torch.Tensor) -> contextlib.AbstractContextManager:
        """Within the block a text reward finds the source of each row by its reference (rows of ``src`` and
        ``refs`` pair up); nothing to do for a token-id reward."""
        if not hasattr(self.reward_fn, "batch_sources") or src is None:
            return contextlib.nullcontext()
        return self.reward_fn.batch_sources(src, refs)

    def token_rewards(self, tokens: torch.Tensor, refs: torch.Tensor, src: torch.Tensor | None = None) -> torch.Tensor:
        """r_t = reward_scale * [|y*|] * (R(y_<=t) - R(y_<t)) [N, T] (prefix semantics, 0 at EOS / PAD); ``src``
        (the rows' sources) reaches a text reward."""
        from seqlab.rewards import reward_increments

        with torch.no_grad(), self.reward_sources(src, refs):
            inc = reward_increments(self.reward_fn, tokens, refs, scale_by_length=self.scale_by_length)
        return inc.float() * self.reward_scale

    def q_values(self, refs: torch.Tensor, tokens: torch.Tensor, src: torch.Tensor) -> torch.Tensor:
        return self.critic(refs, tokens, src)

    def phase_name(self) -> str:
        return PHASE_NAMES["vaml" if isinstance(self, VAML) else "erac"][self.host_value("phase")]

    def optimizer_groups(self) -> list[dict[str, Any]]:
        return [{"params": list(self.critic.parameters()), "name": "critic"}]

    def critic_phase_lr_scale(self) -> float:
        """The critic's lr multiple in its critic-only phase: ``critic_lr_scale``, times ``critic_lr_decay`` per
        decay made so far."""
        return self.critic_lr_scale * self.critic_lr_decay ** self.host_value("critic_lr_decays")

    def optimizer_settings(self, progress: Progress) -> dict[str, dict[str, float]]:
        if self.in_critic_phase(progress.step):
            return {"critic": {"lr_scale": self.critic_phase_lr_scale()}}
        return {}

    def trains_model(self, progress: Progress) -> bool:
        return self.phase_at(progress.step) not in self.critic_only_phases


# --------------------------------------------------------------------------- VAML
@dataclass
class VAMLOptions(CreditOptions):
    tau: float = 0.4
    kappa: float = 0.2
    num_samples: int = 5
    max_n: int = 4
    q_steps: int = 0
    weight_tau: float | None = 1.0  # null: tau
    weight_reward: str = field(
        default="sentence",
        metadata={
            "help": "what the samples' weights softmax(. / weight_tau) read: 'return' (the sum of the token rewards, "
            "x |y*| with scale_by_length) or 'sentence' (the sentence reward R(y) itself, in [0, 1] for BLEU): the "
            "authors' train_vaml.py weights by softmax(sentence BLEU) at temperature 1 (the defaults); 'return' at "
            "tau 0.4 put 0.995 of the weight on the reference on Multi30k (benchmarks/raml_weights.py)"
        },
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.tau <= 0:
            raise ValueError("vaml needs tau > 0")
        if self.weight_reward not in ("return", "sentence"):
            raise ValueError(f"weight_reward must be 'return' or 'sentence', got {self.weight_reward!r}")
        if not 0.0 <= self.kappa <= 1.0:
            raise ValueError(f"kappa is a probability, got {self.kappa}")


@register("vaml")
class VAML(CreditAlgorithm):
    """Value-augmented maximum likelihood.

    Phase 1 (the first ``q_steps`` steps at most; earlier when the validation soft-Bellman residual stops
    improving for ``critic_patience`` evaluations): soft Q-learning of Q_phi(y_<t, w; y*) on the reference and
    ``num_samples`` - 1 n-gram replacements of it (squared soft Bellman residual, gradient through both sides, no
    target network).  Phase 2: the model's token targets are P_Q(. | y_<t) = softmax(Q_phi / tau) with
    probability ``kappa`` per token and the sample's own token otherwise, each sample weighted by its
    self-normalised weight softmax(return / weight_tau) over the samples of its source (return = sum of the scaled
    token rewards), or softmax(R(y) / weight_tau) of the unscaled sentence reward (``weight_reward: sentence``, the
    authors' code with weight_tau 1)."""

    Options = VAMLOptions
    critic_phase_option = "q_steps"
    summary = "value-augmented ML: a critic's soft-Q targets on n-gram replacements (Dai et al. 2018)"
    breadth = 2
    critic_only_phases = (Q_LEARNING,)

    def __init__(self, ctx: AlgorithmContext, options: Any = None):
        super().__init__(ctx, options)
        o = self.options
        tau, kappa, num_samples, max_n, q_steps, weight_tau = (
            o.tau,
            o.kappa,
            o.num_samples,
            o.max_n,
            o.q_steps,
            o.weight_tau,
        )
        if q_steps <= 0 and not self.critic_from:
            warnings.warn(
                "vaml with q_steps=0 and no critic_from trains the model towards an untrained Q-network", stacklevel=2
            )
        self.tau, self.kappa, self.num_samples, self.max_n = tau, kappa, num_samples, max_n
        self.q_steps = q_steps
        self.critic_start, self.critic_cap = 0, q_steps
        self.weight_tau = tau if weight_tau is None else weight_tau
        self.set_host_value("phase", self.phase_at(0))

    def phase_at(self, step: int) -> int:
        return Q_LEARNING if self.in_critic_phase(step) else Q_TARGETS

    def propose(self, tgt: torch.Tensor):
        return ngram_replacement(tgt, self.num_samples, self.ctx.vocab_size, self.max_n, include_reference=True)

    def valid_td(self, model: Seq2SeqModel, batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
        prop = self.propose(batch.tgt)
        refs = batch.tgt.index_select(0, prop.group)
        q = self.q_values(refs, prop.tokens, batch.src.index_select(0, prop.group))
        src = batch.src.index_select(0, prop.group)
        residual = soft_bellman_residual(q, prop.tokens, self.token_rewards(prop.tokens, refs, src), self.tau)
        return residual.abs().sum(), prop.tokens.ne(PAD_ID).sum()

    def sequence_rewards(self, rewards: torch.Tensor, refs: torch.Tensor) -> torch.Tensor:
        """What the samples' weights read, [N]: the return (sum of the token rewards) or, with
        ``weight_reward: sentence``, the sentence reward R(y) - R(empty) it scales (÷ reward_scale, ÷ |y*|)."""
        returns = rewards.sum(1)
        if self.options.weight_reward == "return":
            return returns
        returns = returns / self.reward_scale
        return returns / ref_lengths(refs).clamp(min=1.0) if self.scale_by_length else returns

    def sample_weights(self, rewards: torch.Tensor, refs: torch.Tensor, group: torch.Tensor) -> torch.Tensor:
        """Each sample's self-normalised weight over the samples of its source, [N]: softmax of
        :meth:`sequence_rewards` / ``weight_tau`` (token ``rewards`` [N, T], ``refs`` and source ``group`` per row)."""
        return group_softmax(self.sequence_rewards(rewards, refs) / self.weight_tau, group)

    def loss(self, model: Seq2SeqModel, batch: Any, progress: Progress) -> tuple[torch.Tensor, Stats]:
        self.update_critic_phase(model, progress.step)
        phase = self.phase_at(progress.step)
        self.set_host_value("phase", phase)
        prop = self.propose(batch.tgt)
        tokens, group = prop.tokens, prop.group
        refs = batch.tgt.index_select(0, group)
        rewards = self.token_rewards(tokens, refs, batch.src.index_select(0, group))
        n_tok = tokens.ne(PAD_ID).sum().clamp(min=1)
        if phase == Q_LEARNING:
            q = self.q_values(refs, tokens, batch.src.index_select(0, group))
            residual = soft_bellman_residual(q, tokens, rewards, self.tau)
            loss = 0.5 * residual.pow(2).sum() / n_tok
            return loss, {
                "phase": float(phase),
                "td_abs": residual.detach().abs().sum() / n_tok,
                "return": rewards.sum(1).mean(),
            }
        with torch.no_grad(), eval_mode(self.critic):
            q = self.q_values(refs, tokens, batch.src.index_select(0, group))
            target = vaml_coefficients(q, self.tau)
        w = self.sample_weights(rewards, refs, group)
        use_q = (torch.rand(tokens.shape, device=tokens.device) < self.kappa) & tokens.ne(PAD_ID)
        sparse = w[:, None] * (~use_q).float()
        dense = (w[:, None] * use_q.float())[..., None] * target
        log_probs = model.token_log_probs(model.encode(batch.src).select(group), tokens)
        loss = one_loss(
            finite_log_probs(log_probs),
            tokens,
            Coefficients(weights=sparse, dense=dense, normalizer=reference_tokens(batch.tgt)),
        )
        return loss, {
            "phase": float(phase),
            "weight_on_reference": masked_mean(w, prop.is_reference),
            "q_target_share": use_q.sum() / n_tok,
        }


# --------------------------------------------------------------------------- AC / ERAC
@dataclass
class ERACOptions(KLOptions, CreditOptions):
    normalize_advantages: bool = field(default=False, metadata={"help": NORMALIZE_HELP})
    tau: float = 0.04
    future_entropy: bool = True
    target_beta: float = 0.001
    critic_target_beta: float | None = field(
        default=None,
        metadata={
            "help": "the target critic's rate during critic pre-training (null: target_beta).  The authors' 0.001 "
            "per step meets tens of thousands of 50-sentence steps (their critic trains up to 20 IWSLT epochs); a "
            "pre-training of a few hundred larger steps leaves phi_bar near its start, and the critic learns little "
            "more than the immediate reward (q_first against return shows it)"
        },
    )
    target_network: bool = True
    var_weight: float = 0.001
    var_reduction: str = "mean"
    mle_weight: float = 0.1
    num_samples: int = 1
    joint_num_samples: int | None = field(
        default=None,
        metadata={
            "help": "samples per source in the joint phase (null: num_samples); the authors draw 2 while the "
            "critic pre-trains (train_critic.py) and 1 in joint training (train_erac.py)"
        },
    )
    actor_pretrain_steps: int = 0
    critic_pretrain_steps: int = 0
    critic_weight: float = 1.0
    max_len_a: float = 1.5
    max_len_b: int = 10
    other_actions_weight: float = 0.0
    joint_critic_lr_scale: float = 1.0
    joint_adam_beta1: float | None = 0.0
    label_smoothing: float | None = None
    l2_log_pi: bool = field(
        default=False,
        metadata={
            "help": "divide log pi in the actor's entropy term by its L2 norm over the vocabulary, as the "
            "authors' code does (their tau = 0.04 was tuned so); false: the exact gradient of tau H"
        },
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.joint_num_samples is not None and self.joint_num_samples < 1:
            raise ValueError(f"joint_num_samples must be >= 1 or null, got {self.joint_num_samples}")
        if self.other_actions_weight < 0:
            raise ValueError(f"other_actions_weight must be >= 0, got {self.other_actions_weight}")
        if self.tau < 0:
            raise ValueError("tau must be >= 0")
        for name in ("target_beta", "critic_target_beta"):
            beta = getattr(self, name)
            if beta is not None and not 0.0 < beta <= 1.0:
                raise ValueError(f"{name} must be in (0, 1], got {beta}")
        if self.var_reduction not in ("mean", "sum"):
            raise ValueError(f"var_reduction must be 'mean' or 'sum', got {self.var_reduction!r}")
        if self.joint_adam_beta1 is not None and not 0.0 <= self.joint_adam_beta1 < 1.0:
            raise ValueError(f"joint_adam_beta1 must be in [0, 1) or null, got {self.joint_adam_beta1}")


@register("erac")
class ERAC(CreditAlgorithm):
    """Entropy-regularised actor-critic.

    Critic: TD towards Q^_t = r_t + sum_w pi(w|y_<=t) Q_bar(y_<=t, w) + tau H(pi(.|y_<=t))
    (``future_entropy``) from a target critic phi_bar <- beta phi + (1 - beta) phi_bar (``target_beta``;
    ``target_network=False`` uses phi itself), plus ``var_weight`` * the spread of Q over the vocabulary.
    Actor: the one loss with dense coefficients pi * (Q_phi - tau log pi) on ``num_samples`` samples per
    source (exactly the gradient of sum_w pi(w) Q(w) + tau H(pi)), plus ``mle_weight`` * the MLE term on y*
    (label smoothing ``label_smoothing``, by default the run's ``train.label_smoothing``).
    ``other_actions_weight`` > 0 also regresses Q of the actions not sampled towards r(s, w) + V_bar(s')
    (:func:`~seqlab.credit.targets.other_action_targets`); 0 (default) is the paper's critic.

    Phases: ``actor_pretrain_steps`` of MLE; critic pre-training with the actor fixed (critic at
    ``critic_lr_scale`` x train.lr) until the validation TD error stops improving for ``critic_patience``
    evaluations every ``critic_eval_every`` steps, or ``critic_pretrain_steps`` steps; then joint training as in
    the authors' code: Adam beta1 = ``joint_adam_beta1`` (0) for actor and critic, the critic at
    ``joint_critic_lr_scale`` (1) x train.lr, the samples, log pi and the actor's gradient from one eval-mode
    (dropout-free) pass of the actor.
    """

    Options = ERACOptions
    critic_phase_option = "critic_pretrain_steps"
    summary = "entropy-regularised actor-critic (Dai et al. 2018)"
    breadth = 5
    critic_only_phases = (CRITIC,)
    # with an 8,000-token vocabulary the critic's argmax falls on tokens the actor almost never samples and the
    # actor degrades at 1e-4 even with the own Q head (Multi30k, GPU and CPU; stable at 1e-5); the 43-token G2P
    # check was stable at 1e-4 (docs/credit.md, "Why AC and ERAC still collapse on Multi30k")
    max_finetune_lr = 5e-5

    def __init__(self, ctx: AlgorithmContext, options: Any = None):
        super().__init__(ctx, options)
        o = self.options
        tau, future_entropy, target_beta, target_network = o.tau, o.future_entropy, o.target_beta, o.target_network
        var_weight, var_reduction, mle_weight, num_samples = o.var_weight, o.var_reduction, o.mle_weight, o.num_samples
        actor_pretrain_steps, critic_pretrain_steps = o.actor_pretrain_steps, o.critic_pretrain_steps
        critic_weight, max_len_a, max_len_b = o.critic_weight, o.max_len_a, o.max_len_b
        joint_critic_lr_scale, joint_adam_beta1, label_smoothing = (
            o.joint_critic_lr_scale,
            o.joint_adam_beta1,
            o.label_smoothing,
        )
        self.other_actions_weight = o.other_actions_weight
        self.tau, self.future_entropy = tau, future_entropy
        self.target_beta, self.target_network = target_beta, target_network
        self.var_weight, self.var_reduction, self.mle_weight = var_weight, var_reduction, mle_weight
        self.num_samples, self.critic_weight = num_samples, critic_weight
        self.actor_pretrain_steps, self.critic_pretrain_steps = actor_pretrain_steps, critic_pretrain_steps
        self.critic_start, self.critic_cap = actor_pretrain_steps, critic_pretrain_steps
        self.max_len_a, self.max_len_b = max_len_a, max_len_b
        self.joint_critic_lr_scale, self.joint_adam_beta1 = joint_critic_lr_scale, joint_adam_beta1
        self.label_smoothing = ctx.label_smoothing if label_smoothing is None else label_smoothing
        self.target_critic = frozen_copy(self.critic) if target_network else None
        if o.kl_coef > 0:
            self.reference = ReferencePolicy(ctx)  # the actor as joint training starts
        self.set_host_value("phase", self.phase_at(0))

    def critic_settings(self) -> dict[str, Any]:
        return {"dropout": 0.0, **(self.options.critic_options or {})}  # the authors' critic has no dropout

    def phase_at(self, step: int) -> int:
        if step < self.actor_pretrain_steps:
            return ACTOR_MLE
        return CRITIC if self.in_critic_phase(step) else JOINT

    def optimizer_settings(self, progress: Progress) -> dict[str, dict[str, float]]:
        phase = self.phase_at(progress.step)
        if phase == CRITIC:
            return super().optimizer_settings(progress)
        if phase == JOINT:
            beta = {} if self.joint_adam_beta1 is None else {"beta1": self.joint_adam_beta1}
            return {"critic": {"lr_scale": self.joint_critic_lr_scale, **beta}, "model": dict(beta)}
        return {}

    def on_critic_end(self) -> None:
        if self.target_critic is not None:  # joint training starts with phi_bar = phi, as in the authors' code
            soft_update(self.target_critic, self.critic, 1.0)

    def mle_loss(self, model: Seq2SeqModel, enc: Any, tgt: torch.Tensor, weight: float = 1.0) -> torch.Tensor:
        log_probs = finite_log_probs(model.token_log_probs(enc, tgt))
        coef = smoothed_targets(tgt, log_probs.size(-1), self.label_smoothing)
        coef.weights = coef.weights * weight
        if coef.uniform is not None:
            coef.uniform = coef.uniform * weight
        return one_loss(log_probs, tgt, coef)

    def actor_pass(
        self, model: Seq2SeqModel, src: torch.Tensor, grad: bool, num_samples: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``num_samples`` samples per source (tokens [N, T], their source rows [N]) and log pi [N, T, V] of one
        eval-mode pass of the actor:
        the samples are drawn from exactly the distribution whose log pi the critic target and the actor's
        gradient use (dropout would make the teacher-forced pass a different policy)."""
        with eval_mode(model):
            with torch.set_grad_enabled(grad):
                enc = model.encode(src)
            prop, _ = model_samples(
                model, src, num_samples, enc=enc, max_len_a=self.max_len_a, max_len_b=self.max_len_b
            )
            with torch.set_grad_enabled(grad):
                log_pi = F.log_softmax(
                    mask_special(model.decode(enc.select(prop.group), shift_right(prop.tokens))), dim=-1
                )
        return prop.tokens, prop.group, log_pi

    def target_values(
        self, tokens: torch.Tensor, refs: torch.Tensor, src: torch.Tensor, log_pi: torch.Tensor
    ) -> torch.Tensor:
        """V_bar(s_{t+1}) at every position from the target critic (the critic itself without one), [N, T]."""
        with torch.no_grad():
            if self.target_critic is not None:
                self.target_critic.eval()
                q_bar = self.target_critic(refs, tokens, src)
            else:
                q_bar = self.q_values(refs, tokens, src)
        return erac_next_value(tokens, log_pi, q_bar, self.tau, self.future_entropy)

    def valid_td(self, model: Seq2SeqModel, batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """|Q(s_t, a_t) - r_t - V(s_{t+1})| on ``num_samples`` samples per source (the authors validate on one), V
        from the critic itself (as the authors)."""
        tokens, group, log_pi = self.actor_pass(model, batch.src, grad=False, num_samples=self.num_samples)
        refs, src = batch.tgt.index_select(0, group), batch.src.index_select(0, group)
        q = self.q_values(refs, tokens, src)
        target = self.token_rewards(tokens, refs, src) + erac_next_value(
            tokens, log_pi, q, self.tau, self.future_entropy
        )
        q_taken = q.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
        valid = tokens.ne(PAD_ID)
        return torch.where(valid, (q_taken - target).abs(), 0.0).sum(), valid.sum()

    def loss(self, model: Seq2SeqModel, batch: Any, progress: Progress) -> tuple[torch.Tensor, Stats]:
        phase = self.phase_at(progress.step)
        if phase == CRITIC and self.host_value("phase") == ACTOR_MLE and self.target_critic is not None:
            soft_update(self.target_critic, self.critic, 1.0)  # the critic phase starts from phi_bar = phi
        if phase != ACTOR_MLE:
            self.update_critic_phase(model, progress.step)
            phase = self.phase_at(progress.step)
        self.set_host_value("phase", phase)
        if phase == ACTOR_MLE:
            return self.mle_loss(model, model.encode(batch.src), batch.tgt), {"phase": float(phase)}
        joint = phase == JOINT
        joint_samples = self.options.joint_num_samples
        samples = joint_samples if joint and joint_samples is not None else self.num_samples
        tokens, group, log_pi = self.actor_pass(model, batch.src, joint and torch.is_grad_enabled(), samples)
        refs, src = batch.tgt.index_select(0, group), batch.src.index_select(0, group)
        rewards = self.token_rewards(tokens, refs, src)
        q = self.q_values(refs, tokens, src)
        next_value = self.target_values(tokens, refs, src, log_pi)
        target = rewards + next_value
        others = None
        if self.other_actions_weight > 0:
            with self.reward_sources(src, refs):
                r_all = action_rewards(self.reward_fn, tokens, refs, q.size(-1), self.scale_by_length)
            r_all = r_all * self.reward_scale
            others = other_action_targets(r_all, next_value)
        n_tok = tokens.ne(PAD_ID).sum().clamp(min=1)
        c_loss = critic_loss(q, tokens, target, self.var_weight, self.var_reduction, others, self.other_actions_weight)
        loss = self.critic_weight * c_loss / n_tok
        q_taken = q.detach().gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
        valid = tokens.ne(PAD_ID)
        td_abs = torch.where(valid, (q_taken - target).abs(), 0.0)
        stats = {
            "phase": float(phase),
            "td_abs": td_abs.sum() / n_tok,
            "return": rewards.sum(1).mean(),
            "q_first": q_taken[:, 0].mean(),  # Q(s_0, a_0): the return it predicts for the whole sample
            "entropy": (entropy(log_pi.detach()) * valid).sum() / n_tok,
            **preferred_action_stats(q, log_pi, tokens),
        }
        if joint:
            if self.options.normalize_advantages:
                coef = normalized_actor_coefficients(log_pi, q, self.tau, valid, self.options.l2_log_pi)
            else:
                coef = actor_coefficients(log_pi, q, self.tau, self.options.l2_log_pi)
            loss = loss + one_loss(finite_log_probs(log_pi), tokens, Coefficients(dense=coef, normalizer=n_tok))
            if self.mle_weight > 0:
                loss = loss + self.mle_loss(model, model.encode(batch.src), batch.tgt, self.mle_weight)
            if self.options.kl_coef > 0:
                kl = self.reference.kl(model, batch.src, group, tokens, log_pi)
                loss = loss + self.options.kl_coef * kl
                stats["kl"] = kl.detach()
            if self.options.kl_coef > 0 or self.options.normalize_advantages:
                returns = rewards.sum(1)
                stats.update(reward=returns.mean(), reward_std=returns.std(unbiased=False))
        return loss, stats

    def on_step_end(self, progress: Progress) -> None:
        super().on_step_end(progress)
        phase = self.host_value("phase")
        if self.target_critic is not None and phase in (CRITIC, JOINT):
            pre = phase == CRITIC and self.options.critic_target_beta is not None
            soft_update(self.target_critic, self.critic, self.options.critic_target_beta if pre else self.target_beta)


def normalized_actor_coefficients(
    log_pi: torch.Tensor, q: torch.Tensor, tau: float, valid: torch.Tensor, l2_log_pi: bool = False, eps: float = 1e-8
) -> torch.Tensor:
    """The actor's coefficients pi * (A - V) / sigma with advantages A = Q - tau log pi, V = sum_w pi A (their
    mean under pi at each position) and sigma their pi-weighted standard deviation over the batch's ``valid``
    positions [N, T]: zero-mean, unit-std advantages.  The gradient is that of
    :func:`~seqlab.credit.targets.actor_coefficients` divided by sigma (sum_w pi grad log pi = 0: V changes
    nothing)."""
    probs, keep, adv = soft_advantages(log_pi, q, tau, l2_log_pi)
    centred = torch.where(keep, adv - (probs * adv).sum(-1, keepdim=True), 0.0)
    mask = valid.float()
    var = ((probs * centred.pow(2)).sum(-1) * mask).sum() / mask.sum().clamp(min=1)
    return probs * centred / (var.sqrt() + eps)


@dataclass
class ACOptions(ERACOptions):
    tau: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.tau != 0.0:
            raise ValueError("ac is erac with tau = 0; use erac for tau > 0")


@register("ac")
class AC(ERAC):
    """Actor-critic (Bahdanau et al. 2017 in the ERAC code path): ERAC with tau = 0."""

    Options = ACOptions
    summary = "actor-critic (Bahdanau et al. 2017): ERAC with tau = 0"
