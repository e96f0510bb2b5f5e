#!/usr/bin/env python
"""Does a trained model read its source?  Its log-likelihood of each reference with the true source against the
same reference with another sentence's source (the sources rotated by one), in nats per target token.

A translation model gains several nats per token from its source; a model that decodes one sentence for every
input (a decoder trained as a language model while its encoder is ignored) gains about nothing::

    python benchmarks/source_sensitivity.py runs/x/checkpoint_best.pt --src val.de.gz --tgt val.en.gz --n 500

``--name NAME --results FILE`` also writes ``NAME_source_gain_nats_per_token``, ``NAME_distinct_greedy_share``
(distinct greedy hypotheses / sentences) and, from the run's results.json beside the checkpoint, ``NAME_test_<metric>``
as entries in ``benchmarks/results/FILE.json``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import seqlab
from seqlab.bench import results as results_io
from seqlab.data.corpus import read_lines


def source_gain(model: seqlab.Seq2Seq, sources: list[str], targets: list[str]) -> float:
    """Mean over target tokens of log p(tgt | its source) - log p(tgt | the next sentence's source)."""
    tokens = sum(len(model.tgt_tokenizer.encode(t)) + 1 for t in targets)  # + EOS, as score() counts it
    true = sum(model.score(sources, targets))
    rotated = sum(model.score(sources[1:] + sources[:1], targets))
    return (true - rotated) / tokens


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoints", nargs="+", type=Path)
    p.add_argument("--src", type=Path, required=True, help="source sentences (plain or .gz)")
    p.add_argument("--tgt", type=Path, required=True, help="their references")
    p.add_argument("--n", type=int, default=500, help="the first N pairs")
    p.add_argument("--device", default="auto")
    p.add_argument("--name", action="append", default=[], help="entry prefix per checkpoint (with --results)")
    p.add_argument("--results", help="results file under benchmarks/results (no .json)")
    args = p.parse_args()
    if args.results and len(args.name) != len(args.checkpoints):
        raise SystemExit("--results needs one --name per checkpoint")
    sources, targets = read_lines(args.src)[: args.n], read_lines(args.tgt)[: args.n]
    entries = []
    for i, ckpt in enumerate(args.checkpoints):
        model = seqlab.load(ckpt, device=args.device)
        gain = source_gain(model, sources, targets)
        distinct = len(set(model.translate(sources, beam_size=1))) / len(sources)
        print(f"{ckpt}: source gain {gain:.3f} nats/token, distinct greedy hypotheses {distinct:.3f}")
        if args.results:
            name = args.name[i]
            entries += [
                results_io.entry(f"{name}_source_gain_nats_per_token", round(gain, 4), "nats / target token"),
                results_io.entry(f"{name}_distinct_greedy_share", round(distinct, 4), "distinct / sentences"),
            ]
            run = ckpt.parent / "results.json"
            if run.exists():
                test = json.loads(run.read_text(encoding="utf-8")).get("test") or {}
                entries += [results_io.entry(f"{name}_test_{m.lower()}", round(v, 2), m) for m, v in test.items()]
    if entries:
        print(f"{len(entries)} entries -> {results_io.write(args.results, entries)}")


if __name__ == "__main__":
    main()
