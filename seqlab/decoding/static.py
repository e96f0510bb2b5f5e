"""Whole greedy and beam searches on fixed-shape buffers, captured as CUDA graphs.

:mod:`seqlab.decoding.graphs` replays one decoder step and leaves the search (argmax, top-k, beam reordering,
the end test) to eager code: a dozen more launches and a host round trip per step.  Here everything that
happens per step is a tensor op on preallocated buffers:

* a *prologue* (encoder, the memory keys/values of every decoder layer, the length limits, the search
  state's reset) reads a fixed ``[rows, width]`` source buffer;
* a *chunk* of :func:`chunk_steps` search steps (decoder step on the static KV cache, then the greedy
  choice or the beam's top-k with the cache rows reordered in place).  Finished hypotheses are masked, not
  removed, so every shape stays fixed; the host reads one flag per chunk (the end test: every row finished, or
  for the best beam hypothesis alone every source settled, :mod:`seqlab.decoding.beam`) and stops.

On CUDA each part is captured once per (rows, source width, step budget) bucket and replayed; elsewhere the
same code runs eagerly (what the CPU tests compare with :func:`seqlab.decoding.search.beam_search`'s eager path).
The results equal the eager searches': steps taken after every row finished only extend finished hypotheses with
PAD at no cost.

With ``SEQLAB_SEARCH_DEVICE_LOOP=1`` (:func:`device_loop_enabled`) the whole search is one graph instead: the
prologue, then every chunk inside a CUDA graph conditional node that runs only while the end test says a row goes
on (CUDA 12.4 or later).  A search is then one replay, with no host read until its step count; the chunks after the
end are skipped on the device.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

import torch

from seqlab.data.vocab import BOS_ID, EOS_ID, PAD_ID
from seqlab.decoding.beam import settled_sources
from seqlab.decoding.graphs import (
    SOURCE_BUCKET,
    STEP_BUCKET,
    bucket_rows,
    compiled_under_switch,
    evict,
    graph_cache_bytes,
    labelled,
    method_under_switch,
    precision_key,
    round_up,
    static_step_of,
    warm_up,
)
from seqlab.models.base import mask_special

#: steps per captured graph of the sampling loops (:mod:`seqlab.decoding.sampling`; divides STEP_BUCKET)
CHUNK_STEPS = 8
#: search steps per chunk: the host checks "all finished?" once per chunk (divides STEP_BUCKET).  2, not 8: on a
#: trained Multi30k model on an H200 chunks of 2 ran batch-1 greedy in 5.85 ms against 6.53, batched greedy at
#: 7,169 sent/s against 6,441 and beam 5 at 2,023 against 1,761, the same hypotheses (BENCHMARKS.md, Speed,
#: session 23): a trained model's outputs end early, and a chunk of 8 runs up to 7 steps past the end
SEARCH_CHUNK_STEPS = 2
assert STEP_BUCKET % CHUNK_STEPS == 0 and STEP_BUCKET % SEARCH_CHUNK_STEPS == 0
MAX_SEARCHES = 32


def chunk_steps() -> int:
    """Search steps per chunk: ``SEQLAB_SEARCH_CHUNK_STEPS`` when set, else :data:`SEARCH_CHUNK_STEPS`.  A search runs
    whole chunks, so it takes up to a chunk less one of steps after its last row finished; smaller chunks read the
    end test more often (one host wait each) and capture more graphs per bucket."""
    text = os.environ.get("SEQLAB_SEARCH_CHUNK_STEPS")
    if text is None:
        return SEARCH_CHUNK_STEPS
    steps = int(text) if text.strip().isdigit() else 0
    if steps < 1 or STEP_BUCKET % steps:
        raise ValueError(f"SEQLAB_SEARCH_CHUNK_STEPS={text!r}: a whole number of steps that divides {STEP_BUCKET}")
    return steps


def lookahead_enabled(beam: int) -> bool:
    """Whether a captured search of this beam width replays each chunk before reading the end test of the chunk
    before it, so that the GPU never waits for the host between chunks.  It then runs one chunk past its end (whose
    steps only extend finished hypotheses: the same results); a greedy search's results wait only for the chunk whose
    end test held, a beam search's for every chunk.  ``SEQLAB_SEARCH_LOOKAHEAD=1`` or ``0`` decides for every search;
    unset, greedy searches (``beam == 1``) have it and beam searches do not.  On one H200 (BENCHMARKS.md, Speed,
    session 27) it took batch-1 greedy from 4.34, 4.40 and 4.33 ms to 4.28, 4.17 and 4.27 ms with the same hypotheses,
    and from 4.18 and 4.34 to 3.85 and 4.04 ms in bench_speed, while beam 5 ran at 4,341 and 4,303 sentences/s with it
    and 4,696 and 4,479 without."""
    switch = os.environ.get("SEQLAB_SEARCH_LOOKAHEAD", "")
    return switch == "1" if switch else beam == 1


def device_loop_enabled() -> bool:
    """``SEQLAB_SEARCH_DEVICE_LOOP=1``, and this PyTorch can capture conditional graph nodes: the whole search as
    one graph whose chunks run while the end test on the device says a row goes on.  Opt-in until measured."""
    wanted = os.environ.get("SEQLAB_SEARCH_DEVICE_LOOP", "0") == "1"
    return wanted and hasattr(torch.cuda.CUDAGraph, "begin_capture_to_if_node")


@contextlib.contextmanager
def only_if(go: torch.Tensor) -> Iterator[None]:
    """Capture the body into a conditional node of the graph being captured that runs when ``go`` (a CUDA bool
    scalar) holds at that point of the replay."""
    graph = torch.cuda.CUDAGraph.get_currently_capturing_graph()
    graph.begin_capture_to_if_node(go)
    try:
        yield
    finally:
        graph.end_capture_to_conditional_node()


def static_search_enabled(model: Any, src: torch.Tensor) -> bool:
    """Whole-search graphs: CUDA, a model with a static step in eval mode, unless SEQLAB_CUDA_GRAPHS=0."""
    return (
        src.is_cuda
        and hasattr(model, "static_step")
        and not model.training
        and os.environ.get("SEQLAB_CUDA_GRAPHS", "1") != "0"
    )


def step_budget(width: int, max_len_a: float, max_len_b: int, max_len: int) -> int:
    """The longest output limit of sources at most ``width`` tokens long (``max_lengths``'s rule), bucketed."""
    steps = max(1, min(int(float(width) * max_len_a + max_len_b), max_len))
    return round_up(steps, STEP_BUCKET)


def greedy_choice(
    logits: torch.Tensor,
    step: torch.Tensor,
    last_step: torch.Tensor,
    done: torch.Tensor,
    history: torch.Tensor,
    logps: torch.Tensor,
    prev: torch.Tensor,
) -> None:
    """A greedy step's choice from the decoder's ``logits`` [n, V], in place on the search's buffers: the argmax
    (PAD and BOS excluded), EOS forced at a row's ``last_step``, PAD after its end; its token goes to ``history``
    and ``prev``, its log-probability to ``logps`` (0 after the end), and ``done`` marks the rows that ended."""
    logp = torch.log_softmax(mask_special(logits), dim=-1)
    tok = logp.argmax(-1)
    tok = torch.where(last_step <= step, EOS_ID, tok)  # where, not masked_fill: no copy of the input first
    tok = torch.where(done, PAD_ID, tok)
    history.index_copy_(1, step, tok.unsqueeze(1))
    chosen = torch.where(done.unsqueeze(1), 0.0, logp.gather(1, tok.unsqueeze(1)))
    logps.index_copy_(1, step, chosen)
    done.logical_or_(tok.eq(EOS_ID))
    prev.copy_(tok)


class StaticSearch:
    """Greedy (``beam == 1``) or beam search of one bucketed shape; ``graph=True`` captures and replays it.

    ``rows`` sources of at most ``width`` tokens; each source has ``beam`` hypotheses (rows s*beam ..
    s*beam+beam-1); decoding runs at most ``steps`` steps, a multiple of ``chunk`` (the steps per captured chunk).
    ``settle``: the length penalty's alpha, to end a beam search once every source's best hypothesis is settled
    (None: once every hypothesis finished)."""

    @torch.no_grad()
    def __init__(
        self,
        model: Any,
        rows: int,
        width: int,
        beam: int,
        steps: int,
        max_len_a: float,
        max_len_b: int,
        max_len: int,
        device: torch.device,
        graph: bool,
        settle: float | None = None,
        chunk: int = SEARCH_CHUNK_STEPS,
    ):
        self.model, self.rows, self.width, self.beam, self.steps = model, rows, width, beam, steps
        self.chunk = chunk
        self.decoder_step = static_step_of(model)  # compiled under SEQLAB_COMPILE_DECODE=1, as is the choice
        self.encode = method_under_switch(model, "encode")  # the prologue's encoder, compiled under the same switch
        self.greedy_choice = compiled_under_switch(greedy_choice)
        self.settle = settle if beam > 1 else None
        self.limit_rule = (max_len_a, max_len_b, max_len)
        n = rows * beam
        self.src = torch.full((rows, width), PAD_ID, dtype=torch.long, device=device)
        self.src[:, 0] = EOS_ID  # a valid (empty) source for the warm-up and capture
        enc = model.encode(self.src)
        self.state = model.init_static_state(enc.repeat(beam) if beam > 1 else enc, steps)
        self.t = self.state["t"]
        self.prev = torch.full((n,), BOS_ID, dtype=torch.long, device=device)
        self.done = torch.zeros(n, dtype=torch.bool, device=device)
        self.limits = torch.ones(n, dtype=torch.long, device=device)
        self.last_step = torch.zeros(n, dtype=torch.long, device=device)  # limits - 1: the step that must end a row
        self.history = torch.full((n, steps), PAD_ID, dtype=torch.long, device=device)
        self.logps = torch.zeros(n, steps, device=device)  # greedy: log p of each chosen token
        self.scores = torch.zeros(rows, beam, device=device)  # beam: running (unnormalised) scores
        self.lengths = torch.zeros(n, dtype=torch.long, device=device)
        self.ended = torch.zeros((), dtype=torch.bool, device=device)  # the end test, written by each chunk
        self.chunks_run = torch.zeros((), dtype=torch.long, device=device)  # counted by each chunk
        self.lookahead = graph and lookahead_enabled(beam)  # :meth:`_run_ahead`
        self.ended_at = torch.zeros(steps // chunk, dtype=torch.bool, device=device)  # each chunk's end test
        # :meth:`_run_ahead`'s events, the stream it replays the chunks on and the one it reads their end tests on
        self.chunk_done: list[torch.cuda.Event] = []
        self.runner: torch.cuda.Stream | None = None
        self.reader: torch.cuda.Stream | None = None
        self.base = (torch.arange(rows, device=device) * beam).unsqueeze(1)
        vocab = torch.arange(model.vocab_size, device=device)
        self.not_eos = vocab.ne(EOS_ID).unsqueeze(0)
        self.finished = torch.where(vocab.eq(PAD_ID), 0.0, float("-inf")).to(device).unsqueeze(0)
        self.prologue_graph: torch.cuda.CUDAGraph | None = None
        self.chunk_graphs: list[torch.cuda.CUDAGraph] = []
        self.whole_graph: torch.cuda.CUDAGraph | None = None  # the device loop (:func:`device_loop_enabled`)
        if graph:
            self._capture()
        self.nbytes = sum(t.numel() * t.element_size() for t in self._buffers())

    def _buffers(self) -> list[torch.Tensor]:
        cache = [layer["kv_buf"] for layer in self.state["self"]]
        return [*cache, *self.state["mem_k"], *self.state["mem_v"], self.history, self.logps]

    # ------------------------------------------------------------------ the captured parts
    def _prologue(self) -> None:
        """Encode the source buffer into the static state and reset the search."""
        enc = self.encode(self.src)
        src_rows = self.src
        if self.beam > 1:
            enc, src_rows = enc.repeat(self.beam), self.src.repeat_interleave(self.beam, dim=0)
        self.model.write_static_memory(self.state, enc)
        a, b, most = self.limit_rule
        self.limits.copy_((src_rows.ne(PAD_ID).sum(1).float() * a + b).long().clamp(min=1, max=most))
        torch.sub(self.limits, 1, out=self.last_step)
        self.t.zero_()
        self.prev.fill_(BOS_ID)
        self.done.zero_()
        self.ended.zero_()
        self.chunks_run.zero_()
        self.history.fill_(PAD_ID)
        self.logps.zero_()
        if self.beam > 1:  # a beam search's own state
            self.lengths.zero_()
            self.scores.fill_(float("-inf"))
            self.scores[:, 0] = 0.0

    def _chunk(self, index: int | None = None) -> None:
        """``chunk`` steps; ``index``: the chunk's place in the search (its steps are index * chunk + j),
        so that a step attends to, and a beam step reorders, only the cache positions written so far (None: every
        position)."""
        for j in range(self.chunk):
            written = None if index is None else index * self.chunk + j + 1
            if self.beam == 1:
                self._greedy_step(written)
            else:
                self._beam_step(written)
        if self.settle is None:
            self.ended.copy_(self.done.all())
        else:
            settled = settled_sources(self.scores, self.lengths, self.done, self.limits, self.settle)
            self.ended.copy_(settled.all())
        self.chunks_run.add_(1)
        if self.lookahead and index is not None:  # kept per chunk: the host reads it while the next chunk runs
            self.ended_at[index].copy_(self.ended)

    def _logits(self, written: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The decoder step's logits for ``prev``, and the step it took (``static_step`` advances t)."""
        step = self.t.clone()
        return self.decoder_step(self.prev, self.state, window=written), step

    def _greedy_step(self, written: int | None = None) -> None:
        """``sample_or_greedy``'s step (``written``: the cache positions filled after this step, the only ones it
        attends to), then :func:`greedy_choice`."""
        logits, step = self._logits(written)
        self.greedy_choice(logits, step, self.last_step, self.done, self.history, self.logps, self.prev)

    def _beam_step(self, written: int | None = None) -> None:
        """``beam_search``'s step: finished hypotheses continue with PAD at no cost, top-k over beam x vocab,
        then the history, lengths and the decoder's self-attention cache follow their hypotheses' origins.
        ``written``: the positions filled after this step (the later ones are masked and never read, so they need no
        reordering: a step then moves t positions of the cache, not the whole budget, and attends to them only)."""
        logits, step = self._logits(written)
        logp = torch.log_softmax(mask_special(logits), dim=-1)
        at_limit = ((self.last_step <= step) & ~self.done).unsqueeze(1)
        logp = torch.where(at_limit & self.not_eos, float("-inf"), logp)
        logp = torch.where(self.done.unsqueeze(1), self.finished.expand_as(logp), logp)
        rows, k, v = self.rows, self.beam, logp.size(-1)
        cand = (self.scores.view(-1, 1) + logp).view(rows, k * v)
        top_scores, top_idx = cand.topk(k, dim=1)
        origin = (top_idx // v + self.base).view(-1)
        tok = (top_idx % v).view(-1)
        part = slice(None) if written is None else slice(0, written)
        history = self.history[:, part]
        history.copy_(history.index_select(0, origin))
        self.history.index_copy_(1, step, tok.unsqueeze(1))
        done = self.done.index_select(0, origin)
        self.lengths.copy_(self.lengths.index_select(0, origin) + (~done).long())
        self.done.copy_(done | tok.eq(EOS_ID))
        self.scores.copy_(top_scores)
        for layer in self.state["self"]:  # keys and values of a layer together
            cache = layer["kv_buf"][:, :, :, part]
            cache.copy_(cache.index_select(1, origin))
        self.prev.copy_(tok)

    def _chunk_indices(self) -> list[int | None]:
        """The chunks captured: one per place in the search (each attends to, and for beam search reorders, only
        the cache positions written by then)."""
        return list(range(self.steps // self.chunk))

    def _capture(self) -> None:
        indices = self._chunk_indices()
        warm_up(lambda: (self._prologue(), [self._chunk(i) for i in indices]))
        if device_loop_enabled() and self._capture_device_loop(indices):
            return
        self.prologue_graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.prologue_graph):
            self._prologue()
        self.chunk_graphs = []
        for index in indices:
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=self.prologue_graph.pool()):
                self._chunk(index)
            self.chunk_graphs.append(graph)

    def _capture_device_loop(self, indices: list[int | None]) -> bool:
        """The whole search as one graph, each chunk in a conditional node on ``not ended``; False (with a warning)
        where the capture fails, and the search is captured chunk by chunk instead."""
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph):
                self._prologue()
                for index in indices:
                    with only_if(self.ended.logical_not()):
                        self._chunk(index)
        except Exception as e:  # noqa: BLE001 -- the chunk graphs remain, and give the same results
            warnings.warn(f"SEQLAB_SEARCH_DEVICE_LOOP: capture failed ({e}); chunk graphs instead", stacklevel=4)
            return False
        self.whole_graph = graph
        return True

    # ------------------------------------------------------------------ running
    @torch.no_grad()
    def run(self, src: torch.Tensor) -> int:
        """Search ``src`` [b, w] (b <= rows, w <= width); returns the number of steps taken.  Padding rows
        repeat the first source and are ignored."""
        b, w = src.shape
        self.wait_for_chunks()
        self.src.fill_(PAD_ID)
        self.src[:b, :w].copy_(src)
        if b < self.rows:
            self.src[b:, :w].copy_(src[:1].expand(self.rows - b, -1))
        if self.whole_graph is not None:  # one replay; its chunks count themselves
            self.whole_graph.replay()
            return int(self.chunks_run) * self.chunk
        with labelled("seqlab.search.prologue"):
            if self.prologue_graph is None:
                self._prologue()
            else:
                self.prologue_graph.replay()
        if self.lookahead and self.chunk_graphs:
            return self._run_ahead()
        taken = 0
        while taken < self.steps:
            index = taken // self.chunk
            with labelled("seqlab.search.chunk"):
                if not self.chunk_graphs:
                    self._chunk(index)
                else:
                    self.chunk_graphs[min(index, len(self.chunk_graphs) - 1)].replay()
            taken += self.chunk
            with labelled("seqlab.search.end_test"):
                ended = bool(self.ended)  # one host read per chunk
            if ended:
                break
        return taken

    def _run_ahead(self) -> int:
        """The captured chunks, replayed on a side stream, each before the end test of the one before it is read (on a
        second side stream that waits for that chunk alone): the search runs one chunk past the chunk whose end test
        held. That chunk only writes later columns of a greedy search's results, so the caller's stream waits for the
        chunk whose end test held, not for the one past it, which runs while the host reads the results (the next
        search, and a search dropped from the cache, wait for it: :meth:`wait_for_chunks`). A beam search's steps past
        the end may reorder earlier columns: the caller's stream waits for them. Returns the steps whose results the
        caller reads."""
        graphs, last, caller = self.chunk_graphs, len(self.chunk_graphs) - 1, torch.cuda.current_stream()
        if self.runner is None:
            self.chunk_done = [torch.cuda.Event() for _ in graphs]
            self.runner, self.reader = torch.cuda.Stream(), torch.cuda.Stream()
        runner, reader = self.runner, self.reader
        runner.wait_stream(caller)  # after the prologue
        for index in range(-1, last + 1):
            if index < last:
                with labelled("seqlab.search.chunk"), torch.cuda.stream(runner):
                    graphs[index + 1].replay()
                    self.chunk_done[index + 1].record(runner)
            if index < 0:
                continue
            with labelled("seqlab.search.end_test"), torch.cuda.stream(reader):
                reader.wait_event(self.chunk_done[index])
                ended = bool(self.ended_at[index])
            if ended:
                break
        if self.beam == 1:
            caller.wait_event(self.chunk_done[index])
            return (index + 1) * self.chunk
        caller.wait_stream(runner)
        return min(index + 2, last + 1) * self.chunk

    def wait_for_chunks(self) -> None:
        """Make the current stream wait for the chunk :meth:`_run_ahead` ran past a greedy search's end, before anything
        there writes this search's buffers again or frees them."""
        if self.runner is not None:
            torch.cuda.current_stream().wait_stream(self.runner)


_CACHE: OrderedDict[tuple, StaticSearch] = OrderedDict()


def search_for(
    model: Any,
    src: torch.Tensor,
    beam: int,
    max_len_a: float,
    max_len_b: int,
    max_len: int,
    graph: bool,
    settle: float | None = None,
) -> StaticSearch:
    """The search of ``src``'s bucket: a cached captured one of the same shape when one exists."""
    rows, width = bucket_rows(src.size(0)), round_up(src.size(1), SOURCE_BUCKET)
    steps = step_budget(src.size(1), max_len_a, max_len_b, max_len)
    shape = (rows, width, beam, steps, max_len_a, max_len_b, max_len, src.device)
    chunk = chunk_steps()
    if not graph:
        return StaticSearch(model, *shape, False, settle, chunk)
    key = (id(model), *shape, settle, chunk, precision_key(), device_loop_enabled(), lookahead_enabled(beam))
    search = _CACHE.get(key)
    if search is not None and search.model is model:
        _CACHE.move_to_end(key)
        return search
    wait_for_searches()  # a search dropped below may still run its last chunk
    search = StaticSearch(model, *shape, True, settle, chunk)
    _CACHE[key] = search
    evict(_CACHE, MAX_SEARCHES, graph_cache_bytes())
    return search


def whole_graph_share() -> float:
    """The share of the cached captured searches that run as one graph (the device loop; 0 when none is cached)."""
    searches = list(_CACHE.values())
    return sum(s.whole_graph is not None for s in searches) / len(searches) if searches else 0.0


def wait_for_searches() -> None:
    """:meth:`StaticSearch.wait_for_chunks` for every cached search."""
    for search in _CACHE.values():
        search.wait_for_chunks()


def clear_searches() -> None:
    """Drop every captured search (e.g. after the model object was replaced)."""
    wait_for_searches()
    _CACHE.clear()
