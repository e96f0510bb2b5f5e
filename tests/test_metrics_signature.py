"""sacrebleu signatures (issue 22 item 6): what results.json, seqlab evaluate and the compare report show."""

from __future__ import annotations

from sacrebleu.metrics import BLEU, CHRF

from seqlab.metrics.signature import reference_count, sacrebleu_signatures, signature_summary


def test_signatures_are_sacrebleus_own():
    refs = [["a b c", "a b d"], ["e f", "e g"]]
    bleu, chrf = BLEU(), CHRF()
    bleu.corpus_score(["a b c", "e f"], [list(s) for s in zip(*refs, strict=True)])
    chrf.corpus_score(["a b c", "e f"], [list(s) for s in zip(*refs, strict=True)])
    assert sacrebleu_signatures(["bleu", "chrf", "wer"], refs) == {
        "bleu": str(bleu.get_signature()),
        "chrf": str(chrf.get_signature()),
    }
    assert sacrebleu_signatures(["wer", "per"], refs) == {}
    assert reference_count(["x", "y"]) == 1 and reference_count([["x"], ["y", "z"]]) == -1
    assert sacrebleu_signatures(["bleu"], [["x"], ["y", "z"]])["bleu"].startswith("nrefs:var|")


def test_summary_lists_distinct_signatures():
    sig = sacrebleu_signatures(["bleu"], [["x"]])["bleu"]
    runs = [{"signatures": {"test": {"bleu": sig}}}, {"signatures": {"test": {"bleu": sig}}}, {"test": {"wer": 1.0}}]
    assert signature_summary(runs) == f"bleu {sig}"
    assert signature_summary([{"test": {"wer": 1.0}}]).startswith("none")
