"""Corpus BLEU / chrF (sacrebleu) and ROUGE (rouge-score) on detokenized strings, with multi-references.

``refs[i]`` is the list of references of hypothesis i; counts may vary between items.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

from rouge_score import rouge_scorer
from sacrebleu.metrics import BLEU, CHRF
from sacrebleu.metrics.bleu import BLEUScore

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")

# One list of references per item, or one reference string per item.
References = Sequence[Sequence[str]] | Sequence[str]


def normalize_refs(hyps: Sequence[str], refs: References) -> list[list[str]]:
    """``refs`` as one non-empty list of references per hypothesis (a plain list of strings is one each)."""
    out = [[r] if isinstance(r, str) else list(r) for r in refs]
    if len(out) != len(hyps):
        raise ValueError(f"{len(hyps)} hypotheses but {len(out)} reference lists")
    if any(not r for r in out):
        raise ValueError("every hypothesis needs at least one reference")
    return out


def ref_streams(refs: Sequence[Sequence[str]]) -> list[list[str | None]]:
    """sacrebleu's layout: stream k holds every item's k-th reference, ``None`` where an item has fewer."""
    width = max(len(r) for r in refs)
    return [[r[k] if k < len(r) else None for r in refs] for k in range(width)]


def bleu_metric(tokenize: str = "13a", lowercase: bool = False) -> BLEU:
    return BLEU(tokenize=tokenize, lowercase=lowercase)


def chrf_metric(word_order: int = 0) -> CHRF:
    return CHRF(word_order=word_order)


def _bleu_score(hyps: Sequence[str], refs: References, tokenize: str = "13a", lowercase: bool = False) -> BLEUScore:
    """sacrebleu's corpus BLEU result against one or more references per item.  The last one is kept: a validation
    asks for the BLEU and then the length ratio of the same hypotheses (:func:`bleu_length_ratio`)."""
    refs = normalize_refs(hyps, refs)
    return _corpus_score(tuple(hyps), tuple(tuple(r) for r in refs), tokenize, lowercase)


@functools.lru_cache(maxsize=1)
def _corpus_score(
    hyps: tuple[str, ...], refs: tuple[tuple[str, ...], ...], tokenize: str, lowercase: bool
) -> BLEUScore:
    return bleu_metric(tokenize, lowercase).corpus_score(list(hyps), ref_streams(refs))


def corpus_bleu(hyps: Sequence[str], refs: References, tokenize: str = "13a", lowercase: bool = False) -> float:
    """sacrebleu corpus BLEU (0-100) against one or more references per item."""
    return float(_bleu_score(hyps, refs, tokenize, lowercase).score)


def bleu_length_ratio(hyps: Sequence[str], refs: References, tokenize: str = "13a") -> float:
    """Hypothesis length over (closest) reference length in 13a tokens, as sacrebleu's BLEU reports it: below 1 the
    brevity penalty applies.  A policy that learns to stop early shows here before BLEU says why."""
    score = _bleu_score(hyps, refs, tokenize)
    return float(score.sys_len) / max(float(score.ref_len), 1.0)


def corpus_chrf(hyps: Sequence[str], refs: References, word_order: int = 0) -> float:
    """sacrebleu corpus chrF (0-100; ``word_order=2`` gives chrF++)."""
    refs = normalize_refs(hyps, refs)
    return float(chrf_metric(word_order).corpus_score(list(hyps), ref_streams(refs)).score)


def rouge_scorer_for(use_stemmer: bool) -> rouge_scorer.RougeScorer:
    """A ROUGE-1/2/L scorer; rouge-score before 0.1 (no ``score_multi``, multi-reference scoring) is refused by
    name, before any hypothesis is scored."""
    scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=use_stemmer)
    if not hasattr(scorer, "score_multi"):
        found = getattr(rouge_scorer, "__file__", "?")
        raise ImportError(f"seqlab needs rouge-score>=0.1.2 (multi-reference score_multi); the one at {found} is older")
    return scorer


def sentence_rouge(hyps: Sequence[str], refs: References, use_stemmer: bool = False) -> dict[str, list[float]]:
    """Per-item ROUGE-1/2/L F1 (0-1), each the max over the item's references
    (rouge-score ``score_multi``)."""
    refs = normalize_refs(hyps, refs)
    scorer = rouge_scorer_for(use_stemmer)
    out: dict[str, list[float]] = {k: [] for k in ROUGE_TYPES}
    for hyp, rs in zip(hyps, refs, strict=True):
        scores = scorer.score_multi(rs, hyp)
        for k in ROUGE_TYPES:
            out[k].append(float(scores[k].fmeasure))
    return out


def rouge(hyps: Sequence[str], refs: References, use_stemmer: bool = False) -> dict[str, float]:
    """ROUGE-1/2/L F1 x 100 averaged over items (rouge-score, no stemming by default; multi-ref: max)."""
    per_item = sentence_rouge(hyps, refs, use_stemmer)
    n = max(len(hyps), 1)
    return {k: 100.0 * sum(v) / n for k, v in per_item.items()}
