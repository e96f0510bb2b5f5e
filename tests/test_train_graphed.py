"""seqlab.train.graphed (``train.cuda_graphs``): the fixed-shape training step equals the plain one.

On the CPU the fixed-shape step runs eagerly: what these tests check is that padding a batch to its bucket (extra
rows with an EOS-only source and no target, extra PAD columns) and keeping the gradient buffers across steps change
neither the loss nor the gradients nor the trained weights.  The CUDA test also replays captured graphs."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from helpers import tiny_overrides

from seqlab.config import load_config
from seqlab.data.batching import Batch
from seqlab.data.vocab import EOS_ID, PAD_ID
from seqlab.train.graphed import GraphedStep, StaticBatch, bucket_shape
from seqlab.train.trainer import Trainer

NO_DROPOUT = "{d_model: 32, n_heads: 4, ffn_dim: 64, encoder_layers: 1, decoder_layers: 1, dropout: 0.0}"


def ragged_batch(seed: int, rows: int, src_width: int, tgt_width: int, vocab: int) -> Batch:
    """Token rows of random lengths ending in EOS, PAD-padded (at least one row of each full width)."""
    g = torch.Generator().manual_seed(seed)

    def side(width: int) -> torch.Tensor:
        out = torch.full((rows, width), PAD_ID, dtype=torch.long)
        for r in range(rows):
            n = width if r == 0 else int(torch.randint(1, width + 1, (1,), generator=g))
            out[r, : n - 1] = torch.randint(4, vocab, (n - 1,), generator=g)
            out[r, n - 1] = EOS_ID
        return out

    return Batch(side(src_width), side(tgt_width), torch.arange(rows))


def trainer(tmp_path, run: str, **extra: str) -> Trainer:
    """A tiny trainer without dropout, with SGD: Adam would turn the rounding noise in the gradients of the
    attention keys' biases (zero in exact arithmetic: softmax ignores them) into full-size steps."""
    overrides = {"model.options": NO_DROPOUT, "train.max_steps": "12", "train.optimizer": "sgd", **extra}
    return Trainer(load_config(None, tiny_overrides(tmp_path, run, **overrides)), console=False)


def test_a_batch_is_padded_to_its_bucket_with_rows_that_hold_no_target():
    batch = ragged_batch(0, rows=5, src_width=7, tgt_width=9, vocab=20)
    assert bucket_shape(batch) == (8, 8, 10) and bucket_shape(batch, width=8) == (8, 8, 16)  # widths in 2s: default
    static = StaticBatch.of_shape(bucket_shape(batch), torch.device("cpu")).load(batch)
    assert torch.equal(static.src[:5, :7], batch.src) and torch.equal(static.tgt[:5, :9], batch.tgt)
    assert static.src[5:, 0].eq(EOS_ID).all() and static.src[5:, 1:].eq(PAD_ID).all()
    assert static.tgt[5:].eq(PAD_ID).all() and static.tgt[:, 9:].eq(PAD_ID).all() and static.src[:, 7:].eq(PAD_ID).all()
    assert static.index.tolist() == [0, 1, 2, 3, 4, -1, -1, -1] and static.num_tgt_tokens == batch.num_tgt_tokens


def test_the_fixed_shape_step_gives_the_plain_steps_loss_and_gradients_and_reuses_its_gradient_buffers(tmp_path):
    t = trainer(tmp_path, "plain")
    params = [p for g in t.optimizer.param_groups for p in g["params"]]
    step = GraphedStep(t.loss_module, params, t.device, capture=False)
    reference = copy.deepcopy(t.loss_module)
    name_of = {id(p): name for name, p in t.loss_module.named_parameters()}
    vocab = t.model.vocab_size
    buffers = None
    for seed, shape in enumerate([(5, 7, 9), (3, 4, 5), (5, 7, 9)]):
        batch = ragged_batch(seed, *shape, vocab=vocab)
        reference.zero_grad(set_to_none=True)
        plain_loss, _ = reference(batch, t.progress())
        plain_loss.backward()
        by_name = dict(reference.named_parameters())
        plain = [by_name[name_of[id(p)]].grad for p in params]
        loss, _ = step.forward_backward(batch, t.progress())
        torch.testing.assert_close(loss, plain_loss.detach(), rtol=1e-5, atol=1e-6)
        for p, expected in zip(params, plain, strict=True):
            torch.testing.assert_close(p.grad, expected, rtol=1e-4, atol=1e-6)
        buffers = buffers or [p.grad for p in params]
        assert all(p.grad is b for p, b in zip(params, buffers, strict=True))  # zeroed in place, never replaced


