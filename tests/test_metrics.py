"""Evaluation metrics against sacrebleu / rouge-score directly on real Multi30k sentences; G2P hand cases."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import pytest
import sacrebleu
from rouge_score import rouge_scorer
from sacrebleu.metrics import BLEU, CHRF
from sacrebleu.significance import PairedTest

from seqlab.metrics import (
    bleu_length_ratio,
    compute_metrics,
    corpus_bleu,
    corpus_chrf,
    higher_is_better,
    paired_bootstrap,
    per,
    rouge,
    wer,
)

MULTI30K = Path(
    os.environ.get("SEQLAB_MULTI30K", Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "multi30k")
)


@pytest.fixture(scope="module")
def val_en() -> list[str]:
    path = MULTI30K / "val.en.gz"
    if not path.exists():
        pytest.skip(f"Multi30k not found at {path}")
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [line.strip() for line in f][:150]


def drop_word(s: str, k: int) -> str:
    w = s.split()
    return " ".join(w[:k] + w[k + 1 :])


@pytest.fixture(scope="module")
def systems(val_en: list[str]) -> tuple[list[str], list[str], list[list[str]]]:
    """Two 'systems' (references with a word dropped) and 1-3 references per item (varying counts)."""
    a = [drop_word(s, i % 5) for i, s in enumerate(val_en)]
    b = [drop_word(s, -1) if i % 3 else s.lower() for i, s in enumerate(val_en)]
    n = len(val_en)
    refs = [[val_en[i]] + [val_en[(i + k) % n] for k in range(1, i % 3 + 1)] for i in range(n)]
    return a, b, refs


def streams(refs: list[list[str]]) -> list[list[str | None]]:
    width = max(len(r) for r in refs)
    return [[r[k] if k < len(r) else None for r in refs] for k in range(width)]


def test_corpus_bleu_matches_sacrebleu(val_en: list[str], systems) -> None:
    a, _, refs = systems
    assert corpus_bleu(a, val_en) == pytest.approx(sacrebleu.corpus_bleu(a, [val_en]).score, abs=1e-9)
    assert corpus_bleu(a, [[r] for r in val_en]) == pytest.approx(corpus_bleu(a, val_en), abs=1e-9)
    want = sacrebleu.corpus_bleu(a, streams(refs)).score
    assert corpus_bleu(a, refs) == pytest.approx(want, abs=1e-9)
    assert corpus_bleu(a, refs) > corpus_bleu(a, val_en)  # more references, more matches
    for tok in ("none", "intl"):
        want = BLEU(tokenize=tok).corpus_score(a, streams(refs)).score
        assert corpus_bleu(a, refs, tokenize=tok) == pytest.approx(want, abs=1e-9)


def test_bleu_length_ratio_is_sacrebleus_and_counts_13a_tokens(val_en: list[str], systems) -> None:
    """Each hypothesis of ``a`` drops one word of its reference: the ratio is the 13a token counts' (punctuation
    split off), as in sacrebleu's BLEU line; with several references, against the closest lengths."""
    a, _, refs = systems
    score = sacrebleu.corpus_bleu(a, [val_en])
    assert bleu_length_ratio(a, val_en) == pytest.approx(score.sys_len / score.ref_len, abs=1e-12)
    tokens = BLEU().tokenizer  # 13a
    hyp_len = sum(len(tokens(h).split()) for h in a)
    ref_len = sum(len(tokens(r).split()) for r in val_en)
    assert bleu_length_ratio(a, val_en) == pytest.approx(hyp_len / ref_len, abs=1e-12) and hyp_len == ref_len - 150
    many = sacrebleu.corpus_bleu(a, streams(refs))
    assert bleu_length_ratio(a, refs) == pytest.approx(many.sys_len / many.ref_len, abs=1e-12)
    assert bleu_length_ratio(val_en, val_en) == 1.0


