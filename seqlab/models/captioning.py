"""NIC-style captioning model (Vinyals et al. 2015) behind the seq2seq protocol.

The "source" of an example is an image index: ``src`` = [[image_token, EOS]] where image token ids are
``NUM_SPECIAL + row`` of a precomputed feature matrix (``seqlab.tasks.captioning`` builds that source
vocabulary in feature-row order).  The features are loaded from the ``.npy`` / ``.pt`` file named by the
``features`` option into a non-persistent buffer (checkpoints stay small and hold no data); a linear map of
an image's vector initialises every layer's LSTM state, and the LSTM decoder generates the caption.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from seqlab.data.vocab import PAD_ID, SPECIAL_TOKENS
from seqlab.models import register_model
from seqlab.models.base import Encoded, Seq2SeqModel

NUM_SPECIAL = len(SPECIAL_TOKENS)


def load_features(path: str | Path) -> tuple[torch.Tensor, list[str]]:
    """Feature matrix [N, F] and image ids from ``.npy`` (ids "0".."N-1"), ``.pt`` / ``.pth`` (a tensor, or a
    dict with ``features`` and optionally ``ids``) or ``.npz`` (arrays ``features`` and optionally ``ids``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image features not found: {path}")
    ids = None
    if path.suffix == ".npy":
        feats = torch.from_numpy(np.load(path))
    elif path.suffix == ".npz":
        with np.load(path) as z:
            feats = torch.from_numpy(z["features"])
            ids = [str(i) for i in z["ids"]] if "ids" in z.files else None
    elif path.suffix in (".pt", ".pth"):
        obj = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(obj, dict):
            if "features" not in obj:
                raise ValueError(f"{path}: a dict of features needs a 'features' entry, found {sorted(obj)}")
            feats = torch.as_tensor(obj["features"])
            ids = [str(i) for i in obj["ids"]] if obj.get("ids") is not None else None
        else:
            feats = torch.as_tensor(obj)
    else:
        raise ValueError(f"{path}: image features must be .npy, .npz or .pt, not {path.suffix!r}")
    if feats.dim() != 2:
        raise ValueError(f"{path}: expected a feature matrix [images, dim], got shape {tuple(feats.shape)}")
    ids = ids if ids is not None else [str(i) for i in range(feats.size(0))]
    if len(ids) != feats.size(0):
        raise ValueError(f"{path}: {len(ids)} ids for {feats.size(0)} feature vectors")
    if len(set(ids)) != len(ids):
        raise ValueError(f"{path}: duplicate image ids")
    return feats.float(), ids


@dataclass
class NICConfig:
    src_vocab_size: int
    tgt_vocab_size: int
    features: str = ""  # path of the .npy / .npz / .pt feature file (the same as the task's)
    embed_dim: int = 256
    hidden_dim: int = 512
    layers: int = 1
    dropout: float = 0.3
    tie_embeddings: bool = True


@register_model("nic", NICConfig)
class NIC(Seq2SeqModel):
    """Image features -> linear -> initial (h, c) of an LSTM decoder; no attention."""

    def __init__(self, cfg: NICConfig):
        super().__init__()
        if not cfg.features:
            raise ValueError("model 'nic' needs model.options.features (the image feature file)")
        feats, _ = load_features(cfg.features)
        if feats.size(0) + NUM_SPECIAL != cfg.src_vocab_size:
            raise ValueError(
                f"model 'nic': {cfg.features} has {feats.size(0)} images but the source vocabulary "
                f"has {cfg.src_vocab_size - NUM_SPECIAL}; model.options.features and "
                "task.options.features must name the same file"
            )
        self.cfg, self.vocab_size = cfg, cfg.tgt_vocab_size
        self.register_buffer("features", feats, persistent=False)
        h, L = cfg.hidden_dim, cfg.layers
        self.norm = nn.LayerNorm(feats.size(1))
        self.init_h = nn.Linear(feats.size(1), L * h)
        self.init_c = nn.Linear(feats.size(1), L * h)
        self.embed = nn.Embedding(cfg.tgt_vocab_size, cfg.embed_dim, padding_idx=PAD_ID)
        self.lstm = nn.LSTM(cfg.embed_dim, h, L, batch_first=True, dropout=cfg.dropout if L > 1 else 0.0)
        self.drop = nn.Dropout(cfg.dropout)
        self.pre_out = nn.Linear(h, cfg.embed_dim) if cfg.tie_embeddings else nn.Identity()
        self.out = nn.Linear(cfg.embed_dim if cfg.tie_embeddings else h, cfg.tgt_vocab_size)
        if cfg.tie_embeddings:
            self.out.weight = self.embed.weight

    def image_rows(self, src: torch.Tensor) -> torch.Tensor:
        rows = src[:, 0] - NUM_SPECIAL
        if bool((rows < 0).any()) or bool((rows >= self.features.size(0)).any()):
            raise ValueError("model 'nic': a source is not an image token (unknown image id?)")
        return rows

    def encode(self, src: torch.Tensor) -> Encoded:
        f = self.drop(self.norm(self.features.index_select(0, self.image_rows(src))))
        b, L, h = f.size(0), self.cfg.layers, self.cfg.hidden_dim
        h0 = torch.tanh(self.init_h(f)).view(b, L, h)
        c0 = self.init_c(f).view(b, L, h)
        memory = h0[:, -1:, :]  # the protocol wants a memory; NIC attends to nothing
        return Encoded(memory, torch.zeros(b, 1, dtype=torch.bool, device=src.device), {"h0": h0, "c0": c0})

    def init_state(self, enc: Encoded) -> dict:
        return {"h": enc.extra["h0"], "c": enc.extra["c0"]}  # batch-first [B, L, H]

    def _logits(self, out: torch.Tensor) -> torch.Tensor:
        return self.out(self.pre_out(self.drop(out)))

    def step(self, enc: Encoded, tokens: torch.Tensor, state: dict) -> tuple[torch.Tensor, dict]:
        hc = (state["h"].transpose(0, 1).contiguous(), state["c"].transpose(0, 1).contiguous())
        out, (h, c) = self.lstm(self.drop(self.embed(tokens)).unsqueeze(1), hc)
        return self._logits(out[:, 0]), {"h": h.transpose(0, 1), "c": c.transpose(0, 1)}

    def decode(self, enc: Encoded, tgt_in: torch.Tensor) -> torch.Tensor:
        hc = (enc.extra["h0"].transpose(0, 1).contiguous(), enc.extra["c0"].transpose(0, 1).contiguous())
        out, _ = self.lstm(self.drop(self.embed(tgt_in)), hc)
        return self._logits(out)
