"""Configs: YAML files mapped onto dataclasses; every key can be overridden by ``section.key=value``."""

from __future__ import annotations

import dataclasses
import re
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


@dataclass
class DecodeConfig:
    beam_size: int = 5
    length_penalty: float = 0.6
    max_len_a: float = 1.5
    max_len_b: int = 10
    max_len: int = 256
    batch_size: int = 128  # sentences per decoding batch


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
    pass


def _build(cls: type, data: dict[str, Any], where: str) -> Any:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        if key not in fields:
            raise ConfigError(f"{where}: unknown key {key!r}; known keys: {sorted(fields)}")
        sub = _dataclass_type(fields[key])
        if sub is not None and isinstance(value, dict):
            value = _build(sub, value, f"{where}.{key}")
        elif sub is None:
            value = _checked(value, str(fields[key].type), f"{where}.{key}")
        if key == "betas" and isinstance(value, list):
            value = tuple(value)
        kwargs[key] = value
    return cls(**kwargs)


def _checked(value: Any, annotation: str, where: str) -> Any:
    """``value`` as the scalar type ``annotation`` names (``int``, ``float | None``, ...), or a ConfigError.
    Integers pass as floats and whole floats as integers; other annotations are not checked."""
    kinds = {k.strip() for k in annotation.split("|")}
    if value is None and "None" in kinds:
        return None
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if "bool" in kinds and isinstance(value, bool):
        return value
    if "float" in kinds and number:
        return float(value)
    if "int" in kinds and number and float(value).is_integer():
        return int(value)
    if "str" in kinds and isinstance(value, str):
        return value
    if not kinds & {"bool", "float", "int", "str"}:
        return value
    raise ConfigError(f"{where}: expected {annotation}, got {value!r} ({type(value).__name__})")


_SECTIONS = {"task": TaskConfig, "model": ModelConfig, "algorithm": AlgorithmConfig,
             "train": TrainConfig, "decode": DecodeConfig}


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


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``a.b.c=value`` overrides to a nested dict (creating option sub-dicts as needed)."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key=value")
        key, raw = item.split("=", 1)
        node = data
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {part!r} is not a section")
        node[parts[-1]] = parse_value(raw)
    return data


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
    """The mapping at the top of a YAML file ({} for None), with clear errors naming the file."""
    if path is None:
        return {}
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config file not found: {path}")
    with open(path, encoding="utf-8") as f:
        try:
            data = yaml.safe_load(f) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: invalid YAML: {e}") from e
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
    return _numbers_as_floats(data)


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Read a YAML config (or start from defaults), apply overrides, validate into a :class:`Config`."""
    data = apply_overrides(read_yaml_mapping(path), overrides or [])
    return _build(Config, data, str(path) if path else "config")


def config_from_dict(data: dict[str, Any]) -> Config:
    return _build(Config, data, "config")


def save_config(cfg: Config, path: str | Path) -> None:
    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump(cfg.to_dict(), f, sort_keys=False)
