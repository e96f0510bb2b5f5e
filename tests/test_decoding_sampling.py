"""The sync-free sampling loops (seqlab/decoding/sampling.py) against slow, obviously correct references.

The references below walk every row and step in Python, draw each token by scanning the cumulative distribution
with the same uniforms (one ``torch.rand(steps, N, D)`` made first), and score the reward draw's increments by
scoring every ``prefix + w`` as a whole sentence.  The package's loops must give the same tokens exactly.
"""

from __future__ import annotations

import math

import pytest
import torch
from tiny import TableModel, make_targets

from seqlab.data.vocab import BOS_ID, EOS_ID, PAD_ID
from seqlab.decoding import greedy_search, sample, sampling
from seqlab.decoding.graphs import SharedBuffers
from seqlab.decoding.sampling import DrawSpec, SamplingLoop, inverse_cdf, pad_encoded, run_loop
from seqlab.decoding.search import max_lengths
from seqlab.erpo.proposals import RewardDraw, reward_draw_logits, token_mixture
from seqlab.models import build_model
from seqlab.models.base import mask_special
from seqlab.rewards import next_token_rewards, sentence_bleu
from seqlab.rewards.increments import NextTokenBleu

V = 20


def tiny_transformer(seed: int = 0, vocab: int = V) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model(
        "transformer", vocab, vocab, d_model=32, n_heads=4, ffn_dim=64, encoder_layers=1, decoder_layers=1, dropout=0.0
    ).eval()


def random_targets(seed: int, rows: int, longest: int, low: int = 4, high: int = V) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    seqs = [
        torch.randint(low, high, (int(torch.randint(1, longest + 1, (1,), generator=g)),), generator=g).tolist()
        for _ in range(rows)
    ]
    return make_targets(seqs)


# --------------------------------------------------------------------------- slow references
def scan_draw(probs: torch.Tensor, u: torch.Tensor) -> int:
    """The first id whose cumulative probability exceeds u * total (probs [V] float32)."""
    cdf = probs.cumsum(0)
    x = float(u * cdf[-1])
    for i in range(len(cdf)):
        if float(cdf[i]) > x:
            return i
    raise AssertionError("u * total reached the total")


def direct_increments(prefix: list[int], ref: torch.Tensor, vocab: int) -> torch.Tensor:
    """BLEU(prefix + w) − BLEU(prefix) for every id w, both scored as whole sentences (+ EOS)."""
    rows = make_targets([prefix + [w] for w in range(vocab)])
    new = sentence_bleu(rows, ref[None].expand(vocab, -1))
    old = sentence_bleu(make_targets([prefix]), ref[None])
    delta = new - old
    delta[[PAD_ID, EOS_ID]] = 0.0
    return delta


def pick_component(lam: torch.Tensor, u: float) -> int:
    total, acc = lam.sum(), torch.zeros(())
    for j in range(3):
        acc = acc + lam[j] / total
        if lam[j] > 0 and u < acc:
            return j + 1
    return max(j + 1 for j in range(3) if lam[j] > 0)


