"""Algorithms ``nat``, ``imitate_nat`` and ``dat`` (Wei et al. 2019), all through the one loss.

* ``nat``: token NLL of the reference at its own length (c = one-hot(y*_t), optionally smoothed) plus
  ``length_loss_weight`` × the length-class NLL (c = one-hot(L*)).  Decoder inputs are copies of the
  source embeddings (or encoder states) for the reference length L* (the length predictor is trained, not used,
  here).  With ``init_from`` (a ``dat`` checkpoint) the NAT starts from the demonstrator's weights, as
  imitate-NAT does, so that the two differ in the imitation term only.
* ``dat``: MLE plus λ1 × Σ_layers KL(π′ ‖ π), π′ ∝ π² / c, with c the moving average
  c ← m·c + (1−m)·mean_t π(o_t) per layer (a buffer of this algorithm: saved in checkpoints; under DDP
  the batch mean is all-reduced, so every rank keeps the same c).
* ``imitate_nat``: the ``nat`` loss plus λ2 × Σ_layers KL(π_AT ‖ π_NAT) (= CE minus the teacher's
  constant entropy, one loss with c = π_AT).  The frozen demonstrator (a ``dat`` checkpoint) computes
  π_AT with teacher forcing on the same reference positions; the NAT is initialised from its weights
  (every tensor whose name and shape match, :func:`~seqlab.nat.models.init_from_teacher`) at the first step of
  a fresh run.  ``imitation_weight: 0`` is the control: the same initialisation and data, no imitation.

Likelihood-type terms are averaged over target tokens (the KL terms too, summed over layers), the
length term over sentences.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F

from seqlab.algorithms.base import Algorithm, AlgorithmContext, Progress, register
from seqlab.data.vocab import EOS_ID, PAD_ID
from seqlab.erpo.loss import Coefficients, one_loss, smoothed_targets
from seqlab.models.base import mask_special, shift_right
from seqlab.nat.imitation import (
    action_regularizer,
    as_vocabulary,
    batch_action_usage,
    imitation_kl,
    update_usage,
)
from seqlab.nat.models import init_from_teacher


def nat_targets(tgt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Targets (tokens, EOS, PAD) -> NAT targets without EOS [B, max L] (at least one column) and L [B]."""
    lengths = tgt.ne(PAD_ID).sum(1) - tgt.eq(EOS_ID).sum(1)
    width = max(int(lengths.max()), 1)
    body = tgt[:, :width].masked_fill(tgt[:, :width].eq(EOS_ID), PAD_ID)
    return body, lengths


def finite(log_probs: torch.Tensor) -> torch.Tensor:
    """Excluded tokens (−inf) as 0, so the uniform (label-smoothing) part of the one loss stays finite."""
    return log_probs.masked_fill(torch.isinf(log_probs), 0.0)


