"""Beam search stopped at settled sources against the full search, on a trained model's test set (any device).

Beam search keeps finished hypotheses in the beam, and a search to the end runs until every hypothesis of every
source has finished. For the best hypothesis alone it now stops once no live hypothesis can overtake a source's best
finished one (:mod:`seqlab.decoding.beam`). This decodes the test sources both ways with the eager search (the
default for beam search), counting the decoder steps and timing each pass after a warm-up one, and checks that the
hypotheses agree:

    python benchmarks/beam_steps.py RUN/checkpoint_best.pt --data .devdata/multi30k --label _small_cpu

Entries (in benchmarks/results/beam_steps_<device>.json) ``beam<k>_decoder_steps_{settled,full}<label>``,
``beam<k>_decoder_steps_ratio<label>`` (settled / full), ``beam<k>_settled_identical_fraction<label>`` and
``beam<k>_decode_sent_per_s_{settled,full}<label>``.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path
from unittest import mock

import torch
from bench_speed import identical_fraction  # beside this script

from seqlab.bench import results as results_io
from seqlab.bench.timing import timed
from seqlab.decoding import search
from seqlab.inference import LoadedModel, load_checkpoint_model
from seqlab.tasks import load_task
from seqlab.train.evaluate import decode_ids, encode_lines


def all_finished(scores: torch.Tensor, lengths: torch.Tensor, done: torch.Tensor, limits, alpha) -> torch.Tensor:
    """The full search's end test: a source is done when all its hypotheses have finished."""
    return done.view(scores.shape).all(1)


def decode_counting(loaded, src_ids: list[list[int]], beam: int, batch: int) -> tuple[list[list[int]], int, float]:
    """Hypotheses, decoder steps (batched calls of the model's step) and seconds of one pass."""
    calls = 0
    step = loaded.model.step

    def counted(*args, **kwargs):
        nonlocal calls
        calls += 1
        return step(*args, **kwargs)

    def decode() -> list[list[int]]:
        return decode_ids(loaded.model, src_ids, loaded.config.decode, loaded.device, beam_size=beam, batch_size=batch)

    with mock.patch.object(loaded.model, "step", counted):
        hyps, seconds = timed(decode, loaded.device)
    return hyps, calls, seconds


def checkpoint_and_test_sources(
    checkpoint: str, data: str | None, sentences: int | None, device: str
) -> tuple[LoadedModel, list[list[int]]]:
    """A trained checkpoint (its run's tokenizers) and its task's test sources (the first ``sentences``) as the
    model reads them at inference (:func:`~seqlab.train.evaluate.encode_lines`); ``data``: the task's data folder
    when not the checkpoint's."""
    loaded = load_checkpoint_model(checkpoint, device)
    options = dict(loaded.config.task.options)
    if data:
        options["path"] = data
    task = load_task(loaded.config.task.name, options, Path(checkpoint).resolve().parent / "tokenizers")
    sources, _ = task.test.references()
    sources = sources[:sentences] if sentences else sources
    return loaded, encode_lines(loaded.src_tokenizer, sources, loaded.config.decode.max_len)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint")
    ap.add_argument("--data", help="the task's data folder (task.options.path), if not the checkpoint's")
    ap.add_argument("--beam", type=int, default=5)
    ap.add_argument("--batch", type=int, default=256, help="sources per batch (bench_speed's --decode-batch)")
    ap.add_argument("--sentences", type=int, default=None, help="the first N test sources (default: all)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--label", default="")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)
    loaded, src_ids = checkpoint_and_test_sources(args.checkpoint, args.data, args.sentences, args.device)
    torch.set_grad_enabled(False)
    runs = {}
    full_search = mock.patch.object(search, "settled_sources", all_finished)
    for rule in ("settled", "full"):
        with full_search if rule == "full" else contextlib.nullcontext():
            decode_counting(loaded, src_ids, args.beam, args.batch)  # warm-up
            runs[rule] = decode_counting(loaded, src_ids, args.beam, args.batch)
        print(f"{rule:8s} {runs[rule][1]:6d} decoder steps, {len(src_ids) / runs[rule][2]:8.1f} sent/s")
    (settled, s_steps, s_sec), (full, f_steps, f_sec) = runs["settled"], runs["full"]
    same = identical_fraction(settled, full)
    print(f"identical hypotheses: {same:.4f}; steps settled / full: {s_steps / f_steps:.3f}")
    command = "python benchmarks/beam_steps.py " + " ".join(argv if argv is not None else sys.argv[1:])
    k, label = args.beam, args.label
    what = f"batched decoder steps over {len(src_ids)} test sources, batches of {args.batch}"
    rows = [
        ("decoder_steps_settled", s_steps, what),
        ("decoder_steps_full", f_steps, what),
        ("decoder_steps_ratio", round(s_steps / f_steps, 4), "settled / full"),
        ("settled_identical_fraction", round(same, 4), "of hypotheses"),
        ("decode_sent_per_s_settled", round(len(src_ids) / s_sec, 1), "sent/s"),
        ("decode_sent_per_s_full", round(len(src_ids) / f_sec, 1), "sent/s"),
    ]
    entries = [results_io.entry(f"beam{k}_{name}{label}", value, unit, command) for name, value, unit in rows]
    if not args.no_write:
        name = f"beam_steps_{'cuda' if loaded.device.type == 'cuda' else 'cpu'}"
        print(f"{len(entries)} entries -> {results_io.write(name, entries)}")
    return 0 if same == 1.0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
