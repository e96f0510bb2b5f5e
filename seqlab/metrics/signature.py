"""sacrebleu's signatures of the BLEU / chrF scores seqlab reports (results.json, ``seqlab evaluate``, reports).

A signature (``nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0``) says how a score was computed, so
numbers from different runs or papers are only compared when their signatures agree.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from seqlab.metrics.text import bleu_metric, chrf_metric


def reference_count(refs: Sequence[Sequence[str] | str]) -> int:
    """References per item as sacrebleu counts them: the common count, or -1 (``var``) when it varies."""
    counts = {1 if isinstance(r, str) else len(r) for r in refs}
    return counts.pop() if len(counts) == 1 else -1


def sacrebleu_signatures(
    metrics: Sequence[str], refs: Sequence[Sequence[str] | str], tokenize: str = "13a"
) -> dict[str, str]:
    """The signature of each of ``metrics`` that sacrebleu computes (bleu, chrf), for references ``refs`` (one
    list per item, as :func:`seqlab.metrics.compute_metrics` takes them); other metrics are left out."""
    out: dict[str, str] = {}
    for name, make in (("bleu", lambda: bleu_metric(tokenize)), ("chrf", chrf_metric)):
        if name in metrics:
            metric = make()
            metric.num_refs = reference_count(refs)
            out[name] = str(metric.get_signature())
    return out


def signature_summary(results: Iterable[dict], split: str = "test") -> str:
    """One line with the distinct sacrebleu signatures of ``split``'s scores in ``results`` (results.json contents),
    e.g. for a report's header; every run of a comparison should share them."""
    seen = sorted({f"{name} {sig}" for r in results for name, sig in r.get("signatures", {}).get(split, {}).items()})
    return "; ".join(seen) if seen else "none (no BLEU / chrF scores, or results.json without signatures)"
