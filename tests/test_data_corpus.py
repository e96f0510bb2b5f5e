"""seqlab.data.corpus: corpus readers and their errors."""

from __future__ import annotations

import json
import warnings

import pytest
from helpers import write

from seqlab.data.corpus import (
    Corpus,
    read_corpus,
    read_jsonl,
    read_lines,
    read_parallel,
    read_tsv,
    write_parallel,
)
from seqlab.data.errors import DataError, DataWarning


# ------------------------------------------------------------------------------------------- Corpus
def test_corpus_groups_references_and_subset():
    c = Corpus(["a", "b", "a", "c", "b"], ["1", "2", "3", "4", "5"])
    assert c.group == [0, 1, 0, 2, 1] and len(c) == 5 and c.num_groups == 3
    assert c.references() == (["a", "b", "c"], [["1", "3"], ["2", "5"], ["4"]])
    sub = c.subset([3, 2, 0])
    assert sub.sources == ["c", "a", "a"] and sub.group == [0, 1, 1]
    assert sub.references() == (["c", "a"], [["4"], ["3", "1"]])
    with pytest.raises(ValueError):
        Corpus(["a"], [])


# ------------------------------------------------------------------------------------------- readers
@pytest.mark.parametrize("gz", [False, True])
def test_read_parallel_plain_and_gzip(tmp_path, gz):
    # the gzip file has no .gz suffix: detection is by magic bytes
    src = write(tmp_path / "a.src", "Hallo Welt\r\n  zwei  \nHallo Welt\n", gz)
    tgt = write(tmp_path / "a.tgt", "hello world\ntwo\nhi world\n", gz)
    c = read_parallel(src, tgt)
    assert c.sources == ["Hallo Welt", "zwei", "Hallo Welt"]
    assert c.targets == ["hello world", "two", "hi world"]
    assert c.group == [0, 1, 0]  # identical sources -> one multi-reference group


def test_read_lines_strips_bom_and_keeps_unicode_separators(tmp_path):
    p = write(tmp_path / "x.txt", "\ufeffa\u2028b\nc")
    assert read_lines(p) == ["a\u2028b", "c"]


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match=r"nope\.de: file not found"):
        read_parallel(tmp_path / "nope.de", tmp_path / "nope.en")


def test_unequal_line_counts_name_both_files_and_counts(tmp_path):
    src = write(tmp_path / "x.de", "a\nb\nc\n")
    tgt = write(tmp_path / "x.en", "a\nb\n")
    with pytest.raises(DataError) as e:
        read_parallel(src, tgt)
    msg = str(e.value)
    assert "x.de" in msg and "x.en" in msg and "3 lines" in msg and "2 lines" in msg


@pytest.mark.parametrize("gz", [False, True])
def test_invalid_utf8_names_the_line(tmp_path, gz):
    src = write(tmp_path / "bad.de", b"ok\nalso ok\nbad \xff byte\n", gz)
    tgt = write(tmp_path / "bad.en", "1\n2\n3\n")
    with pytest.raises(DataError, match=r"bad\.de:3: invalid UTF-8"):
        read_parallel(src, tgt)


def test_empty_lines_skip_with_one_counted_warning_or_error(tmp_path):
    src = write(tmp_path / "e.de", "a\n\nc\nd\n")
    tgt = write(tmp_path / "e.en", "1\n2\n \n4\n")
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        c = read_parallel(src, tgt)
    assert c.sources == ["a", "d"] and c.targets == ["1", "4"]
    data_warnings = [w for w in rec if issubclass(w.category, DataWarning)]
    assert len(data_warnings) == 1 and "skipped 2 of 4" in str(data_warnings[0].message)
    with pytest.raises(DataError, match=r"e\.de:2: empty source line"):
        read_parallel(src, tgt, on_empty="error")
    src2 = write(tmp_path / "f.de", "a\nb\nc\n")
    tgt2 = write(tmp_path / "f.en", "1\n2\n\n")
    with pytest.raises(DataError, match=r"f\.en:3: empty target line"):
        read_parallel(src2, tgt2, on_empty="error")


