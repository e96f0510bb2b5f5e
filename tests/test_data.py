"""Corpus readers, their errors, and the built-in tasks."""

from __future__ import annotations

import gzip
import json
import warnings
from pathlib import Path

import pytest

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
from seqlab.data.tasks import TASKS, TaskData, load_task, register_task, subsample
from seqlab.data.tokenizers import CharTokenizer, SymbolTokenizer, load_tokenizer

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
MULTI30K = DATA / "multi30k"
SIGMORPHON = DATA / "sigmorphon2020-task1-g2p"


def write(path: Path, text: str | bytes, gz: bool = False) -> Path:
    data = text.encode("utf-8") if isinstance(text, str) else text
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


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
    rows = [{"source": "s1", "target": "t1"}, {"source": "s2", "target": ["r1", "r2"]},
            {"source": "s1", "target": "t1b", "extra": 1}]
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
    empty = write(tmp_path / "empty.jsonl",
                  '{"source": "a", "target": ["x", ""]}\n{"source": "", "target": "y"}\n')
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
    assert read_corpus({"path": "t.data", "format": "jsonl", "src_key": "s", "tgt_key": "t"},
                       root=tmp_path).sources == ["a"]
    with pytest.raises(DataError, match="unknown format"):
        read_corpus({"path": "x", "format": "csv"})
    with pytest.raises(DataError):
        read_corpus({"path": "x.txt"})
    with pytest.raises(DataError, match="bogus"):
        read_corpus({"path": str(tmp_path / "t.tsv"), "bogus": 1})


# ------------------------------------------------------------------------------------------- tasks
@pytest.fixture(scope="module")
def cmudict_task(tmp_path_factory):
    return load_task("g2p-cmudict", {}, tmp_path_factory.mktemp("g2p"))


def test_g2p_cmudict_split_disjoint_deterministic_grouped(cmudict_task, tmp_path):
    t = cmudict_task
    assert t.metrics == ["wer", "per"]
    assert isinstance(t.src_tokenizer, CharTokenizer) and isinstance(t.tgt_tokenizer, SymbolTokenizer)
    words = {s: set(c.sources) for s, c in (("train", t.train), ("valid", t.valid), ("test", t.test))}
    assert not (words["train"] & words["valid"]) and not (words["train"] & words["test"])
    assert not (words["valid"] & words["test"])
    total = sum(len(w) for w in words.values())
    assert 0.03 < len(words["test"]) / total < 0.07 and 0.03 < len(words["valid"]) / total < 0.07
    assert all(w == w.lower() and w.replace("'", "").isalpha() for w in words["train"])
    # stress digits stripped, 39 ARPAbet phonemes
    phones = {p for tgt in t.train.targets for p in tgt.split()}
    assert len(phones) == 39 and not any(ch.isdigit() for p in phones for ch in p)
    # multi-pronunciation words form one group
    srcs, refs = t.train.references()
    assert len(srcs) == len(set(t.train.sources)) == t.train.num_groups
    multi = {s: r for s, r in zip(srcs, refs, strict=True) if len(r) > 1}
    assert len(multi) > 1000
    word, prons = next(iter(multi.items()))
    assert [t.train.targets[i] for i in range(len(t.train)) if t.train.sources[i] == word] == prons
    # deterministic: a second load (other cache dir) gives the same splits; max_train is a nested subsample
    small = load_task("g2p-cmudict", {"max_train": 500}, tmp_path / "a")
    again = load_task("g2p-cmudict", {"max_train": 500}, tmp_path / "b")
    assert small.train == again.train and small.test == t.test and small.valid == t.valid
    assert small.train.num_groups == 500 and set(small.train.sources) <= words["train"]
    assert set(small.train.sources) <= set(subsample(t.train, 800).sources)
    src_ids = small.src_tokenizer.encode("hello")
    assert small.src_tokenizer.decode(src_ids) == "hello"


def test_g2p_cmudict_keep_stress_and_bad_option(tmp_path):
    t = load_task("g2p-cmudict", {"strip_stress": False, "max_train": 300}, tmp_path / "s")
    assert any(ch.isdigit() for tgt in t.train.targets for ch in tgt)
    with pytest.raises(DataError, match="unknown option.*max_trian"):
        load_task("g2p-cmudict", {"max_trian": 3}, tmp_path / "x")
    with pytest.raises(DataError, match="unknown task"):
        load_task("no-such-task", {}, tmp_path / "y")


needs_multi30k = pytest.mark.skipif(not MULTI30K.is_dir(), reason="shared Multi30k data not present")


