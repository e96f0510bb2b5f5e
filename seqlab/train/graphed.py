"""``train.cuda_graphs``: a training step's forward and backward replayed as one CUDA graph per batch-shape bucket.

At Multi30k's size ``seqlab train``'s step is bound by the host: on an H200 the GPU ran 10.7 ms of kernels in a
39.9 ms (profiled) step (BENCHMARKS.md, Speed, session 23); the host spent the rest launching about 650 kernels
and running the Python and ATen code around them.  Here a batch is copied into the fixed buffers of its shape
bucket (rows and both widths rounded up: extra rows are an EOS-only source with an all-PAD target, so they hold no
target token; extra columns are PAD, masked), and the gradients' zeroing, the forward pass under the training
precision, the loss and the backward pass replay as the bucket's graph: one launch.  Gradient clipping and the
optimizer step stay eager (a few fused launches), so the lr schedule, an algorithm's optimizer settings and
checkpoints are those of the eager step.

Gradients live in buffers that persist across graphs (made by the first backward, then zeroed in place, never set
to None), so every bucket's graph writes the ``.grad`` tensors the optimizer reads.  The first batch of a bucket
runs eagerly on a side stream (the warm-up a capture needs) and is a real step; the bucket's graph is captured
after it, on the same stream, and replayed from its next batch on.  The graphs share one memory pool: they run one
at a time and keep nothing in it between replays but their loss and statistics, copied out after each replay.

Only algorithms whose loss is one fixed sequence of tensor operations on the batch are captured
(``Algorithm.capturable_step``: MLE), on a CUDA device.  Elsewhere (the CPU) the same fixed-shape step runs eagerly
(``capture=False``), which is what the tests compare with the plain step.

Under DDP the graph holds DDP's gradient all-reduce too (NCCL operations can be captured), and NCCL requires every
rank to replay a graph captured together with the others' at the same time.  So every rank pads a step to the
same bucket: the largest batch that any rank takes at that step, which each rank knows without communication
(the sampler plans the whole epoch alike on every rank); the ranks then meet each bucket at the same step, capture
it together and agree (one all-reduce per capture) whether every capture succeeded.  Capturing begins after
:data:`DDP_EAGER_STEPS` eager steps, and the DDP module is built on a side stream, as PyTorch's notes on CUDA graphs
with DistributedDataParallel ask.
"""

from __future__ import annotations

import contextlib
import warnings
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from seqlab.data.batching import Batch
from seqlab.data.vocab import EOS_ID, PAD_ID
from seqlab.decoding.graphs import bucket_rows, round_up

#: captured training steps kept (least recently used dropped first); they share one memory pool.  Multi30k's
#: 8,192-token batches meet 113 buckets over 80 epochs with widths in twos (``python benchmarks/shape_keys.py``):
#: a cache of 64 would capture 195 times in those epochs, one of 128 captures each bucket once
MAX_GRAPHS = 128
#: ``train.cuda_graphs_width``'s default: batch widths in multiples of 2.  On Multi30k's 8,192-token batches a
#: padded batch then holds 1.05x the token positions of the real one (4: 1.11x, 8: 1.24x), in 72 buckets over the
#: first 1,000 steps (4: 60, 8: 48); ``benchmarks/shape_keys.py``, entries ``multi30k_train_graph_w*`` in
#: benchmarks/results/shape_keys_cpu.json.  A captured step is bound by the GPU, so it pays for every padded
#: position: on one H200 the step ran at 640K / 619K / 577K target tokens/s at widths 2 / 4 / 8, and seqlab train at
#: 631K / 608K (BENCHMARKS.md, Speed, session 24)
WIDTH_BUCKET = 2

#: the loss of a batch at a training progress: (loss, statistics); the trainer's model + algorithm module
LossFn = Callable[[Batch, Any], tuple[torch.Tensor, dict[str, Any]]]
#: (rows, source width, target width)
Dims = tuple[int, int, int]
#: eager DDP steps before the first capture: DDP settles its gradient buckets and its sampled runtime statistics
#: within the first 10 iterations (PyTorch's notes on CUDA graphs with DistributedDataParallel ask for 11)
DDP_EAGER_STEPS = 11


