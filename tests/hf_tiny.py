"""Tiny random Hugging Face encoder-decoders and tokenizers built offline (no downloads), for tests/test_hf_*.py
and tests/test_tasks_hf.py.

Each layout puts the special tokens where its family does: Marian (eos 0, unk 1, pad last, decoder start = pad),
T5 (pad 0, eos 1, unk 2, decoder start = pad), BART (<s> 0, pad 1, eos 2, unk 3, decoder start = eos) and an
NLLB-style M2M100 (BART's layout plus language codes, decoder start = eos, a forced target-language token).
"""

from __future__ import annotations

from pathlib import Path

import helpers
import torch

WORDS = "a b c d e f g h i j k l m n o p q r s t u v w x y z ein mann der die das house man the".split()
LANG_CODES = ["deu_Latn", "eng_Latn"]
SPECIALS = {
    "marian": ["</s>", "<unk>"],
    "t5": ["<pad>", "</s>", "<unk>"],
    "bart": ["<s>", "<pad>", "</s>", "<unk>"],
    "nllb": ["<s>", "<pad>", "</s>", "<unk>"],
}


def tiny_tokenizer(family: str, out: Path):
    """A word-level PreTrainedTokenizerFast with ``family``'s special-token layout, saved to ``out``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    words = SPECIALS[family] + WORDS + (LANG_CODES if family == "nllb" else [])
    if family == "marian":
        words = words + ["<pad>"]  # Marian's pad is its last id
    vocab = {w: i for i, w in enumerate(words)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    if family == "bart":
        tok.post_processor = processors.TemplateProcessing(
            single="<s> $A </s>", special_tokens=[("<s>", vocab["<s>"]), ("</s>", vocab["</s>"])]
        )
    elif family == "nllb":
        tok.post_processor = processors.TemplateProcessing(
            single="deu_Latn $A </s>", special_tokens=[("deu_Latn", vocab["deu_Latn"]), ("</s>", vocab["</s>"])]
        )
    else:
        tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", vocab["</s>"])])
    extra = {"bos_token": "<s>"} if family in ("bart", "nllb") else {}
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<pad>",
        eos_token="</s>",
        unk_token="<unk>",
        additional_special_tokens=LANG_CODES if family == "nllb" else None,
        **extra,
    )
    fast.save_pretrained(str(out))
    return fast


def tiny_model(family: str, out: Path, seed: int = 0):
    """A tiny random model of ``family`` with its tokenizer, both saved to ``out``; returns (model, tokenizer)."""
    from transformers import (
        BartConfig,
        BartForConditionalGeneration,
        M2M100Config,
        M2M100ForConditionalGeneration,
        MarianConfig,
        MarianMTModel,
        T5Config,
        T5ForConditionalGeneration,
    )

    tok = tiny_tokenizer(family, out)
    v = len(tok)
    small = dict(
        d_model=16,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=32,
        decoder_ffn_dim=32,
        max_position_embeddings=64,
        dropout=0.1,
        vocab_size=v,
    )
    torch.manual_seed(seed)
    if family == "marian":
        cfg = MarianConfig(
            **small,
            pad_token_id=tok.pad_token_id,
            eos_token_id=tok.eos_token_id,
            decoder_start_token_id=tok.pad_token_id,
            forced_eos_token_id=None,
        )
        model = MarianMTModel(cfg)
    elif family == "t5":
        cfg = T5Config(
            vocab_size=v,
            d_model=16,
            d_kv=8,
            d_ff=32,
            num_layers=1,
            num_decoder_layers=1,
            num_heads=2,
            dropout_rate=0.1,
            pad_token_id=tok.pad_token_id,
            eos_token_id=tok.eos_token_id,
            decoder_start_token_id=tok.pad_token_id,
        )
        model = T5ForConditionalGeneration(cfg)
    elif family == "bart":
        cfg = BartConfig(
            **small,
            pad_token_id=1,
            bos_token_id=0,
            eos_token_id=2,
            decoder_start_token_id=2,
            forced_bos_token_id=None,
            forced_eos_token_id=None,
        )
        model = BartForConditionalGeneration(cfg)
    elif family == "nllb":
        cfg = M2M100Config(**small, pad_token_id=1, bos_token_id=0, eos_token_id=2, decoder_start_token_id=2)
        model = M2M100ForConditionalGeneration(cfg)
    else:
        raise ValueError(family)
    model.save_pretrained(str(out))
    return model.eval(), tok


def write_reverse_task(root: Path, n_train: int = 60, seed: int = 0) -> dict:
    """Letter sequences -> their reversal, as text files; the ``parallel`` task's train / valid / test specs."""
    return helpers.write_reverse_task(root, n_train, seed, n_eval=20)
