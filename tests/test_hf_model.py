"""hf_seq2seq and the hf tokenizer on tiny random Marian / T5 / BART / NLLB-style models built offline."""

from __future__ import annotations

import pytest

pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

import torch  # noqa: E402
from hf_tiny import tiny_model  # noqa: E402

from seqlab.data.tokenizers import load_tokenizer, train_tokenizer  # noqa: E402
from seqlab.data.vocab import BOS_ID, EOS_ID, PAD_ID, UNK_ID  # noqa: E402
from seqlab.decoding import beam_search, greedy_search, sample  # noqa: E402
from seqlab.hf.idmap import IdMap  # noqa: E402
from seqlab.models import build_model  # noqa: E402

FAMILIES = ("marian", "t5", "bart", "nllb")
SOURCES = ["a b c", "ein mann", "the house d e f g", "z"]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """family -> (folder, HF model, HF tokenizer, seqlab tokenizer, seqlab model in eval mode)."""
    out = {}
    for family in FAMILIES:
        folder = tmp_path_factory.mktemp(family)
        hf_model, hf_tok = tiny_model(family, folder)
        tok = train_tokenizer(f"hf:{folder}", [])
        opts = {"name_or_path": str(folder)}
        if family == "nllb":
            opts["forced_bos_token"] = "eng_Latn"
        model = build_model("hf_seq2seq", tok.vocab_size, tok.vocab_size, **opts).eval()
        out[family] = (folder, hf_model, hf_tok, tok, model)
    return out


def seqlab_sources(tok, texts=SOURCES) -> torch.Tensor:
    rows = [tok.encode(t) + [EOS_ID] for t in texts]
    src = torch.full((len(rows), max(map(len, rows))), PAD_ID)
    for i, r in enumerate(rows):
        src[i, : len(r)] = torch.tensor(r)
    return src


def test_idmap_puts_the_roles_at_seqlabs_ids():
    m = IdMap(pad=9, eos=0, unk=1, size=10)  # Marian's layout: eos 0, unk 1, pad last
    to_model, from_model = m.to_model(decoder_start=9), m.from_model()
    assert to_model[:4] == [9, 9, 0, 1] and to_model[4:] == list(range(2, 9)) and m.seqlab_size == 11
    assert [from_model[h] for h in (9, 0, 1)] == [PAD_ID, EOS_ID, UNK_ID]
    assert all(to_model[from_model[h]] == h for h in range(10))
    with pytest.raises(ValueError, match="distinct"):
        IdMap(pad=0, eos=0, unk=1, size=4)


@pytest.mark.parametrize("family", FAMILIES)
def test_tokenizer_round_trip_and_save(built, family, tmp_path):
    folder, _, hf_tok, tok, _ = built[family]
    text = "ein mann the house"
    ids = tok.encode(text)
    assert min(ids) >= 4 and tok.decode(ids + [EOS_ID, PAD_ID]) == text
    assert tok.to_model_ids(ids) == hf_tok(text, add_special_tokens=False)["input_ids"]
    assert tok.encode("qqq") == [UNK_ID]
    again = load_tokenizer(tok.save(tmp_path / "tok"))  # a run keeps its own copy of the Hugging Face files
    assert again.encode(text) == ids and again.vocab_size == tok.vocab_size == len(hf_tok) + 1


@pytest.mark.parametrize("family", FAMILIES)
def test_scored_log_probs_equal_sampled(built, family):
    *_, tok, model = built[family]
    src = seqlab_sources(tok)
    torch.manual_seed(0)
    hyp = sample(model, src, num_samples=3, max_len_a=0.0, max_len_b=8)
    scored = model.score(src.repeat_interleave(3, 0), hyp.tokens)
    assert torch.allclose(scored, hyp.token_log_probs, atol=1e-5)
    assert not hyp.tokens.eq(BOS_ID).any()


