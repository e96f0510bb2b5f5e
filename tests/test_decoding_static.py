"""The fixed-shape searches (what CUDA graphs capture) give the eager searches' hypotheses exactly."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from tiny import DECODING_VOCAB
from tiny import random_sources as sources

from seqlab.data.vocab import EOS_ID, PAD_ID
from seqlab.decoding import beam_search, greedy_search
from seqlab.decoding.static import SEARCH_CHUNK_STEPS, StaticSearch, chunk_steps, search_for, step_budget
from seqlab.models import build_model, shift_right

V = DECODING_VOCAB


@pytest.fixture(scope="module")
def copier():
    """A tiny Transformer trained briefly to copy its source: its outputs end (EOS) at varied lengths, so
    finished hypotheses are masked while others continue."""
    torch.manual_seed(0)
    model = build_model(
        "transformer", V, V, d_model=32, n_heads=4, ffn_dim=64, encoder_layers=1, decoder_layers=1, dropout=0.0
    )
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    for step in range(80):
        src = sources(100 + step, rows=16, longest=8)
        logits = model(src, shift_right(src))
        loss = F.cross_entropy(logits.transpose(1, 2), src, ignore_index=PAD_ID)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("k", [2, 5])
def test_static_beam_search_equals_eager(copier, seed, k):
    src = sources(seed, rows=5, longest=7)  # 5 rows -> an 8-row bucket, width 7 -> 8
    for n_best in (1, k):
        eager = beam_search(copier, src, beam_size=k, n_best=n_best, static=False)
        fixed = beam_search(copier, src, beam_size=k, n_best=n_best, static=True)
        assert torch.equal(eager.tokens, fixed.tokens)
        assert torch.allclose(eager.scores, fixed.scores, atol=1e-5)
        assert fixed.host_rows == fixed.token_rows() == eager.tokens.tolist()  # read once, on the host already
    ended = fixed.tokens.eq(EOS_ID).any(1)
    assert ended.all() and fixed.tokens.ne(PAD_ID).sum(1).unique().numel() > 1  # varied lengths, all ended


def test_static_beam_search_equals_eager_on_an_untrained_model():
    """Hypotheses that run to the length limit (EOS forced there) on a model with two layers."""
    torch.manual_seed(3)
    model = build_model(
        "transformer", V, V, d_model=32, n_heads=4, ffn_dim=64, encoder_layers=2, decoder_layers=2, dropout=0.0
    ).eval()
    src = sources(4, rows=2, longest=6)
    eager = beam_search(model, src, beam_size=4, n_best=4, static=False)
    fixed = beam_search(model, src, beam_size=4, n_best=4, static=True)
    assert torch.equal(eager.tokens, fixed.tokens)
    assert torch.allclose(eager.scores, fixed.scores, atol=1e-5)


def test_static_greedy_equals_eager_and_stops_early(copier):
    src = sources(2, rows=3, longest=6)
    eager = greedy_search(copier, src, static=False)
    fixed = greedy_search(copier, src, static=True)
    assert torch.equal(eager.tokens, fixed.tokens)
    assert fixed.host_rows == eager.tokens.tolist() and eager.host_rows is None
    assert eager.token_rows() == fixed.token_rows()
    assert torch.allclose(eager.token_log_probs, fixed.token_log_probs, atol=1e-5)
    assert torch.allclose(eager.scores, fixed.scores, atol=1e-5)
    search = search_for(copier, src, 1, 1.5, 10, 256, graph=False)
    taken = search.run(src)
    assert taken % SEARCH_CHUNK_STEPS == 0 and taken < search.steps  # the end test stopped it before the budget
    assert int(search.chunks_run) * search.chunk == taken  # what a device loop reports as its steps
    assert search.steps == step_budget(6, 1.5, 10, 256) >= int(6 * 1.5 + 10)


@pytest.mark.parametrize("chunk", [1, 4, 8])
def test_any_chunk_size_gives_the_same_hypotheses_and_stops_within_a_chunk_of_the_end(copier, monkeypatch, chunk):
    """SEQLAB_SEARCH_CHUNK_STEPS: the fixed-shape greedy and beam searches in chunks of 1, 4 or 8 steps give the
    hypotheses and scores of the default chunks (2), and stop within a chunk of the step their last row finished."""
    src = sources(5, rows=4, longest=7)
    default = [greedy_search(copier, src, static=True), beam_search(copier, src, beam_size=3, static=True)]
    monkeypatch.setenv("SEQLAB_SEARCH_CHUNK_STEPS", str(chunk))
    assert chunk_steps() == chunk
    small = [greedy_search(copier, src, static=True), beam_search(copier, src, beam_size=3, static=True)]
    for a, b in zip(default, small, strict=True):
        assert torch.equal(a.tokens, b.tokens) and torch.allclose(a.scores, b.scores, atol=1e-6)
    search = search_for(copier, src, 1, 1.5, 10, 256, graph=False)
    assert search.chunk == chunk
    taken = search.run(src)
    longest = int(default[0].tokens.ne(PAD_ID).sum(1).max())  # steps until the last row's EOS
    assert taken % chunk == 0 and longest <= taken < longest + chunk


@pytest.mark.parametrize("text", ["0", "3", "-8", "eight"])
def test_a_chunk_size_that_does_not_divide_the_step_bucket_is_refused_by_name(monkeypatch, text):
    monkeypatch.setenv("SEQLAB_SEARCH_CHUNK_STEPS", text)
    with pytest.raises(ValueError, match="SEQLAB_SEARCH_CHUNK_STEPS"):
        chunk_steps()


def test_a_search_is_reused_for_a_new_batch_of_the_same_bucket(copier):
    """One search object (one captured shape on a GPU) decodes batches one after another; padding rows repeat
    the first source and leave the real rows' results unchanged."""
    first, second = sources(5, rows=3, longest=7), sources(6, rows=2, longest=5)
    search = StaticSearch(
        copier,
        rows=4,
        width=8,
        beam=3,
        steps=32,
        max_len_a=1.5,
        max_len_b=10,
        max_len=256,
        device=torch.device("cpu"),
        graph=False,
    )
    for src in (first, second):
        search.run(src)
        b = src.size(0)
        alone = beam_search(copier, src, beam_size=3, n_best=3, static=False)
        reference = StaticSearch(
            copier,
            rows=b,
            width=src.size(1),
            beam=3,
            steps=32,
            max_len_a=1.5,
            max_len_b=10,
            max_len=256,
            device=torch.device("cpu"),
            graph=False,
        )
        reference.run(src)
        assert torch.equal(search.history[: b * 3], reference.history)
        assert torch.allclose(search.scores[:b], reference.scores, atol=1e-5)
        assert alone.tokens.size(0) == b * 3


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")
def test_captured_bf16_searches_equal_their_eager_fixed_shape_run(copier, monkeypatch):
    """SEQLAB_GRAPH_BF16=1: the captured greedy and beam searches equal the same fixed-shape searches run eagerly
    under the same bf16 autocast (the fp32 eager searches may differ by rounding)."""
    monkeypatch.setenv("SEQLAB_GRAPH_BF16", "1")
    model = copier.cuda()
    src = sources(7, rows=5, longest=7).cuda()
    for k in (1, 5):
        decode = greedy_search if k == 1 else beam_search
        kw = {} if k == 1 else {"beam_size": k}
        monkeypatch.setenv("SEQLAB_CUDA_GRAPHS", "0")  # the fixed-shape search, eager
        eager = decode(model, src, static=True, **kw)
        monkeypatch.setenv("SEQLAB_CUDA_GRAPHS", "1")
        for _ in range(2):  # captured on first use, replayed on the second
            graph = decode(model, src, static=True, **kw)
            assert torch.equal(eager.tokens, graph.tokens)
    model.cpu()


