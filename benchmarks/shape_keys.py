"""How many shapes the captured sampling and greedy loops, and the captured training steps (``train.cuda_graphs``),
meet in one epoch of real training batches.

A captured loop is reused only when a batch falls in the same shape bucket (rows, source width, step budget;
:mod:`seqlab.decoding.sampling` and :mod:`seqlab.decoding.graphs`), so the number of distinct keys per epoch against
what the graph cache holds says whether captures amortise.  Counted on the CPU from the trainer's own batches:

    python benchmarks/shape_keys.py --config configs/multi30k_transformer.yaml task.options.path=.devdata/multi30k

Entries ``<prefix>_sampling_loop_keys_per_epoch``, ``<prefix>_greedy_graph_keys_per_epoch``,
``<prefix>_train_graph_keys_per_epoch`` (with ``<prefix>_train_graph_padding_factor``, the token positions of the
padded batches over the real ones) and ``<prefix>_batches_per_epoch`` in benchmarks/results/shape_keys_cpu.json.
``--train-widths 2,4,8`` also counts the training-step buckets for each ``train.cuda_graphs_width``: the padding
factor, and how many captures the trainer's cache of :data:`~seqlab.train.graphed.MAX_GRAPHS` graphs makes over the
epochs and over the first 1,000 steps (``<prefix>_train_graph_w<width>_*``).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field

from seqlab.bench import results as results_io
from seqlab.config import load_config
from seqlab.data.batching import collate
from seqlab.data.vocab import PAD_ID
from seqlab.decoding.graphs import SOURCE_BUCKET, STEP_BUCKET, bucket_rows, round_up
from seqlab.decoding.sampling import bucket_sample_rows
from seqlab.train.graphed import MAX_GRAPHS, WIDTH_BUCKET, bucket_shape
from seqlab.train.trainer import Trainer

#: a tiny model: only the batches matter here
TINY = [
    "model.options.d_model=32",
    "model.options.ffn_dim=32",
    "model.options.n_heads=2",
    "model.options.encoder_layers=1",
    "model.options.decoder_layers=1",
]


def batching_parser(description: str) -> argparse.ArgumentParser:
    """The arguments of the scripts that count on the trainer's own batches (``--config``, ``--prefix``,
    ``--no-write`` and config overrides); each adds its own."""
    ap = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="configs/multi30k_transformer.yaml")
    ap.add_argument("--prefix", default="multi30k")
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("overrides", nargs="*")
    return ap


@contextlib.contextmanager
def batching_trainer(config: str, overrides: list[str]) -> Iterator[Trainer]:
    """A trainer of a tiny model on the CPU over ``config``'s data, in a run folder of its own that goes away
    after: its sampler and encoded training set are the real run's (the batches depend on the data and the token
    budget, not on the model)."""
    with tempfile.TemporaryDirectory() as run_dir:
        fixed = [f"run_dir={run_dir}", "train.device=cpu", "train.tensorboard=false", *TINY]
        trainer = Trainer(load_config(config, [*fixed, *overrides]), console=False)
        try:
            yield trainer
        finally:
            trainer.close()


@dataclass
class EpochKeys:
    """The shape keys one epoch of the trainer's batches meets: sampling loops, greedy graphs and captured training
    steps (``train.cuda_graphs``), its batch count, and its batches' dimensions in order (:func:`count_width` counts
    their padding and captures)."""

    sampling: set = field(default_factory=set)
    greedy: set = field(default_factory=set)
    train: set = field(default_factory=set)
    batches: int = 0
    dims: list = field(default_factory=list)  # (rows, source width, target width) of each batch, in order


def epoch_keys(trainer: Trainer, epoch: int, args: argparse.Namespace) -> EpochKeys:
    """The keys of one epoch of the trainer's batches (:class:`EpochKeys`)."""
    trainer.sampler.set_epoch(epoch)
    keys = EpochKeys()
    for indices in trainer.sampler:
        batch = collate(trainer.train_data, indices)
        src = batch.src
        steps = int((args.max_len_a * src.ne(PAD_ID).sum(1)).long().max()) + args.max_len_b
        width, budget = round_up(src.size(1), SOURCE_BUCKET), round_up(steps, STEP_BUCKET)
        keys.sampling.add((bucket_sample_rows(src.size(0) * args.samples), width, budget))
        keys.greedy.add((bucket_rows(src.size(0)), width, budget))
        keys.train.add(bucket_shape(batch))
        keys.batches += 1
        keys.dims.append((src.size(0), src.size(1), batch.tgt.size(1)))
    return keys


