"""Fixed-shape decoding steps, captured as CUDA graphs and replayed.

A decoding step of a small model is a hundred tiny kernels: on a GPU its time is launch overhead. A model
that offers ``init_static_state(enc, max_len)`` and ``static_step(tokens, state)`` (the Transformer does)
runs on a preallocated cache whose shapes never change, so one step can be captured once per shape
(batch size, source length, step budget) and replayed: one launch per step.  Captured graphs are kept in a
small cache keyed by shape; a new batch of the same shape copies its encoder states into the graph's
buffers.  Source lengths and step budgets are rounded up to buckets so that few shapes occur.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any

import torch

from seqlab.data.vocab import PAD_ID
from seqlab.models.base import Encoded

SOURCE_BUCKET = 8
STEP_BUCKET = 16
ROW_BUCKET = 16
MAX_GRAPHS = 48
#: the static buffers (KV caches, encoder states, logits) all cached graphs may hold together, in MiB.  Training
#: samples (K x batch rows) need ~4 GiB of K/V cache per shape on Multi30k and shapes vary from batch to batch:
#: without a byte bound the cache alone filled a GPU.  The sampling loops now take their K/V caches from one
#: shared memory (:class:`SharedBuffers`), which counts once.  ``SEQLAB_GRAPH_CACHE_MB`` overrides it.
DEFAULT_GRAPH_CACHE_MB = 8192


def warm_up(fn: Callable[[], object], times: int = 2) -> None:
    """Run ``fn`` ``times`` on a side stream before capturing it (allocations and kernel selection happen outside
    the graph), as CUDA graph capture requires."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(times):
            fn()
    torch.cuda.current_stream().wait_stream(stream)


def bucket_rows(n: int) -> int:
    """Batch sizes share graphs: 1, 2, 4, 8, then multiples of ROW_BUCKET."""
    if n <= 8:
        return 1 << (n - 1).bit_length()
    return round_up(n, ROW_BUCKET)


def bucketed(enc: Encoded) -> Encoded:
    """Pad encoder states to bucketed shapes: extra rows repeat row 0, extra positions are masked out."""
    b, s = enc.memory.shape[:2]
    return pad_encoded(enc, bucket_rows(b), round_up(s, SOURCE_BUCKET))


def pad_encoded(enc: Encoded, rows: int, width: int) -> Encoded:
    """Encoder states padded to ``rows`` rows (repeating row 0) and ``width`` positions (masked out)."""
    b, s = enc.memory.shape[:2]
    if rows > b:
        index = torch.cat([torch.arange(b), torch.zeros(rows - b, dtype=torch.long)]).to(enc.memory.device)
        enc = enc.select(index)
    if width > s:
        memory = torch.nn.functional.pad(enc.memory, (0, 0, 0, width - s))
        mask = torch.nn.functional.pad(enc.pad_mask, (0, width - s), value=True)
        enc = Encoded(memory, mask, enc.extra)
    return enc


def graphs_enabled(model: Any, device: torch.device) -> bool:
    """CUDA graphs are used on CUDA for models with a static step, unless SEQLAB_CUDA_GRAPHS=0."""
    return device.type == "cuda" and hasattr(model, "static_step") and os.environ.get("SEQLAB_CUDA_GRAPHS", "1") != "0"


def graphs_in_bf16() -> bool:
    """Whether fixed-shape loops and searches run under bfloat16 autocast on the GPU.  SEQLAB_GRAPH_BF16=1: always;
    =0: never.  Unset: when their caller runs under bfloat16 autocast already (a training step with
    ``train.bf16``, where the eager loops they stand in for compute in bfloat16 too), and in float32 otherwise
    (decoding for validation, test and inference, where captured hypotheses equal eager ones)."""
    switch = os.environ.get("SEQLAB_GRAPH_BF16", "")
    if switch:
        return switch == "1"
    return torch.is_autocast_enabled("cuda") and torch.get_autocast_dtype("cuda") == torch.bfloat16