def test_bleu_and_its_length_ratio_of_one_validation_score_once(val_en: list[str], systems, monkeypatch) -> None:
    """A validation reports BLEU, then the length ratio of the same hypotheses: one sacrebleu pass serves both (the
    same references as a plain list or as lists of one); other hypotheses, references or options score anew."""
    from sacrebleu.metrics import BLEU as SacreBLEU

    a, b, _ = systems
    want = sacrebleu.corpus_bleu(a, [val_en]).score
    passes = []
    scores = SacreBLEU.corpus_score
    monkeypatch.setattr(SacreBLEU, "corpus_score", lambda self, *args: passes.append(1) or scores(self, *args))
    bleu = corpus_bleu(a, val_en)
    ratio = bleu_length_ratio(list(a), [[r] for r in val_en])
    assert len(passes) == 1
    assert bleu == pytest.approx(want, abs=1e-9) and ratio < 1
    corpus_bleu(b, val_en)
    corpus_bleu(b, val_en, lowercase=True)
    corpus_bleu(b, [r + " x" for r in val_en], lowercase=True)
    assert len(passes) == 4


def test_corpus_chrf_matches_sacrebleu(val_en: list[str], systems) -> None:
    a, _, refs = systems
    assert corpus_chrf(a, val_en) == pytest.approx(sacrebleu.corpus_chrf(a, [val_en]).score, abs=1e-9)
    assert corpus_chrf(a, refs) == pytest.approx(sacrebleu.corpus_chrf(a, streams(refs)).score, abs=1e-9)
    want = CHRF(word_order=2).corpus_score(a, streams(refs)).score
    assert corpus_chrf(a, refs, word_order=2) == pytest.approx(want, abs=1e-9)


def test_rouge_matches_rouge_score(systems) -> None:
    a, _, refs = systems
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=False)
    got = rouge(a, refs)
    for key in ("rouge1", "rouge2", "rougeL"):
        single = sum(scorer.score(r[0], h)[key].fmeasure for h, r in zip(a, refs, strict=True)) / len(a)
        best = [max(scorer.score(x, h)[key].fmeasure for x in r) for h, r in zip(a, refs, strict=True)]
        multi = sum(best) / len(a)
        assert got[key] == pytest.approx(100 * multi, abs=1e-9)
        assert rouge(a, [r[0] for r in refs])[key] == pytest.approx(100 * single, abs=1e-9)
    assert rouge(a, refs, use_stemmer=True)["rouge1"] >= got["rouge1"] - 1e-9


def test_rouge_refuses_a_rouge_score_without_multi_reference_scoring(monkeypatch) -> None:
    """rouge-score 0.0.4 (no ``score_multi``) is refused with the version needed, not an AttributeError mid-run."""
    from seqlab.metrics import text

    class Old:  # rouge-score 0.0.4's scorer: score() only
        def __init__(self, *_args, **_kwargs) -> None:
            pass

    monkeypatch.setattr(text.rouge_scorer, "RougeScorer", Old)
    with pytest.raises(ImportError, match=r"rouge-score>=0\.1\.2"):
        rouge(["a man"], [["a man", "the man"]])


G2P_HYPS = ["AH B", "K AE T", "D AO G", "X", "A"]
G2P_REFS = [["AH0 B", "AH B"], ["K AE T"], ["D AA G", "D AO G Z"], ["Y Z"], ["B", "A C D"]]


def test_wer_per_hand_cases() -> None:
    # matches: item 0 (second reference) and 1 -> 3 of 5 items wrong
    assert wer(G2P_HYPS, G2P_REFS) == pytest.approx(60.0)
    # distances (chosen reference length): 0 (2), 0 (3), 1 (3: tie, first reference), 2 (2), 1 (1)
    assert per(G2P_HYPS, G2P_REFS) == pytest.approx(100 * 4 / 11)
    assert wer(["A  B"], ["A B"]) == 0.0  # whitespace-separated phonemes, spacing does not matter
    assert per(["A B C"], [["A B C"]]) == 0.0
    assert per(["A X C D"], [["A B C"]]) == pytest.approx(100 * 2 / 3)
    with pytest.raises(ValueError):
        wer(["A"], [[]])
    with pytest.raises(ValueError):
        per(["A", "B"], [["A"]])


