"""Summarization tasks: Gigaword-format files with several references, AESLC parsing, ROUGE training."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import seqlab.tasks  # noqa: F401  (registration)
from seqlab.config import load_config
from seqlab.data.errors import DataError
from seqlab.data.tasks import load_task
from seqlab.tasks.summarization import AESLC_ARCHIVE, _locate_aeslc, parse_aeslc, read_multi_reference

WORDS = "markets rise as oil prices fall stocks gain bank cuts rates profit jumps team wins cup".split()


def write_gigaword(root: Path, n_train: int = 60, multi_ref: bool = True, names: str = "src") -> Path:
    """Article -> title: the title is the article's first three words (learnable in a few steps)."""
    root.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("valid", 6), ("test", 6)):
        arts, titles, alt = [], [], []
        for i in range(n):
            words = [WORDS[(i * 7 + k * 3) % len(WORDS)] for k in range(8)]
            arts.append(" ".join(words))
            titles.append(" ".join(words[:3]))
            alt.append(" ".join(words[:2]) if i % 2 else "")  # a second reference for half of the items
        src_name, tgt_name = ("{s}.src", "{s}.tgt") if names == "src" else ("{s}.article.txt", "{s}.title.txt")
        (root / src_name.format(s=split)).write_text("\n".join(arts) + "\n")
        if multi_ref and split != "train":
            (root / f"{tgt_name.format(s=split)}.0").write_text("\n".join(titles) + "\n")
            (root / f"{tgt_name.format(s=split)}.1").write_text("\n".join(alt) + "\n")
        else:
            (root / tgt_name.format(s=split)).write_text("\n".join(titles) + "\n")
    return root


def test_gigaword_directory_with_several_references(tmp_path):
    root = write_gigaword(tmp_path / "giga")
    task = load_task("summarization", {"path": str(root), "tokenizer": "symbol", "vocab_size": None}, tmp_path / "tok")
    assert task.metrics[0] == "rouge" and set(task.metrics) == {"rouge", "rouge1", "rouge2", "rougeL"}
    assert len(task.train) == 60
    sources, refs = task.test.references()
    assert len(sources) == 6
    assert [len(r) for r in refs] == [1, 2, 1, 2, 1, 2]  # empty second references are skipped
    assert refs[1][1] == " ".join(sources[1].split()[:2])
    # the Gigaword release's file names work too
    giga = write_gigaword(tmp_path / "giga2", multi_ref=False, names="gigaword")
    task = load_task(
        "summarization",
        {"path": str(giga), "tokenizer": "symbol", "vocab_size": None, "max_src_words": 4, "lowercase": True},
        tmp_path / "tok2",
    )
    assert all(len(s.split()) == 4 for s in task.train.sources)


def test_explicit_files_and_errors(tmp_path):
    root = write_gigaword(tmp_path / "g")
    opts = {"tokenizer": "symbol", "vocab_size": None}
    for split in ("train", "valid", "test"):
        opts[f"{split}_src"] = str(root / f"{split}.src")
        opts[f"{split}_tgt"] = (
            str(root / f"{split}.tgt")
            if split == "train"
            else [str(root / f"{split}.tgt.0"), str(root / f"{split}.tgt.1")]
        )
    task = load_task("summarization", opts, tmp_path / "tok")
    assert task.valid.num_groups == 6 and len(task.valid) == 9
    (root / "valid.tgt.1").write_text("only one line\n")
    with pytest.raises(DataError, match="has 1 lines"):
        load_task("summarization", opts, tmp_path / "tok")
    with pytest.raises(DataError, match="path"):
        load_task("summarization", {"tokenizer": "symbol"}, tmp_path / "tok")
    with pytest.raises(DataError, match="unknown option"):
        load_task("summarization", {"path": str(root), "max_src_word": 3}, tmp_path / "tok")


def test_identical_articles_stay_separate_items(tmp_path):
    (tmp_path / "a.src").write_text("same text\nsame text\n")
    (tmp_path / "a.tgt").write_text("one\ntwo\n")
    corpus = read_multi_reference(tmp_path / "a.src", [tmp_path / "a.tgt"])
    assert corpus.num_groups == 2