@pytest.mark.slow
def test_a_compiled_decoder_step_gives_the_eager_searches_hypotheses(copier, monkeypatch):
    """SEQLAB_COMPILE_DECODE=1: the fixed-shape greedy and beam searches step through torch.compile (dynamic
    shapes: one compilation serves new buckets and windows) and give the eager searches' hypotheses; on CUDA the
    captured graphs replay the compiled kernels."""
    from torch._dynamo.utils import counters

    from seqlab.decoding import graphs

    cuda = torch.cuda.is_available()
    model = copier.cuda() if cuda else copier
    monkeypatch.setenv("SEQLAB_COMPILE_DECODE", "1")
    torch._dynamo.reset()  # compiled here, not found from another test
    assert graphs.precision_key().endswith("+compiled") and graphs.static_step_of(model) != model.static_step
    assert graphs.method_under_switch(model, "encode") != model.encode  # the prologue's encoder too
    compiled_before = counters["stats"]["unique_graphs"]
    for seed, rows, longest in ((7, 5, 7), (8, 3, 12)):  # a second bucket: wider sources, a longer budget
        src = sources(seed, rows=rows, longest=longest).to(model.tgt_embed.weight.device)
        for k in (1, 4):
            decode = greedy_search if k == 1 else beam_search
            kw = {} if k == 1 else {"beam_size": k}
            eager = decode(model, src, static=False, **kw)
            for _ in range(2 if cuda else 1):  # captured on first use, replayed on the second
                assert torch.equal(eager.tokens, decode(model, src, static=True, **kw).tokens)
    assert counters["stats"]["unique_graphs"] > compiled_before  # the compiled step ran
    model.cpu()


