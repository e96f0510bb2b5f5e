"""Parallel corpora: the :class:`Corpus` container and validating readers for text pairs, TSV and JSONL.

Every reader returns examples in file order and groups examples that share an identical source string
(multi-reference data: several translations of one sentence, several pronunciations of one word).
Files may be plain or gzip-compressed (detected from the magic bytes, not the suffix).  Problems raise
:class:`~seqlab.data.errors.DataError` naming the file and the 1-based line.  Empty source or target
lines are skipped with one counted :class:`~seqlab.data.errors.DataWarning` per file (``on_empty="skip"``,
the default) or raise (``on_empty="error"``).  Leading and trailing whitespace of each text is stripped.
"""

from __future__ import annotations

import gzip
import json
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from seqlab.data.errors import DataError, DataWarning

GZIP_MAGIC = b"\x1f\x8b"
ON_EMPTY = ("skip", "error")


def group_by_source(sources: Sequence[str]) -> list[int]:
    """Group id of each example: the index of its source among distinct sources in first-appearance order."""
    ids: dict[str, int] = {}
    return [ids.setdefault(s, len(ids)) for s in sources]


@dataclass
class Corpus:
    """Aligned (source, target) examples; ``group[i]`` is the distinct source that example ``i`` belongs to.

    Several examples with the same group are several references of one source.  ``group`` defaults to
    grouping identical source strings; it is renumbered in first-appearance order either way."""

    sources: list[str]
    targets: list[str]
    group: list[int] = field(default_factory=list)
    name: str = ""

    def __post_init__(self) -> None:
        if len(self.sources) != len(self.targets):
            raise ValueError(f"Corpus {self.name!r}: {len(self.sources)} sources but {len(self.targets)} targets")
        if not self.group and self.sources:
            self.group = group_by_source(self.sources)
        elif len(self.group) != len(self.sources):
            raise ValueError(f"Corpus {self.name!r}: {len(self.group)} group ids for {len(self.sources)} examples")
        else:
            renum: dict[int, int] = {}
            self.group = [renum.setdefault(g, len(renum)) for g in self.group]

    def __len__(self) -> int:
        return len(self.sources)

    @property
    def num_groups(self) -> int:
        """Number of distinct sources."""
        return max(self.group) + 1 if self.group else 0

    def references(self) -> tuple[list[str], list[list[str]]]:
        """Distinct sources in first-appearance order and the list of references of each."""
        sources: list[str] = []
        refs: list[list[str]] = []
        for s, t, g in zip(self.sources, self.targets, self.group, strict=True):
            if g == len(sources):
                sources.append(s)
                refs.append([])
            refs[g].append(t)
        return sources, refs

    def subset(self, indices: Iterable[int]) -> Corpus:
        """A new corpus with the examples at ``indices`` (in that order), groups renumbered."""
        idx = [int(i) for i in indices]
        return Corpus(
            [self.sources[i] for i in idx], [self.targets[i] for i in idx], [self.group[i] for i in idx], self.name
        )

    def group_indices(self, groups: Iterable[int]) -> list[int]:
        """Indices (in corpus order) of every example whose group is in ``groups``."""
        keep = set(int(g) for g in groups)
        return [i for i, g in enumerate(self.group) if g in keep]


# ---------------------------------------------------------------------------------------------- files
def read_lines(path: str | Path) -> list[str]:
    """Lines of a UTF-8 text file, plain or gzip; line ends (``\\n``, ``\\r\\n``) and a leading BOM removed.

    Raises DataError for a missing file, a corrupt gzip stream, or invalid UTF-8 (naming the line)."""
    path = Path(path)
    if not path.is_file():
        raise DataError("file not found" if not path.exists() else "not a regular file", path)
    data = path.read_bytes()
    if data[:2] == GZIP_MAGIC:
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as e:
            raise DataError(f"corrupt gzip data ({e})", path) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        msg = f"invalid UTF-8 (byte {data[e.start]:#04x} at byte offset {e.start})"
        raise DataError(msg, path, line) from None
    if text.startswith("\ufeff"):
        text = text[1:]
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [ln[:-1] if ln.endswith("\r") else ln for ln in lines]