def decoding_in_tf32() -> bool:
    """Whether evaluation and inference decoding (greedy and beam search, captured and eager alike) multiply float32
    matrices on TF32 tensor cores (float32 in and out, 10-bit mantissas inside; PyTorch's
    ``float32_matmul_precision`` "high").  On by default since session 24: on one H200 it took captured greedy
    search from 8,913 to 15,273 sentences/s and beam 5 from 3,035 to 4,788 on Multi30k's test set, and changed 2 of
    1,000 hypotheses (BENCHMARKS.md, Speed, session 24).  ``SEQLAB_DECODE_TF32=0``: full float32 products."""
    return os.environ.get("SEQLAB_DECODE_TF32", "1") != "0"


@contextlib.contextmanager
def matmul_precision(level: str) -> Iterator[None]:
    """PyTorch's float32 matrix-product precision at ``level`` ("highest", "high": TF32) inside, restored after (the
    one switch that agrees with both of PyTorch's TF32 flags).  A captured graph keeps the kernels chosen in it."""
    before = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision(level)
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(before)


def decode_precision(device: torch.device) -> contextlib.AbstractContextManager:
    """The matrix-product precision searches for evaluation and inference run in: TF32 on CUDA under
    :func:`decoding_in_tf32`, else the caller's."""
    if device.type == "cuda" and decoding_in_tf32():
        return matmul_precision("high")
    return contextlib.nullcontext()


def loop_precision(device: torch.device) -> contextlib.AbstractContextManager:
    """The precision fixed-shape (capturable) loops and searches run in on a GPU (:func:`graphs_in_bf16`): float32
    with autocast off (its matrix products as the caller set them: TF32 in :func:`decode_precision`), or bfloat16
    autocast without autocast's cache of cast weights (a captured graph must not hold on to it).  Elsewhere: the
    caller's context, unchanged.  Captures are keyed by it (:func:`precision_key`, asked inside this context, where
    it reads what was chosen)."""
    if device.type != "cuda":
        return contextlib.nullcontext()
    if graphs_in_bf16():
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16, cache_enabled=False)
    return torch.autocast(device_type="cuda", enabled=False)


def precision_key() -> str:
    """What :func:`loop_precision` runs in (float32 products on TF32 or not), and whether the step is compiled
    (:func:`decode_step_compiled`), for the keys of cached captures."""
    if graphs_in_bf16():
        precision = "bf16"
    else:
        precision = "fp32" if torch.get_float32_matmul_precision() == "highest" else "tf32"
    if not decode_step_compiled():
        return precision
    return precision + "+compiled" + (f"-{compile_mode()}" if compile_mode() else "")


#: set by :func:`compiled_decoding` (a run's ``decode.compile``): decides over SEQLAB_COMPILE_DECODE while set
_COMPILE_DECODE: bool | None = None


@contextlib.contextmanager
def compiled_decoding(enabled: bool) -> Iterator[None]:
    """:func:`decode_step_compiled` answers ``enabled`` inside, whatever SEQLAB_COMPILE_DECODE says (a run's
    ``decode.compile``: :func:`seqlab.train.evaluate.decode_ids`)."""
    global _COMPILE_DECODE
    before, _COMPILE_DECODE = _COMPILE_DECODE, enabled
    try:
        yield
    finally:
        _COMPILE_DECODE = before


def decode_step_compiled() -> bool:
    """SEQLAB_COMPILE_DECODE=1 (or a run's ``decode.compile``, :func:`compiled_decoding`): fixed-shape loops and
    searches call the model's ``static_step`` through ``torch.compile`` (dynamic shapes, so that one compilation
    serves the buckets and the attended windows), which fuses the step's elementwise work into fewer kernels; the
    captured greedy search's choice of the next token (:func:`~seqlab.decoding.static.greedy_choice`) and the
    searches' encoder are compiled too. The captured graphs then replay those. In the default modes it also brings a
    step's attention and its linear layers on few rows as sums of products
    (:func:`~seqlab.models.transformer.single_query_attention`, :func:`~seqlab.models.transformer.linear`). On one
    H200 that took batch-1 greedy to 2.50-3.00 ms (2.40-2.89 in chunks of one step) against about 4 ms at the defaults
    (BENCHMARKS.md, Speed, sessions 26 to 28). Opt-in: a new process's first decode waits 20-47 s for the compilation
    against about 1 s (session 28), and it changed 1-4 of 1,000 greedy hypotheses on five checkpoints of seven
    (sessions 25 to 28)."""
    if _COMPILE_DECODE is not None:
        return _COMPILE_DECODE
    return os.environ.get("SEQLAB_COMPILE_DECODE", "0") == "1"