@torch.no_grad()
def reference_mixture(
    model,
    enc,
    tgt,
    lam,
    scale=10.0,
    unit="range",
    temperature=1.0,
    data_prefix=None,
    first_token_data=True,
    draw="reward",
):
    """token_mixture row by row and step by step; returns tokens, components, [entropy sum, in ref, count]."""
    n = tgt.size(0)
    ref_len = [int(tgt[i].ne(PAD_ID).sum()) - 1 for i in range(n)]
    limits = torch.maximum(max_lengths(tgt, 1.5, 10, 256), torch.tensor(ref_len) + 1).tolist()
    steps = max(limits)
    u = torch.rand(steps, n, 3)
    need_model = bool(lam[0] > 0)
    state = model.init_state(enc) if need_model else None
    prev = [BOS_ID] * n
    out = [[] for _ in range(n)]
    comps = [[] for _ in range(n)]
    done = [False] * n
    stats = [0.0, 0.0, 0.0]
    for t in range(steps):
        logits = None
        if need_model:
            logits, state = model.step(enc, torch.tensor(prev), state)
            logits = mask_special(logits)
        for i in range(n):
            if done[i]:
                out[i].append(PAD_ID)
                comps[i].append(0)
                prev[i] = PAD_ID
                continue
            z = pick_component(lam, float(u[t, i, 0]))
            if (data_prefix is not None and t < data_prefix[i]) or (first_token_data and t == 0):
                z = 3
            if z == 3:
                tok = int(tgt[i, t]) if t < ref_len[i] else EOS_ID
            elif z == 1:
                tok = scan_draw((logits[i] / temperature).softmax(-1), u[t, i, 1])
            else:
                if draw == "uniform":
                    r_logits = mask_special(torch.zeros(1, model.vocab_size))
                else:
                    delta = direct_increments(out[i], tgt[i], model.vocab_size)
                    r_logits = reward_draw_logits(delta[None], scale, unit, tgt[i : i + 1])
                dist = r_logits.softmax(-1)[0]
                tok = scan_draw(dist, u[t, i, 2])
                stats[0] += float(-(dist * dist.clamp_min(1e-30).log()).sum())
                stats[1] += float(tok in tgt[i].tolist())
                stats[2] += 1
            if t + 1 >= limits[i]:
                tok = EOS_ID
            out[i].append(tok)
            comps[i].append(z)
            done[i] = tok == EOS_ID
            prev[i] = tok
        if all(done):
            break
    return torch.tensor(out), torch.tensor(comps), stats


@torch.no_grad()
def reference_sample(model, src, num_samples, temperature=1.0):
    """Ancestral sampling row by row; returns tokens and their log-probabilities (temperature 1)."""
    enc = model.encode(src).repeat(num_samples)
    limits = max_lengths(src.repeat_interleave(num_samples, 0), 1.5, 10, 256).tolist()
    n, steps = len(limits), max(limits)
    u = torch.rand(steps, n, 1)
    state = model.init_state(enc)
    prev, out, logps, done = [BOS_ID] * n, [[] for _ in range(n)], [[] for _ in range(n)], [False] * n
    for t in range(steps):
        logits, state = model.step(enc, torch.tensor(prev), state)
        logits = mask_special(logits)
        logp = logits.log_softmax(-1)
        for i in range(n):
            tok = PAD_ID if done[i] else scan_draw((logits[i] / temperature).softmax(-1), u[t, i, 0])
            if not done[i] and t + 1 >= limits[i]:
                tok = EOS_ID
            out[i].append(tok)
            logps[i].append(0.0 if done[i] else float(logp[i, tok]))
            done[i] = done[i] or tok == EOS_ID
            prev[i] = tok
        if all(done):
            break
    return torch.tensor(out), torch.tensor(logps)


# --------------------------------------------------------------------------- increments
def test_next_token_bleu_equals_sentence_level_differences():
    refs = random_targets(1, rows=5, longest=9, high=10)  # a small id range: many repeated n-grams
    hyps = torch.randint(4, 10, (5, 12), generator=torch.Generator().manual_seed(2))
    state = NextTokenBleu(8, 16, 12, "cpu").load(refs)  # more rows and a wider reference than needed
    history = torch.full((8, 12), PAD_ID)
    for t in range(12):
        got = state(history, torch.tensor([t]))
        for i in range(5):
            prefix = [int(x) for x in history[i, :t]]
            torch.testing.assert_close(got[i], direct_increments(prefix, refs[i], 12), atol=1e-6, rtol=0)
        torch.testing.assert_close(got[:5], next_token_rewards("bleu", history[:5, :t], refs, 12), atol=0, rtol=0)
        tok = torch.full((8,), 4)
        tok[:5] = hyps[:, t]
        history[:, t] = tok
        state.advance(tok)


def test_inverse_cdf_never_draws_an_impossible_id():
    probs = torch.tensor([[0.0, 0.5, 0.0, 0.5, 0.0], [0.0, 0.0, 1.0, 0.0, 0.0]])
    for u in (0.0, 0.25, 0.5, 0.999, 1.0 - 2.0**-24):
        drawn = inverse_cdf(probs, torch.full((2,), u))
        assert probs.gather(1, drawn[:, None]).gt(0).all(), u
    g = torch.Generator().manual_seed(0)
    p = torch.rand(3, 7, generator=g).pow(3)
    u = torch.rand(20000, generator=g)
    freq = torch.bincount(inverse_cdf(p[1:2].expand(20000, -1), u), minlength=7).float() / 20000
    torch.testing.assert_close(freq, p[1] / p[1].sum(), atol=0.015, rtol=0)


