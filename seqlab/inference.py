"""Load a trained checkpoint (model, tokenizers, config) for decoding, evaluation, or as a teacher."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from seqlab.config import Config, config_from_dict
from seqlab.utils import resolve_device


@dataclass
class LoadedModel:
    config: Config
    model: Any
    src_tokenizer: Any
    tgt_tokenizer: Any
    device: torch.device


def load_checkpoint_model(path: str | Path, device: str | torch.device = "auto") -> LoadedModel:
    """Rebuild the model of a seqlab checkpoint in eval mode, with the tokenizers of its run."""
    from seqlab.data.tokenizers import load_tokenizer
    from seqlab.models import build_model
    from seqlab.train import checkpoint as ckpt

    state = ckpt.load(path)
    cfg = config_from_dict(state["config"])
    tok_dir = Path(state.get("tokenizers", ""))
    if not tok_dir.exists():
        tok_dir = Path(path).resolve().parent / "tokenizers"
    src_tok, tgt_tok = load_tokenizer(tok_dir / "src"), load_tokenizer(tok_dir / "tgt")
    model = build_model(cfg.model.arch, src_tok.vocab_size, tgt_tok.vocab_size, **cfg.model.options)
    model.load_state_dict(state["model"])
    dev = device if isinstance(device, torch.device) else resolve_device(device)
    return LoadedModel(cfg, model.to(dev).eval(), src_tok, tgt_tok, dev)