_COMPILED_METHODS: dict[tuple[type, str, str | None], Callable[..., Any]] = {}
_COMPILED: dict[tuple[Callable[..., Any], str | None], Callable[..., Any]] = {}
#: compilations a compiled decoding function may make: each bucket (rows, widths, step budget) and the first windows
#: can cost one (dynamo's default of 8 was reached on Multi30k's test set, after which the step ran uncompiled)
RECOMPILE_LIMIT = 64


def compile_mode() -> str | None:
    """``SEQLAB_COMPILE_DECODE_MODE``: torch.compile's ``mode`` for the compiled decoding functions (e.g.
    ``max-autotune-no-cudagraphs``, which times Triton matrix-product kernels against cuBLAS for each shape; the
    searches capture graphs of their own); unset: the default mode."""
    return os.environ.get("SEQLAB_COMPILE_DECODE_MODE") or None


def _compiled(fn: Callable[..., Any]) -> Callable[..., Any]:
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, RECOMPILE_LIMIT)
    return torch.compile(fn, dynamic=True, mode=compile_mode())


def compiled_under_switch(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` (a search's per-step choice: only tensor operations), or its compiled form under
    :func:`decode_step_compiled` (once per function, dynamic shapes), which fuses its elementwise work too."""
    if not decode_step_compiled():
        return fn
    key = (fn, compile_mode())
    if key not in _COMPILED:
        _COMPILED[key] = _compiled(fn)
    return _COMPILED[key]


def method_under_switch(model: Any, name: str) -> Callable[..., Any]:
    """``model``'s method ``name``, or its compiled form under :func:`decode_step_compiled` (one compilation per
    model class and method, shared by its instances: the weights are inputs of the compiled graph, not constants)."""
    if not decode_step_compiled():
        return getattr(model, name)
    key = (type(model), name, compile_mode())
    if key not in _COMPILED_METHODS:
        _COMPILED_METHODS[key] = _compiled(getattr(type(model), name))
    return functools.partial(_COMPILED_METHODS[key], model)


def static_step_of(model: Any) -> Callable[..., torch.Tensor]:
    """``model.static_step``, compiled under :func:`decode_step_compiled`."""
    return method_under_switch(model, "static_step")


#: ``hook(name, "begin" | "end")`` around each labelled part of a search, when set: how a benchmark times the parts on
#: the host without a profiler (``benchmarks/latency_parts.py``)
PART_HOOK: Callable[[str, str], None] | None = None


@contextlib.contextmanager
def _hooked(name: str, hook: Callable[[str, str], None]) -> Iterator[None]:
    hook(name, "begin")
    try:
        yield
    finally:
        hook(name, "end")


def labelled(name: str) -> contextlib.AbstractContextManager:
    """A part of a search: reported to :data:`PART_HOOK` when set, labelled for ``torch.profiler`` while one records
    (``benchmarks/latency_parts.py`` reads both), else nothing: an idle label costs microseconds, a batch-1 search a
    few milliseconds."""
    if PART_HOOK is not None:
        return _hooked(name, PART_HOOK)
    if torch.autograd._profiler_enabled():
        return torch.profiler.record_function(name)
    return contextlib.nullcontext()


def round_up(n: int, bucket: int) -> int:
    return ((n + bucket - 1) // bucket) * bucket


def pad_source(src: torch.Tensor, bucket: int = SOURCE_BUCKET) -> torch.Tensor:
    """Right-pad the source batch with PAD to a multiple of ``bucket`` (masking makes it a no-op)."""
    width = round_up(src.size(1), bucket)
    return torch.nn.functional.pad(src, (0, width - src.size(1)), value=PAD_ID) if width > src.size(1) else src


class StaticStepper:
    """Steps ``model`` on a static cache; with ``graph=True`` through a captured CUDA graph."""

    def __init__(self, model: Any, enc: Encoded, max_len: int, graph: bool):
        self.model, self.max_len, self.rows = model, max_len, enc.memory.size(0)
        self.state = model.init_static_state(enc, max_len)
        self.tokens = torch.zeros(enc.memory.size(0), dtype=torch.long, device=enc.memory.device)
        self.graph: torch.cuda.CUDAGraph | None = None
        self.decoder_step = static_step_of(model)  # compiled under SEQLAB_COMPILE_DECODE=1
        self.logits: torch.Tensor | None = None
        if graph:
            self._capture()
        self.nbytes = tensor_bytes([self.state, self.tokens, self.logits])

    def _capture(self) -> None:
        warm_up(lambda: self.decoder_step(self.tokens, self.state))
        self.state["t"].zero_()
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.logits = self.decoder_step(self.tokens, self.state)
        self.state["t"].zero_()

    def load(self, enc: Encoded, rows: int) -> StaticStepper:
        """Point the (captured) buffers at a new batch of the same shape and restart at step 0."""
        self.rows = rows
        self.model.write_static_memory(self.state, enc)
        self.state["t"].zero_()
        return self

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        """Logits [rows, V] for the next position of the real (unpadded) rows."""
        self.tokens[: tokens.size(0)].copy_(tokens)
        if self.graph is None:
            return self.decoder_step(self.tokens, self.state)[: self.rows]
        self.graph.replay()
        return self.logits[: self.rows]


_CACHE: OrderedDict[tuple, StaticStepper] = OrderedDict()


def stepper_for(model: Any, enc: Encoded, max_len: int, graph: bool) -> StaticStepper:
    """A stepper for this batch: a cached captured graph of the same shape when one exists."""
    if not graph:
        return StaticStepper(model, enc, max_len, graph=False)
    rows = enc.memory.size(0)
    enc = bucketed(enc)
    key = (id(model), enc.memory.size(0), enc.memory.size(1), max_len, enc.memory.dtype, enc.memory.device)
    key += (precision_key(),)
    stepper = _CACHE.get(key)
    if stepper is not None and stepper.model is model:
        _CACHE.move_to_end(key)
        return stepper.load(enc, rows)
    stepper = StaticStepper(model, enc, max_len, graph=True)
    stepper.rows = rows
    _CACHE[key] = stepper
    evict(_CACHE, MAX_GRAPHS, graph_cache_bytes())
    return stepper


class SharedBuffers:
    """Zero-initialised flat buffers that fixed-shape loops take views of, one per name (and dtype, device).

    The captured sampling loops of different shapes never run at the same time, so their largest buffers (the
    self-attention K/V caches, ``steps`` long for every row, and the memory's K/V) can be views of the same
    memory: a loop writes position t before it reads it, positions past t are masked, and every load writes the
    memory's K/V whole.  A name's buffer grows to the largest view
    asked for; a growth moves it, so :attr:`generation` counts growths and loops made before one are dropped
    (their graphs point at the old memory)."""

    def __init__(self) -> None:
        self.flat: dict[tuple, torch.Tensor] = {}
        self.generation = 0

    def view(self, name: Any, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """A tensor of ``shape`` over the buffer of ``name`` (grown, and :attr:`generation` bumped, if too
        small)."""
        key, numel = (name, dtype, torch.device(device)), math.prod(shape)
        flat = self.flat.get(key)
        if flat is None or flat.numel() < numel:
            if flat is not None:
                self.generation += 1
            flat = self.flat[key] = torch.zeros(numel, dtype=dtype, device=device)
        return flat[:numel].view(shape)

    def nbytes(self) -> int:
        return tensor_bytes(list(self.flat.values()))

    def clear(self) -> None:
        self.flat.clear()
        self.generation += 1


def graph_cache_bytes() -> int:
    return int(float(os.environ.get("SEQLAB_GRAPH_CACHE_MB", DEFAULT_GRAPH_CACHE_MB)) * 2**20)


def tensor_bytes(obj: Any) -> int:
    """Bytes of every tensor in ``obj`` (tensors, dicts, lists and tuples of them; other values count 0)."""
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(tensor_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(tensor_bytes(v) for v in obj)
    return 0


def evict(cache: OrderedDict, max_entries: int, max_bytes: int) -> None:
    """Drop the least recently used steppers until at most ``max_entries`` remain holding at most ``max_bytes``
    together; the newest one always stays."""
    while len(cache) > 1 and (len(cache) > max_entries or sum(s.nbytes for s in cache.values()) > max_bytes):
        cache.popitem(last=False)