def generate(family, built, src, steps):
    """Hugging Face's greedy generate on seqlab's sources, with the settings seqlab decodes under."""
    _, hf_model, _, tok, model = built[family]
    from transformers import GenerationConfig

    ids = model.model_input_ids(src)
    if model.source_prefix.numel():
        ids = torch.cat([model.source_prefix.expand(len(ids), -1), ids], 1)
    mask = torch.cat([torch.ones(len(src), model.source_prefix.numel(), dtype=torch.long), src.ne(PAD_ID).long()], 1)
    forced = model.decoder_prefix.numel()
    cfg = GenerationConfig(
        num_beams=1,
        do_sample=False,
        max_new_tokens=steps + forced,
        pad_token_id=model.idmap.pad,
        eos_token_id=model.idmap.eos,
        forced_eos_token_id=model.idmap.eos,
        **model.generation_settings(),
    )
    return hf_model.generate(input_ids=ids, attention_mask=mask, generation_config=cfg)


@pytest.mark.parametrize("family", FAMILIES)
def test_greedy_equals_generate(built, family):
    *_, tok, model = built[family]
    src = seqlab_sources(tok)
    steps = 7
    ours = greedy_search(model, src, max_len_a=0.0, max_len_b=steps)
    theirs = generate(family, built, src, steps)
    start = 1 + model.decoder_prefix.numel()  # decoder start (+ the forced token)
    assert theirs[:, 0].eq(model.decoder_start).all()
    for row_ours, row_theirs in zip(ours.tokens.tolist(), theirs[:, start:].tolist(), strict=True):
        mine = tok.to_model_ids(row_ours[: row_ours.index(EOS_ID) + 1])
        assert mine == row_theirs[: len(mine)], (row_ours, row_theirs)


def test_forced_token_starts_every_hypothesis_and_rewards_ignore_it(built):
    """NLLB-style: the decoder always starts with the target-language code; it is the decoder's prefix, not part of
    seqlab's hypotheses, so a reward compares the words only."""
    from seqlab.rewards import get_reward

    *_, tok, model = built["nllb"]
    forced = model.forced_bos_id
    src = seqlab_sources(tok)
    theirs = generate("nllb", built, src, 6)
    assert theirs[:, 1].eq(forced).all()  # generate: decoder start, then the forced token, in every hypothesis
    ours = greedy_search(model, src, max_len_a=0.0, max_len_b=6).tokens
    for row_ours, row_theirs in zip(ours.tolist(), theirs.tolist(), strict=True):
        mine = tok.to_model_ids(row_ours[: row_ours.index(EOS_ID) + 1])
        assert [model.decoder_start, forced] + mine == row_theirs[: len(mine) + 2]
    bleu = get_reward("bleu")
    ref = torch.tensor([tok.encode("ein mann the house") + [EOS_ID]])
    with_code = torch.cat([torch.tensor([tok.from_model_ids([forced])]), ref], 1)
    assert float(bleu(ref, ref)) == pytest.approx(1.0)  # what seqlab's rewards see: the words
    assert float(bleu(with_code, ref)) < 1.0  # the code, were it in the hypothesis, would cost reward
    # teacher forcing feeds start + forced token before the target: its first token is scored after both
    one = src[:1, : int(src[0].ne(PAD_ID).sum())]
    logits = model.decode(model.encode(one), torch.tensor([[BOS_ID]]))
    full = model.hf(
        input_ids=torch.cat([model.source_prefix[None], model.model_input_ids(one)], 1),
        decoder_input_ids=torch.tensor([[model.decoder_start, forced]]),
    ).logits
    assert torch.allclose(logits[0, 0], model.seqlab_logits(full[0, 1]), atol=1e-5)