@dataclass
class ExampleRows:
    """Examples gathered row by row: a source string and one example per reference (a string or a list of
    strings), rows with an empty side skipped (``on_empty="skip"``) or refused (``"error"``)."""

    on_empty: str
    sources: list[str] = field(default_factory=list)
    targets: list[str] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)
    total: int = 0

    def add(
        self, row: int, src: Any, tgt: Any, src_name: str, tgt_name: str, error: Callable[[str], DataError]
    ) -> None:
        """Add row ``row``; ``error(message)`` builds the error that names the file or dataset and the row."""
        if not isinstance(src, str):
            raise error(f"{src_name} must be a string, found {type(src).__name__}")
        refs = [tgt] if isinstance(tgt, str) else tgt
        if not isinstance(refs, list) or not all(isinstance(r, str) for r in refs):
            raise error(f"{tgt_name} must be a string or a list of strings, found {type(tgt).__name__}")
        src = src.strip()
        refs = [r.strip() for r in refs] or [""]
        self.total += len(refs)
        for r in refs:
            if not src or not r:
                if self.on_empty == "error":
                    raise error(f"empty {'source' if not src else 'target'}")
                self.skipped.append(row)
                continue
            self.sources.append(src)
            self.targets.append(r)


def _check_on_empty(on_empty: str) -> None:
    if on_empty not in ON_EMPTY:
        raise ValueError(f"on_empty must be one of {ON_EMPTY}, got {on_empty!r}")


def _warn_skipped(what: str, skipped: list[int], total: int) -> None:
    if skipped:
        warnings.warn(
            f"{what}: skipped {len(skipped)} of {total} examples with an empty source or target "
            f"(first at line {skipped[0]})",
            DataWarning,
            stacklevel=3,
        )


def _build(sources: list[str], targets: list[str], name: str, path: str | Path, lines: int) -> Corpus:
    """The corpus; none at all is an error naming the file (an empty file loads, then fails far from here)."""
    if not sources:
        reason = (
            "empty file: no examples"
            if lines == 0
            else f"no examples: every one of its {lines} lines has an empty source or target"
        )
        raise DataError(reason, path)
    return Corpus(sources, targets, group_by_source(sources), name)


def read_parallel(src_path: str | Path, tgt_path: str | Path, on_empty: str = "skip") -> Corpus:
    """Read a pair of line-aligned text files (plain or gzip), one example per line."""
    _check_on_empty(on_empty)
    src_lines, tgt_lines = read_lines(src_path), read_lines(tgt_path)
    for path, lines in ((src_path, src_lines), (tgt_path, tgt_lines)):
        if not any(line.strip() for line in lines):
            raise DataError("empty file: no examples", path)
    if len(src_lines) != len(tgt_lines):
        raise DataError(f"has {len(src_lines)} lines but {tgt_path} has {len(tgt_lines)} lines", src_path)
    sources, targets, skipped = [], [], []
    for i, (s, t) in enumerate(zip(src_lines, tgt_lines, strict=True), start=1):
        s, t = s.strip(), t.strip()
        if not s or not t:
            if on_empty == "error":
                side, path = ("source", src_path) if not s else ("target", tgt_path)
                raise DataError(f"empty {side} line", path, i)
            skipped.append(i)
            continue
        sources.append(s)
        targets.append(t)
    _warn_skipped(f"{src_path} / {tgt_path}", skipped, len(src_lines))
    return _build(sources, targets, str(src_path), src_path, len(src_lines))


def read_tsv(
    path: str | Path,
    src_col: int = 0,
    tgt_col: int = 1,
    num_cols: int | None = None,
    header: bool = False,
    on_empty: str = "skip",
) -> Corpus:
    """Read tab-separated rows (plain or gzip, no quoting); every row must have the same number of columns.

    ``num_cols`` fixes that number (default: the first row's).  ``header=True`` skips the first row."""
    _check_on_empty(on_empty)
    lines = read_lines(path)
    start = 1 if header else 0
    need = max(src_col, tgt_col) + 1
    expected = num_cols
    sources, targets, skipped = [], [], []
    for i in range(start, len(lines)):
        line = lines[i]
        if not line.strip():
            if on_empty == "error":
                raise DataError("empty line", path, i + 1)
            skipped.append(i + 1)
            continue
        cols = line.split("\t")
        if expected is None:
            expected = len(cols)
        if len(cols) != expected or len(cols) < need:
            want = expected if len(cols) != expected else need
            raise DataError(f"expected {want} tab-separated columns, found {len(cols)}", path, i + 1)
        s, t = cols[src_col].strip(), cols[tgt_col].strip()
        if not s or not t:
            if on_empty == "error":
                raise DataError(f"empty {'source' if not s else 'target'} column", path, i + 1)
            skipped.append(i + 1)
            continue
        sources.append(s)
        targets.append(t)
    _warn_skipped(str(path), skipped, len(lines) - start)
    return _build(sources, targets, str(path), path, len(lines) - start)


