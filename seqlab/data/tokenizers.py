"""Tokenizers: characters, whitespace-separated symbols, and SentencePiece (BPE / unigram).

Every tokenizer reserves PAD=0, BOS=1, EOS=2, UNK=3 (:mod:`seqlab.data.vocab`).  ``encode`` adds no
BOS/EOS; ``decode`` stops at the first EOS and drops PAD and BOS.  A tokenizer is saved as a directory
holding ``tokenizer.json`` (a header naming its type; SentencePiece adds ``spm.model``);
:func:`load_tokenizer` reads such a directory, the header file itself, or a bare SentencePiece ``.model``.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import re
import shutil
import uuid
import warnings
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, ClassVar

from seqlab.data.corpus import Corpus
from seqlab.data.errors import DataError, DataWarning
from seqlab.data.vocab import BOS_ID, EOS_ID, PAD_ID, SPECIAL_TOKENS, UNK_ID

HEADER = "tokenizer.json"
FORMAT = "seqlab-tokenizer"
VERSION = 1


def strip_special(ids: Iterable[int]) -> list[int]:
    """Ids up to (excluding) the first EOS, without PAD and BOS; accepts lists, tensors and arrays."""
    if hasattr(ids, "tolist"):
        ids = ids.tolist()
    out = []
    for i in ids:
        i = int(i)
        if i == EOS_ID:
            break
        if i != PAD_ID and i != BOS_ID:
            out.append(i)
    return out


class Tokenizer:
    """Base class: text <-> ids with the shared special ids."""

    kind: ClassVar[str] = ""
    meta: dict[str, Any]

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` (no BOS / EOS)."""
        raise NotImplementedError

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return [self.encode(t) for t in texts]

    def decode(self, ids: Iterable[int]) -> str:
        """Text of ``ids``, stopping at the first EOS and dropping PAD and BOS."""
        raise NotImplementedError

    def decode_batch(self, rows: Iterable[Iterable[int]]) -> list[str]:
        return [self.decode(r) for r in rows]

    @property
    def vocab_size(self) -> int:
        raise NotImplementedError

    def id_to_token(self, i: int) -> str:
        raise NotImplementedError

    def tokens(self, text: str) -> list[str]:
        """The token strings of ``text`` (for inspection)."""
        return [self.id_to_token(i) for i in self.encode(text)]

    def _header(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": VERSION,
            "type": self.kind,
            "vocab_size": self.vocab_size,
            "meta": getattr(self, "meta", {}),
        }

    def _write_files(self, directory: Path) -> dict[str, Any]:
        """Write extra files; return header fields."""
        return {}

    def save(self, path: str | Path) -> Path:
        """Save into directory ``path`` (created); returns it."""
        directory = Path(path)
        directory.mkdir(parents=True, exist_ok=True)
        header = self._header()
        header.update(self._write_files(directory))
        tmp = directory / f".{HEADER}.{uuid.uuid4().hex}"
        tmp.write_text(json.dumps(header, ensure_ascii=False, indent=1), encoding="utf-8")
        os.replace(tmp, directory / HEADER)
        return directory

    @classmethod
    def _from_header(cls, header: dict[str, Any], directory: Path) -> Tokenizer:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(vocab_size={self.vocab_size})"


