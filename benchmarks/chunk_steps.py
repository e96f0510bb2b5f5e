"""What the fixed-shape searches' settings cost: batch-1 latency and batched throughput per chunk size, with the
decoder step compiled or not (any device).

The captured greedy and beam searches run whole chunks of steps and read the end test once per chunk
(:mod:`seqlab.decoding.static`), so a search takes up to a chunk less one of steps after its last row finished,
and a sentence at batch 1 pays those steps in full. Smaller chunks waste fewer steps and read the end test more
often. This decodes the same sources with each chunk size (``SEQLAB_SEARCH_CHUNK_STEPS``) through the fixed-shape
searches (captured on a GPU; beam search's with ``SEQLAB_STATIC_BEAM=1``), after a warm-up pass per size, and checks
that the hypotheses agree. ``--compiled`` also runs each size with the decoder step compiled
(``SEQLAB_COMPILE_DECODE=1``, :func:`seqlab.decoding.graphs.decode_step_compiled`: fewer, fused kernels per step;
the warm-up pass pays the compilation), and ``--attention auto,sdpa`` each size with each way a decoding step's
single query attends (``SEQLAB_SINGLE_QUERY_ATTENTION``, :func:`seqlab.models.transformer.single_query_mode`; the
captured searches are dropped between ways, as their graphs hold the kernels of one):

    python benchmarks/chunk_steps.py RUN/checkpoint_best.pt --data .devdata/multi30k --chunks 8,4,2,1 --compiled
    python benchmarks/chunk_steps.py --random-model configs/multi30k_transformer.yaml --sentences 200   # no training

``--random-model`` decodes random sources (Multi30k's lengths) with an untrained model of the config's size: its
outputs run to the length limit, so it measures a step's cost and the end test's, not real output lengths.

Entries (benchmarks/results/chunk_steps_<device>.json) ``batch1_greedy_latency_ms_chunk<k><label>`` (median over
``--latency-sentences``), ``greedy_decode_sent_per_s_chunk<k><label>``, ``beam<b>_decode_sent_per_s_chunk<k><label>``
and ``chunk<k>_identical_fraction<label>`` (hypotheses equal to the first chunk size's, greedy and beam together);
``chunk<k>_compiled`` in place of ``chunk<k>`` for the compiled step, ``chunk<k>_<mode>[_compiled]`` with
``--attention``, ``_device_loop`` with ``--device-loop`` (the whole search as one graph, its chunks in conditional
nodes: ``SEQLAB_SEARCH_DEVICE_LOOP=1``), ``_tf32`` with ``--tf32`` (the searches' float32 matrix products on TF32
tensor cores, the library's ``SEQLAB_DECODE_TF32``: fewer mantissa bits, so the hypotheses may differ; the exit
status asks only the variants that differ from the first in chunks, compilation or the device loop to agree). Before
session 22 the beam pass ran the eager beam search (no ``SEQLAB_STATIC_BEAM``), which has no chunks: its figures did
not depend on the chunk size.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys

import torch
from beam_steps import checkpoint_and_test_sources  # beside this script
from bench_speed import batch1_latency_ms, identical_fraction

from seqlab.bench import results as results_io
from seqlab.bench.timing import timed
from seqlab.config import DecodeConfig, load_config
from seqlab.data.vocab import EOS_ID
from seqlab.decoding.static import clear_searches, whole_graph_share
from seqlab.models import build_model, transformer
from seqlab.train.evaluate import decode_ids
from seqlab.utils import resolve_device

#: Multi30k's source lengths in tokens (EOS included) for random sources: test_2016's 10th to 90th percentile
RANDOM_LENGTHS = (9, 22)


def random_sources(count: int, vocab: int, seed: int = 0) -> list[list[int]]:
    """``count`` sources of Multi30k-like lengths, ids past the special tokens, each ending with EOS."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(RANDOM_LENGTHS[0], RANDOM_LENGTHS[1] + 1, (count,), generator=g)
    return [torch.randint(4, vocab, (int(n) - 1,), generator=g).tolist() + [EOS_ID] for n in lengths]


