"""Evaluation metrics from the field's own libraries on detokenized strings.

sacrebleu for BLEU / chrF, rouge-score for ROUGE, and G2P word / phoneme error rates.  ``refs[i]`` is
the list of references of item i (a plain list of strings means one reference each).
"""

from __future__ import annotations

from collections.abc import Sequence

from seqlab.metrics.g2p import levenshtein, per, wer
from seqlab.metrics.significance import paired_bootstrap
from seqlab.metrics.text import (
    ROUGE_TYPES,
    References,
    bleu_length_ratio,
    corpus_bleu,
    corpus_chrf,
    normalize_refs,
    rouge,
)

METRICS = ("bleu", "chrf", "rouge", "rouge1", "rouge2", "rougeL", "wer", "per")
LOWER_IS_BETTER = frozenset({"wer", "per"})


def higher_is_better(name: str) -> bool:
    """Whether a larger value of metric ``name`` is better (False for the error rates WER / PER)."""
    if name not in METRICS:
        raise ValueError(f"unknown metric {name!r}; choose from {METRICS}")
    return name not in LOWER_IS_BETTER


def compute_metrics(
    names: Sequence[str], hyps: Sequence[str], refs: References, tokenize: str = "13a"
) -> dict[str, float]:
    """Every metric of ``names`` on the corpus, as a flat dict.

    "rouge" adds "rouge1", "rouge2", "rougeL" (F1 x 100) and "rouge" (their mean)."""
    unknown = [n for n in names if n not in METRICS]
    if unknown:
        raise ValueError(f"unknown metrics {unknown}; choose from {METRICS}")
    refs = normalize_refs(hyps, refs)
    out: dict[str, float] = {}
    if "bleu" in names:
        out["bleu"] = corpus_bleu(hyps, refs, tokenize=tokenize)
    if "chrf" in names:
        out["chrf"] = corpus_chrf(hyps, refs)
    if any(n.startswith("rouge") for n in names):
        scores = rouge(hyps, refs)
        keys = ROUGE_TYPES if "rouge" in names else [n for n in ROUGE_TYPES if n in names]
        out.update({k: scores[k] for k in keys})
        if "rouge" in names:
            out["rouge"] = sum(scores.values()) / len(scores)
    if "wer" in names:
        out["wer"] = wer(hyps, refs)
    if "per" in names:
        out["per"] = per(hyps, refs)
    return out


__all__ = [
    "LOWER_IS_BETTER",
    "METRICS",
    "bleu_length_ratio",
    "compute_metrics",
    "corpus_bleu",
    "corpus_chrf",
    "higher_is_better",
    "levenshtein",
    "normalize_refs",
    "paired_bootstrap",
    "per",
    "rouge",
    "wer",
]
