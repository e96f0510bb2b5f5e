"""Captioning: feature files, the task (several captions per image), the NIC model, multi-reference BLEU."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import sacrebleu
import torch

import seqlab.tasks  # noqa: F401  (registration)
from seqlab.config import load_config
from seqlab.data.errors import DataError
from seqlab.data.tasks import load_task
from seqlab.data.vocab import EOS_ID, PAD_ID
from seqlab.models import build_model
from seqlab.models.captioning import NUM_SPECIAL, load_features
from seqlab.tasks.captioning import REFERENCE_SETS, multi_reference_bleu, normalize_caption

COLORS = ["red", "blue", "green", "yellow"]
OBJECTS = ["ball", "dog", "car", "house", "tree"]


def synthetic(tmp_path, fmt: str = "pt", copies: int = 3):
    """Images = (color, object) feature sums plus noise; three captions each, of 4-7 words."""
    rng = np.random.default_rng(0)
    bc, bo = rng.normal(size=(4, 16)), rng.normal(size=(5, 16))
    ids, feats, rows = [], [], []
    for k, (c, o) in enumerate(itertools.product(range(4), range(5))):
        for rep in range(copies):
            image = f"img{k}_{rep}"
            ids.append(image)
            feats.append(bc[c] + bo[o] + 0.1 * rng.normal(size=16))
            col, obj = COLORS[c], OBJECTS[o]
            caps = [f"a {col} {obj} in the picture", f"The {obj} is {col} .", f"a photo of a {col} {obj}"]
            rows += [{"image_id": image, "caption": cap} for cap in caps]
    feats = np.asarray(feats, dtype=np.float32)
    if fmt == "npy":
        path = tmp_path / "feats.npy"
        np.save(path, feats)
        index = {i: str(r) for r, i in enumerate(ids)}  # a .npy has row numbers as ids
        rows = [{**r, "image_id": index[r["image_id"]]} for r in rows]
    else:
        path = tmp_path / "feats.pt"
        torch.save({"features": torch.from_numpy(feats), "ids": ids}, path)
    caps = tmp_path / "captions.tsv"
    caps.write_text("".join(f"{r['image_id']}\t{r['caption']}\n" for r in rows))
    return path, caps


def test_feature_files(tmp_path):
    pt, _ = synthetic(tmp_path)
    feats, ids = load_features(pt)
    assert feats.shape == (60, 16) and ids[:2] == ["img0_0", "img0_1"]
    np.savez(tmp_path / "f.npz", features=feats.numpy(), ids=np.array(ids))
    assert load_features(tmp_path / "f.npz")[1] == ids
    np.save(tmp_path / "f.npy", feats.numpy())
    assert load_features(tmp_path / "f.npy")[1][:3] == ["0", "1", "2"]
    np.save(tmp_path / "bad.npy", np.zeros(3))
    with pytest.raises(ValueError, match="feature matrix"):
        load_features(tmp_path / "bad.npy")
    with pytest.raises(FileNotFoundError):
        load_features(tmp_path / "missing.pt")
    (tmp_path / "npy").mkdir()
    npy, caps = synthetic(tmp_path / "npy", fmt="npy")
    task = load_task("captioning", {"features": str(npy), "captions": str(caps)}, tmp_path / "tok_npy")
    assert task.src_tokenizer.encode("7") == [NUM_SPECIAL + 7]  # .npy: the row number is the image id


def test_task_groups_captions_by_image(tmp_path):
    pt, caps = synthetic(tmp_path)
    opts = {"features": str(pt), "captions": str(caps), "valid_percent": 15, "test_percent": 15}
    task = load_task("captioning", opts, tmp_path / "tok")
    assert task.metrics == ["bleu"]
    n_images = sum(c.num_groups for c in (task.train, task.valid, task.test))
    assert n_images == 60 and task.valid.num_groups > 0 and task.test.num_groups > 0
    sources, refs = task.test.references()
    assert all(len(r) == 3 for r in refs)
    assert refs[0][1].endswith(" .") and refs[0][1] == refs[0][1].lower()  # normalised: lowercased, split
    # image token of an id = NUM_SPECIAL + its feature row
    _, ids = load_features(pt)
    assert task.src_tokenizer.encode(sources[0]) == [NUM_SPECIAL + ids.index(sources[0])]
    again = load_task("captioning", opts, tmp_path / "tok")  # cached tokenizers
    assert again.tgt_tokenizer.vocab_size == task.tgt_tokenizer.vocab_size
    (tmp_path / "bad.tsv").write_text("nope\tan unknown image\n")
    with pytest.raises(DataError, match="no feature vector"):
        load_task("captioning", {**opts, "captions": str(tmp_path / "bad.tsv")}, tmp_path / "tok2")
    jl = tmp_path / "caps.jsonl"
    jl.write_text(json.dumps({"image_id": ids[0], "captions": ["A b", "c d"]}) + "\n")
    split = load_task(
        "captioning", {"features": str(pt), "train": str(jl), "valid": str(jl), "test": str(jl)}, tmp_path / "tok3"
    )
    assert split.test.references()[1] == [["a b", "c d"]]
    assert normalize_caption("A dog, running!") == "a dog , running !"


def test_nic_model_protocol(tmp_path):
    pt, _ = synthetic(tmp_path)
    torch.manual_seed(0)
    model = build_model("nic", 64, 30, features=str(pt), embed_dim=16, hidden_dim=24, layers=2, dropout=0.0).eval()
    assert "features" not in model.state_dict()  # non-persistent: checkpoints hold no data
    src = torch.tensor([[NUM_SPECIAL + 3, EOS_ID], [NUM_SPECIAL + 59, EOS_ID]])
    tgt = torch.tensor([[5, 6, 7, EOS_ID], [8, 9, EOS_ID, PAD_ID]])
    enc = model.encode(src)
    full = model.decode(enc, torch.cat([torch.ones(2, 1, dtype=torch.long), tgt[:, :-1]], 1))
    state, steps = model.init_state(enc), []
    prev = torch.ones(2, dtype=torch.long)
    for t in range(tgt.size(1)):
        logits, state = model.step(enc, prev, state)
        steps.append(logits)
        prev = tgt[:, t]
    assert torch.allclose(full, torch.stack(steps, 1), atol=1e-5)  # cached steps = teacher forcing
    assert model.score(src, tgt).shape == (2, 4)
    with pytest.raises(ValueError, match="same file"):
        build_model("nic", 10, 30, features=str(pt))
    with pytest.raises(ValueError, match="not an image token"):
        model.encode(torch.tensor([[EOS_ID, EOS_ID]]))


def test_multi_reference_reward_equals_sacrebleu(tmp_path):
    pt, caps = synthetic(tmp_path)
    task = load_task("captioning", {"features": str(pt), "captions": str(caps)}, tmp_path / "tok")
    tok = task.tgt_tokenizer
    group = task.train.group
    refs_of = {}
    for t, g in zip(task.train.targets, group, strict=True):
        refs_of.setdefault(g, []).append(t)
    rows = [0, 4]  # two training examples of different images
    hyps_text = ["a photo of a red ball", "the dog is blue ."]

    def ids(text: str, width: int) -> list[int]:
        x = tok.encode(text) + [EOS_ID]
        return x + [PAD_ID] * (width - len(x))

    hyp = torch.tensor([ids(h, 12) for h in hyps_text])
    ref = torch.tensor([ids(task.train.targets[i], 12) for i in rows])  # one reference per row, as in a batch
    got = multi_reference_bleu(hyp, ref)
    for k, i in enumerate(rows):
        refs = refs_of[group[i]]
        assert len(refs) == 3
        expect = (
            sacrebleu.sentence_bleu(
                " ".join(map(str, tok.encode(hyps_text[k]))),
                [" ".join(map(str, tok.encode(r))) for r in refs],
                tokenize="none",
                use_effective_order=True,
            ).score
            / 100
        )
        assert got[k].item() == pytest.approx(expect, abs=1e-5)
    assert REFERENCE_SETS.expand(ref).shape[1] == 3


def test_nic_trains_on_cpu_and_multi_reference_bleu_evaluates(tmp_path):
    from seqlab.train.trainer import train

    pt, caps = synthetic(tmp_path)
    task = json.dumps({"features": str(pt), "captions": str(caps), "valid_percent": 15, "test_percent": 15})
    common = [
        f"task.options={task}",
        "task.name=captioning",
        "model.arch=nic",
        f"model.options={{features: {pt}, embed_dim: 32, hidden_dim: 64, dropout: 0.0}}",
        "train.device=cpu",
        "train.optimizer=adam",
        "train.lr=0.01",
        "train.scheduler=constant",
        "train.warmup_steps=1",
        "train.max_sentences=32",
        "train.max_epochs=1000",
        "train.label_smoothing=0",
        "train.tensorboard=false",
        "train.progress_bar=false",
        "decode.beam_size=3",
    ]
    res = train(
        load_config(None, [*common, f"run_dir={tmp_path / 'mle'}", "train.max_steps=120", "train.eval_every_steps=60"]),
        console=False,
    )
    assert res["test"]["bleu"] > 60, res  # every image has a fixed caption set: the model learns it
    rl = train(
        load_config(
            None,
            [
                *common,
                f"run_dir={tmp_path / 'scst'}",
                "train.max_steps=3",
                "train.lr=0.0005",
                "algorithm.name=pg",
                "algorithm.options={reward: bleu_multiref, num_samples: 2}",
                f"train.init_from={tmp_path / 'mle' / 'checkpoint_best.pt'}",
            ],
        ),
        console=False,
    )
    assert rl["test"]["bleu"] > 50