def bucket_shape(batch: Batch, width: int = WIDTH_BUCKET, at_least: Dims | None = None) -> Dims:
    """(rows, source width, target width) of ``batch``'s bucket: rows as the captured searches bucket them, widths
    rounded up to a multiple of ``width``; ``at_least``: dimensions to pad to if larger (under DDP, those of the
    largest batch any rank takes at this step)."""
    rows, src_width, tgt_width = len(batch), batch.src.size(1), batch.tgt.size(1)
    if at_least is not None:
        rows, src_width, tgt_width = (max(a, b) for a, b in zip((rows, src_width, tgt_width), at_least, strict=True))
    return bucket_rows(rows), round_up(src_width, width), round_up(tgt_width, width)


@dataclass
class StaticBatch:
    """The fixed input buffers of one bucket."""

    src: torch.Tensor
    tgt: torch.Tensor
    index: torch.Tensor

    @classmethod
    def of_shape(cls, shape: tuple[int, int, int], device: torch.device) -> StaticBatch:
        rows, src_width, tgt_width = shape
        long = {"dtype": torch.long, "device": device}
        return cls(
            torch.full((rows, src_width), PAD_ID, **long),
            torch.full((rows, tgt_width), PAD_ID, **long),
            torch.full((rows,), -1, **long),
        )

    def load(self, batch: Batch) -> Batch:
        """Copy ``batch`` into the buffers (extra rows: source EOS alone, target all PAD) and return the batch the
        loss reads (its token count is ``batch``'s: a captured loss must count on the device)."""
        rows, src_width = batch.src.shape
        self.src.fill_(PAD_ID)
        self.src[:, 0] = EOS_ID
        self.src[:rows, :src_width].copy_(batch.src, non_blocking=True)
        self.tgt.fill_(PAD_ID)
        self.tgt[:rows, : batch.tgt.size(1)].copy_(batch.tgt, non_blocking=True)
        self.index.fill_(-1)
        if batch.index is not None:
            self.index[:rows].copy_(batch.index, non_blocking=True)
        return Batch(self.src, self.tgt, self.index, batch.num_tgt_tokens)


@dataclass
class CapturedStep:
    """One bucket's graph, its input buffers and its outputs (overwritten by each replay)."""

    graph: Any
    inputs: StaticBatch
    loss: torch.Tensor
    extra: dict[str, torch.Tensor]


