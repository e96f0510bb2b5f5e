"""Summarization tasks: Gigaword-format files ("summarization") and the built-in AESLC corpus ("aeslc").

Gigaword format: one article per line in a source file, the title on the same line of a target file.
Validation and test may have several references: a list of target files, line-aligned with the source.
Metrics: ROUGE-1/2/L F1 (rouge-score; "rouge", the checkpoint-selection metric, is their mean; with several
references each is the max over references).  The training reward of the ERPO paper is the sum
R1 + R2 + RL: pass ``algorithm.options.reward=rouge`` (``seqlab compare --reward rouge``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import lzma
import os
import re
import tarfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seqlab.data.corpus import Corpus, read_lines
from seqlab.data.errors import DataError
from seqlab.data.tokenizers import build_tokenizers
from seqlab.tasks.base import TaskData, register_task, stable_hash, subsample

METRICS = ["rouge", "rouge1", "rouge2", "rougeL"]
SPLITS = ("train", "valid", "test")
#: file names tried for a split in a directory: seqlab's, then the Gigaword release's (Rush et al. 2015)
DIR_NAMES = (("{s}.src", "{s}.tgt"), ("{s}.article.txt", "{s}.title.txt"))


def _clip_words(text: str, max_words: int | None) -> str:
    words = text.split()
    return " ".join(words if max_words is None else words[: int(max_words)])


def read_multi_reference(
    src_path: str | Path,
    tgt_paths: list[str | Path],
    name: str = "",
    max_src_words: int | None = None,
    lowercase: bool = False,
) -> Corpus:
    """Line-aligned source and reference files: one group per source line, one example per non-empty reference.

    Lines whose source or every reference is empty are skipped.  Groups follow the lines, so two
    articles with the same text stay two items."""
    return _read_aligned(src_path, tgt_paths, name, max_src_words, lowercase)[0]


def _read_aligned(
    src_path: str | Path, tgt_paths: list[str | Path], name: str, max_src_words: int | None, lowercase: bool
) -> tuple[Corpus, list[int]]:
    """The corpus and, for each of its groups, the 0-based line it came from."""
    src = read_lines(src_path)
    refs = [read_lines(p) for p in tgt_paths]
    for p, lines in zip(tgt_paths, refs, strict=True):
        if len(lines) != len(src):
            raise DataError(f"has {len(lines)} lines but {src_path} has {len(src)}", p)
    sources, targets, group, line_of = [], [], [], []
    for i, s in enumerate(src):
        s = _clip_words(s.strip(), max_src_words)
        rs = [r[i].strip() for r in refs if r[i].strip()]
        if not s or not rs:
            continue
        for r in rs:
            sources.append(s.lower() if lowercase else s)
            targets.append(r.lower() if lowercase else r)
            group.append(len(line_of))
        line_of.append(i)
    if not sources:
        raise DataError("no non-empty (article, title) pairs", src_path)
    return Corpus(sources, targets, group, name), line_of


def _as_list(value: Any) -> list[str]:
    return [str(v) for v in value] if isinstance(value, (list, tuple)) else [str(value)]


def _existing(path: Path) -> Path | None:
    """``path`` or ``path.gz``, whichever is a file."""
    for p in (path, Path(f"{path}.gz")):
        if p.is_file():
            return p
    return None


def _split_files(opt: dict[str, Any], split: str) -> tuple[Path, list[Path]]:
    src_key, tgt_key = f"{split}_src", f"{split}_tgt"
    if opt.get(src_key) and opt.get(tgt_key):
        return Path(str(opt[src_key])).expanduser(), [Path(p).expanduser() for p in _as_list(opt[tgt_key])]
    if not opt.get("path"):
        raise DataError(f"task summarization: give option 'path' (a directory) or {src_key} and {tgt_key}")
    root = Path(str(opt["path"])).expanduser()
    if not root.is_dir():
        raise DataError("task summarization: option 'path' must be a directory", root)
    for src_name, tgt_name in DIR_NAMES:
        src = _existing(root / src_name.format(s=split))
        if src is not None:
            tgt = _existing(root / tgt_name.format(s=split))
            if tgt is not None:
                return src, [tgt]
            numbered = sorted(
                root.glob(f"{tgt_name.format(s=split)}.[0-9]*"),
                key=lambda p: int(p.name.removesuffix(".gz").rsplit(".", 1)[1]),
            )
            if numbered:
                return src, numbered
            raise DataError(f"no targets for {src.name} ({tgt_name.format(s=split)} or .0, .1, ...)", root)
    raise DataError(
        f"no {split} split: expected {split}.src / {split}.tgt (or {split}.article.txt / {split}.title.txt)", root
    )


def _tokenizers(opt: dict[str, Any], train: Corpus, cache_dir: Path):
    return build_tokenizers(
        str(opt["tokenizer"]),
        train,
        cache_dir,
        vocab_size=opt["vocab_size"],
        shared=bool(opt["shared_vocab"]),
        model_type=opt["model_type"],
    )


@dataclass
class SummarizationOptions:
    path: str | None = None
    train_src: str | None = None
    train_tgt: str | list | None = None
    valid_src: str | None = None
    valid_tgt: str | list | None = None
    test_src: str | None = None
    test_tgt: str | list | None = None
    tokenizer: str = "sentencepiece"
    vocab_size: int | None = 8000
    shared_vocab: bool = True
    model_type: str = "bpe"
    max_train: int | None = None
    max_src_words: int | None = None
    lowercase: bool = False


@register_task("summarization", SummarizationOptions)
def summarization(options: SummarizationOptions, cache_dir: Path) -> TaskData:
    """Article -> headline from Gigaword-format files.

    Either ``path``: a directory with ``{train,valid,test}.src`` / ``.tgt`` (or ``.tgt.0``, ``.tgt.1``, ...
    for several references; or the Gigaword release's ``.article.txt`` / ``.title.txt``), plain or .gz; or
    ``train_src``, ``train_tgt``, ``valid_src``, ... (a ``*_tgt`` may be a list of reference files).
    ``max_src_words`` truncates articles (e.g. Gigaword's first-sentence inputs need none; long documents
    do), ``lowercase`` folds case."""
    opt = dataclasses.asdict(options)
    corpora = {}
    for split in SPLITS:
        src, tgts = _split_files(opt, split)
        corpora[split] = read_multi_reference(
            src, tgts, f"summarization/{split}", opt["max_src_words"], bool(opt["lowercase"])
        )
    train = subsample(corpora["train"], opt["max_train"])
    src_tok, tgt_tok = _tokenizers(opt, train, cache_dir)
    return TaskData(train, corpora["valid"], corpora["test"], src_tok, tgt_tok, list(METRICS), "summarization")


# ---------------------------------------------------------------------------------------------- AESLC
AESLC_ARCHIVE = "enron_subject_line.tar.xz"
AESLC_SHA256 = "3a7827cea8eeffe5bd85411236751e7fb303e34f4e06b307b5a41ad5b7d111fa"
AESLC_DEFAULT_PATHS = ("../shared/data/aeslc", "shared/data/aeslc", "/work/shared/data/aeslc")
MARKER = re.compile(r"^@(subject|ann\d+)\s*$")
CACHE_VERSION = 1


def parse_aeslc(text: str, where: str = "") -> tuple[str, str, list[str]]:
    """(body, subject, annotations) of one AESLC ``.subject`` file; whitespace collapsed to single spaces."""
    lines = text.replace("\r\n", "\n").split("\n")
    fields: dict[str, list[str]] = {"body": []}
    current = "body"
    for line in lines:
        m = MARKER.match(line.strip())
        if m:
            current = m.group(1)
            fields[current] = []
        else:
            fields[current].append(line)
    if "subject" not in fields:
        raise DataError("no '@subject' line", where)

    def join(key: str) -> str:
        return " ".join(" ".join(fields.get(key, [])).split())

    anns = [join(k) for k in sorted((k for k in fields if k.startswith("ann")), key=lambda k: int(k[3:]))]
    return join("body"), join("subject"), [a for a in anns if a]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _locate_aeslc(path: Any) -> Path:
    candidates = ([Path(str(path)).expanduser()] if path else []) + [Path(p) for p in AESLC_DEFAULT_PATHS]
    for c in candidates:
        archive = c if c.is_file() else c / AESLC_ARCHIVE
        if archive.is_file():
            return archive
    raise DataError(f"AESLC archive {AESLC_ARCHIVE} not found (set task.options.path to its directory)", candidates[0])


def extract_aeslc(archive: Path, out_dir: Path) -> Path:
    """Read the archive once into Gigaword-format files under ``out_dir`` (never into the repository):
    ``train.src/.tgt`` (body / subject) and ``dev.src``, ``dev.tgt`` (subject), ``dev.ann.0..2`` (annotations);
    ``dev.ids`` / ``train.ids`` name the source files.  Written atomically; reused when present."""
    done = out_dir / "DONE.json"
    if done.is_file() and json.loads(done.read_text(encoding="utf-8")).get("version") == CACHE_VERSION:
        return out_dir
    if _sha256(archive) != AESLC_SHA256:
        raise DataError(f"checksum mismatch (expected sha256 {AESLC_SHA256}); see SOURCE.md", archive)
    items: dict[str, list[tuple[str, str, str, list[str]]]] = {"train": [], "dev": []}
    with lzma.open(archive) as xz, tarfile.open(fileobj=xz, mode="r|") as tar:
        for member in tar:
            parts = Path(member.name).parts
            if not member.isfile() or len(parts) < 3 or parts[-2] not in items:
                continue
            f = tar.extractfile(member)
            if f is None:
                continue
            body, subject, anns = parse_aeslc(f.read().decode("utf-8", errors="replace"), member.name)
            items[parts[-2]].append((parts[-1], body, subject, anns))
    tmp = out_dir.parent / f".{out_dir.name}.{uuid.uuid4().hex}"
    tmp.mkdir(parents=True)
    for split, rows in items.items():
        rows.sort()
        (tmp / f"{split}.ids").write_text("".join(r[0] + "\n" for r in rows), encoding="utf-8")
        (tmp / f"{split}.src").write_text("".join(r[1] + "\n" for r in rows), encoding="utf-8")
        (tmp / f"{split}.tgt").write_text("".join(r[2] + "\n" for r in rows), encoding="utf-8")
        if split == "dev":
            for k in range(3):
                (tmp / f"dev.ann.{k}").write_text(
                    "".join((r[3][k] if len(r[3]) > k else "") + "\n" for r in rows), encoding="utf-8"
                )
    (tmp / "DONE.json").write_text(
        json.dumps(
            {
                "version": CACHE_VERSION,
                "archive": str(archive),
                "sha256": AESLC_SHA256,
                "counts": {k: len(v) for k, v in items.items()},
            }
        ),
        encoding="utf-8",
    )
    if out_dir.exists():
        import shutil

        shutil.rmtree(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, out_dir)
    return out_dir


@dataclass
class AESLCOptions:
    path: str | None = None
    data_dir: str | None = None
    valid_size: int = 1000
    tokenizer: str = "sentencepiece"
    vocab_size: int | None = 8000
    shared_vocab: bool = True
    model_type: str = "bpe"
    max_train: int | None = None
    max_src_words: int | None = 128
    lowercase: bool = False


@register_task("aeslc", AESLCOptions)
def aeslc(options: AESLCOptions, cache_dir: Path) -> TaskData:
    """AESLC email body -> subject line (Zhang & Tetreault 2019), from ``../shared/data/aeslc``.

    The archive is read once into Gigaword-format files in ``data_dir`` (default: ``data_cache/aeslc``
    next to the tokenizer cache, i.e. inside the run directory).  Splits: test = the official dev split
    (1,960 emails) scored against its three annotated subject lines (ann0-2; the original subject is not a
    reference there); valid = ``valid_size`` training emails held out by a stable hash of their file name
    (one reference, the original subject); train = the remaining training emails.  The archive's test
    split is withheld by the data package, so this is the standard "benchmark on dev" setup.  Bodies are
    truncated to ``max_src_words`` words (default 128)."""
    opt = dataclasses.asdict(options)
    archive = _locate_aeslc(opt["path"])
    data_dir = Path(str(opt["data_dir"])).expanduser() if opt["data_dir"] else cache_dir.parent / "data_cache" / "aeslc"
    root = extract_aeslc(archive, data_dir)
    clip, lower = opt["max_src_words"], bool(opt["lowercase"])
    full, line_of = _read_aligned(root / "train.src", [root / "train.tgt"], "aeslc/train", clip, lower)
    ids = read_lines(root / "train.ids")
    ranked = sorted(range(full.num_groups), key=lambda g: (stable_hash(ids[line_of[g]], "seqlab-aeslc-valid"), g))
    held = set(ranked[: int(opt["valid_size"])])
    train = full.subset([i for i, g in enumerate(full.group) if g not in held])
    valid = full.subset([i for i, g in enumerate(full.group) if g in held])
    train.name, valid.name = "aeslc/train", "aeslc/valid"
    test = read_multi_reference(
        root / "dev.src", [root / f"dev.ann.{k}" for k in range(3)], "aeslc/test(dev)", clip, lower
    )
    train = subsample(train, opt["max_train"])
    src_tok, tgt_tok = _tokenizers(opt, train, cache_dir)
    return TaskData(
        train,
        valid,
        test,
        src_tok,
        tgt_tok,
        list(METRICS),
        "aeslc",
        {"data_dir": str(root), "test_split": "dev (3 annotated references)"},
    )