def test_compute_metrics(systems) -> None:
    a, _, refs = systems
    out = compute_metrics(["bleu", "chrf", "rouge"], a, refs)
    assert set(out) == {"bleu", "chrf", "rouge1", "rouge2", "rougeL", "rouge"}
    assert out["bleu"] == pytest.approx(corpus_bleu(a, refs))
    assert out["chrf"] == pytest.approx(corpus_chrf(a, refs))
    assert out["rouge"] == pytest.approx((out["rouge1"] + out["rouge2"] + out["rougeL"]) / 3)
    assert set(compute_metrics(["rougeL"], a, refs)) == {"rougeL"}
    g2p = compute_metrics(["wer", "per"], G2P_HYPS, G2P_REFS)
    assert g2p == {"wer": pytest.approx(60.0), "per": pytest.approx(100 * 4 / 11)}
    with pytest.raises(ValueError):
        compute_metrics(["meteor"], a, refs)


def test_metric_directions() -> None:
    assert all(higher_is_better(m) for m in ("bleu", "chrf", "rouge", "rouge1", "rougeL"))
    assert not higher_is_better("wer") and not higher_is_better("per")
    with pytest.raises(ValueError):
        higher_is_better("accuracy")


@pytest.mark.parametrize("metric,key", [("bleu", "BLEU"), ("chrf", "chrF2")])
def test_paired_bootstrap_matches_sacrebleu(systems, monkeypatch, metric: str, key: str) -> None:
    a, b, refs = systems
    monkeypatch.setenv("SACREBLEU_SEED", "12345")
    m = BLEU() if metric == "bleu" else CHRF()
    _, res = PairedTest([("a", a), ("b", b)], {key: m}, streams(refs), test_type="bs", n_samples=200)()
    want_a, want_b = res[key]
    got = paired_bootstrap(a, b, refs, metric=metric, n=200, seed=12345)
    assert got["score_a"] == pytest.approx(want_a.score, abs=1e-9)
    assert got["score_b"] == pytest.approx(want_b.score, abs=1e-9)
    assert got["p_value"] == pytest.approx(want_b.p_value)
    assert got["mean_b"] == pytest.approx(want_b.mean, abs=1e-6)
    assert got["ci_b"] == pytest.approx(want_b.ci, abs=1e-6)


def test_paired_bootstrap_properties(systems) -> None:
    a, b, refs = systems
    first = paired_bootstrap(a, b, refs, n=100, seed=0)
    assert first == paired_bootstrap(a, b, refs, n=100, seed=0)  # seed 0 is a real seed
    assert first["score_a"] == pytest.approx(corpus_bleu(a, refs))
    assert 0 < first["p_value"] <= 1 and 0 <= first["b_wins"] <= 1
    assert paired_bootstrap(a, a, refs, n=50)["p_value"] == 1.0
    for metric in ("rouge", "rougeL", "chrf"):
        out = paired_bootstrap(a, b, refs, metric=metric, n=50)
        want = compute_metrics([metric], a, refs)[metric]
        assert out["score_a"] == pytest.approx(want, abs=1e-6)
    g2p_b = ["AH0 B", "K AE T", "D AA G", "Y Z", "B"]
    for metric in ("wer", "per"):
        out = paired_bootstrap(G2P_HYPS, g2p_b, G2P_REFS, metric=metric, n=50)
        assert out["score_a"] == pytest.approx(compute_metrics([metric], G2P_HYPS, G2P_REFS)[metric])
        assert out["score_b"] == 0.0
    with pytest.raises(ValueError):
        paired_bootstrap(a, b, refs, metric="meteor", n=10)
