"""Paired bootstrap resampling between two systems on the same items (Koehn 2004).

Our own implementation over sentence-level sufficient statistics, written to reproduce sacrebleu's
paired bootstrap (``sacrebleu.significance``, ``PairedTest(test_type="bs")``, the Moses script's test):
the same resampled index matrix ``numpy.random.default_rng(seed).choice(N, (n, N))``, float32 summed
statistics, and p = (#{|d*| − mean|d*| > |d|} + 1) / (n + 1).  For BLEU and chrF the statistics and
scores come from sacrebleu's metric objects, so for a non-zero seed the p-value, mean and 95% CI of
system B equal ``PairedTest``'s (tested).  We do not call ``PairedTest`` itself because it takes its
seed from the SACREBLEU_SEED environment variable and treats seed 0 as "unseeded".  ROUGE, WER and
PER use the same resampling over their per-item statistics.  One deliberate difference: two systems
that score the same on every resample get p = 1 (sacrebleu's formula gives 1 / (n + 1) there).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from seqlab.metrics.g2p import phoneme_errors, word_errors
from seqlab.metrics.text import (
    ROUGE_TYPES,
    References,
    bleu_metric,
    chrf_metric,
    normalize_refs,
    ref_streams,
    sentence_rouge,
)

StatsFn = Callable[[Sequence[str]], tuple[np.ndarray, Callable[[np.ndarray, int], float]]]


def _stats_fn(metric: str, refs: list[list[str]], tokenize: str) -> StatsFn:
    """Per-item statistics [N, S] of a system and the corpus score from their sum (and item count)."""
    if metric in ("bleu", "chrf"):
        m = bleu_metric(tokenize) if metric == "bleu" else chrf_metric()
        streams = ref_streams(refs)

        def sacre(hyps: Sequence[str]) -> tuple[np.ndarray, Callable[[np.ndarray, int], float]]:
            stats = np.array(m._extract_corpus_statistics(list(hyps), streams), dtype="float32")
            return stats, lambda s, n: float(m._compute_score_from_stats(s).score)

        return sacre
    if metric in ("rouge", *ROUGE_TYPES):
        keys = ROUGE_TYPES if metric == "rouge" else (metric,)

        def rouge_stats(hyps: Sequence[str]) -> tuple[np.ndarray, Callable[[np.ndarray, int], float]]:
            per_item = sentence_rouge(hyps, refs)
            stats = np.mean([per_item[k] for k in keys], axis=0, dtype="float64")[:, None] * 100.0
            return stats, lambda s, n: float(s[0] / max(n, 1))

        return rouge_stats
    if metric == "wer":

        def wer_stats(hyps: Sequence[str]) -> tuple[np.ndarray, Callable[[np.ndarray, int], float]]:
            stats = np.array(word_errors(hyps, refs), dtype="float64")[:, None]
            return stats, lambda s, n: float(100.0 * s[0] / max(n, 1))

        return wer_stats
    if metric == "per":

        def per_stats(hyps: Sequence[str]) -> tuple[np.ndarray, Callable[[np.ndarray, int], float]]:
            stats = np.array(phoneme_errors(hyps, refs), dtype="float64").reshape(-1, 2)
            return stats, lambda s, n: float(100.0 * s[0] / max(s[1], 1))

        return per_stats
    raise ValueError(f"paired_bootstrap: unknown metric {metric!r}")


def estimate_ci(scores: np.ndarray) -> tuple[float, float]:
    """Mean and half-width of the 95% interval of bootstrap scores (sacrebleu's ``estimate_ci``)."""
    scores = np.sort(scores)
    lower = len(scores) // 40
    upper = len(scores) - lower - 1
    return float(scores.mean()), float(0.5 * (scores[upper] - scores[lower]))


def paired_bootstrap(
    hyps_a: Sequence[str],
    hyps_b: Sequence[str],
    refs: References,
    metric: str = "bleu",
    n: int = 1000,
    seed: int | None = 0,
    tokenize: str = "13a",
) -> dict[str, Any]:
    """Paired bootstrap test of system B against baseline A on ``metric``
    ("bleu", "chrf", "rouge", "rouge1", "rouge2", "rougeL", "wer", "per").

    Returns the full-corpus scores ``score_a`` / ``score_b``, bootstrap ``mean_*`` and 95% CI
    half-widths ``ci_*``, the two-sided ``p_value`` of the difference, and ``b_wins``, the fraction of
    resamples where B scores higher than A."""
    if len(hyps_a) != len(hyps_b):
        raise ValueError("both systems must cover the same items")
    refs_n = normalize_refs(hyps_a, refs)
    stats_of = _stats_fn(metric, refs_n, tokenize)
    stats_a, score_fn = stats_of(hyps_a)
    stats_b, _ = stats_of(hyps_b)
    items = len(hyps_a)
    score_a = score_fn(stats_a.astype("float64").sum(0), items)
    score_b = score_fn(stats_b.astype("float64").sum(0), items)
    rng = np.random.default_rng(seed)
    idxs = rng.choice(items, size=(n, items), replace=True)
    boot_a = np.array([score_fn(s.sum(0), items) for s in stats_a[idxs]])
    boot_b = np.array([score_fn(s.sum(0), items) for s in stats_b[idxs]])
    diff = abs(score_a - score_b)
    sample_diffs = np.abs(boot_b - boot_a)
    centred = sample_diffs - sample_diffs.mean()
    p_value = (int(np.sum(centred > diff)) + 1) / (n + 1)
    if not sample_diffs.any() and diff == 0:
        p_value = 1.0  # indistinguishable on every resample (sacrebleu's formula would give 1 / (n + 1))
    mean_a, ci_a = estimate_ci(boot_a)
    mean_b, ci_b = estimate_ci(boot_b)
    return {
        "metric": metric,
        "n": n,
        "seed": seed,
        "score_a": score_a,
        "score_b": score_b,
        "mean_a": mean_a,
        "ci_a": ci_a,
        "mean_b": mean_b,
        "ci_b": ci_b,
        "p_value": p_value,
        "b_wins": float(np.mean(boot_b > boot_a)),
    }
