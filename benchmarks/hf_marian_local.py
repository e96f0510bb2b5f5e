"""A Marian-configured model and tokenizer for Multi30k, built offline: the starting point of issue 22's GPU
evidence (an ``hf_seq2seq`` model trained with MLE, then fine-tuned; ``benchmarks/suites/hf_marian_multi30k.yaml``).

No weights can be downloaded on these machines, so the folder holds what ``Helsinki-NLP/opus-mt-*`` holds, built
here: a BPE tokenizer (SentencePiece-style Metaspace pre-tokenizer) trained on the Multi30k training text (both
sides, one shared vocabulary) with Marian's special-token layout (``</s>`` 0, ``<unk>`` 1, ``<pad>`` last; the
decoder starts from ``<pad>``), saved as a ``PreTrainedTokenizerFast``, and a randomly initialised
``MarianMTModel`` of seqlab's Multi30k Transformer size (d 512, 8 heads, FFN 2,048, 3 + 3 layers), saved with
``save_pretrained``.  Both load with the ``Auto*`` classes:

    python benchmarks/hf_marian_local.py --data ../shared/data/multi30k --out runs/hf_marian_m30k
"""

from __future__ import annotations

import argparse
from pathlib import Path

from seqlab.data.corpus import read_lines

SPECIALS = ["</s>", "<unk>"]  # Marian: eos 0, unk 1; <pad> is appended last


def train_tokenizer(texts: list[str], vocab_size: int, out: Path):
    """A BPE tokenizer (Metaspace pre-tokenizer and decoder, as SentencePiece) with Marian's special-token layout,
    saved to ``out``."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size - 1, special_tokens=SPECIALS, show_progress=False)
    tok.train_from_iterator(texts, trainer)
    pad_id = tok.get_vocab_size()
    tok.add_special_tokens(["<pad>"])  # the last id, as Marian's
    assert tok.token_to_id("<pad>") == pad_id and tok.token_to_id("</s>") == 0 and tok.token_to_id("<unk>") == 1
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 0)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")
    fast.save_pretrained(str(out))
    return fast


def build_model(
    tokenizer, out: Path, d_model: int, heads: int, ffn: int, layers: int, seed: int, scale_embedding: bool = True
):
    """A randomly initialised MarianMTModel over ``tokenizer``'s vocabulary, saved to ``out``.  Embeddings are
    scaled by sqrt(d_model) as in the opus-mt models (``scale_embedding``; MarianConfig's default is off): with
    the 0.02 initialisation and no scaling, the sinusoidal positions (norm ~sqrt(d/2)) drown the tokens."""
    import torch
    from transformers import MarianConfig, MarianMTModel

    cfg = MarianConfig(
        vocab_size=len(tokenizer),
        d_model=d_model,
        encoder_layers=layers,
        decoder_layers=layers,
        encoder_attention_heads=heads,
        decoder_attention_heads=heads,
        encoder_ffn_dim=ffn,
        decoder_ffn_dim=ffn,
        max_position_embeddings=256,
        scale_embedding=scale_embedding,
        dropout=0.1,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.pad_token_id,
        forced_eos_token_id=None,
    )
    torch.manual_seed(seed)
    model = MarianMTModel(cfg)
    model.save_pretrained(str(out))
    return model


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, required=True, help="the Multi30k folder (train.de.gz, train.en.gz, ...)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--src", default="de")
    p.add_argument("--tgt", default="en")
    p.add_argument("--vocab-size", type=int, default=8000)
    p.add_argument("--d-model", type=int, default=512)
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--ffn", type=int, default=2048)
    p.add_argument("--layers", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--no-scale-embedding", dest="scale_embedding", action="store_false", help="MarianConfig's default (off)"
    )
    args = p.parse_args()
    texts = []
    for lang in (args.src, args.tgt):
        matches = sorted(args.data.glob(f"train.{lang}*"))
        if not matches:
            raise SystemExit(f"{args.data}: no train.{lang}[.gz]")
        texts += read_lines(matches[0])
    args.out.mkdir(parents=True, exist_ok=True)
    tokenizer = train_tokenizer(texts, args.vocab_size, args.out)
    model = build_model(
        tokenizer, args.out, args.d_model, args.heads, args.ffn, args.layers, args.seed, args.scale_embedding
    )
    n = sum(p.numel() for p in model.parameters())
    print(f"{args.out}: tokenizer of {len(tokenizer)} ids (pad {tokenizer.pad_token_id}), MarianMTModel {n:,} params")


if __name__ == "__main__":
    main()