def assert_captured_searches_equal_eager(model, src: torch.Tensor) -> None:
    """Greedy and beam-5 search, captured on first use and replayed on the second, give the eager hypotheses."""
    for k in (1, 5):
        decode = greedy_search if k == 1 else beam_search
        kw = {} if k == 1 else {"beam_size": k}
        eager = decode(model, src, static=False, **kw)
        for _ in range(2):
            assert torch.equal(eager.tokens, decode(model, src, static=True, **kw).tokens)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")
def test_captured_searches_equal_eager_on_cuda(copier):
    model = copier.cuda()
    assert_captured_searches_equal_eager(model, sources(7, rows=5, longest=7).cuda())
    model.cpu()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")
@pytest.mark.parametrize("chunk", ["1", "2"])
def test_a_search_captured_whole_with_its_end_test_on_the_device_equals_eager(copier, monkeypatch, chunk):
    """SEQLAB_SEARCH_DEVICE_LOOP=1: greedy and beam search as one graph whose chunks run in conditional nodes while
    a row goes on give the eager hypotheses, and count the steps the chunk-by-chunk search takes."""
    from seqlab.decoding.static import device_loop_enabled

    monkeypatch.setenv("SEQLAB_SEARCH_DEVICE_LOOP", "1")
    monkeypatch.setenv("SEQLAB_SEARCH_CHUNK_STEPS", chunk)
    if not device_loop_enabled():  # torch 2.11 (the H200 machines' in session 24) has no Python API for them
        pytest.skip("this PyTorch cannot capture conditional graph nodes")
    model = copier.cuda()
    src = sources(7, rows=5, longest=7).cuda()
    assert_captured_searches_equal_eager(model, src)
    whole = search_for(model, src, 1, 1.5, 10, 256, graph=True)
    assert whole.whole_graph is not None
    monkeypatch.setenv("SEQLAB_SEARCH_DEVICE_LOOP", "0")
    assert whole.run(src) == search_for(model, src, 1, 1.5, 10, 256, graph=True).run(src)
    model.cpu()


def test_a_static_step_attending_to_the_written_positions_only_gives_the_same_logits(copier):
    """Transformer.static_step(window=t + 1): the positions after t are masked anyway, so attending to the first
    t + 1 cache positions gives the whole cache's logits; the searches pass it per captured chunk."""
    src = sources(3)
    enc = copier.encode(src)
    whole, cut = copier.init_static_state(enc, 24), copier.init_static_state(enc, 24)
    tokens = torch.full((src.size(0),), 1, dtype=torch.long)
    with torch.no_grad():
        for t in range(6):
            a = copier.static_step(tokens, whole)
            b = copier.static_step(tokens, cut, window=t + 1)
            assert torch.allclose(a, b, atol=1e-5, rtol=1e-5)
            assert cut["self"][0]["window"] == t + 1 and whole["self"][0]["window"] == 24
            tokens = a.argmax(-1)