def class_nll(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean NLL of class ``labels`` [N] under ``logits`` [N, K]: the one loss with c = one-hot(label)."""
    log_probs = as_vocabulary(F.log_softmax(logits.float(), dim=-1).unsqueeze(1))
    one_hot = as_vocabulary(F.one_hot(labels, logits.size(-1)).float().unsqueeze(1))
    coef = Coefficients(dense=one_hot, normalizer=labels.numel())
    present = torch.ones_like(labels).unsqueeze(1)  # one non-PAD "token" per row
    return one_loss(log_probs, present, coef)


def same_vocabulary(a: Any, b: Any) -> bool:
    """Whether two tokenizers map ids to the same tokens (True when either is unknown)."""
    if a is None or b is None:
        return True
    if a.vocab_size != b.vocab_size:
        return False
    return all(a.id_to_token(i) == b.id_to_token(i) for i in range(a.vocab_size))


def load_demonstrator(path: str, ctx: AlgorithmContext, algorithm: str) -> Any:
    """The frozen, eval-mode model of checkpoint ``path`` on ``ctx.device``, checked to share the task's target
    vocabulary (token by token)."""
    from seqlab.inference import load_checkpoint_model

    loaded = load_checkpoint_model(path, ctx.device)
    model = loaded.model
    if model.vocab_size != ctx.vocab_size or not same_vocabulary(loaded.tgt_tokenizer, ctx.tgt_tokenizer):
        raise ValueError(
            f"{algorithm}: {path} has another target vocabulary than the task: train the NAT with "
            "the demonstrator's tokenizers (copy its run's tokenizers/ folder into run_dir before "
            "training)"
        )
    for p in model.parameters():
        p.requires_grad_(False)
    return model.eval()


def _require(model: Any, *methods: str, algorithm: str, arch: str) -> None:
    missing = [m for m in methods if not hasattr(model, m)]
    if missing:
        raise ValueError(
            f"algorithm {algorithm!r} trains model arch {arch!r} (it needs {missing}); got {type(model).__name__}"
        )


@dataclass
class NATOptions:
    label_smoothing: float | None = None  # null: train.label_smoothing
    length_loss_weight: float = 0.1
    init_from: str | None = None


@register("nat")
class NATAlgorithm(Algorithm):
    """NAT likelihood at the reference length plus the length-prediction loss; optionally initialised from a
    demonstrator checkpoint (``init_from``)."""

    Options = NATOptions
    summary = "non-autoregressive translation: likelihood at the reference length plus length prediction"

    def __init__(self, ctx: AlgorithmContext, options: Any = None):
        super().__init__(ctx, options)
        label_smoothing, init_from = self.options.label_smoothing, getattr(self.options, "init_from", None)
        self.label_smoothing = ctx.label_smoothing if label_smoothing is None else label_smoothing
        self.length_loss_weight = self.options.length_loss_weight
        self.__dict__["init_source"] = None  # the model whose weights start a fresh run (outside the module tree)
        if init_from:
            self.set_init_source(load_demonstrator(init_from, ctx, self.name), str(init_from))

    def set_init_source(self, model: Any, description: str) -> None:
        """Start a fresh run from ``model``'s weights (at the first step; a resumed run keeps its own)."""
        self.__dict__["init_source"] = model
        self.init_description = description
        if not hasattr(self, "initialized"):
            self.register_buffer("initialized", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def maybe_initialize(self, model: Any) -> None:
        """Copy the init source's matching tensors into ``model`` once per run (the flag is saved in checkpoints)."""
        source = self.__dict__["init_source"]
        if source is None or self.host_value("initialized"):  # read from the device once, not every step
            return
        if not init_from_teacher(model, source):
            raise ValueError(f"{self.name}: no tensor of {self.init_description} matches the NAT by name and shape")
        self.set_host_value("initialized", 1)

    def nat_terms(
        self, model: Any, batch: Any
    ) -> tuple[torch.Tensor, dict[str, Any], torch.Tensor, list[torch.Tensor]]:
        """(loss, stats, NAT targets [B, L], per-layer NAT action log-distributions)."""
        _require(model, "decode_with_actions", "length_logits", "length_to_class", algorithm=self.name, arch="nat")
        enc = model.encode(batch.src)
        body, lengths = nat_targets(batch.tgt)
        logits, log_pis = model.decode_with_actions(enc, lengths.clamp(min=1))
        logits = mask_special(logits)
        logits[..., EOS_ID] = float("-inf")
        log_probs = F.log_softmax(logits, dim=-1)
        coef = smoothed_targets(body, log_probs.size(-1), self.label_smoothing)
        nll = one_loss(finite(log_probs), body, coef)
        length_logits = model.length_logits(enc)
        length_cls = model.length_to_class(enc, lengths.clamp(min=1))
        length_loss = class_nll(length_logits, length_cls)
        loss = nll + self.length_loss_weight * length_loss
        with torch.no_grad():
            length_acc = length_logits.argmax(-1).eq(length_cls).float().mean()
        stats = {"nll": nll.detach(), "length_loss": length_loss.detach(), "length_acc": length_acc}
        return loss, stats, body, log_pis

    def loss(self, model: Any, batch: Any, progress: Progress) -> tuple[torch.Tensor, dict[str, Any]]:
        self.maybe_initialize(model)
        loss, stats, _, _ = self.nat_terms(model, batch)
        return loss, stats


@dataclass
class ImitateNATOptions:
    teacher: str | None = None
    imitation_weight: float = 0.001
    init_from_teacher: bool = True
    label_smoothing: float | None = None  # null: train.label_smoothing
    length_loss_weight: float = 0.1


@register("imitate_nat")
class ImitateNAT(NATAlgorithm):
    """imitate-NAT: NAT loss + λ2 Σ_layers Σ_t CE(π_AT, π_NAT) against a frozen ``dat`` demonstrator."""

    Options = ImitateNATOptions
    summary = "imitate-NAT: NAT loss plus imitation of a frozen dat demonstrator (Wei et al. 2019)"

    def __init__(self, ctx: AlgorithmContext, options: Any = None):
        super().__init__(ctx, options)
        teacher, imitation_weight = self.options.teacher, self.options.imitation_weight
        init_from_teacher = self.options.init_from_teacher
        if not teacher:
            raise ValueError("imitate_nat needs option 'teacher': the path of a trained 'dat' checkpoint")
        model = load_demonstrator(teacher, ctx, self.name)
        if not hasattr(model, "decode_with_actions") or not hasattr(model, "imitation"):
            raise ValueError(f"imitate_nat teacher {teacher} is a {type(model).__name__}, not a 'dat' model")
        self.teacher_path = str(teacher)
        self.__dict__["teacher"] = model  # frozen, outside the module tree: not saved, not optimised
        self.imitation_weight = imitation_weight
        self.init_teacher_weights = init_from_teacher
        self.register_buffer("initialized", torch.zeros((), dtype=torch.long))  # saved whether or not it is used
        if init_from_teacher:
            self.set_init_source(model, f"teacher {teacher}")

    @torch.no_grad()
    def teacher_actions(self, batch: Any) -> list[torch.Tensor]:
        """π_AT per layer [B, T, A] under teacher forcing on the reference."""
        teacher = self.__dict__["teacher"]
        _, log_pis = teacher.decode_with_actions(teacher.encode(batch.src), shift_right(batch.tgt))
        return [lp.float().exp() for lp in log_pis]

    def loss(self, model: Any, batch: Any, progress: Progress) -> tuple[torch.Tensor, dict[str, Any]]:
        self.maybe_initialize(model)
        loss, stats, body, student = self.nat_terms(model, batch)
        imitation = self.imitation_term(batch, body, student)
        stats["imitation_kl"] = imitation.detach()
        return loss + self.imitation_weight * imitation, stats

    def imitation_term(self, batch: Any, body: torch.Tensor, student: list[torch.Tensor]) -> torch.Tensor:
        """Σ_layers KL(π_AT ‖ π_NAT) averaged over the target tokens ``body`` (unweighted), from the NAT's
        per-layer action log-distributions ``student``."""
        if not student:
            raise ValueError("imitate_nat needs a NAT with imitation modules (model option imitation: true)")
        teacher = self.teacher_actions(batch)
        if len(teacher) != len(student) or teacher[0].size(-1) != student[0].size(-1):
            raise ValueError(
                f"imitate_nat: teacher has {len(teacher)} layers x {teacher[0].size(-1)} "
                f"actions, the NAT {len(student)} x {student[0].size(-1)}"
            )
        width = body.size(1)
        n_tokens = body.ne(PAD_ID).sum().clamp(min=1)
        return sum(
            imitation_kl(s[:, :width], t[:, :width], body, n_tokens) for s, t in zip(student, teacher, strict=True)
        )


@dataclass
class DATOptions:
    regularizer_weight: float = 0.001
    momentum: float = 0.9
    label_smoothing: float | None = None  # null: train.label_smoothing


@register("dat")
class DATAlgorithm(Algorithm):
    """MLE for the demonstrator plus λ1 × the action-distribution regularizer KL(π′ ‖ π)."""

    Options = DATOptions
    summary = "the delayed autoregressive demonstrator of imitate-NAT"

    def __init__(self, ctx: AlgorithmContext, options: Any = None):
        super().__init__(ctx, options)
        label_smoothing = self.options.label_smoothing
        self.label_smoothing = ctx.label_smoothing if label_smoothing is None else label_smoothing
        self.regularizer_weight, self.momentum = self.options.regularizer_weight, self.options.momentum
        self.register_buffer("usage", torch.empty(0))  # c: [layers, actions], created at the first step

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args: Any, **kwargs: Any) -> None:
        saved = state_dict.get(prefix + "usage")
        if saved is not None and saved.shape != self.usage.shape:
            self.usage = torch.empty_like(saved, device=self.usage.device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @torch.no_grad()
    def _update_usage(self, log_pis: list[torch.Tensor], tgt: torch.Tensor) -> None:
        sums, count = zip(*(batch_action_usage(lp, tgt) for lp in log_pis), strict=True)
        total = torch.cat([torch.stack(sums), count[0].reshape(1, 1).expand(1, sums[0].numel())])
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(total)
        mean = total[:-1] / total[-1:].clamp(min=1)
        self.usage = update_usage(self.usage, mean, self.momentum)

    def loss(self, model: Any, batch: Any, progress: Progress) -> tuple[torch.Tensor, dict[str, Any]]:
        _require(model, "decode_with_actions", algorithm=self.name, arch="dat")
        logits, log_pis = model.decode_with_actions(model.encode(batch.src), shift_right(batch.tgt))
        log_probs = F.log_softmax(mask_special(logits), dim=-1)
        coef = smoothed_targets(batch.tgt, log_probs.size(-1), self.label_smoothing)
        mle = one_loss(finite(log_probs), batch.tgt, coef)
        if not log_pis:
            return mle, {"nll": mle.detach()}
        if self.usage.numel() == 0:
            self.usage = torch.full(
                (len(log_pis), log_pis[0].size(-1)), 1.0 / log_pis[0].size(-1), device=log_pis[0].device
            )
        if model.training:
            self._update_usage(log_pis, batch.tgt)
        n_tokens = batch.tgt.ne(PAD_ID).sum().clamp(min=1)
        reg = sum(action_regularizer(lp, self.usage[i], batch.tgt, n_tokens) for i, lp in enumerate(log_pis))
        with torch.no_grad():
            perplexity = torch.exp(-torch.xlogy(self.usage, self.usage).sum(-1)).mean()
        return mle + self.regularizer_weight * reg, {
            "nll": mle.detach(),
            "action_kl": reg.detach(),
            "action_usage_perplexity": perplexity,
        }