def test_parse_aeslc_file():
    text = (
        "Hi all,  please find   the report.\nThanks,\n\n@subject\nWeekly report\n\n@ann0\nweekly report\n\n"
        "@ann1\nreport attached\n\n@ann2\nthe weekly report\n"
    )
    body, subject, anns = parse_aeslc(text)
    assert body == "Hi all, please find the report. Thanks,"
    assert subject == "Weekly report"
    assert anns == ["weekly report", "report attached", "the weekly report"]
    assert parse_aeslc("body\n@subject\nS\n")[2] == []
    with pytest.raises(DataError, match="@subject"):
        parse_aeslc("no subject here")


def test_lstm_trains_with_rouge_and_rouge_reward(tmp_path):
    """The paper's setup in miniature: attentional LSTM, MLE then a ROUGE-rewarded policy gradient."""
    from seqlab.train.trainer import train

    root = write_gigaword(tmp_path / "giga", n_train=80)
    task = json.dumps({"path": str(root), "tokenizer": "symbol", "vocab_size": None})
    common = [
        f"task.options={task}",
        "task.name=summarization",
        "model.arch=lstm",
        "model.options={embed_dim: 32, hidden_dim: 32, layers: 1, dropout: 0.0}",
        "train.device=cpu",
        "train.optimizer=adam",
        "train.lr=0.01",
        "train.scheduler=constant",
        "train.warmup_steps=1",
        "train.max_sentences=16",
        "train.max_tokens=100000",
        "train.max_epochs=1000",
        "train.label_smoothing=0",
        "train.tensorboard=false",
        "train.progress_bar=false",
        "decode.beam_size=2",
        "decode.max_len_a=0",
        "decode.max_len_b=6",
    ]
    mle = train(
        load_config(None, [*common, f"run_dir={tmp_path / 'mle'}", "train.max_steps=60", "train.eval_every_steps=30"]),
        console=False,
    )
    assert set(mle["test"]) == {"rouge", "rouge1", "rouge2", "rougeL"}
    assert mle["test"]["rouge1"] > 60, mle
    pg = train(
        load_config(
            None,
            [
                *common,
                f"run_dir={tmp_path / 'pg'}",
                "train.max_steps=4",
                "train.lr=0.001",
                "train.log_every_steps=2",
                "algorithm.name=pg",
                "algorithm.options={reward: rouge, num_samples: 2, baseline: mean}",
                f"train.init_from={tmp_path / 'mle' / 'checkpoint_best.pt'}",
            ],
        ),
        console=False,
    )
    logs = [json.loads(line) for line in (tmp_path / "pg" / "log.jsonl").read_text().splitlines()]
    rewards = [rec["reward"] for rec in logs if rec["kind"] == "train"]
    assert rewards and all(0.0 <= r <= 3.0 for r in rewards)  # R1 + R2 + RL
    assert pg["test"]["rouge1"] > 50


def _aeslc_available() -> bool:
    try:
        _locate_aeslc(None)
        return True
    except DataError:
        return False


@pytest.mark.slow
@pytest.mark.skipif(not _aeslc_available(), reason=f"{AESLC_ARCHIVE} not in ../shared/data/aeslc")
def test_aeslc_from_the_shared_archive(tmp_path):
    task = load_task("aeslc", {"max_train": 300, "vocab_size": 500, "valid_size": 50}, tmp_path / "run" / "tokenizers")
    assert (tmp_path / "run" / "data_cache" / "aeslc" / "DONE.json").is_file()  # extracted under the run dir
    assert task.train.num_groups == 300 and task.valid.num_groups == 50
    sources, refs = task.test.references()
    assert len(sources) == 1960 and all(1 <= len(r) <= 3 for r in refs) and sum(map(len, refs)) > 5000
    assert all(len(s.split()) <= 128 for s in sources)
    cfg = load_config(Path(__file__).resolve().parents[1] / "configs" / "aeslc_lstm.yaml")
    assert cfg.task.name == "aeslc" and cfg.model.options["hidden_dim"] == 256 and cfg.train.max_sentences == 64