class VocabTokenizer(Tokenizer):
    """A tokenizer with an explicit token list: ``tokens[i]`` is the string of id ``i``."""

    def __init__(self, tokens: Sequence[str], meta: dict[str, Any] | None = None):
        tokens = list(tokens)
        if tuple(tokens[: len(SPECIAL_TOKENS)]) != SPECIAL_TOKENS:
            raise ValueError(f"the first tokens must be {SPECIAL_TOKENS}, got {tokens[:4]}")
        if len(set(tokens)) != len(tokens):
            raise ValueError("duplicate tokens in vocabulary")
        self._tokens = tokens
        self._index = {t: i for i, t in enumerate(tokens)}
        self.meta = dict(meta or {})

    @staticmethod
    def split(text: str) -> list[str]:
        raise NotImplementedError

    @staticmethod
    def join(tokens: list[str]) -> str:
        raise NotImplementedError

    @classmethod
    def build(cls, texts: Iterable[str], max_size: int | None = None, min_freq: int = 1) -> VocabTokenizer:
        """Vocabulary of the tokens of ``texts`` (most frequent first, ties by string), specials first.

        ``max_size`` caps the total vocabulary size (specials included); rarer tokens become UNK."""
        counts: Counter[str] = Counter()
        for t in texts:
            counts.update(cls.split(t))
        for s in SPECIAL_TOKENS:
            counts.pop(s, None)
        items = sorted(((c, tok) for tok, c in counts.items() if c >= min_freq), key=lambda x: (-x[0], x[1]))
        if max_size is not None:
            items = items[: max(0, max_size - len(SPECIAL_TOKENS))]
        return cls(list(SPECIAL_TOKENS) + [tok for _, tok in items])

    @property
    def vocab_size(self) -> int:
        return len(self._tokens)

    @property
    def vocab(self) -> list[str]:
        """Token strings by id (a copy)."""
        return list(self._tokens)

    def id_to_token(self, i: int) -> str:
        return self._tokens[i]

    def token_to_id(self, token: str) -> int:
        return self._index.get(token, UNK_ID)

    def encode(self, text: str) -> list[int]:
        index = self._index
        return [index.get(t, UNK_ID) for t in self.split(text)]

    def decode(self, ids: Iterable[int]) -> str:
        tokens = self._tokens
        unk = SPECIAL_TOKENS[UNK_ID]
        return self.join([tokens[i] if 0 <= i < len(tokens) else unk for i in strip_special(ids)])

    def _write_files(self, directory: Path) -> dict[str, Any]:
        return {"tokens": self._tokens}

    @classmethod
    def _from_header(cls, header: dict[str, Any], directory: Path) -> Tokenizer:
        return cls(header["tokens"], header.get("meta"))


class CharTokenizer(VocabTokenizer):
    """One token per character (e.g. graphemes for G2P); unknown characters map to UNK."""

    kind = "char"

    @staticmethod
    def split(text: str) -> list[str]:
        return list(text)

    @staticmethod
    def join(tokens: list[str]) -> str:
        return "".join(tokens)


class SymbolTokenizer(VocabTokenizer):
    """Whitespace-separated symbols (e.g. ARPAbet or IPA phones); ``decode`` joins them with single spaces."""

    kind = "symbol"

    @staticmethod
    def split(text: str) -> list[str]:
        return text.split()

    @staticmethod
    def join(tokens: list[str]) -> str:
        return " ".join(tokens)


