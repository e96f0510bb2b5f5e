"""task.name=hf: a datasets DatasetDict saved offline, dotted fields, list-valued references, one-line errors."""

from __future__ import annotations

import pytest

datasets = pytest.importorskip("datasets")

from seqlab.data.errors import DataError, DataWarning  # noqa: E402
from seqlab.data.tasks import load_task  # noqa: E402


def save(tmp_path, rows: dict[str, list[dict]]) -> str:
    folder = tmp_path / "ds"
    datasets.DatasetDict({k: datasets.Dataset.from_list(v) for k, v in rows.items()}).save_to_disk(str(folder))
    return str(folder)


def translation_rows(n: int, offset: int = 0) -> list[dict]:
    return [{"id": i, "translation": {"de": f"ein haus {i + offset}", "en": f"a house {i + offset}"}} for i in range(n)]


@pytest.fixture
def wmt_like(tmp_path):
    return save(
        tmp_path,
        {"train": translation_rows(6), "validation": translation_rows(2, 100), "test": translation_rows(2, 200)},
    )


def task(path, cache, **extra):
    return load_task(
        "hf",
        {"dataset": path, "src_field": "translation.de", "tgt_field": "translation.en", "tokenizer": "symbol", **extra},
        cache,
    )


def test_dotted_fields_and_splits(wmt_like, tmp_path):
    data = task(wmt_like, tmp_path / "tok")
    assert data.train.sources[:2] == ["ein haus 0", "ein haus 1"] and data.train.targets[0] == "a house 0"
    assert data.valid.targets == ["a house 100", "a house 101"] and len(data.test) == 2
    assert data.metrics == ["bleu", "chrf"] and data.src_tokenizer.encode("ein haus")[0] >= 4
    swapped = task(
        wmt_like, tmp_path / "tok2", src_field="translation.en", tgt_field="translation.de", splits={"valid": "test"}
    )
    assert swapped.train.sources[0] == "a house 0" and swapped.valid.targets == ["ein haus 200", "ein haus 201"]


def test_list_valued_references_group_under_their_source(tmp_path):
    rows = [
        {"src": "colour", "refs": {"text": ["K AH L ER", "K AO L ER"]}},
        {"src": "cat", "refs": {"text": ["K AE T"]}},
    ]
    path = save(tmp_path, {"train": rows, "validation": rows, "test": rows})
    data = load_task(
        "hf",
        {"dataset": path, "src_field": "src", "tgt_field": "refs.text", "tokenizer": "symbol", "metrics": ["wer"]},
        tmp_path / "tok",
    )
    sources, refs = data.test.references()
    assert sources == ["colour", "cat"] and refs == [["K AH L ER", "K AO L ER"], ["K AE T"]]
    first = load_task(
        "hf",
        {"dataset": path, "src_field": "src", "tgt_field": "refs.text.0", "tokenizer": "symbol", "metrics": ["wer"]},
        tmp_path / "tok1",
    )
    assert first.test.targets == ["K AH L ER", "K AE T"]


def test_errors_name_dataset_split_row_and_field(wmt_like, tmp_path):
    with pytest.raises(
        DataError,
        match=r"\[train\]: row 0: field 'translation.fr': no 'fr' at 'translation' "
        r"\(keys: de, en\)",
    ):
        task(wmt_like, tmp_path / "a", tgt_field="translation.fr")
    with pytest.raises(DataError, match=r"row 0: field 'id' must be a string, found int"):
        task(wmt_like, tmp_path / "b", src_field="id")
    with pytest.raises(
        DataError,
        match=r"no split 'dev' \(splits: train, validation, test\); set "
        r"task.options.splits.valid",
    ):
        task(wmt_like, tmp_path / "c", splits={"valid": "dev"})
    with pytest.raises(DataError, match="cannot load the dataset"):
        task(str(tmp_path / "nowhere"), tmp_path / "d")
    with pytest.raises(DataError, match="option 'src_field' is required"):
        load_task("hf", {"dataset": wmt_like, "tgt_field": "x"}, tmp_path / "e")


def test_empty_rows_are_skipped_with_one_warning_or_an_error(tmp_path):
    rows = translation_rows(4)
    rows[2]["translation"]["en"] = "  "
    path = save(tmp_path, {"train": rows, "validation": translation_rows(2), "test": translation_rows(2)})
    with pytest.warns(DataWarning, match=r"\[train\]: skipped 1 of 4 examples .* \(first at row 2\)"):
        data = task(path, tmp_path / "tok")
    assert len(data.train) == 3
    with pytest.raises(DataError, match=r"\[train\]: row 2: empty target"):
        task(path, tmp_path / "tok2", on_empty="error")


def test_hf_tokenizer_kind(wmt_like, tmp_path):
    pytest.importorskip("transformers")
    from hf_tiny import tiny_tokenizer

    folder = tmp_path / "tok_src"
    hf_tok = tiny_tokenizer("bart", folder)
    data = task(wmt_like, tmp_path / "tok", tokenizer=f"hf:{folder}")
    assert data.src_tokenizer is data.tgt_tokenizer and data.tgt_tokenizer.vocab_size == len(hf_tok) + 1
    assert data.tgt_tokenizer.decode(data.tgt_tokenizer.encode("a house")) == "a house"