def test_a_static_beam_search_ends_once_every_source_is_settled():
    """A Transformer trained on targets that are either empty or 20 tokens long: the empty output ranks first and
    the long ones ramble on.  Settled sources end the fixed-shape search a chunk in (the full search runs the whole
    budget) with the eager search's hypotheses and scores."""
    torch.manual_seed(0)
    model = build_model(
        "transformer", V, V, d_model=32, n_heads=4, ffn_dim=64, encoder_layers=1, decoder_layers=1, dropout=0.0
    )
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    for step in range(60):
        g = torch.Generator().manual_seed(step)
        tgt = torch.randint(4, V, (16, 21), generator=g)
        tgt[:, 20] = EOS_ID
        empty = torch.rand(16, generator=g) < 0.5
        tgt[empty] = PAD_ID
        tgt[empty, 0] = EOS_ID
        loss = F.cross_entropy(
            model(sources(100 + step, 16, 12), shift_right(tgt)).transpose(1, 2), tgt, ignore_index=PAD_ID
        )
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    src = sources(0, rows=5, longest=12)
    with torch.no_grad():
        taken = {a: search_for(model, src, 4, 1.5, 10, 256, graph=False, settle=a).run(src) for a in (None, 0.6)}
    assert taken[0.6] == SEARCH_CHUNK_STEPS < taken[None]
    eager = beam_search(model, src, beam_size=4, length_penalty=0.6, static=False)
    fixed = beam_search(model, src, beam_size=4, length_penalty=0.6, static=True)
    assert torch.equal(eager.tokens, fixed.tokens) and eager.tokens.ne(PAD_ID).sum(1).eq(1).all()  # EOS alone
    assert torch.allclose(eager.scores, fixed.scores, atol=1e-5)


def test_the_share_of_searches_captured_whole_counts_the_cached_ones(monkeypatch):
    """whole_graph_share: which cached searches run as one graph (chunk_steps.py --device-loop reports it, so that
    a capture that fell back to chunk graphs does not pass for the device loop)."""
    from collections import OrderedDict
    from types import SimpleNamespace

    from seqlab.decoding import static

    monkeypatch.setattr(static, "_CACHE", OrderedDict())
    assert static.whole_graph_share() == 0.0
    static._CACHE.update({1: SimpleNamespace(whole_graph=object()), 2: SimpleNamespace(whole_graph=None)})
    assert static.whole_graph_share() == 0.5


def test_evaluation_searches_on_a_gpu_multiply_on_tf32_unless_switched_off(monkeypatch):
    """decode_precision (around decode_ids' greedy and beam searches): TF32 float32 products on CUDA by default,
    full float32 with SEQLAB_DECODE_TF32=0, the caller's setting on the CPU; restored after."""
    from seqlab.decoding.graphs import decode_precision

    monkeypatch.delenv("SEQLAB_DECODE_TF32", raising=False)
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    with decode_precision(cuda):
        assert torch.get_float32_matmul_precision() == "high"
    assert torch.get_float32_matmul_precision() == "highest"
    with decode_precision(cpu):
        assert torch.get_float32_matmul_precision() == "highest"
    monkeypatch.setenv("SEQLAB_DECODE_TF32", "0")
    with decode_precision(cuda):
        assert torch.get_float32_matmul_precision() == "highest"


def test_a_runs_decode_compile_switches_the_compiled_step_on_around_its_gpu_searches_only(monkeypatch):
    """``decode.compile`` (decode_ids' switches): the compiled decoder step on CUDA whatever SEQLAB_COMPILE_DECODE
    says, the environment's choice again afterwards, and nothing on the CPU."""
    from seqlab.config import DecodeConfig
    from seqlab.decoding.graphs import compiled_decoding, decode_step_compiled, precision_key
    from seqlab.train.evaluate import decoding_switches

    monkeypatch.setenv("SEQLAB_COMPILE_DECODE", "0")
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    with decoding_switches(DecodeConfig(compile=True), cuda):
        assert decode_step_compiled() and "+compiled" in precision_key()  # the captures are keyed apart
    assert not decode_step_compiled()
    for decode, device in ((DecodeConfig(compile=True), cpu), (DecodeConfig(), cuda)):
        with decoding_switches(decode, device):
            assert not decode_step_compiled()
    monkeypatch.setenv("SEQLAB_COMPILE_DECODE", "1")
    with compiled_decoding(False):  # a run's setting decides over the environment's
        assert not decode_step_compiled()
    assert decode_step_compiled()


class _EagerChunk:
    """A captured chunk's stand-in on the CPU: its replay runs the chunk eagerly."""

    def __init__(self, search, index: int):
        self.search, self.index = search, index

    def replay(self) -> None:
        self.search._chunk(self.index)


