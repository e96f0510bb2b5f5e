"""What seqlab offers, by name: tasks, algorithms (with their options), architectures, rewards.

Feeds ``seqlab list ...`` and ``seqlab train --help-algorithm NAME``, and :func:`check_components`, which checks a
config's names and option keys against the registries before any data is loaded or any file written.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any

from seqlab.config import Config, ConfigError, did_you_mean

#: one line per algorithm option (the same name means the same thing in every algorithm)
OPTION_HELP = {
    "label_smoothing": "label smoothing of the likelihood terms (null: train.label_smoothing)",
    "gamma": "probability that a target token is replaced by unigram noise",
    "reward": "sequence reward by name: bleu, rouge, rouge_l, neg_edit, neg_hamming, delta (seqlab list rewards)",
    "tau": "temperature of the reward: weights exp(R / tau); smaller is sharper",
    "alpha": "weight of the model's own probability (RAML-family); SPG: softmax temperature; may follow a schedule",
    "beta": "temperature of the reward term of the ERPO target",
    "num_samples": "proposals (samples, edits) per source, the reference included where the method includes it",
    "proposal": "how proposals are drawn: ngram (replacements), hamming (edits) or model (samples)",
    "max_n": "longest replaced n-gram of the ngram proposal",
    "max_edit_frac": "at most this share of the positions edited by the hamming proposal",
    "max_edits": "at most this many edits (null: max_edit_frac decides)",
    "proposal_correction": "auto / none: self-normalised weights; exact: divide by the proposal's density",
    "length_normalize": "use the length-normalised model probability (geometric mean over tokens)",
    "reward_scale": "multiplier on the reward (interpolation: the log-odds c of the reward draw)",
    "baseline": "greedy (self-critical) or mean (leave-one-out over the K samples)",
    "temperature": "sampling temperature of the model samples",
    "mle_weight": "weight of an added MLE term (0: none)",
    "max_len_a": "samples end at max_len_a * source length + max_len_b tokens",
    "max_len_b": "see max_len_a",
    "prefix": "the data prefix m: a number or a schedule (e.g. {start: .., end: .., every: ..})",
    "tail": "shares of model and reward tokens after the prefix",
    "lambdas": "weights (model, reward, data) of each token's source, or their schedule; null: the paper's",
    "reward_unit": "range: reward increments divided by their range at each prefix; raw: as they are",
    "reward_draw": "reward: draw tokens by exp(c * increment); uniform: uniformly",
    "model_temperature": "temperature of the model component's draws",
    "k": "scheduled sampling's decay constant k (null: fitted to the step budget)",
    "truth_prob": "probability of feeding the true token: a number or a schedule (null: k/(k+exp(step/k)))",
    "sample": "feed sampled model tokens (true) or the argmax (false)",
    "kappa": "weight of the critic's targets against the data in VAML",
    "q_steps": "critic-only steps before the model trains",
    "weight_tau": "temperature of the VAML target weights (null: tau)",
    "future_entropy": "include the entropy of future tokens in the soft-Q target",
    "target_beta": "update rate of the target critic (Polyak averaging)",
    "target_network": "use a delayed target critic",
    "var_weight": "weight of the critic's variance penalty",
    "var_reduction": "how the variance penalty is reduced: mean or sum",
    "actor_pretrain_steps": "MLE steps of the actor before the critic phase",
    "critic_pretrain_steps": "cap on the critic-only phase in steps (it ends earlier on validation patience)",
    "critic_weight": "weight of the critic's loss in the joint phase",
    "other_actions_weight": "weight of the critic's loss on actions not taken",
    "joint_critic_lr_scale": "critic learning rate / actor learning rate in the joint phase",
    "joint_adam_beta1": "Adam beta1 in the joint phase",
    "critic_options": "the critic model's options (d_model, layers, ...)",
    "scale_by_length": "scale the sequence reward by the reference length",
    "critic_arch": "architecture of the critic: transformer or lstm",
    "critic_reads_source": "the critic also reads the source sentence",
    "source_vocab_size": "the critic's source vocabulary (null: the task's)",
    "critic_from": "a checkpoint whose critic is loaded",
    "critic_lr_scale": "critic learning rate / model learning rate in the critic-only phase",
    "critic_head_init": "initial value of the critic's Q head",
    "critic_patience": "critic validations without improvement that end the critic-only phase",
    "critic_eval_every": "steps between the critic's validations",
    "critic_eval_max_examples": "validation examples of each critic validation",
    "regularizer_weight": "weight of the action-distribution regulariser KL(pi' || pi)",
    "momentum": "momentum of the demonstrator's moving average",
    "teacher": "the dat demonstrator's checkpoint (imitate_nat)",
    "imitation_weight": "weight of the imitation term",
    "init_from_teacher": "start from the demonstrator's weights",
    "length_loss_weight": "weight of the length-prediction loss",
    "init_from": "a checkpoint the NAT initialises from",
}


@dataclass
class Option:
    name: str
    default: Any
    annotation: str
    help: str

    def line(self) -> str:
        default = "null" if self.default is None else self.default
        return f"  {self.name} = {default}  ({self.annotation})  {self.help}".rstrip()


#: one line for built-in architectures whose docstrings do not open with one
MODEL_SUMMARY = {
    "transformer": "pre-norm Transformer: tied embeddings, SDPA attention, KV cache.",
    "lstm": "attentional LSTM: bidirectional encoder, Luong attention, input feeding.",
}


def _first_sentence(doc: str | None) -> str:
    """The docstring's first sentence without reST markup."""
    text = " ".join((doc or "").split())
    text = re.sub(r":\w+:`~?([^`]*)`", r"\1", text).replace("``", "").replace("**", "")
    match = re.search(r"(?<!\bal)\.(\s+(?=[A-Z(])|$)", text)
    return text[: match.start() + 1] if match else text


