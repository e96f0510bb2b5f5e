"""Grapheme-to-phoneme metrics on space-separated phoneme strings, with several references per word."""

from __future__ import annotations

from collections.abc import Sequence

from seqlab.metrics.text import References, normalize_refs


def levenshtein(a: Sequence[str], b: Sequence[str]) -> int:
    """Unit-cost edit distance between two token lists."""
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i] + [0] * len(b)
        for j, y in enumerate(b, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y))
        prev = cur
    return prev[-1]


def word_errors(hyps: Sequence[str], refs: References) -> list[int]:
    """Per item: 1 if the hypothesis' phoneme sequence equals none of the references, else 0."""
    refs = normalize_refs(hyps, refs)
    return [int(all(h.split() != r.split() for r in rs)) for h, rs in zip(hyps, refs, strict=True)]


def phoneme_errors(hyps: Sequence[str], refs: References) -> list[tuple[int, int]]:
    """Per item: (edit distance to the closest reference, length of that reference); ties go to the
    first reference in the list."""
    refs = normalize_refs(hyps, refs)
    out = []
    for h, rs in zip(hyps, refs, strict=True):
        toks = h.split()
        dists = [(levenshtein(toks, r.split()), k) for k, r in enumerate(rs)]
        d, k = min(dists)
        out.append((d, len(rs[k].split())))
    return out


def wer(hyps: Sequence[str], refs: References) -> float:
    """Word error rate (%) of G2P: items whose hypothesis matches none of the references."""
    errors = word_errors(hyps, refs)
    return 100.0 * sum(errors) / max(len(errors), 1)


def per(hyps: Sequence[str], refs: References) -> float:
    """Phoneme error rate (%): sum of min-over-references edit distances / sum of the chosen
    (argmin, first on ties) references' lengths."""
    errors = phoneme_errors(hyps, refs)
    dist = sum(d for d, _ in errors)
    length = sum(n for _, n in errors)
    return 100.0 * dist / max(length, 1)
