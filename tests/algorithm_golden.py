"""Loss, statistics and gradient of each sequence-level algorithm on one fixed batch and model.

``python tests/algorithm_golden.py`` records them into ``tests/golden/algorithms.json``;
``tests/test_algorithms_port.py`` checks that the current code reproduces the recorded values (they were recorded
from the code before the algorithms were ported onto :class:`~seqlab.algorithms.base.SequenceAlgorithm`).
The gradient is kept as its norm and two projections on fixed random directions (a few thousand parameters).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import torch

HERE = Path(__file__).resolve().parent
GOLDEN = HERE / "golden" / "algorithms.json"
VOCAB = 12

#: (case name, algorithm, options)
CASES: list[tuple[str, str, dict[str, Any]]] = [
    ("mle", "mle", {}),
    ("noising", "noising", {"gamma": 0.3}),
    ("raml", "raml", {"num_samples": 4, "reward": "neg_edit"}),
    ("raml_hamming", "raml", {"num_samples": 4, "proposal": "hamming", "tau": 0.7}),
    ("alpha_dimt", "alpha_dimt", {"num_samples": 4}),
    ("erpo_ngram", "erpo", {"alpha": 0.2, "beta": 0.5, "num_samples": 3}),
    ("erpo_model", "erpo", {"alpha": 0.1, "beta": 0.5, "proposal": "model", "num_samples": 3}),
    ("erpo_delta", "erpo", {"reward": "delta", "num_samples": 3}),
    ("spg", "spg", {"alpha": 0.2, "num_samples": 3}),
    ("pg_greedy", "pg", {"baseline": "greedy", "num_samples": 2, "mle_weight": 0.5}),
    ("pg_mean", "pg", {"baseline": "mean", "num_samples": 3}),
    ("mixer", "mixer", {"num_samples": 2, "prefix": 2}),
    ("interpolation", "interpolation", {"lambdas": [0.3, 0.3, 0.4], "reward_scale": 5.0}),
    ("mixer_anneal", "mixer_anneal", {"prefix": 1}),
    ("scheduled_sampling", "scheduled_sampling", {"k": 5.0}),
]


def batch_and_model() -> tuple[Any, Any]:
    from tiny import TinyBatch, make_targets

    from seqlab.models import build_model

    torch.manual_seed(7)
    model = build_model(
        "transformer", VOCAB, VOCAB, d_model=16, n_heads=2, ffn_dim=32, encoder_layers=1, decoder_layers=1, dropout=0.0
    )
    src = make_targets([[4, 5, 6], [7, 8], [9, 10, 11, 4]])
    tgt = make_targets([[6, 5, 4], [8, 7, 9], [4, 11, 10, 9, 5]])
    return TinyBatch(src, tgt), model


def run_case(algorithm: str, options: dict[str, Any]) -> dict[str, Any]:
    from seqlab.algorithms.base import AlgorithmContext, Progress, build_algorithm

    batch, model = batch_and_model()
    unigram = torch.ones(VOCAB)
    unigram[:4] = 0
    ctx = AlgorithmContext(vocab_size=VOCAB, label_smoothing=0.1, unigram=unigram / unigram.sum())
    algo = build_algorithm(algorithm, ctx, options)
    torch.manual_seed(123)
    loss, stats = algo.loss(model, batch, Progress(step=3, epoch=1, fraction=0.3, total_steps=10))
    loss.backward()
    grads = torch.cat(
        [p.grad.flatten() if p.grad is not None else torch.zeros(p.numel()) for p in model.parameters()]
    ).double()
    g = torch.Generator().manual_seed(0)
    directions = torch.randn(2, grads.numel(), generator=g, dtype=torch.float64)
    return {
        "loss": float(loss.detach()),
        "grad_norm": float(grads.norm()),
        "grad_projections": [float(x) for x in directions @ grads],
        "stats": {k: float(v) for k, v in sorted(stats.items())},
    }


def record() -> None:
    sys.path.insert(0, str(HERE))
    out = {name: run_case(algorithm, options) for name, algorithm, options in CASES}
    GOLDEN.parent.mkdir(exist_ok=True)
    GOLDEN.write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")
    print(f"wrote {GOLDEN} ({len(out)} cases)")


if __name__ == "__main__":
    torch.set_num_threads(1)
    record()