# --------------------------------------------------------------------------- loops against the references
@pytest.mark.parametrize(
    "case",
    [
        dict(lam=[0.3, 0.4, 0.3]),
        dict(lam=[0.5, 0.5, 0.0], unit="raw", scale=200.0, first_token_data=False),
        dict(lam=[0.0, 1.0, 0.0], unit="length", scale=15.0),
        dict(lam=[0.4, 0.2, 0.4], draw="uniform", temperature=0.7),
        dict(lam=[1.0, 0.0, 0.0], data_prefix=3, first_token_data=False),  # MIXER
    ],
)
@pytest.mark.parametrize("mode", ["dynamic", "static"])
def test_token_mixture_equals_the_reference_loop(case, mode):
    model = tiny_transformer(1)
    tgt = random_targets(3, rows=6, longest=8)
    enc = model.encode(tgt)
    lam = torch.tensor(case["lam"])
    prefix = torch.full((6,), case["data_prefix"]) if "data_prefix" in case else None
    kw = dict(
        reward_scale=case.get("scale", 10.0),
        reward_unit=case.get("unit", "range"),
        model_temperature=case.get("temperature", 1.0),
        data_prefix=prefix,
        first_token_data=case.get("first_token_data", True),
        reward_draw=case.get("draw", "reward"),
    )
    torch.manual_seed(5)
    got = token_mixture(model, enc, tgt, lam, mode=mode, **kw)
    torch.manual_seed(5)
    tokens, comps, stats = reference_mixture(
        model,
        enc,
        tgt,
        lam,
        case.get("scale", 10.0),
        case.get("unit", "range"),
        case.get("temperature", 1.0),
        prefix,
        case.get("first_token_data", True),
        case.get("draw", "reward"),
    )
    assert torch.equal(got.tokens, tokens)
    assert torch.equal(got.components, comps)
    if stats[2]:
        assert got.reward_entropy == pytest.approx(stats[0] / stats[2], rel=1e-5)
        assert got.reward_in_reference == pytest.approx(stats[1] / stats[2])
    else:
        assert math.isnan(got.reward_entropy)
    assert set(comps[comps > 0].unique().tolist()) == {z + 1 for z in range(3) if case["lam"][z] > 0} | (
        {3} if case.get("first_token_data", True) or "data_prefix" in case else set()
    )


def test_token_mixture_with_a_table_model_and_a_vocabulary_only_model():
    model = TableModel(vocab_size=9, positions=8, eos_at=6, seed=7)
    tgt = make_targets([[4, 5, 6, 7, 8, 4], [5, 5, 6], [8]] * 3)
    enc = model.encode(tgt)
    for lam in ([0.3, 0.4, 0.3], [0.0, 1.0, 0.0]):
        torch.manual_seed(2)
        got = token_mixture(model, enc, tgt, torch.tensor(lam), reward_scale=5.0)
        torch.manual_seed(2)
        tokens, comps, _ = reference_mixture(model, enc, tgt, torch.tensor(lam), scale=5.0)
        assert torch.equal(got.tokens, tokens) and torch.equal(got.components, comps)


@pytest.mark.parametrize("static", [False, True])
@pytest.mark.parametrize("temperature", [1.0, 0.5])
def test_sampling_equals_the_reference_loop(static, temperature):
    model = tiny_transformer(2)
    src = random_targets(4, rows=3, longest=7)
    torch.manual_seed(11)
    got = sample(model, src, num_samples=4, temperature=temperature, static=static)
    torch.manual_seed(11)
    tokens, logps = reference_sample(model, src, 4, temperature)
    assert torch.equal(got.tokens, tokens)
    torch.testing.assert_close(got.token_log_probs, logps, atol=1e-5, rtol=0)
    torch.testing.assert_close(got.scores, logps.sum(1), atol=1e-4, rtol=0)


