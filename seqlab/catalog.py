"""What seqlab offers, by name: tasks, algorithms (with their options), architectures, rewards.

Feeds ``seqlab list ...`` and ``seqlab train --help-algorithm NAME``, and :func:`check_components`, which checks a
config's names and option keys against the registries before any data is loaded or any file written.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
from dataclasses import dataclass
from typing import Any

from seqlab.config import Config, ConfigError, did_you_mean

#: one line per built-in algorithm (plugins fall back to their docstring's first sentence)
ALGORITHM_SUMMARY = {
    "mle": "maximum likelihood with label smoothing",
    "noising": "data noising: target tokens replaced by unigram noise at rate gamma (Xie et al. 2017)",
    "raml": "reward-augmented ML: n-gram replacements of the reference weighted by exp(R/tau) (Norouzi et al. 2016)",
    "alpha_dimt": "alpha-divergence training: Hamming edits weighted by p^alpha exp(R/tau)^(1-alpha)",
    "spg": "softmax policy gradient: K model samples weighted by softmax(R/alpha) (Ding & Soricut 2017)",
    "pg": "REINFORCE / self-critical sequence training: K model samples, coefficient R - baseline",
    "mixer": "MIXER: a data prefix of m tokens, model samples after it; m shrinks (Ranzato et al. 2016)",
    "scheduled_sampling": "scheduled sampling: model tokens as decoder inputs, targets from the data",
    "interpolation": "the ERPO interpolation algorithm: every token from model / reward / data, annealed weights",
    "mixer_anneal": "MIXER inside the framework: data prefix, then model / reward tokens",
    "erpo": "ERPO with (reward, alpha, beta) given directly: the general reweighted-proposal algorithm",
    "vaml": "value-augmented ML: a critic's soft-Q targets on n-gram replacements (Dai et al. 2018)",
    "ac": "actor-critic (Bahdanau et al. 2017): ERAC with tau = 0",
    "erac": "entropy-regularised actor-critic (Dai et al. 2018)",
    "nat": "non-autoregressive translation: likelihood at the reference length plus length prediction",
    "dat": "the delayed autoregressive demonstrator of imitate-NAT",
    "imitate_nat": "imitate-NAT: NAT loss plus imitation of a frozen dat demonstrator (Wei et al. 2019)",
}

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
    from seqlab.algorithms.base import ALGORITHMS, load_plugins

    load_plugins()
    return dict(sorted(ALGORITHMS.items()))


def algorithm_summary(name: str) -> str:
    return ALGORITHM_SUMMARY.get(name) or _first_sentence(algorithms()[name].__doc__)


def algorithm_options(name: str) -> list[Option]:
    """The options ``algorithm.options`` accepts for ``name``: every keyword of the constructors along the class
    chain that forwards ``**options``, with its default (the subclass's where both declare one)."""
    from seqlab.algorithms.base import Algorithm

    found: dict[str, Option] = {}
    for cls in algorithms()[name].__mro__:
        if cls is Algorithm or not (isinstance(cls, type) and issubclass(cls, Algorithm)):
            break
        if "__init__" not in cls.__dict__:
            continue
        forwards = False
        for p in list(inspect.signature(cls.__init__).parameters.values())[2:]:  # self, ctx
            if p.kind is p.VAR_KEYWORD:
                forwards = True
            elif p.kind is not p.VAR_POSITIONAL and p.name not in found:
                annotation = p.annotation if isinstance(p.annotation, str) else getattr(p.annotation, "__name__", "")
                default = None if p.default is p.empty else p.default
                found[p.name] = Option(p.name, default, annotation, OPTION_HELP.get(p.name, ""))
        if not forwards:
            break
    return list(found.values())


def tasks() -> dict[str, Any]:
    import seqlab.tasks  # noqa: F401  (summarization, aeslc, captioning register themselves)
    from seqlab.data.tasks import TASKS

    return dict(sorted(TASKS.items()))


def models() -> dict[str, tuple[type, type]]:
    from seqlab.models import MODELS, load_model_plugins

    load_model_plugins()
    return dict(sorted(MODELS.items()))


def rewards() -> dict[str, Any]:
    import seqlab.tasks  # noqa: F401  (tasks may register rewards, e.g. multi-reference BLEU)
    from seqlab.rewards import REWARDS

    return dict(sorted(REWARDS.items()))


def listing(kind: str) -> list[tuple[str, str]]:
    """(name, one line) for every registered ``kind``: tasks, algorithms, models or rewards."""
    if kind == "tasks":
        return [(n, _first_sentence(fn.__doc__)) for n, fn in tasks().items()]
    if kind == "algorithms":
        return [(n, algorithm_summary(n)) for n in algorithms()]
    if kind == "models":
        out = []
        for n, (cls, cfg_cls) in models().items():
            opts = [f.name for f in dataclasses.fields(cfg_cls) if f.name not in ("src_vocab_size", "tgt_vocab_size")]
            out.append((n, f"{MODEL_SUMMARY.get(n) or _first_sentence(cls.__doc__)} options: {', '.join(opts)}"))
        return out
    if kind == "rewards":
        return [(n, _first_sentence(fn.__doc__)) for n, fn in rewards().items()]
    raise ValueError(f"unknown kind {kind!r}")


def algorithm_help(name: str) -> str:
    """``seqlab train --help-algorithm NAME``: what the algorithm is and its options, one line each."""
    names = algorithms()
    if name not in names:
        raise ConfigError(f"unknown algorithm {name!r}{did_you_mean(name, names)} (seqlab list algorithms)")
    lines = [f"{name}: {algorithm_summary(name)}", "", "options (algorithm.options.<name>=<value>; name = default  "
             "(type)  meaning):"]
    lines += [o.line() for o in algorithm_options(name)] or ["  (none)"]
    return "\n".join(lines)


def _check_option_keys(section: str, given: Any, known: list[str], owner: str, suffix: str = "") -> None:
    """A one-line ConfigError for the first key of ``given`` that ``known`` does not hold."""
    for key in given:
        if key not in known:
            hint = did_you_mean(key, known) or f" (options: {', '.join(sorted(known)) or 'none'})"
            raise ConfigError(f"{section}.{key}: unknown option {key!r} of {owner}{hint}{suffix}")


def check_components(cfg: Config) -> None:
    """Raise a one-line ConfigError for an unknown task, algorithm, algorithm option, architecture or model option;
    cheap (registries only): nothing is loaded or written."""
    task_names = tasks()
    if cfg.task.name not in task_names:
        raise ConfigError(f"task.name: unknown task {cfg.task.name!r}{did_you_mean(cfg.task.name, task_names)} "
                          f"(tasks: {', '.join(task_names)})")
    metrics = cfg.task.options.get("metrics")
    if metrics is not None:
        from seqlab.metrics import METRICS

        for metric in [metrics] if isinstance(metrics, str) else metrics:
            if metric not in METRICS:
                raise ConfigError(f"task.options.metrics: unknown metric {metric!r}{did_you_mean(metric, METRICS)} "
                                  f"(metrics: {', '.join(METRICS)})")
    algos = algorithms()
    name = cfg.algorithm.name
    if name not in algos:
        raise ConfigError(f"algorithm.name: unknown algorithm {name!r}{did_you_mean(name, algos)} "
                          f"(algorithms: {', '.join(algos)})")
    _check_option_keys("algorithm.options", cfg.algorithm.options, [o.name for o in algorithm_options(name)],
                       f"algorithm {name!r}", f"; see seqlab train --help-algorithm {name}")
    archs = models()
    arch = cfg.model.arch
    if arch not in archs:
        raise ConfigError(f"model.arch: unknown architecture {arch!r}{did_you_mean(arch, archs)} "
                          f"(architectures: {', '.join(archs)})")
    known = [f.name for f in dataclasses.fields(archs[arch][1]) if f.name not in ("src_vocab_size", "tgt_vocab_size")]
    _check_option_keys("model.options", cfg.model.options, known, f"architecture {arch!r}")


def check_config(cfg: Config) -> None:
    """Every check that needs no data: value rules, plain YAML data, and the names against the registries."""
    from seqlab.config import check_config_values

    check_config_values(cfg)
    check_components(cfg)