class SentencePieceTokenizer(Tokenizer):
    """SentencePiece BPE / unigram model with PAD=0, BOS=1, EOS=2, UNK=3; ``decode`` detokenizes.

    SentencePiece's default ``nmt_nfkc`` normalization is kept: it NFKC-normalizes and collapses runs of
    whitespace, so ``decode(encode(x)) == x`` for normalized text without double spaces."""

    kind = "sentencepiece"
    MODEL_FILE = "spm.model"

    def __init__(self, model_proto: bytes, meta: dict[str, Any] | None = None):
        import sentencepiece as spm

        self._proto = bytes(model_proto)
        self.sp = spm.SentencePieceProcessor(model_proto=self._proto)
        ids = (self.sp.pad_id(), self.sp.bos_id(), self.sp.eos_id(), self.sp.unk_id())
        if ids != (PAD_ID, BOS_ID, EOS_ID, UNK_ID):
            raise DataError(
                f"SentencePiece model has special ids (pad, bos, eos, unk) = {ids}; seqlab "
                f"needs {(PAD_ID, BOS_ID, EOS_ID, UNK_ID)} (see SentencePieceTokenizer.train)"
            )
        self.meta = dict(meta or {})

    @classmethod
    def from_file(cls, path: str | Path, meta: dict[str, Any] | None = None) -> SentencePieceTokenizer:
        path = Path(path)
        if not path.is_file():
            raise DataError("SentencePiece model not found", path)
        return cls(path.read_bytes(), meta)

    @classmethod
    def train(
        cls,
        texts: Iterable[str],
        model_prefix: str | Path | None = None,
        vocab_size: int = 8000,
        model_type: str = "bpe",
        character_coverage: float = 1.0,
        normalization: str = "nmt_nfkc",
        input_sentence_size: int = 2_000_000,
        num_threads: int | None = None,
        seed: int = 1,
    ) -> SentencePieceTokenizer:
        """Train on ``texts``; writes ``{model_prefix}.model`` when a prefix is given.

        A ``vocab_size`` larger than the corpus supports is reduced to the largest size SentencePiece
        accepts (with a DataWarning) instead of failing."""
        import sentencepiece as spm

        if model_type not in ("bpe", "unigram", "char", "word"):
            raise ValueError(f"model_type must be bpe | unigram | char | word, got {model_type!r}")
        lines = [t.replace("\n", " ") for t in texts if t and not t.isspace()]
        if not lines:
            raise DataError("cannot train SentencePiece on an empty corpus")
        requested = vocab_size
        if hasattr(spm, "set_random_generator_seed"):
            spm.set_random_generator_seed(seed)
        threads = num_threads or max(1, min(8, os.cpu_count() or 1))
        for _ in range(6):
            buf = _BytesWriter()
            try:
                spm.SentencePieceTrainer.train(
                    sentence_iterator=iter(lines),
                    model_writer=buf,
                    vocab_size=vocab_size,
                    model_type=model_type,
                    character_coverage=character_coverage,
                    normalization_rule_name=normalization,
                    pad_id=PAD_ID,
                    bos_id=BOS_ID,
                    eos_id=EOS_ID,
                    unk_id=UNK_ID,
                    pad_piece=SPECIAL_TOKENS[PAD_ID],
                    bos_piece=SPECIAL_TOKENS[BOS_ID],
                    eos_piece=SPECIAL_TOKENS[EOS_ID],
                    unk_piece=SPECIAL_TOKENS[UNK_ID],
                    input_sentence_size=input_sentence_size,
                    shuffle_input_sentence=True,
                    num_threads=threads,
                    minloglevel=2,
                )
                break
            except RuntimeError as e:
                m = re.search(r"value <= (\d+)", str(e))
                if not m or int(m.group(1)) >= vocab_size:
                    raise DataError(f"SentencePiece training failed (vocab_size={vocab_size}): {e}") from None
                vocab_size = int(m.group(1))
        else:
            raise DataError(f"SentencePiece training failed: no feasible vocab_size <= {requested}")
        if vocab_size != requested:
            warnings.warn(
                f"SentencePiece: corpus too small for vocab_size={requested}; using {vocab_size}",
                DataWarning,
                stacklevel=2,
            )
        tok = cls(buf.data, {"model_type": model_type, "requested_vocab_size": requested})
        if model_prefix is not None:
            out = Path(f"{model_prefix}.model")
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(tok._proto)
        return tok

    @property
    def vocab_size(self) -> int:
        return int(self.sp.get_piece_size())

    def id_to_token(self, i: int) -> str:
        return self.sp.id_to_piece(int(i))

    def encode(self, text: str) -> list[int]:
        return self.sp.encode(text, out_type=int)

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return self.sp.encode(list(texts), out_type=int)

    def decode(self, ids: Iterable[int]) -> str:
        return self.sp.decode(strip_special(ids))

    def _write_files(self, directory: Path) -> dict[str, Any]:
        (directory / self.MODEL_FILE).write_bytes(self._proto)
        return {"model_file": self.MODEL_FILE}

    @classmethod
    def _from_header(cls, header: dict[str, Any], directory: Path) -> Tokenizer:
        return cls.from_file(directory / header.get("model_file", cls.MODEL_FILE), header.get("meta"))


