"""Tokenizers: special ids, round trips, save / load, SentencePiece training, cached building."""

from __future__ import annotations

import unicodedata
import warnings
from pathlib import Path

import pytest
import torch

from seqlab.data.corpus import Corpus, read_parallel
from seqlab.data.errors import DataError, DataWarning
from seqlab.data.tokenizers import (
    CharTokenizer,
    SentencePieceTokenizer,
    SymbolTokenizer,
    build_tokenizers,
    load_tokenizer,
)
from seqlab.data.vocab import BOS_ID, EOS_ID, PAD_ID, SPECIAL_TOKENS, UNK_ID

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
MULTI30K = DATA / "multi30k"
needs_multi30k = pytest.mark.skipif(not MULTI30K.is_dir(), reason="shared Multi30k data not present")


@pytest.fixture(scope="module")
def multi30k_sample() -> Corpus:
    c = read_parallel(MULTI30K / "val.de.gz", MULTI30K / "val.en.gz")
    return c


def test_char_tokenizer_roundtrip_unk_and_specials():
    tok = CharTokenizer.build(["hello", "world", "it's"])
    assert tok.vocab[:4] == list(SPECIAL_TOKENS) and tok.vocab_size == 4 + len(set("helloworldit's"))
    assert tok.id_to_token(tok.encode("l")[0]) == "l" and tok.vocab[4] == "l"  # most frequent first
    ids = tok.encode("hello")
    assert len(ids) == 5 and all(i > UNK_ID for i in ids)
    assert tok.decode(ids) == "hello"
    assert tok.encode("hez")[-1] == UNK_ID
    # decode stops at EOS and drops PAD / BOS; accepts tensors
    assert tok.decode([BOS_ID, *ids, EOS_ID, *ids, PAD_ID]) == "hello"
    assert tok.decode(torch.tensor([*ids, EOS_ID, PAD_ID, PAD_ID])) == "hello"
    assert tok.decode([]) == ""


def test_symbol_tokenizer_roundtrip():
    tok = SymbolTokenizer.build(["HH AH L OW", "W ER L D"])
    ids = tok.encode("HH  AH L OW\t")
    assert len(ids) == 4 and tok.decode(ids + [EOS_ID]) == "HH AH L OW"
    assert tok.encode("ZH") == [UNK_ID]
    assert tok.tokens("W ER") == ["W", "ER"]


def test_vocab_tokenizer_save_load(tmp_path):
    for tok in (CharTokenizer.build(["abc", "ü€"]), SymbolTokenizer.build(["a b", "ɡ e̞"])):
        d = tok.save(tmp_path / tok.kind)
        back = load_tokenizer(d)
        assert type(back) is type(tok) and back.vocab == tok.vocab
        assert load_tokenizer(d / "tokenizer.json").vocab == tok.vocab
    with pytest.raises(DataError, match="no tokenizer found"):
        load_tokenizer(tmp_path / "missing")
    (tmp_path / "junk.json").write_text("{}")
    with pytest.raises(DataError, match=r"junk\.json: not a seqlab tokenizer"):
        load_tokenizer(tmp_path / "junk.json")


@needs_multi30k
def test_sentencepiece_on_multi30k_roundtrip(tmp_path, multi30k_sample):
    texts = multi30k_sample.sources + multi30k_sample.targets
    tok = SentencePieceTokenizer.train(texts, tmp_path / "m", vocab_size=1000, num_threads=1)
    assert (tmp_path / "m.model").is_file()
    assert tok.vocab_size == 1000
    assert [tok.id_to_token(i) for i in range(4)] == list(SPECIAL_TOKENS)
    # normal text: NFKC-normalized, single spaces (SentencePiece's nmt_nfkc would change anything else)
    normal = [t for t in texts if t == " ".join(unicodedata.normalize("NFKC", t).split())]
    assert len(normal) > 0.95 * len(texts)
    for t in normal:
        ids = tok.encode(t)
        assert UNK_ID not in ids
        assert tok.decode(ids) == t
    ids = tok.encode(normal[0])
    assert tok.decode([BOS_ID, *ids, EOS_ID, 7, 8, PAD_ID]) == normal[0]
    assert tok.encode_batch(normal[:3]) == [tok.encode(t) for t in normal[:3]]
    # save / load through the directory and the bare .model
    for path in (tok.save(tmp_path / "dir"), tmp_path / "m.model", tmp_path / "m"):
        back = load_tokenizer(path)
        assert isinstance(back, SentencePieceTokenizer) and back.encode(normal[1]) == tok.encode(normal[1])