def loops_draw_the_reference_tokens(model, static: bool | None = None, mixture_mode: str | None = None) -> None:
    """Ancestral sampling (K = 4) and the token mixture on ``model`` draw the reference loops' tokens on the same
    random stream (``static``, ``mixture_mode``: as :func:`sample` and :func:`token_mixture` take them)."""
    src = random_targets(4, rows=3, longest=7)
    torch.manual_seed(11)
    got = sample(model, src, num_samples=4, static=static)
    torch.manual_seed(11)
    tokens, logps = reference_sample(model, src, 4, 1.0)
    assert torch.equal(got.tokens, tokens)
    torch.testing.assert_close(got.token_log_probs, logps, atol=1e-5, rtol=0)
    tgt = random_targets(3, rows=6, longest=8)
    lam = torch.tensor([0.3, 0.4, 0.3])
    torch.manual_seed(5)
    mixed = token_mixture(model, model.encode(tgt), tgt, lam, mode=mixture_mode, reward_scale=10.0)
    torch.manual_seed(5)
    tokens, comps, _ = reference_mixture(model, model.encode(tgt), tgt, lam, 10.0, "range", 1.0, None, True, "reward")
    assert torch.equal(mixed.tokens, tokens) and torch.equal(mixed.components, comps)


def test_the_fixed_shape_loop_runs_eagerly_when_asked_and_draws_the_reference_tokens(monkeypatch):
    """SEQLAB_SAMPLING_GRAPHS=static: sampling and the token mixture run the fixed-shape loop eagerly (no capture per
    shape; with SEQLAB_COMPILE_DECODE=1 its step is compiled) for a model in eval mode, and draw what the reference
    loops draw on the same random stream; a model in training mode keeps the dynamic loop."""
    from seqlab.decoding import search
    from seqlab.decoding.sampling import sampling_loop_mode
    from seqlab.erpo import proposals

    model = tiny_transformer(2)
    cpu = torch.device("cpu")
    assert sampling_loop_mode(model, cpu) == "dynamic"
    monkeypatch.setenv("SEQLAB_SAMPLING_GRAPHS", "static")
    assert sampling_loop_mode(model, cpu) == "static"
    model.train()
    assert sampling_loop_mode(model, cpu) == "dynamic"
    model.eval()
    modes: list[str] = []

    def spy(run):
        def wrapped(*args, **kwargs):
            modes.append(args[5])
            return run(*args, **kwargs)

        return wrapped

    monkeypatch.setattr(search, "run_loop", spy(search.run_loop))
    monkeypatch.setattr(proposals, "run_loop", spy(proposals.run_loop))
    loops_draw_the_reference_tokens(model)
    assert modes == ["static", "static"]


@pytest.mark.slow
def test_a_compiled_decoder_step_samples_and_mixes_as_the_reference_loops(monkeypatch):
    """SEQLAB_COMPILE_DECODE=1: the fixed-shape sampling and token-mixture loops step through torch.compile and
    draw the reference loops' tokens on the same random stream."""
    from torch._dynamo.utils import counters

    monkeypatch.setenv("SEQLAB_COMPILE_DECODE", "1")
    torch._dynamo.reset()  # compiled here, not found from another test
    compiled_before = counters["stats"]["unique_graphs"]
    loops_draw_the_reference_tokens(tiny_transformer(2), static=True, mixture_mode="static")
    assert counters["stats"]["unique_graphs"] > compiled_before  # the compiled step ran


@pytest.mark.parametrize("mode", ["dynamic", "static"])
def test_greedy_loop_equals_greedy_search(mode):
    model = tiny_transformer(4)
    src = random_targets(6, rows=5, longest=9)
    enc = model.encode(src).repeat(2)
    limits = max_lengths(src.repeat_interleave(2, 0), 1.5, 10, 256)
    state = torch.get_rng_state()
    out = run_loop(model, DrawSpec(greedy=True), enc, limits, torch.zeros(int(limits.max()), 10, 1), mode, V)
    assert torch.equal(torch.get_rng_state(), state)
    expected = greedy_search(model, src, num_samples=2, static=False)
    assert torch.equal(out.tokens, expected.tokens)
    torch.testing.assert_close(out.log_probs, expected.token_log_probs, atol=1e-5, rtol=0)


