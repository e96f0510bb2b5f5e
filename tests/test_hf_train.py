"""hf_seq2seq through the unchanged trainer: algorithms, exact resume, evaluate / translate, export and reload."""

from __future__ import annotations

import json
import re

import pytest

pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

import torch  # noqa: E402
from hf_tiny import tiny_model, write_reverse_task  # noqa: E402

from seqlab.cli import main as cli_main  # noqa: E402
from seqlab.config import load_config  # noqa: E402
from seqlab.train.trainer import Trainer, train  # noqa: E402


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("hf_train")
    models = {}
    for family in ("marian", "nllb"):
        folder = root / family
        folder.mkdir()
        tiny_model(family, folder)
        models[family] = folder
    data = root / "data"
    data.mkdir()
    return root, models, write_reverse_task(data, n_train=60)


def overrides(setup, run: str, family: str = "marian", **extra) -> list[str]:
    root, models, paths = setup
    options = {"name_or_path": str(models[family])}
    if family == "nllb":
        options["forced_bos_token"] = "eng_Latn"
    base = {
        "run_dir": str(root / run),
        "task.name": "parallel",
        "task.options": json.dumps({**paths, "tokenizer": f"hf:{models[family]}", "metrics": ["bleu", "wer"]}),
        "model.arch": "hf_seq2seq",
        "model.options": json.dumps(options),
        "train.device": "cpu",
        "train.max_tokens": 120,
        "train.lr": 0.003,
        "train.warmup_steps": 2,
        "train.progress_bar": "false",
        "train.tensorboard": "false",
        "train.log_every_steps": 1,
        "decode.beam_size": 1,
        "decode.max_len_b": 8,
        "decode.max_len_a": 0.0,
    }
    base.update(extra)
    return [f"{k}={v}" for k, v in base.items()]


def test_resume_is_exact(setup):
    """8 steps in one go, and 4 then 4 more after a restart: the same weights, optimizer and RNG, bit for bit."""
    root = setup[0]
    Trainer(load_config(None, overrides(setup, "full", **{"train.max_steps": 8})), console=False).fit()
    Trainer(load_config(None, overrides(setup, "split", **{"train.max_steps": 4})), console=False).fit()
    halfway = torch.load(root / "split" / "checkpoint_last.pt", weights_only=False)
    resumed = Trainer(load_config(None, overrides(setup, "split", **{"train.max_steps": 8})), console=False)
    assert resumed.step == 4
    resumed.fit()
    full = torch.load(root / "full" / "checkpoint_last.pt", weights_only=False)
    split = torch.load(root / "split" / "checkpoint_last.pt", weights_only=False)
    assert full["step"] == split["step"] == 8 and halfway["step"] == 4
    assert full["model"].keys() == split["model"].keys()
    for name, a in full["model"].items():
        assert torch.equal(a, split["model"][name]), name
    assert any(not torch.equal(a, halfway["model"][name]) for name, a in full["model"].items())  # steps 5-8 trained


@pytest.mark.parametrize("algorithm", ["raml", "pg", "interpolation"])
def test_algorithms_train_it_unchanged(setup, algorithm):
    run = f"algo_{algorithm}"
    results = train(
        load_config(
            None,
            overrides(
                setup,
                run,
                **{
                    "algorithm.name": algorithm,
                    "train.max_steps": 3,
                    "train.allow_short_schedules": "true",
                    "train.lr": 1e-4,
                },
            ),
        ),
        console=False,
    )
    assert results["steps"] == 3 and 0.0 <= results["test"]["bleu"] <= 100.0
    root = setup[0]
    losses = [
        json.loads(line)["loss"]
        for line in (root / run / "log.jsonl").read_text().splitlines()
        if json.loads(line)["kind"] == "train"
    ]
    assert losses and all(torch.isfinite(torch.tensor(losses)))


def test_evaluate_translate_and_export_reload(setup, capsys):
    """NLLB-style (source prefix, forced first token): the exported folder's greedy generate gives seqlab's
    hypotheses token for token."""
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    from seqlab.decoding import greedy_search
    from seqlab.hf.model import HFSeq2Seq
    from seqlab.inference import load_checkpoint_model

    root = setup[0]
    results = train(load_config(None, overrides(setup, "nllb", "nllb", **{"train.max_steps": 6})), console=False)
    sig = results["signatures"]["test"]["bleu"]
    assert re.fullmatch(r"nrefs:(\d+|var)\|case:mixed\|eff:no\|tok:13a\|smooth:exp\|version:[\d.]+", sig), sig
    ckpt = root / "nllb" / "checkpoint_best.pt"
    capsys.readouterr()
    assert cli_main(["evaluate", str(ckpt), "--split", "valid"]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["signatures"]["bleu"] == results["signatures"]["valid"]["bleu"] and "bleu" in printed
    inp, outp = root / "in.txt", root / "out.txt"
    inp.write_text("a b c\nd e\n")
    assert cli_main(["translate", str(ckpt), "-i", str(inp), "-o", str(outp), "--beam-size", "2"]) == 0
    assert len(outp.read_text().splitlines()) == 2

    out = root / "exported"
    assert cli_main(["export", str(ckpt), "--hf", str(out)]) == 0
    assert (out / "model.safetensors").is_file() and (out / "tokenizer.json").is_file()
    card = (out / "README.md").read_text()
    assert "algorithm: `mle`" in card and "seed: " in card and "task `parallel`" in card
    assert sig.replace("|", "\\|") in card  # in a Markdown table cell
    hf_model, hf_tok = AutoModelForSeq2SeqLM.from_pretrained(str(out)).eval(), AutoTokenizer.from_pretrained(str(out))
    loaded = load_checkpoint_model(ckpt, "cpu")
    model, tok = loaded.model, loaded.src_tokenizer
    assert isinstance(model, HFSeq2Seq)
    texts = ["a b c", "d e f g h", "h"]
    batch = hf_tok(texts, return_tensors="pt", padding=True)
    theirs = hf_model.generate(
        **batch, num_beams=1, do_sample=False, max_new_tokens=9, forced_eos_token_id=model.idmap.eos
    )
    rows = [tok.encode(t) + [2] for t in texts]
    src = torch.zeros(len(rows), max(map(len, rows)), dtype=torch.long)
    for i, r in enumerate(rows):
        src[i, : len(r)] = torch.tensor(r)
    ours = greedy_search(model, src, max_len_a=0.0, max_len_b=8).tokens.tolist()
    assert theirs[:, 1].eq(model.forced_bos_id).all()
    for row_ours, row_theirs in zip(ours, theirs[:, 2:].tolist(), strict=True):
        mine = tok.to_model_ids(row_ours[: row_ours.index(2) + 1])
        assert mine == row_theirs[: len(mine)]
    capsys.readouterr()
    first = root / "full" / "checkpoint_last.pt"  # written by test_resume_is_exact when run first; else make one
    if not first.exists():
        train(load_config(None, overrides(setup, "full", **{"train.max_steps": 2})), console=False)
    assert cli_main(["export", str(first), "--hf", str(root / "exported_marian")]) == 0
