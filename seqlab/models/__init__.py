"""Models behind one protocol (:class:`seqlab.models.base.Seq2SeqModel`) and a registry by name."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from seqlab.models.base import Encoded, Seq2SeqModel, shift_right
from seqlab.models.lstm import AttentionalLSTM, LSTMConfig
from seqlab.models.transformer import Transformer, TransformerConfig

MODELS: dict[str, tuple[type, type]] = {
    "transformer": (Transformer, TransformerConfig),
    "lstm": (AttentionalLSTM, LSTMConfig),
}


def register_model(name: str, config_cls: type) -> Callable[[type], type]:
    def deco(cls: type) -> type:
        MODELS[name] = (cls, config_cls)
        return cls
    return deco


#: modules that register further architectures (NAT / DAT, the captioning NIC), imported on first need
MODEL_PLUGIN_MODULES = ["seqlab.nat.models", "seqlab.models.captioning", "seqlab.hf.model"]


def load_model_plugins() -> None:
    from seqlab.utils import import_plugins

    import_plugins(MODEL_PLUGIN_MODULES)


def build_model(arch: str, src_vocab_size: int, tgt_vocab_size: int, **options: Any) -> Seq2SeqModel:
    """Build a model by architecture name; unknown options raise a clear error."""
    if arch not in MODELS:
        load_model_plugins()
    if arch not in MODELS:
        raise ValueError(f"unknown model architecture {arch!r}; choose from {sorted(MODELS)}")
    cls, cfg_cls = MODELS[arch]
    known = {f.name for f in dataclasses.fields(cfg_cls)}
    unknown = set(options) - known
    if unknown:
        raise ValueError(f"unknown option(s) {sorted(unknown)} for model {arch!r}; known: {sorted(known)}")
    return cls(cfg_cls(src_vocab_size=src_vocab_size, tgt_vocab_size=tgt_vocab_size, **options))


__all__ = ["Encoded", "Seq2SeqModel", "shift_right", "build_model", "register_model", "MODELS",
           "Transformer", "TransformerConfig", "AttentionalLSTM", "LSTMConfig"]