class GraphedStep:
    """Forward and backward of ``loss_fn`` on fixed-shape buffers, captured per bucket when ``capture`` (CUDA).

    ``params``: the parameters the optimizer updates.  ``precision``: a factory of the context the loss runs in
    (bf16 autocast on the GPU; its cache of cast weights must be off inside a graph).  ``width``: batch widths are
    rounded up to a multiple of it (:func:`bucket_shape`).  ``stream``: the side stream that runs the warm-up steps
    and every capture (made here when not given).  Under DDP (``loss_fn`` the DDP module, built on ``stream``):
    ``eager_steps`` steps run before the first capture (:data:`DDP_EAGER_STEPS`), and ``agree`` says whether a flag
    holds on every rank, so that all ranks keep a captured bucket, or all train it eagerly."""

    def __init__(
        self,
        loss_fn: LossFn,
        params: list[torch.Tensor],
        device: torch.device,
        capture: bool,
        precision: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
        width: int = WIDTH_BUCKET,
        eager_steps: int = 0,
        agree: Callable[[bool], bool] | None = None,
        stream: torch.cuda.Stream | None = None,
    ):
        self.loss_fn, self.params, self.device, self.width = loss_fn, params, device, width
        self.capture, self.precision = capture and device.type == "cuda", precision
        self.eager_steps, self.agree = eager_steps, agree or (lambda flag: flag)
        #: the one side stream of the warm-up steps and of every capture (under DDP also the one DDP was built on)
        self.stream = (stream or torch.cuda.Stream(device)) if self.capture else None
        #: each parameter and its gradient buffer, as the last eager step left them (the buffers graphs write)
        self._grad_of: list[tuple[torch.Tensor, torch.Tensor | None]] = []
        self.steps: OrderedDict[tuple[int, int, int], CapturedStep] = OrderedDict()
        self.captures = self.replays = 0
        self._pool = torch.cuda.graph_pool_handle() if self.capture else None

    # ------------------------------------------------------------------ the step
    def forward_backward(
        self, batch: Batch, progress: Any, at_least: Dims | None = None
    ) -> tuple[torch.Tensor, dict[str, Any]]:
        """Zero the gradients, run the loss on ``batch`` (padded to its bucket, and to ``at_least`` if larger) and
        back-propagate it; returns the loss and the algorithm's statistics (tensors, copies the next step does not
        overwrite)."""
        shape = bucket_shape(batch, self.width, at_least)
        if self.steps and not self._buffers_kept():
            self.steps.clear()  # captured against other gradient buffers: captured again as their buckets recur
        captured = self.steps.get(shape)
        if captured is not None:
            self.steps.move_to_end(shape)
            captured.inputs.load(batch)
            captured.graph.replay()
            self.replays += 1
            return captured.loss.clone(), {k: v.clone() for k, v in captured.extra.items()}
        inputs = StaticBatch.of_shape(shape, self.device)
        static = inputs.load(batch)
        if not self.capture:
            return self._run(static, progress)
        self.stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(self.stream):  # a real step, and the warm-up the capture needs
            loss, extra = self._run(static, progress)
        torch.cuda.current_stream(self.device).wait_stream(self.stream)
        if self.eager_steps > 0:
            self.eager_steps -= 1
        else:
            self._capture(shape, inputs, static, progress)
        return loss, extra

    def _loss_and_backward(
        self, batch: Batch, progress: Any, grads: list[torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, Any]]:
        """Zero ``grads`` in place, run the loss under the training precision and back-propagate it: what the eager
        step runs and a capture records."""
        if grads:
            torch._foreach_zero_(grads)
        with self.precision():
            loss, extra = self.loss_fn(batch, progress)
        loss.backward()
        return loss, extra

    def _run(self, batch: Batch, progress: Any) -> tuple[torch.Tensor, dict[str, Any]]:
        """The step's gradient part, eagerly: the gradients there are zeroed in place, a parameter's first one is
        made by the backward pass; afterwards they are the buffers captured graphs write."""
        loss, extra = self._loss_and_backward(batch, progress, [p.grad for p in self.params if p.grad is not None])
        self._grad_of = [(p, p.grad) for p in self.params]
        return loss.detach(), extra

    @property
    def grads(self) -> list[torch.Tensor]:
        """The persistent gradient buffers (those the last eager step made or zeroed)."""
        return [g for _, g in self._grad_of if g is not None]

    def _buffers_kept(self) -> bool:
        """Whether every parameter still holds the gradient buffer the graphs were captured with (something that
        set ``.grad`` anew, e.g. ``zero_grad(set_to_none=True)``, would leave the graphs writing elsewhere)."""
        return all(p.grad is g for p, g in self._grad_of)

    def _capture(self, shape: tuple[int, int, int], inputs: StaticBatch, static: Batch, progress: Any) -> None:
        """Capture the bucket's graph (nothing runs: the gradients keep the warm-up step's values).  A loss that
        cannot be captured (a host read, a statistic that is not a tensor, a gradient the warm-up did not make)
        turns capturing off with a warning; training goes on eagerly."""
        graph = torch.cuda.CUDAGraph()
        buffers = self.grads
        grads = {id(g) for g in buffers}
        failure: Exception | None = None
        try:
            with torch.cuda.graph(graph, pool=self._pool, stream=self.stream):
                loss, extra = self._loss_and_backward(static, progress, buffers)
            problem = [k for k, v in extra.items() if not isinstance(v, torch.Tensor)]
            if problem:
                raise TypeError(f"statistics {problem} are not tensors")
            if any(p.grad is not None and id(p.grad) not in grads for p in self.params):
                raise RuntimeError("a parameter got a gradient buffer of its own inside the graph")
        except Exception as e:  # noqa: BLE001 -- any failure to capture leaves the eager step, which is correct
            failure = e
        if not self.agree(failure is None):  # under DDP: a graph is kept only where every rank captured it
            why = failure or "another rank could not capture it"
            message = f"train.cuda_graphs: the training step cannot be captured ({why}); training eagerly"
            warnings.warn(message, stacklevel=3)
            self.capture = False
            return
        self.steps[shape] = CapturedStep(graph, inputs, loss.detach(), {k: v.detach() for k, v in extra.items()})
        self.captures += 1
        while len(self.steps) > MAX_GRAPHS:
            self.steps.popitem(last=False)
