"""Configs: YAML files mapped onto dataclasses; every key can be overridden by ``section.key=value``."""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import operator
import re
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


@dataclass
class TaskConfig:
    name: str = "g2p-cmudict"
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class ModelConfig:
    arch: str = "transformer"
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class AlgorithmConfig:
    name: str = "mle"
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrainConfig:
    seed: int = 1
    device: str = "auto"
    max_tokens: int = 4096  # padded tokens per batch (per GPU)
    max_sentences: int | None = None
    max_len: int | None = 256  # longer training examples are dropped
    max_epochs: int = 20
    max_steps: int | None = None
    max_minutes: float | None = None  # wall-clock training budget
    optimizer: str = "adamw"  # adamw | adam | sgd
    lr: float = 5e-4
    betas: tuple[float, float] = (0.9, 0.98)
    weight_decay: float = 0.0
    scheduler: str = "inverse_sqrt"  # inverse_sqrt | constant | linear | cosine
    warmup_steps: int = 4000
    label_smoothing: float = 0.1
    # padded target positions per pass of the one loss on proposals (K samples, edits): larger proposal sets
    # are scored and back-propagated in chunks, same gradient, bounded memory (seqlab.erpo.engine); null: one pass;
    # 4x MLE's 8192-token batch, so MLE-sized passes never chunk
    loss_chunk_tokens: int | None = 32768
    clip_norm: float | None = 1.0
    bf16: bool = True  # autocast on CUDA only
    compile: bool = False
    # the step's forward and backward replayed as a CUDA graph per batch-shape bucket (seqlab.train.graphed):
    # algorithms with a capturable loss (MLE), on CUDA (under DDP with the gradient all-reduce); elsewhere eagerly.
    # null (auto): on for a capturable algorithm training seqlab's Transformer on one GPU (1.85x eager on an H200)
    cuda_graphs: bool | None = None
    # cuda_graphs: batch widths rounded up to a multiple of this (smaller: less padding, more buckets to capture)
    cuda_graphs_width: int = 2
    eval_every_steps: int | None = None  # None: once per epoch
    eval_beam_size: int = 1  # decoding used for validation during training
    eval_max_examples: int | None = None
    patience: int | None = None  # early stopping, in evaluations without improvement
    log_every_steps: int = 50
    save_every_steps: int | None = None  # extra checkpoints between evaluations
    init_from: str | None = None  # start from this checkpoint's model weights (e.g. an MLE model)
    # what init_from continues: "model" (its weights; a fresh optimizer and lr schedule) or "full" (also its
    # optimizer moments and lr schedule position; where it has none, warm up over init_warmup_steps)
    init_state: str = "model"
    init_warmup_steps: int | None = None  # init_state=full without optimizer state: None = 10 % of max_steps
    allow_short_schedules: bool = False  # train although a schedule passes < 3 stages in the budget
    resume: bool = True  # continue from run_dir/checkpoint_last.pt when present
    tokenizers_from: str | None = None  # reuse another run's tokenizers folder (e.g. a teacher's)
    progress_bar: bool = True
    tensorboard: bool = True
    profile_steps: tuple[int, int] | None = None  # [first, last] steps to record with torch.profiler (run_dir/profile)


@dataclass
class DecodeConfig:
    beam_size: int = 5
    length_penalty: float = 0.6
    max_len_a: float = 1.5
    max_len_b: int = 10
    max_len: int = 256
    batch_size: int = 128  # sentences per decoding batch
    # compile the searches' decoder step on a GPU (torch.compile: fused kernels; batch-1 greedy 2.5-3.0 ms against
    # about 4 ms on an H200, a new process's first decode 20-47 s against 1 s; 1-4 of 1,000 greedy hypotheses change)
    compile: bool = False