@needs_multi30k
def test_sentencepiece_unigram_and_vocab_reduced_when_too_large(tmp_path, multi30k_sample):
    texts = multi30k_sample.targets[:200]
    uni = SentencePieceTokenizer.train(texts, vocab_size=300, model_type="unigram", num_threads=1)
    assert uni.decode(uni.encode(texts[0])) == texts[0]
    with pytest.warns(DataWarning, match="corpus too small for vocab_size=50000"):
        tok = SentencePieceTokenizer.train(texts, vocab_size=50000, num_threads=1)
    assert 100 < tok.vocab_size < 50000
    assert tok.decode(tok.encode(texts[5])) == texts[5]
    with pytest.raises(DataError, match="empty corpus"):
        SentencePieceTokenizer.train(["", "  "], vocab_size=100)


def test_sentencepiece_rejects_models_with_other_special_ids(tmp_path):
    import io

    import sentencepiece as spm

    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(["a b c d e f g"] * 20), model_writer=buf, vocab_size=12, minloglevel=2
    )  # defaults: unk=0, bos=1, eos=2, no pad
    (tmp_path / "other.model").write_bytes(buf.getvalue())
    with pytest.raises(DataError, match="special ids"):
        load_tokenizer(tmp_path / "other.model")


def test_build_tokenizers_kinds_shared_and_cache(tmp_path):
    corpus = Corpus(["hello", "world", "word"], ["HH AH L OW", "W ER L D", "W ER D"])
    src, tgt = build_tokenizers(("char", "symbol"), corpus, tmp_path / "g2p", shared=False)
    assert isinstance(src, CharTokenizer) and isinstance(tgt, SymbolTokenizer)
    assert tgt.decode(tgt.encode("W ER D")) == "W ER D"
    # cached: the saved ones are loaded, even when built from another corpus (with a warning)
    other = Corpus(["xyz"], ["X Y Z"])
    with pytest.warns(DataWarning, match="different settings"):
        src2, tgt2 = build_tokenizers(("char", "symbol"), other, tmp_path / "g2p", shared=False)
    assert src2.vocab == src.vocab and tgt2.vocab == tgt.vocab
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        src3, _ = build_tokenizers(("char", "symbol"), corpus, tmp_path / "g2p", shared=False)
    assert src3.vocab == src.vocab
    # shared: one vocabulary over both sides, saved twice
    s, t = build_tokenizers("char", corpus, tmp_path / "shared", shared=True)
    assert s is t and "W" in s.vocab and "h" in s.vocab
    assert load_tokenizer(tmp_path / "shared" / "tgt").vocab == s.vocab
    with pytest.raises(ValueError, match="shared vocabulary needs one tokenizer kind"):
        build_tokenizers(("char", "symbol"), corpus, tmp_path / "bad", shared=True)
    with pytest.raises(ValueError, match="unknown tokenizer kind"):
        build_tokenizers("words", corpus, tmp_path / "bad2", shared=True)
    assert not any(p.name.startswith(".tmp") for p in (tmp_path / "g2p").iterdir())


@needs_multi30k
def test_build_sentencepiece_separate_vocabularies(tmp_path, multi30k_sample):
    small = multi30k_sample.subset(range(300))
    src, tgt = build_tokenizers("bpe", small, tmp_path, vocab_size=500, shared=False)
    assert isinstance(src, SentencePieceTokenizer) and src.vocab_size == tgt.vocab_size == 500
    assert "ä" in "".join(src.id_to_token(i) for i in range(500))
    assert tgt.decode(tgt.encode(small.targets[0])) == small.targets[0]
