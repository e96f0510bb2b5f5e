"""``train.compile``: the Transformer's layers compiled with ``torch.compile`` for training steps.

At Multi30k's size a training step is a few hundred small kernels, and eager PyTorch spends more time
dispatching them than the GPU spends running them.  Compiling each encoder and decoder layer (forward and
backward, through AOTAutograd and Inductor) fuses the layer norms, residual adds, dropout and activations
around the matrix products and dispatches them from generated code.  The layer *class* is compiled once and
shared by every instance (parameters are inputs); shapes are automatically dynamic after the first change,
so the compile is paid about twice per layer class, not once per batch shape.  Batch widths are rounded up
to a multiple of :data:`WIDTH_BUCKET` (PAD columns: masked, so the loss is unchanged) to bound the shapes
the GPU's libraries see.

Only training calls go through the compiled code (module in training mode, gradients on, no decoding
cache): decoding (the KV cache, the static steps captured as CUDA graphs) stays eager.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from seqlab.data.vocab import PAD_ID

#: batch widths (source and target) are padded to a multiple of this when the step is compiled
WIDTH_BUCKET = 8

_COMPILED: dict[type, Callable[..., Any]] = {}


def compiled_forward(cls: type) -> Callable[..., Any]:
    """``cls.forward`` compiled once per class (automatic dynamic shapes; ``$SEQLAB_COMPILE_BACKEND``, default
    inductor)."""
    if cls not in _COMPILED:
        backend = os.environ.get("SEQLAB_COMPILE_BACKEND", "inductor")
        _COMPILED[cls] = torch.compile(cls.forward, dynamic=None, backend=backend)
    return _COMPILED[cls]


def _dispatch(module: nn.Module, *args: Any, **kwargs: Any) -> Any:
    if module.training and torch.is_grad_enabled() and kwargs.get("cache") is None:
        return compiled_forward(type(module))(module, *args, **kwargs)
    return type(module).forward(module, *args, **kwargs)


def compile_layers(model: nn.Module) -> int:
    """Route the training calls of every Transformer encoder / decoder layer of ``model`` through the compiled
    forward; returns how many layers were routed (0 for models without such layers, e.g. the LSTM)."""
    from seqlab.models.transformer import DecoderLayer, EncoderLayer

    count = 0
    for module in model.modules():
        if isinstance(module, (EncoderLayer, DecoderLayer)) and "forward" not in module.__dict__:
            module.forward = functools.partial(_dispatch, module)  # a copy (deepcopy) rebinds to the copy
            count += 1
    return count


def pad_width(x: torch.Tensor, bucket: int = WIDTH_BUCKET) -> torch.Tensor:
    """Right-pad [B, T] token ids with PAD to a multiple of ``bucket`` columns."""
    extra = -x.size(1) % bucket
    return torch.nn.functional.pad(x, (0, extra), value=PAD_ID) if extra else x


def bucket_batch(batch: Any, bucket: int = WIDTH_BUCKET) -> Any:
    """The batch with source and target padded to bucketed widths (a copy; the token count is kept)."""
    src, tgt = pad_width(batch.src, bucket), pad_width(batch.tgt, bucket)
    if src is batch.src and tgt is batch.tgt:
        return batch
    return type(batch)(src, tgt, batch.index, batch.num_tgt_tokens)