@dataclass
class Config:
    run_dir: str = "runs/default"
    task: TaskConfig = field(default_factory=TaskConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    algorithm: AlgorithmConfig = field(default_factory=AlgorithmConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    decode: DecodeConfig = field(default_factory=DecodeConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class ConfigError(ValueError):
    """A problem with the user's configuration: reported as one line (``seqlab: error: ...``), exit code 2."""


def did_you_mean(word: str, choices: Any) -> str:
    """``"; did you mean 'x'?"`` for the closest of ``choices`` to ``word``, or ``""``."""
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


#: where each dotted key of a config came from ("command-line override 'train.lr=2'"); keys not listed: the file
Origins = dict[str, str]


def _source(origins: Origins, dotted: str, where: str) -> str:
    """The origin of ``dotted`` (or of its nearest listed parent), else ``where`` (the file)."""
    parts = dotted.split(".")
    for n in range(len(parts), 0, -1):
        if ".".join(parts[:n]) in origins:
            return origins[".".join(parts[:n])]
    below = [o for k, o in origins.items() if k.startswith(dotted + ".")]
    return below[0] if below else where


#: names people reach for first, and the key seqlab uses
ALIASES = {
    "learning_rate": "lr",
    "lerning_rate": "lr",
    "batch_size": "max_tokens",
    "epochs": "max_epochs",
    "steps": "max_steps",
    "num_epochs": "max_epochs",
    "max_updates": "max_steps",
    "minutes": "max_minutes",
    "beam": "beam_size",
    "warmup": "warmup_steps",
    "smoothing": "label_smoothing",
}


def _suggest_key(key: str, fields: Any) -> str:
    if key in ALIASES and ALIASES[key] in fields:
        return f"; did you mean {ALIASES[key]!r}?"
    return did_you_mean(key, fields)


def _build(cls: type, data: dict[str, Any], where: str, origins: Origins | None = None, prefix: str = "") -> Any:
    origins = origins or {}
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if key not in fields:
            section = f" in section {prefix[:-1]!r}" if prefix else ""
            hint = _suggest_key(key, fields) or f" (known keys: {', '.join(sorted(fields))})"
            raise ConfigError(f"{_source(origins, dotted, where)}: unknown key {key!r}{section}{hint}")
        sub = _dataclass_type(fields[key])
        if sub is not None and isinstance(value, dict):
            value = _build(sub, value, where, origins, f"{dotted}.")
        elif sub is not None:
            raise ConfigError(
                f"{_source(origins, dotted, where)}: {dotted!r} is a section (a mapping of keys), got {value!r}"
            )
        else:
            try:
                value = _checked(value, str(fields[key].type), dotted)
                plain_data(value, dotted)
                check_value(dotted, value)
            except ConfigError as e:
                raise ConfigError(f"{_source(origins, dotted, where)}: {e}") from None
        if key == "betas" and isinstance(value, list):
            value = tuple(value)
        kwargs[key] = value
    return cls(**kwargs)


# --------------------------------------------------------------------------------------------- type checks
def type_name(tp: Any) -> str:
    """An annotation as it reads in an error message (``int``, ``float | None``)."""
    if tp is type(None):
        return "None"
    if isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "")


#: what a value that does not fit a type becomes in :func:`_fit`
_MISMATCH = object()


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


#: scalar types: the value as that type, or ``_MISMATCH``
_SCALAR_FITS: tuple[tuple[Any, Callable[[Any], Any]], ...] = (
    (type(None), lambda v: None if v is None else _MISMATCH),
    (None, lambda v: None if v is None else _MISMATCH),
    (bool, lambda v: v if isinstance(v, bool) else _MISMATCH),
    (float, lambda v: float(v) if _is_number(v) else _MISMATCH),
    (int, lambda v: int(v) if _is_number(v) and float(v).is_integer() else _MISMATCH),
    (str, lambda v: v if isinstance(v, str) else _MISMATCH),
)


def check_type(value: Any, tp: Any, where: str) -> Any:
    """``value`` as type ``tp`` (a resolved annotation), or a ConfigError naming ``where``.  Integers pass as
    floats, whole floats as integers, lists as tuples; ``Any`` and unknown types pass unchecked."""
    checked = _fit(value, tp)
    if checked is _MISMATCH:
        raise ConfigError(f"{where}: expected {type_name(tp)}, got {value!r} ({type(value).__name__})")
    return checked


def _fit(value: Any, tp: Any) -> Any:
    """``value`` as type ``tp``, or ``_MISMATCH``: a union takes its first member that fits."""
    origin = typing.get_origin(tp)
    if tp is Any or tp is object:
        return value
    if origin in (typing.Union, types.UnionType):
        fits = (_fit(value, arg) for arg in typing.get_args(tp))
        return next((f for f in fits if f is not _MISMATCH), _MISMATCH)
    if origin is typing.Literal:
        return value if value in typing.get_args(tp) else _MISMATCH
    for scalar, fit in _SCALAR_FITS:
        if tp is scalar:
            return fit(value)
    if tp in (list, tuple) or origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            return _MISMATCH
        return tuple(value) if (tp is tuple or origin is tuple) else list(value)
    if tp is dict or origin is dict:
        return value if isinstance(value, dict) else _MISMATCH
    return value


#: the scalar annotations of config fields (each is ``X`` or ``X | None``), as types
_SCALARS = {"int": int, "float": float, "bool": bool, "str": str, "None": type(None)}


def _checked(value: Any, annotation: str, where: str) -> Any:
    """``value`` as the scalar type ``annotation`` names (``int``, ``float | None``, ...), by the one type check
    of :func:`check_type` (integers pass as floats, whole floats as integers), or a ConfigError;
    other annotations are not checked."""
    kinds = [k.strip() for k in annotation.split("|")]
    if not set(kinds) <= _SCALARS.keys() or kinds == ["None"]:
        return value
    return check_type(value, functools.reduce(operator.or_, (_SCALARS[k] for k in kinds)), where)


def plain_data(value: Any, where: str) -> None:
    """Raise ConfigError unless ``value`` is YAML data (numbers, strings, booleans, null, lists, mappings)."""
    if value is None or isinstance(value, (str, bool, int, float)):
        return
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            plain_data(v, f"{where}[{i}]")
        return
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                raise ConfigError(f"{where}: keys must be strings, got {k!r}")
            plain_data(v, f"{where}.{k}")
        return
    kind = "a callable" if callable(value) else f"a {type(value).__name__}"
    raise ConfigError(
        f"{where}: {kind} ({value!r:.60}) is not a config value; configs hold YAML data (numbers, "
        "strings, booleans, lists, mappings) so that a run can be saved and resumed: register the "
        "object under a name and pass the name"
    )


def _positive(v: Any) -> bool:
    return v is None or (not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v) and v > 0)


def _at_least(low: float) -> Any:
    return lambda v: v is None or (not isinstance(v, bool) and isinstance(v, (int, float)) and v >= low)


_DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")
#: value rules of the built-in sections: dotted key -> (test, what the value must be)
VALUE_RULES: dict[str, tuple[Any, str]] = {
    "train.max_tokens": (_positive, "a positive number of padded tokens per batch"),
    "train.max_sentences": (_positive, "positive (or null)"),
    "train.max_len": (_at_least(2), "at least 2 (or null)"),
    "train.max_epochs": (_at_least(1), "at least 1"),
    "train.max_steps": (_positive, "positive (or null)"),
    "train.max_minutes": (_positive, "positive (or null)"),
    "train.optimizer": (lambda v: v in ("adamw", "adam", "sgd"), "one of adamw, adam, sgd"),
    "train.lr": (lambda v: _at_least(0)(v) and math.isfinite(v), "a learning rate >= 0"),
    "train.betas": (
        lambda v: (
            isinstance(v, (list, tuple)) and len(v) == 2 and all(isinstance(b, (int, float)) and 0 <= b < 1 for b in v)
        ),
        "two numbers in [0, 1)",
    ),
    "train.weight_decay": (_at_least(0), "at least 0"),
    "train.scheduler": (
        lambda v: v in ("inverse_sqrt", "constant", "linear", "cosine"),
        "one of inverse_sqrt, constant, linear, cosine",
    ),
    "train.warmup_steps": (_at_least(0), "at least 0"),
    "train.label_smoothing": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "train.loss_chunk_tokens": (_positive, "positive (or null)"),
    "train.clip_norm": (_positive, "positive (or null: no clipping)"),
    "train.eval_every_steps": (_positive, "positive (or null: once per epoch)"),
    "train.cuda_graphs_width": (_at_least(1), "at least 1"),
    "train.eval_beam_size": (_at_least(1), "at least 1"),
    "train.eval_max_examples": (_positive, "positive (or null: all)"),
    "train.patience": (_at_least(1), "at least 1 (or null: no early stopping)"),
    "train.log_every_steps": (_at_least(1), "at least 1"),
    "train.save_every_steps": (_positive, "positive (or null)"),
    "train.profile_steps": (
        lambda v: (
            v is None
            or (
                isinstance(v, (list, tuple))
                and len(v) == 2
                and all(isinstance(s, int) and not isinstance(s, bool) for s in v)
                and 1 <= v[0] <= v[1]
            )
        ),
        "two step numbers [first, last] with 1 <= first <= last (or null)",
    ),
    "train.init_state": (lambda v: v in ("model", "full"), "one of model, full"),
    "train.init_warmup_steps": (_at_least(1), "at least 1 (or null)"),
    "train.device": (lambda v: bool(_DEVICE.fullmatch(v)), "auto, cpu, cuda, cuda:N or mps"),
    "decode.beam_size": (_at_least(1), "at least 1"),
    "decode.length_penalty": (_at_least(0), "at least 0"),
    "decode.max_len_a": (_at_least(0), "at least 0"),
    "decode.max_len_b": (_at_least(0), "at least 0"),
    "decode.max_len": (_at_least(2), "at least 2"),
    "decode.batch_size": (_at_least(1), "at least 1"),
}


def check_value(dotted: str, value: Any) -> None:
    """Raise ConfigError when ``value`` breaks the rule of ``dotted`` (:data:`VALUE_RULES`)."""
    rule = VALUE_RULES.get(dotted)
    if rule is not None and not rule[0](value):
        raise ConfigError(f"{dotted} must be {rule[1]}, got {value!r}")


def check_config_values(cfg: Config) -> None:
    """The checks :func:`load_config` makes, on a :class:`Config` built or changed in Python."""
    for section in ("run_dir", *_SECTIONS):
        node = getattr(cfg, section)
        if section == "run_dir":
            plain_data(node, "run_dir")
            if not isinstance(node, str) or not node:
                raise ConfigError(f"run_dir must be a non-empty path, got {node!r}")
            continue
        for f in dataclasses.fields(node):
            value, dotted = getattr(node, f.name), f"{section}.{f.name}"
            plain_data(value, dotted)
            if f.name == "options" and not isinstance(value, dict):
                raise ConfigError(f"{dotted} must be a mapping, got {value!r}")
            check_value(dotted, value)


_SECTIONS = {
    "task": TaskConfig,
    "model": ModelConfig,
    "algorithm": AlgorithmConfig,
    "train": TrainConfig,
    "decode": DecodeConfig,
}


def _dataclass_type(f: dataclasses.Field) -> type | None:
    return _SECTIONS.get(f.name) if f.name in _SECTIONS else None


#: numbers like 2e-05 or 1E3, which YAML 1.1 (PyYAML) leaves as strings without a decimal point
SCIENTIFIC = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def parse_value(text: str) -> Any:
    """A CLI value parsed as YAML (numbers, booleans, lists, null); plain text otherwise."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if isinstance(value, str) and SCIENTIFIC.fullmatch(value.strip()):  # YAML 1.1 reads 2e-05 as text
        return float(value)
    return value


def apply_overrides(data: dict[str, Any], overrides: list[str], origins: Origins | None = None) -> dict[str, Any]:
    """Apply ``a.b.c=value`` overrides to a nested dict (creating option sub-dicts as needed); ``origins``, when
    given, records each overridden key's override (so that errors name it rather than the YAML file)."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(
                f"command-line override {item!r} is not of the form section.key=value (e.g. train.lr=0.001)"
            )
        key, raw = item.split("=", 1)
        parts = key.strip().split(".")
        if not all(parts):
            raise ConfigError(f"command-line override {item!r}: {key.strip()!r} is not a dotted key")
        set_dotted(data, parts, parse_value(raw), f"command-line override {item!r}")
        if origins is not None:
            origins[".".join(parts)] = f"command-line override {item!r}"
    return data