def test_a_reused_static_loop_equals_a_fresh_one():
    """A captured loop is loaded again for every batch of its shape: nothing of the last batch may leak."""
    model = tiny_transformer(3)
    spec = DrawSpec(mixture=True, reward=("bleu", "reward", 10.0, "range"), first_token_data=True)

    def draw_for(rows, width):
        return RewardDraw("bleu", "reward", 10.0, "range", rows, width, V, torch.device("cpu"))

    def inputs(seed):
        tgt = random_targets(seed, rows=5, longest=7)
        g = torch.Generator().manual_seed(seed)
        limits = max_lengths(tgt, 1.5, 10, 256)
        u = torch.rand(int(limits.max()), 5, 3, generator=g)
        return (
            pad_encoded(model.encode(tgt), 8, 8),
            limits,
            u,
            torch.tensor([[0.3, 0.4, 0.3]]).expand(u.size(0), 3),
            tgt,
        )

    loop = SamplingLoop(model, spec, inputs(1)[0], 8, 32, 8, V, torch.device("cpu"), "static", draw_for)
    first = loop.load(*inputs(1)).run(5, 32)
    again = loop.load(*inputs(2)).run(5, 32)
    fresh = SamplingLoop(model, spec, inputs(2)[0], 8, 32, 8, V, torch.device("cpu"), "static", draw_for)
    expected = fresh.load(*inputs(2)).run(5, 32)
    assert not torch.equal(first.tokens, again.tokens)
    assert torch.equal(again.tokens, expected.tokens) and torch.equal(again.components, expected.components)
    assert again.stats == pytest.approx(expected.stats)


def test_shared_buffers_give_views_of_one_memory_and_count_growths():
    buffers = SharedBuffers()
    a = buffers.view("k", (2, 3), torch.float32, torch.device("cpu"))
    b = buffers.view("k", (3,), torch.float32, torch.device("cpu"))
    assert a.data_ptr() == b.data_ptr() and buffers.generation == 0 and float(a.abs().sum()) == 0.0
    other = buffers.view("v", (2, 3), torch.float32, torch.device("cpu"))
    assert other.data_ptr() != a.data_ptr() and buffers.nbytes() == 2 * 6 * 4
    grown = buffers.view("k", (4, 3), torch.float32, torch.device("cpu"))
    assert buffers.generation == 1 and grown.data_ptr() != a.data_ptr() and buffers.nbytes() == (12 + 6) * 4


def test_static_loops_of_several_shapes_share_their_kv_memory_and_match_private_caches(monkeypatch):
    """Static loops of different shapes take their K/V caches from the same shared memory; run interleaved, each
    gives what a loop with caches of its own gives (a loop writes position t before reading it)."""
    model = tiny_transformer(5)
    spec = DrawSpec()

    def inputs(seed: int, rows: int):
        src = random_targets(seed, rows=rows, longest=6)
        limits = max_lengths(src, 1.5, 10, 256)
        u = torch.rand(int(limits.max()), rows, 1, generator=torch.Generator().manual_seed(seed))
        return pad_encoded(model.encode(src), rows, 8), limits, u

    def run(seed: int, rows: int, steps: int):
        loop = SamplingLoop(model, spec, inputs(seed, rows)[0], rows, steps, 8, V, "cpu", "static")
        return loop, loop.load(*inputs(seed, rows)).run(rows, steps)

    sampling.clear_loops()
    shared = [run(seed, rows, steps) for seed, rows, steps in ((1, 4, 32), (2, 8, 48), (3, 4, 32), (1, 4, 32))]
    ptrs = {loop.state["self"][0]["kv_buf"].data_ptr() for loop, _ in shared}
    assert len(ptrs) <= 2  # one memory (two if the second, larger loop grew it)
    monkeypatch.setattr(sampling, "takes_shared_buffers", lambda model: False)
    private = [run(seed, rows, steps) for seed, rows, steps in ((1, 4, 32), (2, 8, 48), (3, 4, 32), (1, 4, 32))]
    for (_, got), (_, expected) in zip(shared, private, strict=True):
        assert torch.equal(got.tokens, expected.tokens)
        torch.testing.assert_close(got.log_probs, expected.log_probs, atol=1e-6, rtol=0)
    assert torch.equal(shared[0][1].tokens, shared[3][1].tokens)
    wide, later = shared[1][0], shared[2][0]  # made after the last growth: one memory
    assert wide.state["self"][0]["kv_buf"].data_ptr() == later.state["self"][0]["kv_buf"].data_ptr()
    assert wide.state["mem_k"][0].data_ptr() == later.state["mem_k"][0].data_ptr()
    rerun = wide.load(*inputs(2, 8)).run(8, 48)  # after the later loop wrote over the memory
    assert torch.equal(rerun.tokens, private[1][1].tokens)