@needs_multi30k
def test_multi30k_task_small_vocab_and_cache(tmp_path):
    opts = {"path": str(MULTI30K), "vocab_size": 1000, "max_train": 3000}
    t = load_task("multi30k", opts, tmp_path / "tok")
    assert t.train.num_groups == 3000 and len(t.valid) == 1014 and len(t.test) == 1000
    assert t.metrics == ["bleu", "chrf"]
    assert t.src_tokenizer.vocab_size == t.tgt_tokenizer.vocab_size == 1000
    assert t.valid.sources[0].startswith("Eine Gruppe von Männern")  # de -> en by default
    assert (tmp_path / "tok" / "src" / "tokenizer.json").is_file()
    # cached: a second load reads the saved tokenizers (same ids) instead of training
    mtime = (tmp_path / "tok" / "src" / "spm.model").stat().st_mtime_ns
    t2 = load_task("multi30k", opts, tmp_path / "tok")
    assert (tmp_path / "tok" / "src" / "spm.model").stat().st_mtime_ns == mtime
    assert t2.src_tokenizer.encode(t.valid.sources[0]) == t.src_tokenizer.encode(t.valid.sources[0])
    tok = load_tokenizer(tmp_path / "tok" / "tgt")
    assert tok.decode(tok.encode("A man rides a bike.")) == "A man rides a bike."


def test_multi30k_requires_path(tmp_path):
    with pytest.raises(DataError, match="option 'path' is required"):
        load_task("multi30k", {}, tmp_path)
    with pytest.raises(DataError, match="must be a directory"):
        load_task("multi30k", {"path": str(tmp_path / "none")}, tmp_path)


@pytest.mark.skipif(not SIGMORPHON.is_dir(), reason="shared SIGMORPHON data not present")
def test_sigmorphon_task(tmp_path):
    t = load_task("sigmorphon-g2p", {"path": str(SIGMORPHON), "lang": "kor", "max_train": 1000}, tmp_path)
    assert t.train.num_groups == 1000 and len(t.valid) == 450 and len(t.test) == 450
    assert t.metrics == ["wer", "per"]
    word, phones = t.valid.sources[0], t.valid.targets[0]
    assert " " in phones and " " not in word
    assert t.tgt_tokenizer.decode(t.tgt_tokenizer.encode(t.train.targets[0])) == t.train.targets[0]
    with pytest.raises(DataError, match="available: .*kor"):
        load_task("sigmorphon-g2p", {"path": str(SIGMORPHON), "lang": "xx"}, tmp_path / "b")


def test_parallel_task_generic_files(tmp_path):
    words = ["cat", "dog", "bird", "fish", "cow", "hen"]
    write(tmp_path / "train.tsv", "".join(f"{w}\t{' '.join(w.upper())}\n" for w in words))
    write(tmp_path / "valid.jsonl", json.dumps({"source": "cat", "target": ["C A T", "K A T"]}) + "\n")
    write(tmp_path / "test.src", "dog\n", gz=True)
    write(tmp_path / "test.tgt", "D O G\n")
    opts = {"root": str(tmp_path), "train": {"path": "train.tsv"}, "valid": {"path": "valid.jsonl"},
            "test": {"src": "test.src", "tgt": "test.tgt"}, "tokenizer": {"src": "char", "tgt": "symbol"},
            "metrics": ["wer"]}
    t = load_task("parallel", opts, tmp_path / "tok")
    assert len(t.train) == 6 and t.valid.references() == (["cat"], [["C A T", "K A T"]])
    assert t.metrics == ["wer"]
    assert t.src_tokenizer.decode(t.src_tokenizer.encode("fish")) == "fish"
    assert t.tgt_tokenizer.decode(t.tgt_tokenizer.encode("F I S H")) == "F I S H"
    with pytest.raises(DataError, match="option 'test' is required"):
        load_task("parallel", {k: v for k, v in opts.items() if k != "test"}, tmp_path / "tok2")


def test_register_task_and_subsample():
    @register_task("unit-test-task")
    def _task(options, cache_dir):
        c = Corpus(["a"], ["b"])
        tok = CharTokenizer.build(["ab"])
        return TaskData(c, c, c, tok, tok, ["bleu"])

    try:
        assert load_task("unit-test-task", {}, Path(".")).name == "unit-test-task"
        with pytest.raises(ValueError):
            register_task("unit-test-task")(lambda o, d: None)
    finally:
        TASKS.pop("unit-test-task")
    c = Corpus(["a", "b", "a", "c"], ["1", "2", "3", "4"])
    s = subsample(c, 2)
    assert s.num_groups == 2 and all(s.sources.count(x) == c.sources.count(x) for x in set(s.sources))