@pytest.mark.parametrize("k", [1, 4])
def test_lookahead_reads_each_end_test_a_chunk_late_and_gives_the_same_hypotheses(copier, monkeypatch, k):
    """SEQLAB_SEARCH_LOOKAHEAD: the chunks replay on a side stream one ahead of the end tests the host reads
    (torch.cuda's events and streams stubbed, the chunks run eagerly), so a search runs exactly one chunk past the one
    whose end test held (none past the budget), and those steps change no hypothesis, greedy or beam. The caller's
    stream waits for the chunk whose end test held (greedy: the chunk past it writes only later columns) or for every
    chunk run (beam), and the next run of the search waits for them all before it writes its buffers."""
    import contextlib

    from seqlab.decoding import search as search_module

    waits = []

    class Event:
        def record(self, stream=None) -> None:
            self.stream = stream

    class Stream:
        def wait_event(self, event) -> None:
            waits.append((self, "event", event))

        def wait_stream(self, other) -> None:
            waits.append((self, "stream", other))

    caller = Stream()
    monkeypatch.setattr(torch.cuda, "Event", Event)
    monkeypatch.setattr(torch.cuda, "Stream", Stream)
    monkeypatch.setattr(torch.cuda, "stream", lambda s: contextlib.nullcontext())
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: caller)
    real_search_for, made = search_module.search_for, []

    def ahead(*args, **kw):
        search = real_search_for(*args, **kw)  # eager on the CPU
        search.lookahead = True
        search.chunk_graphs = [_EagerChunk(search, i) for i in search._chunk_indices()]
        made.append(search)
        return search

    def decode(src):
        return greedy_search(copier, src, static=True) if k == 1 else beam_search(copier, src, beam_size=k, static=True)

    for seed, chunk in ((2, 2), (5, 1), (6, 8)):
        monkeypatch.setenv("SEQLAB_SEARCH_CHUNK_STEPS", str(chunk))
        src = sources(seed, rows=3, longest=6)
        plain = real_search_for(copier, src, k, 1.5, 10, 256, graph=False)
        plain.run(src)
        expected = decode(src)
        monkeypatch.setattr(search_module, "search_for", ahead)
        waits.clear()
        got = decode(src)
        monkeypatch.setattr(search_module, "search_for", real_search_for)
        assert torch.equal(expected.tokens, got.tokens) and torch.allclose(expected.scores, got.scores, atol=1e-6)
        search = made[-1]
        chunks, held = len(search.chunk_graphs), int(plain.chunks_run) - 1  # the chunk whose end test held
        assert int(search.chunks_run) == min(held + 2, chunks)
        assert waits[0] == (search.runner, "stream", caller)  # the chunks start after the prologue
        assert all(w[:2] == (search.reader, "event") for w in waits[1:-1])  # the end tests, one chunk each
        last = (caller, "event", search.chunk_done[held]) if k == 1 else (caller, "stream", search.runner)
        assert waits[-1] == last
        waits.clear()
        search.run(src)  # run again: first wait for the chunks still running
        assert waits[0] == (caller, "stream", search.runner)


def test_lookahead_for_greedy_searches_unless_set(monkeypatch):
    """SEQLAB_SEARCH_LOOKAHEAD unset: greedy searches have the lookahead and beam searches do not, with or without the
    compiled step; set to 1 or 0, it decides for every width."""
    from seqlab.decoding.static import lookahead_enabled

    for compiled in ("0", "1"):
        monkeypatch.setenv("SEQLAB_COMPILE_DECODE", compiled)
        monkeypatch.delenv("SEQLAB_SEARCH_LOOKAHEAD", raising=False)
        assert lookahead_enabled(1) and not lookahead_enabled(5)
        for switch in ("0", "1"):
            monkeypatch.setenv("SEQLAB_SEARCH_LOOKAHEAD", switch)
            assert lookahead_enabled(1) == lookahead_enabled(5) == (switch == "1")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")
def test_captured_searches_with_lookahead_equal_eager_on_cuda(copier, monkeypatch):
    """SEQLAB_SEARCH_LOOKAHEAD=1 on a GPU: chunk graphs replayed one ahead of the end tests, read on a side stream."""
    from seqlab.decoding.static import clear_searches

    monkeypatch.setenv("SEQLAB_SEARCH_LOOKAHEAD", "1")
    clear_searches()
    model = copier.cuda()
    assert_captured_searches_equal_eager(model, sources(7, rows=5, longest=7).cuda())
    assert_captured_searches_equal_eager(model, sources(3, rows=1, longest=12).cuda())  # batch 1
    model.cpu()