def test_read_tsv_columns_and_errors(tmp_path):
    p = write(tmp_path / "d.tsv", "word\tsrc\ttgt\nx\tabc\tA B C\ny\tabd\tA B D\n", gz=True)
    c = read_tsv(p, src_col=1, tgt_col=2, header=True)
    assert c.sources == ["abc", "abd"] and c.targets == ["A B C", "A B D"]
    bad = write(tmp_path / "bad.tsv", "a\tA\nb\tB\nc\n")
    with pytest.raises(DataError, match=r"bad\.tsv:3: expected 2 tab-separated columns, found 1"):
        read_tsv(bad)
    extra = write(tmp_path / "extra.tsv", "a\tA\nb\tB\tC\n")
    with pytest.raises(DataError, match=r"extra\.tsv:2: expected 2"):
        read_tsv(extra)
    narrow = write(tmp_path / "narrow.tsv", "a\tA\n")
    with pytest.raises(DataError, match=r"narrow\.tsv:1: expected 3"):
        read_tsv(narrow, tgt_col=2)
    empty = write(tmp_path / "empty.tsv", "a\tA\nb\t\n")
    with pytest.warns(DataWarning, match="skipped 1"):
        assert read_tsv(empty).sources == ["a"]
    with pytest.raises(DataError, match=r"empty\.tsv:2: empty target"):
        read_tsv(empty, on_empty="error")


def test_read_jsonl_multi_reference_and_errors(tmp_path):
    rows = [
        {"source": "s1", "target": "t1"},
        {"source": "s2", "target": ["r1", "r2"]},
        {"source": "s1", "target": "t1b", "extra": 1},
    ]
    p = write(tmp_path / "d.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n\n")
    c = read_jsonl(p)
    assert c.sources == ["s1", "s2", "s2", "s1"] and c.targets == ["t1", "r1", "r2", "t1b"]
    assert c.references() == (["s1", "s2"], [["t1", "t1b"], ["r1", "r2"]])
    c2 = read_jsonl(write(tmp_path / "k.jsonl", '{"x": "a", "y": "b"}\n'), src_key="x", tgt_key="y")
    assert c2.sources == ["a"] and c2.targets == ["b"]
    bad = write(tmp_path / "bad.jsonl", '{"source": "a", "target": "b"}\n{"source": "a", "target": \n')
    with pytest.raises(DataError, match=r"bad\.jsonl:2: malformed JSON"):
        read_jsonl(bad)
    missing = write(tmp_path / "missing.jsonl", '{"source": "a", "target": "b"}\n{"source": "a"}\n')
    with pytest.raises(DataError, match=r"missing\.jsonl:2: missing key 'target'"):
        read_jsonl(missing)
    wrong = write(tmp_path / "wrong.jsonl", '{"source": "a", "target": 3}\n')
    with pytest.raises(DataError, match=r"wrong\.jsonl:1: 'target' must be a string or a list"):
        read_jsonl(wrong)
    notobj = write(tmp_path / "list.jsonl", '["a", "b"]\n')
    with pytest.raises(DataError, match=r"list\.jsonl:1: expected a JSON object"):
        read_jsonl(notobj)
    empty = write(tmp_path / "empty.jsonl", '{"source": "a", "target": ["x", ""]}\n{"source": "", "target": "y"}\n')
    with pytest.warns(DataWarning, match="skipped 2 of 3"):
        assert read_jsonl(empty).targets == ["x"]
    with pytest.raises(DataError, match=r"empty\.jsonl:1: empty target"):
        read_jsonl(empty, on_empty="error")


def test_read_corpus_dispatch_and_write_roundtrip(tmp_path):
    c = Corpus(["a b", "c"], ["x", "y z"])
    write_parallel(c, tmp_path / "t.src.gz", tmp_path / "t.tgt")
    assert (tmp_path / "t.src.gz").read_bytes()[:2] == b"\x1f\x8b"
    back = read_corpus({"src": "t.src.gz", "tgt": "t.tgt"}, root=tmp_path)
    assert back.sources == c.sources and back.targets == c.targets
    write(tmp_path / "t.tsv", "a\tb\n")
    assert read_corpus({"path": str(tmp_path / "t.tsv")}).targets == ["b"]
    assert read_corpus("t.tsv", root=tmp_path).sources == ["a"]
    write(tmp_path / "t.data", '{"s": "a", "t": "b"}\n')
    assert read_corpus(
        {"path": "t.data", "format": "jsonl", "src_key": "s", "tgt_key": "t"}, root=tmp_path
    ).sources == ["a"]
    with pytest.raises(DataError, match="unknown format"):
        read_corpus({"path": "x", "format": "csv"})
    with pytest.raises(DataError):
        read_corpus({"path": "x.txt"})
    with pytest.raises(DataError, match="bogus"):
        read_corpus({"path": str(tmp_path / "t.tsv"), "bogus": 1})
