"""The whole NAT decode of a small batch as one captured CUDA graph.

A NAT decodes in one pass, but for one sentence that pass (encoder, length prediction, copy, decoder,
argmax, and with length-parallel decoding the teacher's encoder and its teacher-forced scoring of the
2ΔT+1 candidates) is a few hundred small kernels: its time on a GPU is launch overhead.  With the decoder
width fixed by :func:`seqlab.nat.candidates.candidate_width` and the source padded to a bucket, nothing in
:func:`seqlab.nat.candidates.best_candidates` waits for the device, so it is captured once per
(rows, source width) bucket and replayed: one launch per batch.  Padding positions and padding rows are
masked out; the result equals the eager decode.
"""

from __future__ import annotations

import functools
import os
from collections import OrderedDict
from typing import Any

import torch

from seqlab.data.vocab import EOS_ID, PAD_ID
from seqlab.decoding.graphs import SOURCE_BUCKET, bucket_rows, evict, graph_cache_bytes, round_up, warm_up
from seqlab.nat.candidates import best_candidates, candidate_width

#: batches up to this many sources replay a graph (latency); larger ones decode eagerly, where launch
#: overhead is amortised and one graph per shape would hold [rows x 2ΔT+1 x width x vocab] buffers.
MAX_GRAPH_ROWS = 8
MAX_GRAPHS = 32


class CapturedNATDecoder:
    """``best_candidates`` on fixed-shape buffers; with ``graph=True`` captured and replayed."""

    def __init__(
        self,
        model: Any,
        teacher: Any | None,
        rows: int,
        source_width: int,
        delta_t: int,
        max_len: int,
        normalize: bool,
        dedupe: bool,
        graph: bool,
    ):
        self.model, self.teacher, self.rows = model, teacher, rows
        device = next(model.parameters()).device
        self.src = torch.full((rows, source_width), PAD_ID, dtype=torch.long, device=device)
        self.src[:, 0] = EOS_ID  # a valid (empty) source for the warm-up
        width = candidate_width(model, source_width, delta_t, max_len)
        self.run = functools.partial(
            best_candidates,
            model,
            delta_t=delta_t,
            teacher=teacher,
            normalize=normalize,
            max_len=max_len,
            dedupe=dedupe,
            width=width,
        )
        self.graph: torch.cuda.CUDAGraph | None = None
        self.out: tuple[torch.Tensor, ...] | None = None
        if graph:
            self._capture()
        vocab = model.vocab_size
        self.nbytes = rows * (2 * delta_t + 1) * (width + 1) * vocab * 4 * (2 if teacher is not None else 1)

    def _capture(self) -> None:
        warm_up(lambda: self.run(self.src))
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.out = self.run(self.src)

    def __call__(self, src: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Tokens [B, W+1], scores [B], lengths [B] of ``src`` [B, S] (B <= rows, S <= source width); copies,
        not views of the graph's buffers, which the next replay overwrites."""
        b, s = src.shape
        self.src.fill_(PAD_ID)
        self.src[:b, :s].copy_(src)
        if b < self.rows:  # padding rows repeat the first source (an all-PAD row has no attention target)
            self.src[b:, :s].copy_(src[:1].expand(self.rows - b, -1))
        if self.graph is None:
            out = self.run(self.src)
        else:
            self.graph.replay()
            out = self.out
        return out[0][:b].clone(), out[1][:b].clone(), out[2][:b].clone()


_CACHE: OrderedDict[tuple, CapturedNATDecoder] = OrderedDict()


def nat_graphs_enabled(model: Any, teacher: Any | None, src: torch.Tensor) -> bool:
    """Graphs for small batches of models in eval mode on CUDA, unless SEQLAB_CUDA_GRAPHS=0."""
    models = [model] if teacher is None else [model, teacher]
    return (
        src.is_cuda
        and src.size(0) <= MAX_GRAPH_ROWS
        and not any(m.training for m in models)
        and os.environ.get("SEQLAB_CUDA_GRAPHS", "1") != "0"
    )


def captured_decoder(
    model: Any, src: torch.Tensor, delta_t: int, teacher: Any | None, normalize: bool, max_len: int, dedupe: bool
) -> CapturedNATDecoder:
    """The captured decoder of this batch's bucket (captured on first use, then cached)."""
    rows, width = bucket_rows(src.size(0)), round_up(src.size(1), SOURCE_BUCKET)
    key = (id(model), id(teacher), rows, width, delta_t, max_len, normalize, dedupe)
    decoder = _CACHE.get(key)
    if decoder is not None and decoder.model is model and decoder.teacher is teacher:
        _CACHE.move_to_end(key)
        return decoder
    decoder = CapturedNATDecoder(model, teacher, rows, width, delta_t, max_len, normalize, dedupe, graph=True)
    _CACHE[key] = decoder
    evict(_CACHE, MAX_GRAPHS, graph_cache_bytes())
    return decoder