@pytest.mark.parametrize("family", ["marian", "bart"])
def test_beam_search_reorders_the_cache(built, family):
    """A beam's score (no length penalty) is the sum of its tokens' log-probabilities under a fresh scoring pass:
    true only when the cache rows follow their hypotheses."""
    *_, tok, model = built[family]
    src = seqlab_sources(tok)
    hyp = beam_search(model, src, beam_size=4, length_penalty=0.0, n_best=4, max_len_a=0.0, max_len_b=6)
    scored = model.score(src.repeat_interleave(4, 0), hyp.tokens).sum(1)
    assert torch.allclose(hyp.scores, scored, atol=1e-4)
    assert len({tuple(r) for r in hyp.tokens[:4].tolist()}) == 4
    one = beam_search(model, src, beam_size=1, max_len_a=0.0, max_len_b=6).tokens
    assert torch.equal(one, greedy_search(model, src, max_len_a=0.0, max_len_b=6).tokens)


def test_wrong_tokenizer_is_a_clear_error(built):
    folder = built["marian"][0]
    with pytest.raises(ValueError, match="tokenizer has 500 ids"):
        build_model("hf_seq2seq", 500, 500, name_or_path=str(folder))
    with pytest.raises(FileNotFoundError, match="name_or_path"):
        build_model("hf_seq2seq", 10, 10, name_or_path=str(folder / "missing"))


def test_dtype_and_decoder_features(built):
    folder, *_, tok, model = built["marian"]
    src = seqlab_sources(tok)
    tgt = greedy_search(model, src, max_len_a=0.0, max_len_b=5).tokens
    from seqlab.models.base import shift_right

    feats = model.decode_features(model.encode(src), shift_right(tgt))
    assert feats.shape == (*tgt.shape, model.feature_dim)
    half = build_model("hf_seq2seq", tok.vocab_size, tok.vocab_size, name_or_path=str(folder), dtype="bfloat16")
    assert next(half.parameters()).dtype == torch.bfloat16
    assert torch.isfinite(half.eval().score(src, tgt)).all()


def test_the_local_marian_builder_gives_a_model_seqlab_wraps(tmp_path):
    """benchmarks/hf_marian_local.py (issue 22's GPU evidence starts from it): Marian's special-token layout, and
    seqlab's hf_seq2seq scores and decodes the saved model through the id map."""
    import gzip
    import json
    import subprocess
    import sys
    from pathlib import Path

    data = tmp_path / "data"
    data.mkdir()
    for lang, words in (("de", "ein mann eine frau der hund"), ("en", "a man a woman the dog")):
        lines = [" ".join(words.split()[i % 3 :] + words.split()[: i % 3]) for i in range(40)]
        with gzip.open(data / f"train.{lang}.gz", "wt", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
    out = tmp_path / "marian"
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "hf_marian_local.py"
    args = ["--d-model", "16", "--heads", "2", "--ffn", "16", "--layers", "1", "--vocab-size", "60"]
    subprocess.run([sys.executable, str(script), "--data", str(data), "--out", str(out), *args], check=True)
    from transformers import AutoTokenizer

    hf_tok = AutoTokenizer.from_pretrained(str(out))
    assert (hf_tok.eos_token_id, hf_tok.unk_token_id, hf_tok.pad_token_id) == (0, 1, len(hf_tok) - 1)
    # embeddings scaled by sqrt(d_model) as opus-mt's: unscaled, the 0.02-std tokens drown under the positions and
    # the trained model ignored its source (session 10)
    assert json.loads((out / "config.json").read_text())["scale_embedding"] is True
    tok = train_tokenizer(f"hf:{out}", [])
    model = build_model("hf_seq2seq", tok.vocab_size, tok.vocab_size, name_or_path=str(out)).eval()
    src = seqlab_sources(tok, ["ein mann", "der hund"])
    assert tok.decode(tok.encode("ein mann")) == "ein mann"
    hyp = greedy_search(model, src, max_len_a=0.0, max_len_b=5)
    assert hyp.tokens.shape[0] == 2 and not hyp.tokens.eq(BOS_ID).any()
