"""seqlab.tasks: the built-in tasks (G2P CMUdict, Multi30k, SIGMORPHON, parallel files), registration, subsampling."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import write

from seqlab.data.corpus import Corpus
from seqlab.data.errors import DataError
from seqlab.data.tasks import TASKS, TaskData, load_task, register_task, subsample
from seqlab.data.tokenizers import CharTokenizer, SymbolTokenizer, load_tokenizer

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
MULTI30K = DATA / "multi30k"
SIGMORPHON = DATA / "sigmorphon2020-task1-g2p"


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
    opts = {
        "root": str(tmp_path),
        "train": {"path": "train.tsv"},
        "valid": {"path": "valid.jsonl"},
        "test": {"src": "test.src", "tgt": "test.tgt"},
        "tokenizer": {"src": "char", "tgt": "symbol"},
        "metrics": ["wer"],
    }
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