def set_dotted(data: dict[str, Any], parts: list[str], value: Any, where: str) -> None:
    """``data[a][b][c] = value`` for ``parts`` [a, b, c], creating sections as needed; a step through a value that is
    not a section is a ConfigError naming ``where``."""
    node = data
    for i, part in enumerate(parts[:-1]):
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"{where}: {'.'.join(parts[: i + 1])!r} is not a section")
    node[parts[-1]] = value


def _numbers_as_floats(node: Any) -> Any:
    """YAML 1.2 numbers: ``1e-3`` (which PyYAML's YAML 1.1 leaves as text) becomes a float, at any depth."""
    if isinstance(node, dict):
        return {k: _numbers_as_floats(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_numbers_as_floats(v) for v in node]
    if isinstance(node, str) and SCIENTIFIC.fullmatch(node.strip()):
        return float(node)
    return node


def read_yaml_mapping(path: str | Path | None) -> dict[str, Any]:
    """The mapping at the top of a YAML file ({} for None), with clear one-line errors naming the file."""
    if path is None:
        return {}
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}" if not path.exists() else f"{path}: not a file")
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"{where}: invalid YAML: {problem}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text ({e.reason})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
    return _numbers_as_floats(data)


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Read a YAML config (or start from defaults), apply overrides, validate into a :class:`Config`.
    Errors name the file, or the command-line override a bad key or value came from."""
    origins: Origins = {}
    data = apply_overrides(read_yaml_mapping(path), overrides or [], origins)
    return _build(Config, data, str(path) if path else "config", origins)


def config_from_dict(data: dict[str, Any], origins: Origins | None = None, where: str = "config") -> Config:
    return _build(Config, data, where, origins)


def save_config(cfg: Config, path: str | Path) -> None:
    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump(cfg.to_dict(), f, sort_keys=False)