class _BytesWriter:
    def __init__(self) -> None:
        self.data = b""

    def write(self, b: bytes) -> int:
        self.data += bytes(b)
        return len(b)


TOKENIZER_TYPES: dict[str, type[Tokenizer]] = {
    "char": CharTokenizer,
    "symbol": SymbolTokenizer,
    "sentencepiece": SentencePieceTokenizer,
}


#: tokenizer types in optional modules (extras), imported by name when a kind or a saved tokenizer names them; the
#: module adds its class to TOKENIZER_TYPES, whose ``from_kind(argument)`` builds the kind ``name:argument``
TOKENIZER_MODULES = {"hf": "seqlab.hf.tokenizer"}


def optional_type(kind: Any) -> type[Tokenizer] | None:
    """The tokenizer class of ``kind``, importing its module first when it lives in an optional one."""
    if kind not in TOKENIZER_TYPES and kind in TOKENIZER_MODULES:
        importlib.import_module(TOKENIZER_MODULES[kind])
    return TOKENIZER_TYPES.get(kind)


def load_tokenizer(path: str | Path) -> Tokenizer:
    """Load a saved tokenizer: a directory with tokenizer.json, that JSON file, or a SentencePiece .model.

    ``path`` may also omit the suffix (``tok/src`` finds ``tok/src.json`` or ``tok/src.model``)."""
    p = Path(path)
    candidates = [p] if p.exists() else [Path(f"{p}.json"), Path(f"{p}.model")]
    for c in candidates:
        if c.is_dir() and (c / HEADER).is_file():
            return _load_header(c / HEADER)
        if c.is_file() and c.suffix == ".model":
            return SentencePieceTokenizer.from_file(c)
        if c.is_file() and c.suffix == ".json":
            return _load_header(c)
    raise DataError("no tokenizer found (expected a directory with tokenizer.json, a .json or a .model)", p)


def _load_header(path: Path) -> Tokenizer:
    try:
        header = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"malformed tokenizer header ({e})", path) from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise DataError(f"not a seqlab tokenizer header (format != {FORMAT!r})", path)
    kind = header.get("type")
    optional_type(kind)
    if kind not in TOKENIZER_TYPES:
        raise DataError(f"unknown tokenizer type {kind!r}; known: {sorted(TOKENIZER_TYPES)}", path)
    return TOKENIZER_TYPES[kind]._from_header(header, path.parent)


# ------------------------------------------------------------------------------------------- building
SPM_KINDS = {"sentencepiece": None, "spm": None, "bpe": "bpe", "unigram": "unigram"}


def _fingerprint(texts: Sequence[str]) -> str:
    h = hashlib.sha1()
    for t in texts:
        h.update(t.encode("utf-8"))
        h.update(b"\n")
    return h.hexdigest()


def train_tokenizer(
    kind: str,
    texts: Sequence[str],
    vocab_size: int | None = 8000,
    model_type: str = "bpe",
    character_coverage: float = 1.0,
    min_freq: int = 1,
) -> Tokenizer:
    """Train one tokenizer of ``kind`` (char | symbol | sentencepiece | bpe | unigram) on ``texts``.

    ``vocab_size`` is SentencePiece's; char / symbol vocabularies keep every token seen ``min_freq`` times.
    ``hf:<name_or_path>`` loads a pretrained Hugging Face tokenizer (``seqlab[hf]``; nothing is trained)."""
    prefix, _, argument = kind.partition(":")
    if argument and prefix in TOKENIZER_MODULES:
        return optional_type(prefix).from_kind(argument)
    if kind in ("char", "symbol"):
        cls = CharTokenizer if kind == "char" else SymbolTokenizer
        return cls.build(texts, min_freq=min_freq)
    if kind in SPM_KINDS:
        return SentencePieceTokenizer.train(
            texts,
            vocab_size=vocab_size or 8000,
            model_type=SPM_KINDS[kind] or model_type,
            character_coverage=character_coverage,
        )
    raise ValueError(f"unknown tokenizer kind {kind!r}; expected char | symbol | sentencepiece | bpe | unigram")


