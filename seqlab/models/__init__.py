"""Models behind one protocol (:class:`seqlab.models.base.Seq2SeqModel`) and a registry by name
(:data:`MODELS`: each architecture with its config dataclass, whose fields are ``model.options``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from seqlab.models.base import Encoded, Seq2SeqModel, shift_right
from seqlab.models.lstm import AttentionalLSTM, LSTMConfig
from seqlab.models.transformer import Transformer, TransformerConfig
from seqlab.registry import Registry, load_plugins

#: the architectures by name, each registered with its config dataclass (the options, plus the vocabulary sizes)
MODELS: Registry[type] = Registry("model", "model architecture")
#: config fields that the task sets, not ``model.options``
VOCAB_FIELDS = ("src_vocab_size", "tgt_vocab_size")


def register_model(name: str, config_cls: type) -> Callable[[type], type]:
    """Class decorator: register architecture ``name``, built as ``cls(config_cls(src_vocab_size=...,
    tgt_vocab_size=..., **model.options))``."""
    return MODELS.register(name, config_cls)


register_model("transformer", TransformerConfig)(Transformer)
register_model("lstm", LSTMConfig)(AttentionalLSTM)


def load_model_plugins() -> None:
    """Import the modules that register further architectures (kept for old callers: every registry read does)."""
    load_plugins()


def build_model(arch: str, src_vocab_size: int, tgt_vocab_size: int, **options: Any) -> Seq2SeqModel:
    """Build a model by architecture name; unknown options or values of the wrong type raise a clear error."""
    checked = MODELS.parse_options(arch, options, "model.options", exclude=VOCAB_FIELDS, construct=False)
    config_cls = MODELS.options(arch)
    return MODELS[arch](config_cls(src_vocab_size=src_vocab_size, tgt_vocab_size=tgt_vocab_size, **checked))


__all__ = [
    "Encoded",
    "Seq2SeqModel",
    "shift_right",
    "build_model",
    "register_model",
    "MODELS",
    "Transformer",
    "TransformerConfig",
    "AttentionalLSTM",
    "LSTMConfig",
]
