"""Encoding, token-budget batching (coverage, determinism, DDP sharding, resume) and collation."""

from __future__ import annotations

import time
from collections import Counter

import numpy as np
import pytest
import torch

from seqlab.data.batching import Batch, TokenBatchSampler, batch_dims, collate, encode_corpus, iterate_batches
from seqlab.data.corpus import Corpus
from seqlab.data.errors import DataWarning
from seqlab.data.tokenizers import CharTokenizer, SymbolTokenizer
from seqlab.data.vocab import EOS_ID, PAD_ID


def random_lengths(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.stack([rng.integers(2, 60, n), rng.integers(2, 60, n)], axis=1)


def flat(batches) -> list[int]:
    return [i for b in batches for i in b]


@pytest.fixture()
def tiny():
    corpus = Corpus(["abc", "a", "abcabcabc", "bb", "abc"], ["X Y", "X", "Y Y Y Y", "X X X X X X X", "Z"])
    src, tgt = CharTokenizer.build(corpus.sources), SymbolTokenizer.build(corpus.targets)
    return corpus, src, tgt


# ------------------------------------------------------------------------------------------- encoding
def test_encode_corpus_appends_eos_and_handles_long(tiny):
    corpus, src, tgt = tiny
    enc = encode_corpus(corpus, src, tgt)
    assert len(enc) == 5 and enc.num_dropped == enc.num_truncated == 0
    assert enc.src[0].tolist() == src.encode("abc") + [EOS_ID] and enc.tgt[3][-1] == EOS_ID
    assert enc.lengths().tolist()[2] == [10, 5] and enc.group.tolist() == [0, 1, 2, 3, 0]
    with pytest.warns(DataWarning, match="dropped 2 of 5"):
        dropped = encode_corpus(corpus, src, tgt, max_len=5)
    assert dropped.index.tolist() == [0, 1, 4] and dropped.num_dropped == 2
    with pytest.warns(DataWarning, match="truncated 2 of 5"):
        cut = encode_corpus(corpus, src, tgt, max_len=5, on_long="truncate")
    assert len(cut) == 5 and cut.src_lengths.max() == 5 and cut.tgt_lengths.max() == 5
    assert cut.src[2].tolist() == src.encode("abca") + [EOS_ID]


def test_collate_conventions(tiny):
    corpus, src, tgt = tiny
    enc = encode_corpus(corpus, src, tgt)
    b = collate(enc, [2, 1])
    assert isinstance(b, Batch) and b.src.dtype == torch.long and b.src.shape == (2, 10)
    assert b.tgt.tolist() == [tgt.encode("Y Y Y Y") + [EOS_ID], tgt.encode("X") + [EOS_ID, PAD_ID, PAD_ID, PAD_ID]]
    assert b.src[1].tolist() == src.encode("a") + [EOS_ID] + [PAD_ID] * 8
    assert b.index.tolist() == [2, 1] and len(b) == 2
    assert b.num_tgt_tokens == 7 == int(b.tgt.ne(PAD_ID).sum()) and b.num_src_tokens == 12
    moved = b.to("cpu")
    assert moved.num_tgt_tokens == 7 and torch.equal(moved.src, b.src)
    assert Batch(b.src, b.tgt).num_tgt_tokens == 7
    sampler = TokenBatchSampler(enc.lengths(), max_tokens=20, seed=1)
    batches = list(iterate_batches(enc, sampler))
    assert sorted(flat(x.index.tolist() for x in batches)) == [0, 1, 2, 3, 4]
    # the batch's corpus index survives dropping
    with pytest.warns(DataWarning):
        short = encode_corpus(corpus, src, tgt, max_len=5)
    assert collate(short, [2]).index.tolist() == [4]


# ------------------------------------------------------------------------------------------- sampler
def test_every_example_once_and_token_budget():
    lengths = random_lengths(3000)
    s = TokenBatchSampler(lengths, max_tokens=500, max_sentences=40, seed=3, chunk_size=700)
    for epoch in range(2):
        s.set_epoch(epoch)
        batches = list(s)
        assert len(batches) == len(s)
        assert sorted(flat(batches)) == list(range(3000))
        for b in batches:
            assert len(b) <= 40 and len(b) * lengths[b].max() <= 500
    # padding efficiency from length bucketing: far better than random batches
    real = lengths.max(axis=1).sum()
    padded = sum(len(b) * lengths[b].max() for b in batches)
    assert real / padded > 0.85


def test_deterministic_per_seed_and_epoch():
    lengths = random_lengths(1000)

    def order(seed, epoch):
        s = TokenBatchSampler(lengths, max_tokens=300, seed=seed)
        s.set_epoch(epoch)
        return list(s)

    assert order(1, 0) == order(1, 0)
    assert order(1, 0) != order(2, 0)
    assert order(1, 0) != order(1, 1)
    s = TokenBatchSampler(lengths, max_tokens=300, shuffle=False)
    assert list(s) == list(s)  # iterating a completed epoch again restarts it


@pytest.mark.parametrize("world_size", [2, 3, 4])
def test_ddp_shards_cover_each_example_once_with_equal_batch_counts(world_size):
    lengths = random_lengths(777, seed=world_size)
    for epoch in range(3):
        per_rank = []
        for rank in range(world_size):
            s = TokenBatchSampler(lengths, max_tokens=256, seed=5, rank=rank, world_size=world_size)
            s.set_epoch(epoch)
            per_rank.append(list(s))
            assert len(per_rank[-1]) == len(s)
        assert len({len(b) for b in per_rank}) == 1  # same number of batches on every rank
        assert sorted(flat(flat(per_rank))) == list(range(777))  # union covers each example once
        for b in flat(per_rank):
            assert len(b) * lengths[b].max() <= 256


@pytest.mark.parametrize("world_size", [2, 4])
def test_ddp_ranks_of_one_step_get_batches_of_about_the_same_width(world_size):
    """The ranks' k-th batches come from one round of neighbouring widths: their width spread is a small part of
    what randomly paired batches show (who waits at the all-reduce)."""
    lengths = random_lengths(3000, seed=7)
    plans = [
        TokenBatchSampler(lengths, max_tokens=512, seed=3, rank=r, world_size=world_size).plan(0)
        for r in range(world_size)
    ]
    widths = np.array([[int(lengths[b].max()) for b in plan] for plan in plans])  # [ranks, steps]
    aligned = float((widths.max(0) - widths.min(0)).mean())
    rng = np.random.default_rng(0)
    shuffled = rng.permutation(widths.reshape(-1)).reshape(widths.shape)  # the same batches, paired at random
    random_pairs = float((shuffled.max(0) - shuffled.min(0)).mean())
    assert aligned <= 0.25 * random_pairs
    assert not np.all(np.diff(widths[0]) >= 0)  # the rounds still come in random order


@pytest.mark.parametrize("world_size", [1, 2, 3])
def test_every_rank_knows_the_batches_all_ranks_take_at_a_step(world_size):
    """round_at(k): rank r's own k-th batch at place r, on every rank alike, in every epoch and after a resume
    (what lets the ranks pad a step to one shape without asking each other)."""
    lengths = random_lengths(500, seed=world_size)
    samplers = [
        TokenBatchSampler(lengths, max_tokens=256, seed=2, rank=r, world_size=world_size) for r in range(world_size)
    ]
    for epoch in (0, 1):
        for s in samplers:
            s.set_epoch(epoch)
        plans = [s.plan() for s in samplers]
        for k in range(len(plans[0])):
            rounds = [[b.tolist() for b in s.round_at(k)] for s in samplers]
            assert all(r == rounds[0] for r in rounds)
            assert rounds[0] == [plans[r][k].tolist() for r in range(world_size)]
    resumed = TokenBatchSampler(lengths, max_tokens=256, seed=2, rank=0, world_size=world_size)
    resumed.load_state_dict(samplers[0].state_dict())
    assert [b.tolist() for b in resumed.round_at(3)] == [b.tolist() for b in samplers[0].round_at(3)]


def test_batch_dims_are_those_of_the_collated_batch(tiny):
    corpus, src, tgt = tiny
    enc = encode_corpus(corpus, src, tgt)
    for indices in ([2, 1], [0], [3, 4, 1]):
        b = collate(enc, indices)
        assert batch_dims(enc, indices) == (len(b), b.src.size(1), b.tgt.size(1))
    assert batch_dims(enc, np.array([3, 0])) == (2, 4, 8)  # "abc" + EOS; seven X + EOS


def test_ddp_padding_rule_when_fewer_examples_than_ranks():
    lengths = np.array([3, 4])
    got = [list(TokenBatchSampler(lengths, max_tokens=100, rank=r, world_size=3)) for r in range(3)]
    assert all(len(g) == 1 for g in got)
    counts = Counter(flat(flat(got)))
    assert set(counts) == {0, 1} and sum(counts.values()) == 3  # one batch reused to fill the last rank


@pytest.mark.parametrize("world_size", [1, 2])
def test_resume_mid_epoch_gives_exactly_the_remaining_batches(world_size):
    lengths = random_lengths(1500)
    kw = dict(max_tokens=400, seed=11, world_size=world_size, rank=world_size - 1)
    full = TokenBatchSampler(lengths, **kw)
    full.set_epoch(2)
    expected = list(full)
    s = TokenBatchSampler(lengths, **kw)
    s.set_epoch(2)
    it = iter(s)
    seen = [next(it) for _ in range(7)]
    state = s.state_dict()
    assert state["epoch"] == 2 and state["position"] == 7
    resumed = TokenBatchSampler(lengths, **kw)
    resumed.load_state_dict(state)
    resumed.set_epoch(2)  # what the trainer does before iterating: keeps the position
    assert resumed.remaining() == len(expected) - 7
    rest = list(resumed)
    assert seen + rest == expected
    resumed.set_epoch(3)  # the next epoch starts from its first batch
    assert len(list(resumed)) == len(resumed)


def test_resume_at_end_of_epoch_then_next_epoch():
    lengths = random_lengths(200)
    s = TokenBatchSampler(lengths, max_tokens=300, seed=0)
    list(s)
    state = s.state_dict()
    r = TokenBatchSampler(lengths, max_tokens=300, seed=0)
    r.load_state_dict(state)
    r.set_epoch(1)
    ref = TokenBatchSampler(lengths, max_tokens=300, seed=0)
    ref.set_epoch(1)
    assert list(r) == list(ref)


def test_sampler_validation_and_one_dimensional_lengths():
    with pytest.raises(ValueError, match="longer than max_tokens"):
        TokenBatchSampler([5, 50], max_tokens=40)
    with pytest.raises(ValueError):
        TokenBatchSampler([], max_tokens=40)
    with pytest.raises(ValueError):
        TokenBatchSampler([3], rank=2, world_size=2)
    s = TokenBatchSampler([5, 5, 5, 5, 9], max_tokens=10, shuffle=False)
    assert list(s) == [[0, 1], [2, 3], [4]]
    s = TokenBatchSampler([5] * 10, max_tokens=1000, max_sentences=3)
    assert sorted(len(b) for b in s) == [1, 3, 3, 3]
    with pytest.warns(DataWarning, match="changed seed"):
        s.load_state_dict({**s.state_dict(), "seed": 99})


def test_fast_on_a_large_corpus():
    lengths = random_lengths(170_000)
    s = TokenBatchSampler(lengths, max_tokens=4096, seed=0)
    t0 = time.perf_counter()
    n = len(s)
    assert time.perf_counter() - t0 < 2.0
    assert sorted(flat(s.plan())) == list(range(170_000)) and n > 100


def test_ragged_ids_pack_and_pad_match_naive():
    from seqlab.data.batching import RaggedIds

    rng = np.random.default_rng(0)
    rows = [rng.integers(4, 50, rng.integers(0, 9)).tolist() for _ in range(200)]
    packed = RaggedIds.from_lists(rows)
    assert len(packed) == 200 and packed.lengths.tolist() == [len(r) + 1 for r in rows]
    assert all(packed[i].tolist() == r + [EOS_ID] for i, r in enumerate(rows))
    assert packed[-1].tolist() == rows[-1] + [EOS_ID]
    idx = rng.permutation(200)[:37]
    width = max(len(rows[i]) + 1 for i in idx)
    naive = [rows[i] + [EOS_ID] + [PAD_ID] * (width - len(rows[i]) - 1) for i in idx]
    assert packed.pad(idx).tolist() == naive
    plain = RaggedIds.from_lists([[5, 6], []], append_eos=False)
    assert plain.pad([0, 1]).tolist() == [[5, 6], [PAD_ID, PAD_ID]]