def read_jsonl(path: str | Path, src_key: str = "source", tgt_key: str = "target", on_empty: str = "skip") -> Corpus:
    """Read one JSON object per line; the target may be a string or a list of strings (multi-reference).

    A list gives one example per reference, all in the source's group.  Blank lines are ignored."""
    _check_on_empty(on_empty)
    lines = read_lines(path)
    rows = ExampleRows(on_empty)
    for i, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"malformed JSON ({e.msg} at column {e.colno})", path, i) from None
        if not isinstance(obj, dict):
            raise DataError(f"expected a JSON object, found {type(obj).__name__}", path, i)
        for key in (src_key, tgt_key):
            if key not in obj:
                raise DataError(f"missing key {key!r}", path, i)
        rows.add(
            i,
            obj[src_key],
            obj[tgt_key],
            repr(src_key),
            repr(tgt_key),
            lambda message, line=i: DataError(message, path, line),
        )
    _warn_skipped(str(path), rows.skipped, rows.total)
    return _build(rows.sources, rows.targets, str(path), path, sum(1 for line in lines if line.strip()))


def read_corpus(spec: dict[str, Any], root: str | Path | None = None) -> Corpus:
    """Read a corpus described by a dict, dispatching on ``format``.

    * ``{"src": a, "tgt": b}`` (format ``parallel``, the default when both keys are present),
    * ``{"path": p, "format": "tsv", "src_col": 0, "tgt_col": 1, "header": false}``,
    * ``{"path": p, "format": "jsonl", "src_key": "source", "tgt_key": "target"}``.

    ``format`` may be omitted for ``path`` when its name ends in .tsv / .jsonl (optionally + .gz).
    A bare path string stands for ``{"path": ...}``.  Relative paths are resolved against ``root`` when
    given.  ``on_empty`` is accepted by every format."""
    if isinstance(spec, (str, Path)):
        spec = {"path": str(spec)}
    if not isinstance(spec, dict):
        raise DataError(f"a corpus spec must be a mapping with 'src'/'tgt' or 'path', got {spec!r}")
    spec = dict(spec)
    fmt = spec.pop("format", None)

    def resolve(p: Any) -> Path:
        p = Path(str(p)).expanduser()
        return p if root is None or p.is_absolute() else Path(root) / p

    if fmt is None:
        if "src" in spec and "tgt" in spec:
            fmt = "parallel"
        elif "path" in spec:
            name = str(spec["path"]).removesuffix(".gz")
            fmt = "tsv" if name.endswith(".tsv") else "jsonl" if name.endswith((".jsonl", ".json")) else None
        if fmt is None:
            raise DataError(f"corpus spec {spec!r}: give 'src' and 'tgt', or 'path' and 'format' (tsv | jsonl)")
    readers = {
        "parallel": (read_parallel, ("src", "tgt")),
        "text": (read_parallel, ("src", "tgt")),
        "tsv": (read_tsv, ("path",)),
        "jsonl": (read_jsonl, ("path",)),
    }
    if fmt not in readers:
        raise DataError(f"corpus spec: unknown format {fmt!r}; expected one of {sorted(readers)}")
    reader, path_keys = readers[fmt]
    missing = [k for k in path_keys if k not in spec]
    if missing:
        raise DataError(f"corpus spec {spec!r} (format {fmt}): missing {', '.join(map(repr, missing))}")
    args = [resolve(spec.pop(k)) for k in path_keys]
    try:
        return reader(*args, **spec)
    except TypeError as e:
        raise DataError(f"corpus spec for {args[0]}: {e}") from None


def write_parallel(corpus: Corpus, src_path: str | Path, tgt_path: str | Path) -> None:
    """Write a corpus as two line-aligned UTF-8 files (gzip when a name ends in .gz)."""
    for path, texts in ((Path(src_path), corpus.sources), (Path(tgt_path), corpus.targets)):
        for t in texts:
            if "\n" in t:
                raise DataError(f"text contains a newline: {t[:40]!r}", path)
        data = "".join(t + "\n" for t in texts).encode("utf-8")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(gzip.compress(data, mtime=0) if path.suffix == ".gz" else data)
