"""GPU time of a decoding step's products on few rows (a batch-1 greedy or beam step), by formulation.

A captured batch-1 greedy step of the Multi30k Transformer (d 512, FFN 2048, vocabulary 8,000, three decoder layers)
runs about a hundred kernels, and its products are cuBLAS matrix-vector kernels whose speed depends on the operands'
layout (``benchmarks/latency_parts.py --traces``).  This times each product of such a step, alone, as a CUDA graph
of ``--repeats`` copies replayed ``--replays`` times (CUDA events; the per-product figure is the replay time over
the copies), in each formulation:

- ``linear``: ``F.linear(x, W, b)`` (the model's layers), ``linear_nobias``: without the bias;
- ``transposed``: ``torch.addmm(b, x, Wt)`` on a contiguous copy ``Wt`` of ``W.T``;
- ``addmv``: ``torch.addmv(b, W, x[0])`` (one row only);
- ``reduce``: ``(x[:, None, :] * W).sum(-1) + b`` (what the compiled step fuses);
- attention scores of one query against ``S`` keys per head: ``scores`` (matmul, then the scale and the mask as two
  kernels, as :func:`seqlab.models.transformer.single_query_attention`) and ``scores_baddbmm`` (one
  ``torch.baddbmm`` with the scale as its alpha, the mask as its input).

Each formulation's largest difference from the first one's output is printed beside its time.  Entries
(``benchmarks/results/few_rows_linear_<device>.json``): ``few_rows_us_<form>_<out>x<in>_r<rows>``.

    python benchmarks/bench_few_rows_linear.py --rows 1,5
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import torch
import torch.nn.functional as F

from seqlab.bench import results as results_io
from seqlab.decoding.graphs import matmul_precision


def time_us(fn: Callable[[], torch.Tensor], repeats: int, replays: int) -> float:
    """GPU microseconds per call of ``fn``: a graph of ``repeats`` calls, replayed ``replays`` times."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(repeats):
            fn()
    graph.replay()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(replays):
        graph.replay()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) * 1000 / (replays * repeats)


def linear_forms(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> dict[str, Callable[[], torch.Tensor]]:
    wt = w.t().contiguous()
    forms = {
        "linear": lambda: F.linear(x, w, b),
        "linear_nobias": lambda: F.linear(x, w),
        "transposed": lambda: torch.addmm(b, x, wt),
        "reduce": lambda: (x[:, None, :] * w).sum(-1) + b,
    }
    if x.size(0) == 1:
        forms["addmv"] = lambda: torch.addmv(b, w, x[0]).unsqueeze(0)
    return forms


def score_forms(q: torch.Tensor, k: torch.Tensor, mask: torch.Tensor) -> dict[str, Callable[[], torch.Tensor]]:
    scale = q.size(-1) ** -0.5
    q3, kt3 = q.flatten(0, 1), k.flatten(0, 1).transpose(1, 2)
    mask3 = mask.expand(q.size(0), q.size(1), 1, -1).flatten(0, 1)
    return {
        "scores": lambda: torch.matmul(q, k.transpose(-2, -1)) * scale + mask,
        "scores_baddbmm": lambda: torch.baddbmm(mask3, q3, kt3, alpha=scale).view(q.size(0), q.size(1), 1, -1),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--d-model", type=int, default=512)
    ap.add_argument("--ffn", type=int, default=2048)
    ap.add_argument("--vocab", type=int, default=8000)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--keys", type=int, default=32, help="keys each query attends to (a cache window or a source)")
    ap.add_argument("--rows", default="1,5")
    ap.add_argument("--repeats", type=int, default=50)
    ap.add_argument("--replays", type=int, default=20)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        raise SystemExit("bench_few_rows_linear.py times CUDA kernels: no CUDA device here")
    torch.manual_seed(0)
    dev, d = torch.device("cuda"), args.d_model
    shapes = [(3 * d, d), (d, d), (2 * d, d), (args.ffn, d), (d, args.ffn), (args.vocab, d)]
    entries = []
    with torch.no_grad(), matmul_precision("high"):  # as decoding runs (TF32 allowed)
        for rows in (int(r) for r in args.rows.split(",")):
            x = torch.randn(rows, d, device=dev)
            cases = []
            for out_dim, in_dim in shapes:
                w = torch.randn(out_dim, in_dim, device=dev) * in_dim**-0.5
                b = torch.randn(out_dim, device=dev) * 0.1
                xi = x if in_dim == d else torch.randn(rows, in_dim, device=dev)
                cases.append((f"{out_dim}x{in_dim}", linear_forms(xi, w, b)))
            dh = d // args.heads
            q = torch.randn(rows, args.heads, 1, dh, device=dev)
            k = torch.randn(rows, args.heads, args.keys, dh, device=dev)
            mask = torch.zeros(rows, 1, 1, args.keys, device=dev)
            mask[..., -3:] = float("-inf")
            cases.append((f"{args.heads}x{args.keys}x{dh}", score_forms(q, k, mask)))
            for shape, forms in cases:
                reference = None
                for form, fn in forms.items():
                    out = fn()
                    reference = out if reference is None else reference
                    finite = reference.isfinite()
                    diff = (out - reference)[finite].abs().max().item() if finite.any() else 0.0
                    us = time_us(fn, args.repeats, args.replays)
                    print(f"rows {rows}  {shape:>12}  {form:16} {us:7.2f} us   max |diff| {diff:.2e}", flush=True)
                    metric = f"few_rows_us_{form}_{shape}_r{rows}"
                    entries.append(results_io.entry(metric, round(us, 3), "us per product", results_io.command_line()))
    if not args.no_write:
        print(f"{len(entries)} entries -> {results_io.write('few_rows_linear_cuda', entries)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
