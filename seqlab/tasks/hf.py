"""``task.name=hf``: a Hugging Face ``datasets`` dataset (a hub name or a ``save_to_disk`` folder) as a task.

Fields are dotted paths into each row (``translation.de``; an integer picks a list element, ``captions.0``); a
target that is a list of strings gives several references of its source.  Problems stop with one line naming the
dataset, the split, the row and the field, as the file readers name the file and the line.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from seqlab.data.corpus import Corpus, ExampleRows, group_by_source
from seqlab.data.errors import DataError, DataWarning
from seqlab.data.tokenizers import build_tokenizers
from seqlab.tasks.base import TaskData, register_task, subsample, task_options

SPLITS = {"train": "train", "valid": "validation", "test": "test"}
INSTALL_HINT = 'task hf needs the datasets library: pip install "seqlab[hf]"'


def load_dataset_dict(dataset: str, config: str | None = None, revision: str | None = None) -> Any:
    """A ``DatasetDict``: ``load_from_disk`` for a folder, else ``load_dataset(dataset, config)``."""
    try:
        import datasets
    except ModuleNotFoundError:
        raise DataError(INSTALL_HINT) from None
    path = Path(dataset).expanduser()
    try:
        if path.is_dir() and ((path / "dataset_dict.json").is_file() or (path / "dataset_info.json").is_file()):
            loaded = datasets.load_from_disk(str(path))
        else:
            loaded = datasets.load_dataset(dataset, config, revision=revision)
    except Exception as e:  # datasets raises many kinds (FileNotFoundError, DatasetNotFoundError, ValueError, ...)
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DataError(f"cannot load the dataset ({type(e).__name__}: {first})", dataset) from None
    if isinstance(loaded, datasets.Dataset):
        raise DataError("a single split was saved; save a DatasetDict with train / validation / test splits", dataset)
    return loaded


def field_value(row: dict[str, Any], field: str) -> Any:
    """The value at dotted path ``field`` in ``row``; a KeyError names the first missing part and what is there."""
    value: Any = row
    walked = []
    for part in field.split("."):
        if isinstance(value, dict):
            if part not in value:
                where = f" at {'.'.join(walked)!r}" if walked else ""
                raise KeyError(f"field {field!r}: no {part!r}{where} (keys: {', '.join(map(str, value)) or 'none'})")
            value = value[part]
        elif isinstance(value, list) and part.lstrip("-").isdigit():
            index = int(part)
            if not -len(value) <= index < len(value):
                raise KeyError(f"field {field!r}: index {index} past a list of {len(value)}")
            value = value[index]
        else:
            raise KeyError(
                f"field {field!r}: {'.'.join(walked) or 'the row'} is a {type(value).__name__}, not a mapping"
            )
        walked.append(part)
    return value


def read_split(data: Any, where: str, src_field: str, tgt_field: str, on_empty: str = "skip") -> Corpus:
    """The examples of one split (a ``datasets.Dataset``): source strings and one example per reference."""
    rows = ExampleRows(on_empty)
    for i, row in enumerate(data):
        try:
            src, tgt = field_value(row, src_field), field_value(row, tgt_field)
        except KeyError as e:
            raise DataError(f"row {i}: {e.args[0]}", where) from None
        rows.add(
            i,
            src,
            tgt,
            f"field {src_field!r}",
            f"field {tgt_field!r}",
            lambda message, index=i: DataError(f"row {index}: {message}", where),
        )
    sources, targets, skipped, total = rows.sources, rows.targets, rows.skipped, rows.total
    if skipped:
        warnings.warn(
            f"{where}: skipped {len(skipped)} of {total} examples with an empty source or target "
            f"(first at row {skipped[0]})",
            DataWarning,
            stacklevel=2,
        )
    if not sources:
        raise DataError(
            "no examples" if not total else f"no examples: every one of its {total} has an empty source or target",
            where,
        )
    return Corpus(sources, targets, group_by_source(sources), where)


@register_task("hf")
def hf_dataset(options: dict[str, Any], cache_dir: Path) -> TaskData:
    """A Hugging Face datasets dataset (hub name or save_to_disk folder), source and target picked by dotted fields.

    ``splits`` maps train / valid / test to the dataset's split names (default train / validation / test);
    ``tokenizer`` is any kind the parallel task takes, e.g. ``hf:Helsinki-NLP/opus-mt-de-en``."""
    opt = task_options(
        "hf",
        options,
        {
            "config": None,
            "revision": None,
            "splits": dict(SPLITS),
            "tokenizer": "sentencepiece",
            "vocab_size": 8000,
            "shared_vocab": True,
            "model_type": "bpe",
            "metrics": ["bleu", "chrf"],
            "max_train": None,
            "on_empty": "skip",
        },
        required=("dataset", "src_field", "tgt_field"),
    )
    if opt["on_empty"] not in ("skip", "error"):
        raise DataError(f"task hf: on_empty must be skip or error, got {opt['on_empty']!r}")
    splits = {**SPLITS, **(opt["splits"] or {})}
    unknown = sorted(set(splits) - set(SPLITS))
    if unknown:
        raise DataError(f"task hf: splits maps train, valid and test; unknown key(s) {', '.join(unknown)}")
    dataset = str(opt["dataset"])
    loaded = load_dataset_dict(dataset, opt["config"], opt["revision"])
    corpora = {}
    for split, name in splits.items():
        if name not in loaded:
            raise DataError(
                f"no split {name!r} (splits: {', '.join(loaded)}); set task.options.splits.{split}", dataset
            )
        corpora[split] = read_split(
            loaded[name], f"{dataset} [{name}]", str(opt["src_field"]), str(opt["tgt_field"]), opt["on_empty"]
        )
    tok = opt["tokenizer"]
    if isinstance(tok, dict):
        if set(tok) != {"src", "tgt"}:
            raise DataError(f"task hf: tokenizer must be a kind or {{src: kind, tgt: kind}}, got {tok!r}")
        kind: str | tuple[str, str] = (tok["src"], tok["tgt"])
    else:
        kind = str(tok)
    shared = bool(opt["shared_vocab"]) and (isinstance(kind, str) or kind[0] == kind[1])
    train = subsample(corpora["train"], opt["max_train"])
    try:
        src_tok, tgt_tok = build_tokenizers(
            kind, train, cache_dir, vocab_size=int(opt["vocab_size"]), shared=shared, model_type=opt["model_type"]
        )
    except ValueError as e:
        if isinstance(e, DataError):
            raise
        raise DataError(f"task hf: {e}") from None
    metrics = [opt["metrics"]] if isinstance(opt["metrics"], str) else list(opt["metrics"])
    return TaskData(
        train,
        corpora["valid"],
        corpora["test"],
        src_tok,
        tgt_tok,
        metrics,
        "hf",
        {"dataset": dataset, "config": opt["config"], "splits": splits},
    )
