"""Tasks: corpora + tokenizers + metrics, by name (:data:`TASKS`), each registered with its options dataclass.

``load_task(name, options, cache_dir)`` returns a :class:`TaskData`; tokenizers are trained on the
training split and cached in ``cache_dir`` (a second call loads them).  Every built-in task accepts
``max_train``: keep at most that many distinct training *sources* (with all their references), chosen by
a stable hash of the source text, so the choice is deterministic, independent of file order, and nested
(a smaller ``max_train`` keeps a subset of a larger one's sources).  Unknown option names, values of the wrong
type and missing required options are errors (typos should not pass silently), found when the config is loaded.

Register a task::

    @dataclass
    class MyTaskOptions:
        path: str                    # required (no default)
        max_train: int | None = None

    @register_task("my-task", MyTaskOptions)
    def my_task(options: MyTaskOptions, cache_dir: Path) -> TaskData: ...

A task registered without an options dataclass gets ``task.options`` as a dict and checks it itself
(:func:`task_options`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from seqlab.data.corpus import Corpus
from seqlab.data.errors import DataError
from seqlab.data.tokenizers import Tokenizer
from seqlab.registry import Registry


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


TaskFn = Callable[[Any, Path], TaskData]
#: the tasks by name, each with its options dataclass
TASKS: Registry[TaskFn] = Registry("task")


def register_task(name: str, options: type | None = None) -> Callable[[TaskFn], TaskFn]:
    """Decorator registering ``fn(options, cache_dir) -> TaskData`` under ``name``; ``options``: its options
    dataclass (``fn`` then gets an instance of it), or None (``fn`` gets the options dict)."""
    return TASKS.register(name, options)


def load_task(name: str, options: dict[str, Any] | None, cache_dir: str | Path) -> TaskData:
    """Load task ``name`` with ``options``; tokenizers are built into (or loaded from) ``cache_dir``."""
    if name not in TASKS:
        raise DataError(f"unknown task {name!r}; registered tasks: {', '.join(TASKS)}")
    parsed = TASKS.parse_options(name, dict(options or {}), "task.options", error=DataError)
    data = TASKS[name](parsed, Path(cache_dir))
    data.name = data.name or name
    return data


# ------------------------------------------------------------------------------------------- helpers
def task_options(
    task: str, options: dict[str, Any], defaults: dict[str, Any], required: tuple[str, ...] = ()
) -> dict[str, Any]:
    """For tasks registered without an options dataclass: ``defaults`` updated with ``options``; unknown or
    missing required options raise DataError."""
    unknown = sorted(set(options) - set(defaults) - set(required))
    if unknown:
        raise DataError(
            f"task {task}: unknown option(s) {', '.join(unknown)}; accepted: "
            f"{', '.join(sorted(set(defaults) | set(required)))}"
        )
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


def find_file(path: Path, what: str) -> Path:
    """``path`` or ``path`` + .gz, whichever exists."""
    for p in (path, Path(f"{path}.gz")) if path.suffix != ".gz" else (path, path.with_suffix("")):
        if p.is_file():
            return p
    raise DataError(f"{what} not found", path)


def directory(task: str, value: Any, expect: str) -> Path:
    """Option ``path`` of ``task`` as an existing directory (else a DataError saying what it should hold)."""
    path = Path(str(value)).expanduser()
    if not path.is_dir():
        raise DataError(f"task {task}: option 'path' must be a directory holding {expect}", path)
    return path
