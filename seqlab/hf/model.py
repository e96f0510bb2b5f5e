"""``model.arch=hf_seq2seq``: a pretrained Hugging Face encoder-decoder (Marian, T5, BART, mBART, NLLB, ...) behind
seqlab's model protocol, so every algorithm and decoder drives it unchanged.

Ids cross the boundary through :class:`~seqlab.hf.idmap.IdMap` (gathers on the input ids and on the logit columns;
the weights stay in the model's own id space, so ``save_pretrained`` exports them as they are).  The model adds
what its pretrained form expects around seqlab's sequences:

* the source prefix (``source_prefix``; default: the tokens its tokenizer puts before a text, e.g. ``<s>`` for
  BART or the source-language code for NLLB / mBART); seqlab's EOS closes the source;
* the decoder starts with ``decoder_start_token_id`` (seqlab's BOS) followed, with ``forced_bos_token`` (the
  target-language code of mBART / NLLB), by that token: it is part of the decoder's prefix, not of seqlab's
  sequences, so hypotheses, references, rewards and scores never contain it (Hugging Face's ``generate`` gives it
  probability one).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

import torch

from seqlab.data.vocab import BOS_ID, PAD_ID
from seqlab.hf import require_transformers
from seqlab.hf.idmap import IdMap
from seqlab.models import register_model
from seqlab.models.base import Encoded, Seq2SeqModel

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class HFSeq2SeqConfig:
    src_vocab_size: int
    tgt_vocab_size: int
    name_or_path: str = ""  # a hub name or a save_pretrained folder (model weights and config)
    dtype: str = "float32"  # float32 | bfloat16 | float16
    forced_bos_token: str | int | None = None  # a token (e.g. "deu_Latn") or id the decoder always starts with
    source_prefix: list | None = None  # tokens / ids before every source (null: what the tokenizer puts there)
    unk_token_id: int | None = None  # the model's unk id (null: its tokenizer's, read from name_or_path)


def _first_id(value: Any) -> int | None:
    if isinstance(value, (list, tuple)):
        return int(value[0]) if value else None
    return None if value is None else int(value)


def _resolve_ids(tokens: list, tokenizer: Any, what: str) -> list[int]:
    out = []
    for t in tokens:
        if isinstance(t, int):
            out.append(t)
            continue
        if tokenizer is None:
            raise ValueError(
                f"model.options.{what}: {t!r} is a token string, but no tokenizer was found at "
                "name_or_path to look it up; give the id"
            )
        i = tokenizer.convert_tokens_to_ids(t)
        if i is None or i == tokenizer.unk_token_id:
            raise ValueError(f"model.options.{what}: {t!r} is not a token of the tokenizer")
        out.append(int(i))
    return out


def tokenizer_source_prefix(tokenizer: Any) -> list[int]:
    """The ids ``tokenizer`` puts before a text (``<s>`` for BART, the language code for NLLB; none for Marian)."""
    bare = tokenizer("a b", add_special_tokens=False)["input_ids"]
    full = tokenizer("a b")["input_ids"]
    for i in range(len(full) - len(bare) + 1):
        if full[i : i + len(bare)] == bare:
            return list(full[:i])
    return []


@register_model("hf_seq2seq", HFSeq2SeqConfig)
class HFSeq2Seq(Seq2SeqModel):
    """A pretrained Hugging Face encoder-decoder (AutoModelForSeq2SeqLM) with seqlab's ids (seqlab[hf])."""

    def __init__(self, cfg: HFSeq2SeqConfig):
        super().__init__()
        require_transformers()
        from transformers import AutoModelForSeq2SeqLM

        if not cfg.name_or_path:
            raise ValueError("model.options.name_or_path: give a Hugging Face model name or folder")
        if cfg.dtype not in DTYPES:
            raise ValueError(f"model.options.dtype must be one of {sorted(DTYPES)}, got {cfg.dtype!r}")
        self.cfg = cfg
        from transformers.utils import logging as hf_logging

        bars = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()  # a bar per weight load (runs build the model more than once) is noise
        try:
            self.hf = AutoModelForSeq2SeqLM.from_pretrained(cfg.name_or_path).to(DTYPES[cfg.dtype])
        except OSError as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise FileNotFoundError(f"model.options.name_or_path: cannot load {cfg.name_or_path!r} ({first})") from None
        finally:
            if bars:
                hf_logging.enable_progress_bar()
        #: the decoding cache's keyword and output name: ``cache`` in transformers 5, ``past_key_values`` before
        self._cache_name = "cache" if "cache" in inspect.signature(self.hf.forward).parameters else "past_key_values"
        tokenizer = self._tokenizer()
        hc, gen = self.hf.config, self.hf.generation_config
        pad = _first_id(hc.pad_token_id if hc.pad_token_id is not None else gen.pad_token_id)
        eos = _first_id(hc.eos_token_id if hc.eos_token_id is not None else gen.eos_token_id)
        start = _first_id(
            hc.decoder_start_token_id if hc.decoder_start_token_id is not None else gen.decoder_start_token_id
        )
        unk = cfg.unk_token_id if cfg.unk_token_id is not None else getattr(tokenizer, "unk_token_id", None)
        if unk is None:
            raise ValueError(
                "model.options.unk_token_id: no tokenizer at name_or_path tells the model's unk id; give it"
            )
        if start is None:
            raise ValueError(f"{cfg.name_or_path}: the model config has no decoder_start_token_id")
        self.idmap = IdMap(pad, eos, int(unk), self.hf.get_output_embeddings().weight.size(0))
        self.decoder_start = start
        for side, size in (("target", cfg.tgt_vocab_size), ("source", cfg.src_vocab_size)):
            if size > self.idmap.seqlab_size:
                raise ValueError(
                    f"the {side} tokenizer has {size} ids but the model {cfg.name_or_path!r} only "
                    f"{self.idmap.seqlab_size} (with seqlab's BOS slot): use its own tokenizer "
                    f"(tokenizer: hf:{cfg.name_or_path})"
                )
        self.vocab_size = cfg.tgt_vocab_size
        to_model = self.idmap.to_model(start)
        self.register_buffer("input_ids_map", torch.tensor(to_model), persistent=False)
        # logit columns: seqlab id -> model id; BOS's column is a placeholder (seqlab never generates or scores BOS)
        self.register_buffer("logit_columns", torch.tensor(self.idmap.to_model()[: self.vocab_size]), persistent=False)
        prefix = (
            tokenizer_source_prefix(tokenizer)
            if cfg.source_prefix is None and tokenizer is not None
            else _resolve_ids(list(cfg.source_prefix or []), tokenizer, "source_prefix")
        )
        self.register_buffer("source_prefix", torch.tensor(prefix, dtype=torch.long), persistent=False)
        forced = None
        if cfg.forced_bos_token is not None:
            forced = _resolve_ids([cfg.forced_bos_token], tokenizer, "forced_bos_token")[0]
        self.forced_bos_id = forced
        self.register_buffer(
            "decoder_prefix", torch.tensor([] if forced is None else [forced], dtype=torch.long), persistent=False
        )

    def _tokenizer(self) -> Any:
        """The tokenizer saved with the model (for its unk id, source prefix and token strings), or None."""
        from transformers import AutoTokenizer

        try:
            return AutoTokenizer.from_pretrained(self.cfg.name_or_path)
        except (OSError, ValueError, TypeError):
            return None

    # ------------------------------------------------------------------ the boundary
    def model_input_ids(self, ids: torch.Tensor) -> torch.Tensor:
        """seqlab ids -> the model's ids (BOS -> decoder start, PAD -> the model's pad)."""
        return self.input_ids_map[ids]

    def seqlab_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """Logits over the model's ids -> over seqlab's ids (a gather on the last axis)."""
        return logits.index_select(-1, self.logit_columns)

    def _decoder_ids(self, tgt_in: torch.Tensor) -> torch.Tensor:
        ids = self.model_input_ids(tgt_in)
        if self.forced_bos_id is None:
            return ids
        forced = self.decoder_prefix.expand(ids.size(0), -1)
        return torch.cat([ids[:, :1], forced, ids[:, 1:]], dim=1)

    def _forward(
        self, enc: Encoded, decoder_ids: torch.Tensor, past: Any = None, use_cache: bool = False, hidden: bool = False
    ) -> Any:
        from transformers.modeling_outputs import BaseModelOutput

        return self.hf(
            encoder_outputs=BaseModelOutput(last_hidden_state=enc.memory),
            attention_mask=(~enc.pad_mask).long(),
            decoder_input_ids=decoder_ids,
            use_cache=use_cache,
            output_hidden_states=hidden,
            return_dict=True,
            **({self._cache_name: past} if past is not None else {}),
        )

    # ------------------------------------------------------------------ the protocol
    def encode(self, src: torch.Tensor) -> Encoded:
        ids, keep = self.model_input_ids(src), src.ne(PAD_ID)
        if self.source_prefix.numel():
            n = src.size(0)
            ids = torch.cat([self.source_prefix.expand(n, -1), ids], dim=1)
            keep = torch.cat([keep.new_ones(n, self.source_prefix.numel()), keep], dim=1)
        out = self.hf.get_encoder()(input_ids=ids, attention_mask=keep.long(), return_dict=True)
        return Encoded(out.last_hidden_state, ~keep)

    def decode(self, enc: Encoded, tgt_in: torch.Tensor) -> torch.Tensor:
        logits = self._forward(enc, self._decoder_ids(tgt_in)).logits
        return self.seqlab_logits(logits[:, self.decoder_prefix.numel() :])

    def decode_features(self, enc: Encoded, tgt_in: torch.Tensor) -> torch.Tensor:
        states = self._forward(enc, self._decoder_ids(tgt_in), hidden=True).decoder_hidden_states[-1]
        return states[:, self.decoder_prefix.numel() :]

    @property
    def feature_dim(self) -> int:
        hc = self.hf.config
        return int(getattr(hc, "d_model", None) or hc.hidden_size)

    def init_state(self, enc: Encoded) -> dict[str, Any]:
        return {"t": 0, "past": None}

    def step(self, enc: Encoded, tokens: torch.Tensor, state: dict[str, Any]) -> tuple[torch.Tensor, dict]:
        ids = self.model_input_ids(tokens).unsqueeze(1)
        if state["past"] is None and self.forced_bos_id is not None:  # the first step feeds start + forced token
            ids = torch.cat([ids, self.decoder_prefix.expand(ids.size(0), -1)], dim=1)
        out = self._forward(enc, ids, past=state["past"], use_cache=True)
        return self.seqlab_logits(out.logits[:, -1]), {"t": state["t"] + 1, "past": out[self._cache_name]}

    def select_state(self, state: dict[str, Any], index: torch.Tensor) -> dict[str, Any]:
        """Reorder / repeat the cache's rows (beam search); Hugging Face's cache object reorders in place."""
        past = state["past"]
        if past is not None:
            if hasattr(past, "reorder_cache"):
                past.reorder_cache(index)
            else:  # legacy tuples of (self k, self v, cross k, cross v) per layer
                past = tuple(tuple(t.index_select(0, index) for t in layer) for layer in past)
        return {"t": state["t"], "past": past}

    # ------------------------------------------------------------------ Hugging Face's side
    def suppressed_model_ids(self) -> list[int]:
        """The model's ids seqlab never generates: its pad token, and ids past the tokenizer's vocabulary."""
        columns = self.logit_columns.tolist()
        kept = {h for i, h in enumerate(columns) if i not in (PAD_ID, BOS_ID)}
        return sorted(set(range(self.idmap.size)) - kept)

    def generation_settings(self) -> dict[str, Any]:
        """What ``generate`` needs to search the distribution seqlab decodes from (for export and checks)."""
        out: dict[str, Any] = {
            "suppress_tokens": self.suppressed_model_ids(),
            "decoder_start_token_id": self.decoder_start,
        }
        if self.forced_bos_id is not None:
            out["forced_bos_token_id"] = self.forced_bos_id
        return out