@dataclass
class WidthCount:
    """The training-step buckets of one ``train.cuda_graphs_width`` over a run's batches."""

    padding: float  # padded token positions over the real ones
    captures: int  # by a least-recently-used cache of MAX_GRAPHS graphs, as the trainer keeps them
    captures_early: int  # of them in the first ``early`` steps


def count_width(dims: list[tuple[int, int, int]], width: int, early: int = 1000) -> WidthCount:
    """Buckets of batches ``dims`` (rows, source width, target width) with widths in multiples of ``width``."""
    cache: collections.OrderedDict = collections.OrderedDict()
    positions = padded = captures = captures_early = 0
    for step, (rows, src_width, tgt_width) in enumerate(dims):
        key = (bucket_rows(rows), round_up(src_width, width), round_up(tgt_width, width))
        positions += rows * (src_width + tgt_width)
        padded += key[0] * (key[1] + key[2])
        if key in cache:
            cache.move_to_end(key)
            continue
        captures, captures_early = captures + 1, captures_early + (step < early)
        cache[key] = True
        while len(cache) > MAX_GRAPHS:
            cache.popitem(last=False)
    return WidthCount(padded / positions, captures, captures_early)


def main() -> None:
    ap = batching_parser(__doc__)
    ap.add_argument("--samples", type=int, default=4, help="model samples per source (K)")
    ap.add_argument("--max-len-a", type=float, default=1.5)
    ap.add_argument("--max-len-b", type=int, default=10)
    ap.add_argument(
        "--epochs", type=int, default=1, help="also count the keys over this many epochs (what a run meets in all)"
    )
    ap.add_argument("--train-widths", default="", help="train.cuda_graphs_width values to count, e.g. 2,4,8")
    args = ap.parse_args()
    with batching_trainer(args.config, args.overrides) as trainer:
        per_epoch = [epoch_keys(trainer, epoch, args) for epoch in range(max(args.epochs, 1))]
    first = per_epoch[0]
    seen: set = set()
    new_per_epoch = []
    for keys in per_epoch:
        new_per_epoch.append(len(keys.sampling - seen))
        seen |= keys.sampling
    padding = count_width(first.dims, WIDTH_BUCKET).padding
    print(
        f"{first.batches} batches: {len(first.sampling)} sampling-loop keys (K = {args.samples}), "
        f"{len(first.greedy)} greedy keys, {len(first.train)} training-step buckets ({padding:.2f}x the positions)"
    )
    if args.epochs > 1:
        print(f"over {args.epochs} epochs: {len(seen)} sampling-loop keys; new ones per epoch {new_per_epoch}")
    dims = [d for keys in per_epoch for d in keys.dims]
    widths = {w: count_width(dims, w) for w in (int(x) for x in args.train_widths.split(",") if x.strip())}
    for w, c in widths.items():
        default = " (the default)" if w == WIDTH_BUCKET else ""
        print(
            f"train.cuda_graphs_width={w}{default}: {c.padding:.3f}x the positions, {c.captures} captures in "
            f"{len(dims)} steps ({c.captures_early} in the first 1,000) with a cache of {MAX_GRAPHS}"
        )
    if not args.no_write:
        entries = [
            results_io.entry(f"{args.prefix}_sampling_loop_keys_per_epoch", len(first.sampling), "shape keys"),
            results_io.entry(f"{args.prefix}_greedy_graph_keys_per_epoch", len(first.greedy), "shape keys"),
            results_io.entry(f"{args.prefix}_train_graph_keys_per_epoch", len(first.train), "shape keys"),
            results_io.entry(f"{args.prefix}_train_graph_padding_factor", round(padding, 3), "padded / real positions"),
            results_io.entry(f"{args.prefix}_batches_per_epoch", first.batches, "batches"),
        ]
        if args.epochs > 1:
            name = f"{args.prefix}_sampling_loop_keys_{args.epochs}epochs"
            entries.append(results_io.entry(name, len(seen), "shape keys"))
        for w, c in widths.items():
            name = f"{args.prefix}_train_graph_w{w}"
            entries += [
                results_io.entry(f"{name}_padding_factor", round(c.padding, 3), "padded / real positions"),
                results_io.entry(f"{name}_captures_{args.epochs}epochs", c.captures, "captures"),
                results_io.entry(f"{name}_captures_first1000steps", c.captures_early, "captures"),
            ]
        print(results_io.write("shape_keys_cpu", entries))


if __name__ == "__main__":
    main()