def build_tokenizers(
    kind: str | tuple[str, str],
    train_corpus: Corpus,
    out_dir: str | Path,
    vocab_size: int | None = 8000,
    shared: bool = True,
    model_type: str = "bpe",
    character_coverage: float = 1.0,
    min_freq: int = 1,
) -> tuple[Tokenizer, Tokenizer]:
    """Source and target tokenizers trained on ``train_corpus``, cached in ``out_dir/src`` and ``/tgt``.

    ``kind`` is one kind for both sides or a (source kind, target kind) pair.  ``shared=True`` trains one
    tokenizer on sources and targets together (same kind on both sides required).  When ``out_dir``
    already holds both tokenizers they are loaded, not retrained (a DataWarning notes when they were
    built with other settings or another training corpus: the saved ones win, so checkpoints stay usable)."""
    src_kind, tgt_kind = (kind, kind) if isinstance(kind, str) else tuple(kind)
    if shared and src_kind != tgt_kind:
        raise ValueError(f"a shared vocabulary needs one tokenizer kind, got {src_kind!r} and {tgt_kind!r}")
    out = Path(out_dir)
    build = {
        "kind": [src_kind, tgt_kind],
        "vocab_size": vocab_size,
        "shared": shared,
        "model_type": model_type,
        "character_coverage": character_coverage,
        "min_freq": min_freq,
        "train_examples": len(train_corpus),
        "train_sha1": _fingerprint(train_corpus.sources + train_corpus.targets),
    }
    src_dir, tgt_dir = out / "src", out / "tgt"
    if (src_dir / HEADER).is_file() and (tgt_dir / HEADER).is_file():
        src_tok, tgt_tok = load_tokenizer(src_dir), load_tokenizer(tgt_dir)
        saved = src_tok.meta.get("build")
        if saved is not None and saved != build:
            diff = sorted(k for k in build if saved.get(k) != build[k])
            warnings.warn(
                f"{out}: using cached tokenizers built with different settings "
                f"({', '.join(diff)}); delete the folder to rebuild",
                DataWarning,
                stacklevel=2,
            )
        return src_tok, tgt_tok
    kw = dict(vocab_size=vocab_size, model_type=model_type, character_coverage=character_coverage, min_freq=min_freq)
    if shared:
        src_tok = train_tokenizer(src_kind, train_corpus.sources + train_corpus.targets, **kw)
        tgt_tok = src_tok
    else:
        src_tok = train_tokenizer(src_kind, train_corpus.sources, **kw)
        tgt_tok = train_tokenizer(tgt_kind, train_corpus.targets, **kw)
    for tok in {id(src_tok): src_tok, id(tgt_tok): tgt_tok}.values():
        tok.meta["build"] = build
    out.mkdir(parents=True, exist_ok=True)
    for tok, final in ((src_tok, src_dir), (tgt_tok, tgt_dir)):
        tmp = out / f".tmp-{final.name}-{uuid.uuid4().hex}"
        tok.save(tmp)
        if final.exists() and ((final / HEADER).exists() or not any(final.iterdir())):
            shutil.rmtree(final)  # a stale half-written cache from an interrupted run
        try:
            os.replace(tmp, final)
        except OSError as e:
            shutil.rmtree(tmp, ignore_errors=True)
            raise DataError(f"cannot write tokenizer ({e})", final) from None
    return src_tok, tgt_tok
