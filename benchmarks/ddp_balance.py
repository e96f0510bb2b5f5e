"""How alike the batches are that the DDP ranks take in the same step (issue 19: "uneven shapes between ranks").

A DDP step ends with a gradient all-reduce, so every rank waits for the slowest batch of that step.  This counts, on
the trainer's own Multi30k batches of one epoch (CPU, no training), the spread within a step (max - min over the
ranks) of the batch width (longest sequence) and of the real target tokens, for the sampler's rounds of
neighbouring widths (``aligned``) and for the same batches paired at random (``random``, what the sampler did
before):

    python benchmarks/ddp_balance.py task.options.path=.devdata/multi30k

Entries ``<prefix>_ddp<W>_step_width_spread_{aligned,random}`` and ``..._step_tgt_tokens_spread_{aligned,random}``
(means over the epoch's steps) in benchmarks/results/ddp_balance_cpu.json.
"""

from __future__ import annotations

import numpy as np
from shape_keys import batching_parser, batching_trainer

from seqlab.bench import results as results_io
from seqlab.data.batching import TokenBatchSampler


def spreads(values: np.ndarray) -> float:
    """Mean over steps of max - min over ranks ([ranks, steps])."""
    return float((values.max(0) - values.min(0)).mean())


def main() -> None:
    ap = batching_parser(__doc__)
    ap.add_argument("--world-size", type=int, default=2)
    args = ap.parse_args()
    with batching_trainer(args.config, args.overrides) as trainer:
        base, data = trainer.sampler, trainer.train_data
    tgt_len = np.asarray(data.tgt_lengths, dtype=np.int64)  # EOS included
    ws = args.world_size
    plans = [
        TokenBatchSampler(
            data.lengths(), base.max_tokens, base.max_sentences, seed=base.seed, rank=r, world_size=ws
        ).plan(0)
        for r in range(ws)
    ]
    width = np.array([[int(base.lengths[b].max()) for b in plan] for plan in plans])
    tokens = np.array([[int(tgt_len[b].sum()) for b in plan] for plan in plans])
    perm = np.random.default_rng(0).permutation(width.size)  # the same batches, paired at random
    figures = {
        "step_width_spread_aligned": spreads(width),
        "step_width_spread_random": spreads(width.reshape(-1)[perm].reshape(width.shape)),
        "step_tgt_tokens_spread_aligned": spreads(tokens),
        "step_tgt_tokens_spread_random": spreads(tokens.reshape(-1)[perm].reshape(tokens.shape)),
    }
    print(f"{width.shape[1]} steps of {ws} ranks; mean width {width.mean():.1f}, tgt tokens {tokens.mean():.0f}")
    for name, value in figures.items():
        print(f"{name:34s} {value:10.2f}")
    if not args.no_write:
        unit = {"width": "tokens (longest sequence)", "tgt_tokens": "target tokens"}
        entries = [
            results_io.entry(
                f"{args.prefix}_ddp{ws}_{name}", round(value, 2), unit["width" if "width" in name else "tgt_tokens"]
            )
            for name, value in figures.items()
        ]
        print(results_io.write("ddp_balance_cpu", entries))


if __name__ == "__main__":
    main()