def test_loop_precision_follows_a_bf16_caller_and_the_switch(monkeypatch):
    """Fixed-shape loops on a GPU run with autocast off (fp32) for a caller outside autocast (decoding for
    evaluation), under bf16 autocast without its cache of cast weights for a caller under bf16 autocast (a training
    step, whose eager loops compute in bf16); SEQLAB_GRAPH_BF16=1 / =0 force bf16 / fp32.  Captures are keyed by it;
    the CPU keeps the caller's context."""
    import contextlib
    import warnings

    import seqlab.decoding.graphs as graphs
    from seqlab.decoding.graphs import loop_precision, precision_key

    caller = {"cuda": None}  # the caller's CUDA autocast dtype (None: off); autocast("cuda") needs CUDA to enable
    monkeypatch.setattr(graphs.torch, "is_autocast_enabled", lambda device="cpu": caller.get(device) is not None)
    monkeypatch.setattr(graphs.torch, "get_autocast_dtype", lambda device: caller[device] or torch.float16)

    def chosen() -> str:  # (without CUDA every autocast("cuda") reads as disabled: the weight cache tells them apart)
        ctx = loop_precision(torch.device("cuda"))
        assert isinstance(ctx, torch.autocast)
        if ctx._cache_enabled:  # autocast(enabled=False) keeps the default
            return "fp32"
        assert ctx.fast_dtype == torch.bfloat16
        return "bf16"

    assert isinstance(loop_precision(torch.device("cpu")), contextlib.nullcontext)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # autocast("cuda") warns on a machine without CUDA
        got = {}
        for switch in (None, "1", "0"):
            if switch is None:
                monkeypatch.delenv("SEQLAB_GRAPH_BF16", raising=False)
            else:
                monkeypatch.setenv("SEQLAB_GRAPH_BF16", switch)
            for dtype in (None, torch.bfloat16, torch.float16):
                caller["cuda"] = dtype
                got[switch, dtype] = (chosen(), precision_key())
        fp32, bf16 = ("fp32", "fp32"), ("bf16", "bf16")
        assert got[None, None] == fp32 and got[None, torch.bfloat16] == bf16 and got[None, torch.float16] == fp32
        assert all(got["1", d] == bf16 for d in (None, torch.bfloat16, torch.float16))
        assert all(got["0", d] == fp32 for d in (None, torch.bfloat16, torch.float16))
        # float32 products on TF32 (decode_precision's, around evaluation searches): captures are keyed apart
        caller["cuda"] = None
        monkeypatch.setenv("SEQLAB_GRAPH_BF16", "0")
        with graphs.matmul_precision("high"):
            assert (chosen(), precision_key()) == ("fp32", "tf32")
        assert precision_key() == "fp32" and torch.get_float32_matmul_precision() == "highest"


