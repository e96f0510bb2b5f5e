"""How many tensor operations one training step of each algorithm dispatches, and from where (CPU).

A Transformer of this size steps as fast as the host can queue kernels (BENCHMARKS.md, Speed: the trainer's GPU was
busy for half of each MLE step), so the number of operations a step dispatches is a first measure of its cost that
needs no GPU. This counts them on the CPU: one step of each algorithm on the tests' tiny task (after 3 untimed
steps), with the real model's depth (3 + 3 layers, 4 heads; small widths), forward and backward, every ATen
operation that runs a kernel (views, ``detach`` and allocations without a fill are left out), each attributed to the
innermost frame of seqlab's own code that asked for it. The optimizer's step is counted apart: on the CPU Adam
steps each parameter on its own, on a GPU the trainer's is one fused kernel. A captured CUDA graph replays a loop's
kernels without the host: the operations inside the capturable loops are counted apart too, and ``--sites`` marks
them ``(loop)``.

    python benchmarks/op_counts.py --algorithms mle,pg,interpolation,ac,erac,vaml [--sites 12]

``--searches`` also counts the operations per step of the captured greedy and beam-5 searches (what a decoding
step costs a latency-bound GPU, one kernel each): entries ``greedy_search_ops_per_step_cpu`` and
``beam5_search_ops_per_step_cpu`` (``--algorithms ''`` for these alone).

Entries ``<algo>_ops_per_step[_outside_loops|_vocabulary_wide]_cpu`` and their ``_ratio_vs_mle_cpu`` in
benchmarks/results/op_counts_cpu.json; ``_vocabulary_wide`` counts the operations that write a [N, T, V] tensor
outside the loops, what costs most on the real model's 8,000-token vocabulary.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import tempfile
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

#: operations that launch no kernel on a GPU: metadata, aliasing and uninitialised allocations
NO_KERNEL = {"detach", "empty", "empty_strided", "empty_like", "new_empty", "new_empty_strided", "lift_fresh", "alias"}
#: the real model's depth and heads, at small widths (the number of operations does not depend on the widths)
DEPTH = '{"d_model": 32, "n_heads": 4, "ffn_dim": 64, "encoder_layers": 3, "decoder_layers": 3, "dropout": 0.1}'


def launches_a_kernel(func: torch._ops.OpOverload) -> bool:
    return not func.is_view and func.overloadpacket.__name__ not in NO_KERNEL


#: the fixed-shape loops a CUDA graph replays on a GPU (``SEQLAB_SAMPLING_GRAPHS=1``, the static searches)
CAPTURABLE = ("seqlab/decoding/sampling.py", "seqlab/decoding/static.py")


def seqlab_site() -> tuple[str, bool]:
    """The innermost frame of seqlab's own code on the stack (``other`` when none: PyTorch's autograd engine), and
    whether a capturable loop (:data:`CAPTURABLE`) is on the stack."""
    stack = traceback.extract_stack()[:-2]
    in_loop = any(frame.filename.endswith(CAPTURABLE) for frame in stack)
    for frame in reversed(stack):
        if "/seqlab/" in frame.filename:
            return f"{frame.filename.split('/seqlab/')[-1]}:{frame.lineno}", in_loop
    return "other", in_loop


class OpCounter(TorchDispatchMode):
    """Counts the kernel-launching operations dispatched inside it, by seqlab site (``sites``) or in all."""

    def __init__(self, sites: bool, vocab_size: int | None = None) -> None:
        super().__init__()
        self.by_site: collections.Counter = collections.Counter()
        self.total = 0
        self.in_loops = 0  # of total: inside a capturable loop
        self.vocab_size = vocab_size
        self.vocab_passes = 0  # of total, outside the loops: writing a [N, T, V] tensor (V the target vocabulary)
        self.optimizer = 0  # counted apart: on a GPU the optimizer step is one fused kernel (``fused=True``)
        self.in_optimizer = False
        self.sites = sites

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if launches_a_kernel(func):
            if self.in_optimizer:
                self.optimizer += 1
            else:
                self.total += 1
                site, in_loop = seqlab_site()
                self.in_loops += in_loop
                self.vocab_passes += not in_loop and self.vocabulary_wide(out)
                if self.sites:
                    self.by_site[site + (" (loop)" if in_loop else "")] += 1
        return out

    def vocabulary_wide(self, out: Any) -> bool:
        """Whether an operation wrote a [N, T, V] tensor: on the real model (V = 8,000) the passes that cost."""
        first = out[0] if isinstance(out, tuple | list) and out else out
        return isinstance(first, torch.Tensor) and first.dim() == 3 and first.size(-1) == self.vocab_size

    def apart(self, step: Callable[..., Any]) -> Callable[..., Any]:
        """``step`` (the optimizer's), its operations counted in ``optimizer`` instead of ``total``."""

        def counted_apart(*args: Any, **kwargs: Any) -> Any:
            self.in_optimizer = True
            try:
                return step(*args, **kwargs)
            finally:
                self.in_optimizer = False

        return counted_apart


def count_ops(algorithm: str, work: Path, sites: bool) -> OpCounter:
    """The operations of one training step of ``algorithm`` (after three untimed steps) on the tests' tiny task."""
    from host_reads import warmed_up  # beside this script

    trainer, batch = warmed_up(algorithm, work, **{"model.options": DEPTH})
    torch.manual_seed(0)
    counter = OpCounter(sites, trainer.model.vocab_size)
    trainer.optimizer.step = counter.apart(trainer.optimizer.step)
    with counter:
        trainer.train_step(batch)
    return counter


def count_search_ops(beam: int) -> float:
    """Operations per step of the fixed-shape greedy (``beam`` 1) or beam search a CUDA graph replays, on the tiny
    3+3 Transformer for one source: one chunk of steps after the first, its count over the chunk's steps.  The
    single-query attention runs as on a GPU in float32 (two matmuls and a softmax; SDPA on the CPU otherwise)."""
    from seqlab.decoding.static import SEARCH_CHUNK_STEPS, StaticSearch
    from seqlab.models import transformer
    from seqlab.models.transformer import Transformer, TransformerConfig

    torch.manual_seed(0)
    options = json.loads(DEPTH)
    model = Transformer(TransformerConfig(200, 200, **options)).eval()
    cpu_attention = transformer.attention

    def as_on_a_gpu(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        if q.size(-2) == 1 and not kwargs.get("is_causal"):
            return transformer.single_query_attention(q, k, v, kwargs.get("attn_mask"))
        return cpu_attention(q, k, v, **kwargs)

    transformer.attention = as_on_a_gpu
    try:
        chunk = SEARCH_CHUNK_STEPS
        search = StaticSearch(model, 1, 8, beam, 4 * chunk, 1.5, 10, 200, torch.device("cpu"), graph=False)
        search.src[0, :5] = torch.tensor([5, 6, 7, 8, 2])
        counter = OpCounter(sites=False)
        with torch.no_grad():
            search._prologue()
            search._chunk(0)
            with counter:
                search._chunk(1)
    finally:
        transformer.attention = cpu_attention
    return counter.total / chunk


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--algorithms", default="mle,raml,pg,interpolation,mixer,ac,erac,vaml")
    ap.add_argument("--sites", type=int, default=0, help="print each algorithm's N busiest seqlab sites")
    ap.add_argument("--label", default="", help="suffix of the metric names (e.g. _before)")
    ap.add_argument("--searches", action="store_true", help="also the operations per step of greedy and beam-5 search")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)
    from seqlab.bench import results as results_io

    torch.set_num_threads(1)
    command = "python benchmarks/op_counts.py " + " ".join(argv if argv is not None else sys.argv[1:])
    counts: dict[str, dict[str, int]] = {}  # algorithm -> {"": all, "_outside_loops": without the loops}
    with tempfile.TemporaryDirectory() as tmp:
        for algorithm in [a for a in args.algorithms.split(",") if a]:
            counter = count_ops(algorithm, Path(tmp), sites=args.sites > 0)
            outside = counter.total - counter.in_loops
            counts[algorithm] = {"": counter.total, "_outside_loops": outside, "_vocabulary_wide": counter.vocab_passes}
            print(
                f"{algorithm:16s} {counter.total:6d} operations per step, {outside} outside capturable loops, "
                f"{counter.vocab_passes} of them vocabulary-wide (+ {counter.optimizer} in the optimizer)"
            )
            for site, n in counter.by_site.most_common(args.sites):
                print(f"    {n:6d}  {site}")
    entries = []
    what = {
        "": "",
        "_outside_loops": ", outside the loops a CUDA graph replays",
        "_vocabulary_wide": " writing a [N, T, V] tensor, outside the loops",
    }
    for algorithm, by_part in counts.items():
        for part, total in by_part.items():
            unit = f"kernel-launching ATen operations in one training step{what[part]} (tiny 3+3 Transformer, CPU)"
            name = f"{algorithm}_ops_per_step{part}_cpu{args.label}"
            entries.append(results_io.entry(name, total, unit, command))
            if "mle" in counts and algorithm != "mle":
                ratio = round(total / counts["mle"][part], 2)
                name = f"{algorithm}_ops_per_step{part}_ratio_vs_mle_cpu{args.label}"
                entries.append(results_io.entry(name, ratio, "x MLE's operations per step", command))
    if args.searches:
        for beam, name in ((1, "greedy"), (5, "beam5")):
            per_step = count_search_ops(beam)
            print(f"{name} search: {per_step:.1f} operations per step")
            unit = "kernel-launching ATen operations per step of the captured search (tiny 3+3 Transformer, CPU)"
            entries.append(results_io.entry(f"{name}_search_ops_per_step_cpu{args.label}", per_step, unit, command))
    if not args.no_write:
        print(f"{len(entries)} entries -> {results_io.write('op_counts_cpu', entries)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