def test_training_with_cuda_graphs_on_the_cpu_warns_and_trains_the_same_weights(tmp_path):
    plain = trainer(tmp_path, "plain")
    plain.fit()
    with pytest.warns(UserWarning, match="no CUDA device"):
        fixed = trainer(tmp_path, "fixed", **{"train.cuda_graphs": "true"})
    assert fixed.graphed is not None
    fixed.fit()
    assert fixed.step == plain.step == 12
    records = [json.loads(line) for line in (tmp_path / "fixed" / "log.jsonl").read_text().splitlines()]
    assert [r["cuda_graph_captures"] for r in records if r["kind"] == "train"] == [0, 0]  # logged; none on the CPU
    assert all("cuda_graph_captures" not in r for r in (tmp_path / "plain" / "log.jsonl").read_text().splitlines())
    for (name, a), (_, b) in zip(plain.model.state_dict().items(), fixed.model.state_dict().items(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=name)


def test_an_algorithm_whose_loss_is_not_capturable_trains_eagerly_and_says_so(tmp_path):
    with pytest.warns(UserWarning, match="raml, whose loss is not capturable"):
        t = trainer(tmp_path, "raml", **{"train.cuda_graphs": "true", "algorithm.name": "raml"})
    assert t.graphed is None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")
def test_captured_training_steps_train_the_weights_eager_steps_train(tmp_path):
    """On a GPU: the first batch of each bucket runs eagerly, the next ones replay its graph; after 12 steps over
    repeated buckets the weights equal those of the plain eager steps (fp32, no dropout)."""
    cuda = {"train.device": "cuda", "train.bf16": "false"}
    plain = trainer(tmp_path, "plain", **cuda)
    plain.fit()
    fixed = trainer(tmp_path, "fixed", **cuda, **{"train.cuda_graphs": "true"})
    fixed.fit()
    assert fixed.graphed.capture and fixed.graphed.captures >= 1 and fixed.graphed.replays >= 6
    for (name, a), (_, b) in zip(plain.model.state_dict().items(), fixed.model.state_dict().items(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=name)


def test_the_capturable_embedding_has_nn_embeddings_gradient_and_none_on_padding():
    """The embedding a captured step uses (index_add_ backward, no host read) gives nn.Embedding's gradient: rows
    summed per token, nothing on the padding row."""
    from seqlab.models.base import _IndexAddEmbedding

    torch.manual_seed(0)
    emb = torch.nn.Embedding(11, 6, padding_idx=PAD_ID)
    ids = torch.tensor([[4, 5, 4, PAD_ID], [7, 4, PAD_ID, PAD_ID]])
    upstream = torch.randn(2, 4, 6)
    (emb(ids) * upstream).sum().backward()
    expected, emb.weight.grad = emb.weight.grad.clone(), None
    out = _IndexAddEmbedding.apply(ids, emb.weight, PAD_ID)
    torch.testing.assert_close(out, emb(ids))
    (out * upstream).sum().backward()
    torch.testing.assert_close(emb.weight.grad, expected)
    assert emb.weight.grad[PAD_ID].eq(0).all() and emb.weight.grad[4].abs().sum() > 0


def test_a_run_with_cuda_graphs_resumes_where_it_stopped(tmp_path):
    """Stopped after 6 steps and resumed to 12, a train.cuda_graphs run ends with the weights of an uninterrupted
    one: the fixed-shape step keeps no state that a checkpoint misses."""
    graphs = {"train.cuda_graphs": "true"}
    with pytest.warns(UserWarning, match="no CUDA device"):
        full = trainer(tmp_path, "full", **graphs)
    full.fit()
    with pytest.warns(UserWarning, match="no CUDA device"):
        first = trainer(tmp_path, "split", **graphs, **{"train.max_steps": "6"})
    first.fit()
    with pytest.warns(UserWarning, match="no CUDA device"):
        resumed = trainer(tmp_path, "split", **graphs)
    assert resumed.step == 6
    resumed.fit()
    assert resumed.step == full.step == 12
    for (name, a), (_, b) in zip(full.model.state_dict().items(), resumed.model.state_dict().items(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)


def test_under_ddp_every_rank_pads_a_step_to_the_largest_batch_any_rank_takes(tmp_path):
    """_step_dims on two ranks' trainers (their samplers as under a 2-process run): at every step both name the same
    dimensions, the largest of the two ranks' batches, so both pad to one bucket and replay the same graph."""
    from seqlab.data.batching import TokenBatchSampler, batch_dims
    from seqlab.train.distributed import DistInfo

    ranks = []
    for rank in range(2):
        with pytest.warns(UserWarning, match="no CUDA device"):
            t = trainer(tmp_path, f"rank{rank}", **{"train.cuda_graphs": "true", "train.max_tokens": "60"})
        t.dist = DistInfo(rank=rank, world_size=2)
        t.sampler = TokenBatchSampler(t.train_data.lengths(), max_tokens=60, seed=1, rank=rank, world_size=2)
        ranks.append(t)
    steps = [[], []]
    for rank, t in enumerate(ranks):
        for indices in t.sampler:
            steps[rank].append((batch_dims(t.train_data, indices), t._step_dims()))
    assert len(steps[0]) == len(steps[1]) > 3
    widths_differ = 0
    for (own0, dims0), (own1, dims1) in zip(*steps, strict=True):
        assert dims0 == dims1 == tuple(max(a, b) for a, b in zip(own0, own1, strict=True))
        widths_differ += own0 != own1
    assert widths_differ > 0  # the ranks' own batches differ: without the agreement they would pick other buckets
    ranks[0].dist = DistInfo()
    assert ranks[0]._step_dims() is None  # one process: each batch its own bucket


def test_seqlab_train_says_what_it_captured(tmp_path, capsys):
    """`seqlab train train.cuda_graphs=true` closes with how many buckets it captured and steps it replayed, and
    says when it did not capture (on the CPU: none, with the warning that says why)."""
    from seqlab.cli import main as cli_main

    args = tiny_overrides(tmp_path, "cli", **{"train.max_steps": "4", "train.cuda_graphs": "true"})
    with pytest.warns(UserWarning, match="no CUDA device"):
        assert cli_main(["train", *args]) == 0
    out = capsys.readouterr().out
    assert "train.cuda_graphs: 0 buckets captured, 0 steps replayed (not capturing: see the warning above)" in out


class _FakeCuda:
    """Stand-ins for torch.cuda's graph and stream calls: a "capture" runs its body eagerly once and a replay runs
    nothing, so that the capturing bookkeeping, which needs a GPU, runs on the CPU."""

    class Graph:
        def replay(self) -> None:
            pass

    class Stream:
        def wait_stream(self, other) -> None:
            pass

    def __init__(self, monkeypatch, fail_capture: bool = False):
        import contextlib

        self.captures = 0

        @contextlib.contextmanager
        def graph(g, pool=None, stream=None):
            self.captures += 1
            if fail_capture:
                raise RuntimeError("operation not permitted when stream is capturing")
            yield

        monkeypatch.setattr(torch.cuda, "graph", graph)
        monkeypatch.setattr(torch.cuda, "CUDAGraph", self.Graph)
        monkeypatch.setattr(torch.cuda, "stream", lambda s: contextlib.nullcontext())
        monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: self.Stream())


def capturing_step(t: Trainer, **options) -> GraphedStep:
    """The trainer's fixed-shape step as on a GPU (capturing), with _FakeCuda in place."""
    params = [p for g in t.optimizer.param_groups for p in g["params"]]
    step = GraphedStep(t.loss_module, params, t.device, capture=False, **options)
    step.capture, step.stream = True, _FakeCuda.Stream()
    return step


def test_capturing_keeps_one_graph_per_bucket_after_the_eager_steps_and_asks_the_ranks_each_time(tmp_path, monkeypatch):
    """The bookkeeping of capturing (GPU-only code, run here with stand-ins): eager steps first (DDP's warm-up), then
    the first batch of each bucket is a real step followed by a capture, and later batches of the bucket replay it;
    every capture asks whether all ranks captured; a least-recently-used bucket is dropped past MAX_GRAPHS, and all
    are dropped when the gradient buffers are replaced."""
    import seqlab.train.graphed as graphed

    fake = _FakeCuda(monkeypatch)
    monkeypatch.setattr(graphed, "MAX_GRAPHS", 2)
    t = trainer(tmp_path, "bookkeeping")
    asked = []
    step = capturing_step(t, eager_steps=2, agree=lambda ok: asked.append(ok) or ok)
    vocab = t.model.vocab_size
    small, mid, large = ((3, 4, 5), (5, 7, 9), (9, 13, 17))
    for shape in (small, small, small, small, mid, small, large, small, mid):
        step.forward_backward(ragged_batch(0, *shape, vocab=vocab), t.progress())
    # small: eager, eager, captured (after the 2 eager steps), replay; mid: captured; small: replay; large: captured,
    # evicting mid (least recently used); small: replay; mid: captured again
    assert fake.captures == step.captures == 4 and asked == [True] * 4
    assert step.replays == 3 and len(step.steps) == 2
    t.model.encoder.layers[0].norm1.weight.grad = None  # a new buffer: the graphs would write the old one
    step.forward_backward(ragged_batch(1, *small, vocab=vocab), t.progress())
    assert step.captures == 5 and list(step.steps) == [graphed.bucket_shape(ragged_batch(1, *small, vocab=vocab))]


def test_a_capture_that_one_rank_cannot_make_turns_capturing_off_on_every_rank(tmp_path, monkeypatch):
    """A rank whose capture failed, or whose peers' did (agree says no), warns, keeps nothing and trains every later
    bucket eagerly; the graphs captured before stay."""
    t = trainer(tmp_path, "refused")
    _FakeCuda(monkeypatch)
    peers = iter([True, False])
    step = capturing_step(t, agree=lambda ok: ok and next(peers))
    vocab = t.model.vocab_size
    step.forward_backward(ragged_batch(0, 3, 4, 5, vocab=vocab), t.progress())
    with pytest.warns(UserWarning, match="another rank could not capture it"):
        step.forward_backward(ragged_batch(0, 5, 7, 9, vocab=vocab), t.progress())
    assert not step.capture and step.captures == 1 and len(step.steps) == 1
    loss, _ = step.forward_backward(ragged_batch(0, 9, 13, 17, vocab=vocab), t.progress())  # eagerly
    assert torch.isfinite(loss) and step.captures == 1
    own = trainer(tmp_path, "failed")
    _FakeCuda(monkeypatch, fail_capture=True)
    failing = capturing_step(own, agree=lambda ok: ok)
    with pytest.warns(UserWarning, match="operation not permitted when stream is capturing"):
        failing.forward_backward(ragged_batch(0, 3, 4, 5, vocab=vocab), own.progress())
    assert not failing.capture and failing.captures == 0 and not failing.steps


def test_captured_steps_are_the_default_for_mle_on_seqlabs_transformer_on_one_gpu(tmp_path):
    """train.cuda_graphs null (the default) resolves to on only where it was measured to win: a capturable
    algorithm (MLE) training seqlab's Transformer on one CUDA device without train.compile; true or false as set."""
    from seqlab.train.distributed import DistInfo

    t = trainer(tmp_path, "auto")
    assert t.cfg.train.cuda_graphs is None and t.graphed is None and not t._cuda_graphs()  # the CPU: off, silently
    t.device = torch.device("cuda")  # what the resolution reads (nothing runs on it here)
    assert t._cuda_graphs()
    t.dist = DistInfo(rank=0, world_size=2)
    assert not t._cuda_graphs()  # DDP: opt-in (train.cuda_graphs=true) until its scaling is measured
    t.dist = DistInfo()
    t.cfg.train.compile = True
    assert not t._cuda_graphs()
    t.cfg.train.compile = False
    t.cfg.model.arch = "lstm"
    assert not t._cuda_graphs()
    t.cfg.train.cuda_graphs = True
    assert t._cuda_graphs()
    raml = trainer(tmp_path, "raml_auto", **{"algorithm.name": "raml"})
    raml.device = torch.device("cuda")
    assert not raml._cuda_graphs()