def test_fixed_shape_loops_and_searches_run_under_bf16_autocast(monkeypatch):
    """What SEQLAB_GRAPH_BF16=1 does on a GPU, on the CPU: every fixed-shape loop and search runs under bf16
    autocast without its weight cache (the static caches take the projections' bf16) and gives well-formed outputs:
    sampled rows, greedy and beam hypotheses, the token mixture."""
    import seqlab.decoding.search as search
    import seqlab.erpo.proposals as proposals
    from seqlab.decoding import beam_search

    def bf16(device):
        return torch.autocast("cpu", dtype=torch.bfloat16, cache_enabled=False)

    monkeypatch.setattr(search, "loop_precision", bf16)
    monkeypatch.setattr(proposals, "loop_precision", bf16)
    torch.manual_seed(0)
    model = build_model(
        "transformer", 64, 64, d_model=32, n_heads=4, ffn_dim=64, encoder_layers=1, decoder_layers=1, dropout=0.0
    ).eval()
    src = random_targets(3, rows=5, longest=9, high=64)
    out = sample(model, src, num_samples=3, static=True)
    assert out.tokens.size(0) == 15 and out.token_log_probs.dtype == torch.float32
    assert torch.isfinite(out.token_log_probs).all() and (out.token_log_probs <= 0).all()
    for hyps in (greedy_search(model, src, static=True), beam_search(model, src, beam_size=3, static=True)):
        assert hyps.tokens.size(0) == 5 and hyps.tokens.ge(0).all()
    mix = token_mixture(model, model.encode(src), src, torch.tensor([0.3, 0.4, 0.3]), reward_scale=10.0, mode="static")
    assert mix.tokens.size(0) == 5 and set(mix.components.unique().tolist()) <= {0, 1, 2, 3}  # pad, model, reward, data


# --------------------------------------------------------------------------- CUDA graphs
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("bf16", ["0", "1"])
def test_captured_loops_equal_eager_on_the_gpu(monkeypatch, bf16):
    """Captured sampling and token-mixture loops equal the same fixed-shape loops run eagerly, in fp32 and under
    SEQLAB_GRAPH_BF16=1."""
    monkeypatch.setenv("SEQLAB_GRAPH_BF16", bf16)
    model = (
        build_model(
            "transformer", 64, 64, d_model=64, n_heads=4, ffn_dim=128, encoder_layers=2, decoder_layers=2, dropout=0.0
        )
        .cuda()
        .eval()
    )
    src = random_targets(5, rows=37, longest=15, high=64).cuda()
    for mode in ("graph", "static"):
        monkeypatch.setenv("SEQLAB_SAMPLING_GRAPHS", "1" if mode == "graph" else "0")
        torch.manual_seed(0)
        out = sample(model, src, num_samples=4, static=True)
        if mode == "graph":
            graph = out
    assert torch.equal(graph.tokens, out.tokens)
    assert torch.equal(graph.token_log_probs, out.token_log_probs)
    monkeypatch.setenv("SEQLAB_SAMPLING_GRAPHS", "1")
    enc = model.encode(src)
    for lam in ([0.3, 0.4, 0.3], [1.0, 0.0, 0.0]):
        draws = []
        for mode in ("graph", "static", "graph"):  # the second graph call replays the cached capture
            torch.manual_seed(1)
            draws.append(token_mixture(model, enc, src, torch.tensor(lam), reward_scale=10.0, mode=mode))
        for d in draws[1:]:
            assert torch.equal(d.tokens, draws[0].tokens) and torch.equal(d.components, draws[0].components)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_captured_loops_of_several_shapes_share_memory_and_equal_eager(monkeypatch):
    """Captured loops of different shapes share their K/V memory and one graph pool: replayed interleaved, each
    equals the eager static loop."""
    model = (
        build_model(
            "transformer", 64, 64, d_model=64, n_heads=4, ffn_dim=128, encoder_layers=2, decoder_layers=2, dropout=0.0
        )
        .cuda()
        .eval()
    )
    batches = [
        random_targets(seed, rows=rows, longest=longest, high=64).cuda()
        for seed, rows, longest in ((5, 37, 15), (6, 90, 7), (7, 20, 30))
    ]
    outputs = {}
    for mode in ("graph", "static"):
        monkeypatch.setenv("SEQLAB_SAMPLING_GRAPHS", "1" if mode == "graph" else "0")
        sampling.clear_loops()
        for i in (0, 1, 2, 0, 2, 1):  # interleaved: each shape's loop is replayed after the others ran
            torch.manual_seed(i)
            out = sample(model, batches[i], num_samples=4, static=True)
            if (mode, i) in outputs:
                assert torch.equal(out.tokens, outputs[mode, i].tokens)
            else:
                outputs[mode, i] = out
    for i in range(3):
        assert torch.equal(outputs["graph", i].tokens, outputs["static", i].tokens)
        assert torch.equal(outputs["graph", i].token_log_probs, outputs["static", i].token_log_probs)