def load(args: argparse.Namespace) -> tuple[torch.nn.Module, DecodeConfig, list[list[int]], torch.device]:
    """The model, its decoding settings, the sources (token ids) and the device."""
    if args.random_model:
        cfg = load_config(args.random_model)
        device = resolve_device(args.device)
        vocab = int(cfg.task.options.get("vocab_size", 8000))
        torch.manual_seed(0)
        model = build_model(cfg.model.arch, vocab, vocab, **cfg.model.options).to(device).eval()
        return model, cfg.decode, random_sources(args.sentences or 1000, vocab), device
    loaded, ids = checkpoint_and_test_sources(args.checkpoint, args.data, args.sentences, args.device)
    return loaded.model, loaded.config.decode, ids, loaded.device


def decoding_parser(doc: str | None) -> argparse.ArgumentParser:
    """The arguments of the decoding benchmarks beside this script: the model (a checkpoint, or ``--random-model``),
    its data, the sources, the device, the entries' label."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint", nargs="?")
    ap.add_argument("--random-model", metavar="CONFIG", help="an untrained model of this config, random sources")
    ap.add_argument("--data", help="the task's data folder (task.options.path), if not the checkpoint's")
    ap.add_argument("--batch", type=int, default=256, help="sources per batch for the batched decodings")
    ap.add_argument("--sentences", type=int, default=None, help="the first N test sources (default: all)")
    ap.add_argument("--latency-sentences", type=int, default=100)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--label", default="")
    ap.add_argument("--no-write", action="store_true")
    return ap


def parse_and_load(
    ap: argparse.ArgumentParser, argv: list[str] | None
) -> tuple[argparse.Namespace, torch.nn.Module, DecodeConfig, list[list[int]], torch.device]:
    """The arguments of :func:`decoding_parser`'s parser (and more), then :func:`load`'s model, decoding settings,
    sources and device, with gradients off."""
    args = ap.parse_args(argv)
    if bool(args.checkpoint) == bool(args.random_model):
        ap.error("give a checkpoint or --random-model CONFIG")
    torch.set_grad_enabled(False)
    return (args, *load(args))


def main(argv: list[str] | None = None) -> int:
    ap = decoding_parser(__doc__)
    ap.add_argument("--chunks", default="8,4,2,1", help="chunk sizes, each dividing the step bucket (16)")
    ap.add_argument("--beam", type=int, default=5)
    ap.add_argument("--compiled", action="store_true", help="also each chunk size with the decoder step compiled")
    ap.add_argument("--attention", default="", help="single-query attention modes to compare, e.g. auto,sdpa")
    ap.add_argument("--tf32", action="store_true", help="also each variant with TF32 matrix products (fp32 search)")
    ap.add_argument(
        "--device-loop", action="store_true", help="also each variant as one graph with its end test on the device"
    )
    args, model, decode, sources, device = parse_and_load(ap, argv)
    chunks = [int(c) for c in args.chunks.split(",")]
    modes = [transformer.single_query_mode(m) for m in args.attention.split(",")] if args.attention else [None]
    figures: dict[str, dict[str, float]] = {}
    reference: list[list[int]] | None = None
    must_agree: dict[str, bool] = {}  # variants that differ from the first only in chunks or compilation
    os.environ["SEQLAB_STATIC_BEAM"] = "1"  # beam search's fixed-shape search, the one that runs in chunks
    failed = False
    # every chunk size as is first, then with TF32, then compiled: a compiled variant that fails loses none of the
    # others' figures.  Captured searches hold the kernels of one attention mode and matmul precision: dropped
    # whenever either changes
    both = (False, True)
    options = itertools.product(
        both if args.compiled else (False,),
        both if args.tf32 else (False,),
        both if args.device_loop else (False,),
        modes,
        chunks,
    )
    for compiled, tf32, device_loop, mode, chunk in options:
        os.environ["SEQLAB_SEARCH_CHUNK_STEPS"] = str(chunk)
        os.environ["SEQLAB_COMPILE_DECODE"] = "1" if compiled else "0"
        os.environ["SEQLAB_SEARCH_DEVICE_LOOP"] = "1" if device_loop else "0"
        if mode is not None:
            transformer.SINGLE_QUERY_MODE = mode
        os.environ["SEQLAB_DECODE_TF32"] = "1" if tf32 else "0"  # the library's switch (seqlab.decoding.graphs)
        clear_searches()
        parts = [f"_{mode}" if mode else "", "_tf32" if tf32 else "", "_device_loop" if device_loop else ""]
        variant = f"chunk{chunk}{''.join(parts)}{'_compiled' if compiled else ''}"
        passes = {}
        try:
            for beam in (1, args.beam):
                decode_ids(model, sources, decode, device, beam_size=beam, batch_size=args.batch)  # warm-up
                passes[beam] = timed(
                    lambda b=beam: decode_ids(model, sources, decode, device, beam_size=b, batch_size=args.batch),
                    device,
                )
            latency = batch1_latency_ms(model, sources, decode, device, args.latency_sentences, warmup=None)
        except Exception as e:  # noqa: BLE001 -- the compiled step and the device loop are new: the rest is reported
            if not (compiled or device_loop):
                raise
            print(f"{variant} failed: {type(e).__name__}: {e}", flush=True)
            failed = True
            continue
        must_agree[variant] = not tf32 and mode == modes[0]
        hyps = passes[1][0] + passes[args.beam][0]
        reference = hyps if reference is None else reference
        figures[variant] = {
            "latency": latency,
            "greedy": len(sources) / passes[1][1],
            "beam": len(sources) / passes[args.beam][1],
            "same": identical_fraction(hyps, reference),
        }
        if device_loop:  # a search whose whole-graph capture failed warned and ran chunk by chunk instead
            figures[variant]["whole"] = whole_graph_share()
            failed = failed or figures[variant]["whole"] < 1.0
        f = figures[variant]
        print(
            f"{variant}: batch-1 greedy {f['latency']:.2f} ms, greedy {f['greedy']:.0f} sent/s, beam {args.beam} "
            f"{f['beam']:.0f} sent/s, identical {f['same']:.4f}"
            + (f", whole-graph searches {f['whole']:.2f}" if "whole" in f else "")
        )
    command = "python benchmarks/chunk_steps.py " + " ".join(argv if argv is not None else sys.argv[1:])
    label, k = args.label, args.beam
    entries = []
    for variant, f in figures.items():
        entries += [
            results_io.entry(f"batch1_greedy_latency_ms_{variant}{label}", round(f["latency"], 3), "ms", command),
            results_io.entry(f"greedy_decode_sent_per_s_{variant}{label}", round(f["greedy"], 1), "sent/s", command),
            results_io.entry(f"beam{k}_decode_sent_per_s_{variant}{label}", round(f["beam"], 1), "sent/s", command),
            results_io.entry(f"{variant}_identical_fraction{label}", round(f["same"], 4), "fraction", command),
        ]
        if "whole" in f:
            name = f"{variant}_whole_graph_searches_share{label}"
            entries.append(results_io.entry(name, round(f["whole"], 4), "share of the captured searches", command))
    if not args.no_write:
        name = f"chunk_steps_{'cuda' if device.type == 'cuda' else 'cpu'}"
        print(f"{len(entries)} entries -> {results_io.write(name, entries)}")
    os.environ.pop("SEQLAB_DECODE_TF32", None)
    agree = all(figures[v]["same"] == 1.0 for v, must in must_agree.items() if must)
    return 0 if agree and not failed else 1


if __name__ == "__main__":
    raise SystemExit(main())