def algorithms() -> dict[str, type]:
    from seqlab.algorithms.base import ALGORITHMS

    return dict(ALGORITHMS.items())


def algorithm_summary(name: str) -> str:
    cls = algorithms()[name]
    return cls.summary or _first_sentence(cls.__doc__)


def options_of(options_cls: type, exclude: tuple[str, ...] = ()) -> list[Option]:
    """The fields of an options dataclass as :class:`Option` lines (help: the field's ``metadata["help"]``, else
    :data:`OPTION_HELP`)."""
    from seqlab.config import type_name
    from seqlab.registry import option_fields

    out = []
    for name, (f, tp) in option_fields(options_cls, exclude).items():
        default = (
            f.default
            if f.default is not dataclasses.MISSING
            else (f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
        )
        out.append(Option(name, default, type_name(tp), f.metadata.get("help", OPTION_HELP.get(name, ""))))
    return out


def algorithm_options(name: str) -> list[Option]:
    """The options ``algorithm.options`` accepts for ``name``: the fields of its options dataclass."""
    from seqlab.algorithms.base import ALGORITHMS

    options = ALGORITHMS.options(name)
    return options_of(options) if options is not None else []


def tasks() -> dict[str, Any]:
    from seqlab.tasks import TASKS

    return dict(TASKS.items())


MODEL_VOCAB_FIELDS = ("src_vocab_size", "tgt_vocab_size")


def models() -> dict[str, tuple[type, type]]:
    """Architectures by name: (model class, its config dataclass)."""
    from seqlab.models import MODELS

    return {name: (MODELS[name], MODELS.options(name)) for name in MODELS}


def rewards() -> dict[str, Any]:
    from seqlab.rewards import REWARDS

    return dict(REWARDS.items())


def listing(kind: str) -> list[tuple[str, str]]:
    """(name, one line) for every registered ``kind``: tasks, algorithms, models or rewards."""
    if kind == "tasks":
        return [(n, _first_sentence(fn.__doc__)) for n, fn in tasks().items()]
    if kind == "algorithms":
        return [(n, algorithm_summary(n)) for n in algorithms()]
    if kind == "models":
        out = []
        for n, (cls, cfg_cls) in models().items():
            opts = [f.name for f in dataclasses.fields(cfg_cls) if f.name not in MODEL_VOCAB_FIELDS] if cfg_cls else []
            line = getattr(cls, "summary", "") or MODEL_SUMMARY.get(n) or _first_sentence(cls.__doc__)
            out.append((n, f"{line} options: {', '.join(opts)}"))
        return out
    if kind == "rewards":
        from seqlab.rewards.text import TEXT_REWARDS

        text = [
            (
                n,
                f"text reward{'' if r.decomposes else ', does not decompose over tokens'}: "
                f"{_first_sentence(r.fn.__doc__)}",
            )
            for n, r in TEXT_REWARDS.items()
        ]
        return [(n, _first_sentence(fn.__doc__)) for n, fn in rewards().items()] + text
    raise ValueError(f"unknown kind {kind!r}")


def algorithm_help(name: str) -> str:
    """``seqlab train --help-algorithm NAME``: what the algorithm is and its options, one line each."""
    names = algorithms()
    if name not in names:
        raise ConfigError(f"unknown algorithm {name!r}{did_you_mean(name, names)} (seqlab list algorithms)")
    lines = [
        f"{name}: {algorithm_summary(name)}",
        "",
        "options (algorithm.options.<name>=<value>; name = default  (type)  meaning):",
    ]
    lines += [o.line() for o in algorithm_options(name)] or ["  (none)"]
    return "\n".join(lines)


def check_components(cfg: Config) -> None:
    """Raise a one-line ConfigError for an unknown task, algorithm, architecture or metric, or an option of one of
    them that is unknown, of the wrong type or out of range (its options dataclass's checks); cheap (registries
    only): nothing is loaded or written."""
    from seqlab.algorithms.base import ALGORITHMS
    from seqlab.models import MODELS
    from seqlab.tasks import TASKS

    for section, registry, name in (
        ("task.name", TASKS, cfg.task.name),
        ("algorithm.name", ALGORITHMS, cfg.algorithm.name),
        ("model.arch", MODELS, cfg.model.arch),
    ):
        if name not in registry:
            kind = "architecture" if registry is MODELS else registry.kind
            raise ConfigError(
                f"{section}: unknown {kind} {name!r}{did_you_mean(name, registry)} ({kind}s: {', '.join(registry)})"
            )
    metrics = cfg.task.options.get("metrics")
    if metrics is not None:
        from seqlab.metrics import METRICS

        for metric in [metrics] if isinstance(metrics, str) else metrics:
            if metric not in METRICS:
                raise ConfigError(
                    f"task.options.metrics: unknown metric {metric!r}{did_you_mean(metric, METRICS)} "
                    f"(metrics: {', '.join(METRICS)})"
                )
    TASKS.parse_options(cfg.task.name, cfg.task.options, "task.options")
    ALGORITHMS.parse_options(
        cfg.algorithm.name,
        cfg.algorithm.options,
        "algorithm.options",
        hint=f"; see seqlab train --help-algorithm {cfg.algorithm.name}",
    )
    MODELS.parse_options(
        cfg.model.arch, cfg.model.options, "model.options", exclude=MODEL_VOCAB_FIELDS, construct=False
    )


def check_config(cfg: Config) -> None:
    """Every check that needs no data: value rules, plain YAML data, and the names against the registries."""
    from seqlab.config import check_config_values

    check_config_values(cfg)
    check_components(cfg)
