"""Batched rewards against sacrebleu / rouge-score / brute force, on random ids and real Multi30k text."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import pytest
import sacrebleu
import torch
from rouge_score import rouge_scorer
from sacrebleu.metrics import BLEU

from seqlab.data.vocab import BOS_ID, EOS_ID, PAD_ID
from seqlab.rewards import (
    REWARDS,
    delta_reward,
    edit_distance,
    get_reward,
    hamming_distance,
    lcs_length,
    neg_edit_distance,
    neg_hamming,
    next_token_rewards,
    prefix_rewards,
    reward_increments,
    rouge_l,
    rouge_n,
    rouge_sum,
    sentence_bleu,
)
from seqlab.rewards.increments import _candidates, _next_token_generic

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
MULTI30K = Path(
    os.environ.get("SEQLAB_MULTI30K", Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "multi30k")
)


# ----------------------------------------------------------------------------- helpers


def content(row: list[int]) -> list[int]:
    out = []
    for t in row:
        if t in (EOS_ID, PAD_ID):
            break
        out.append(t)
    return out


def words(row: list[int]) -> str:
    return " ".join(f"w{t}" for t in content(row))


def pack(seqs: list[list[int]], width: int | None = None) -> torch.Tensor:
    """Id lists -> [N, W] rows ``tokens, EOS, PAD..``."""
    width = max(len(s) for s in seqs) + 1 if width is None else width
    out = torch.full((len(seqs), width), PAD_ID, dtype=torch.long)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = torch.tensor(s, dtype=torch.long)
        if len(s) < width:
            out[i, len(s)] = EOS_ID
    return out


def random_seqs(g: torch.Generator, n: int, max_len: int, vocab: int, min_len: int = 0) -> list[list[int]]:
    """Random contents over ids 4..vocab-1 (a small vocab gives many repeated tokens)."""
    lens = torch.randint(min_len, max_len + 1, (n,), generator=g).tolist()
    return [torch.randint(4, vocab, (k,), generator=g).tolist() for k in lens]


def levenshtein(a: list[int], b: list[int]) -> int:
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i] + [0] * len(b)
        for j, y in enumerate(b, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y))
        prev = cur
    return prev[-1]


@pytest.fixture(scope="module")
def m30k() -> list[list[int]]:
    """Multi30k val English, whitespace-tokenized, words mapped to ids >= 4."""
    path = MULTI30K / "val.en.gz"
    if not path.exists():
        pytest.skip(f"Multi30k not found at {path}")
    with gzip.open(path, "rt", encoding="utf-8") as f:
        lines = [line.split() for line in f]
    vocab: dict[str, int] = {}
    return [[vocab.setdefault(w, len(vocab) + 4) for w in line] for line in lines]


def sacre_bleu(hyp: torch.Tensor, refs: list[torch.Tensor], **kw) -> torch.Tensor:
    """sacrebleu sentence BLEU / 100 of every row; all-PAD reference rows are left out."""
    out = []
    for i in range(hyp.size(0)):
        rs = [words(r[i].tolist()) for r in refs if not bool(r[i].eq(PAD_ID).all())]
        score = sacrebleu.sentence_bleu(words(hyp[i].tolist()), rs or [""], tokenize="none", **kw).score
        out.append(score / 100)
    return torch.tensor(out)


# ----------------------------------------------------------------------------- BLEU


@pytest.mark.parametrize("smooth", ["exp", "floor", "add-k", "none"])
def test_sentence_bleu_matches_sacrebleu_random(smooth: str) -> None:
    g = torch.Generator().manual_seed(1)
    hyps = random_seqs(g, 300, 12, 10) + [[], [], [5], [5, 5], [5, 6, 5], [7, 7, 7, 7, 7]]
    refs = random_seqs(g, 300, 10, 10) + [[], [5, 6], [5], [5, 5, 5], [5, 6], [7, 7]]
    hyp, ref = pack(hyps), pack(refs)
    got = sentence_bleu(hyp, ref, smooth=smooth)
    want = sacre_bleu(hyp, [ref], smooth_method=smooth)
    assert got.shape == (len(hyps),) and got.dtype == torch.float32
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    assert 0 < (got > 0).float().mean() < 1


@pytest.mark.parametrize("smooth_value", [0.01, 0.5])
def test_sentence_bleu_smooth_values_and_options(smooth_value: float) -> None:
    g = torch.Generator().manual_seed(2)
    hyp, ref = pack(random_seqs(g, 120, 9, 8)), pack(random_seqs(g, 120, 9, 8))
    for smooth in ("floor", "add-k"):
        got = sentence_bleu(hyp, ref, smooth=smooth, smooth_value=smooth_value)
        want = sacre_bleu(hyp, [ref], smooth_method=smooth, smooth_value=smooth_value)
        torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    want = sacre_bleu(hyp, [ref], use_effective_order=False)
    torch.testing.assert_close(sentence_bleu(hyp, ref, effective_order=False), want, atol=1e-5, rtol=0)
    metric = BLEU(tokenize="none", max_ngram_order=2, effective_order=True)
    want = torch.tensor(
        [
            metric.sentence_score(words(h), [words(r)]).score / 100
            for h, r in zip(hyp.tolist(), ref.tolist(), strict=True)
        ]
    )
    torch.testing.assert_close(sentence_bleu(hyp, ref, max_order=2), want, atol=1e-5, rtol=0)


def test_sentence_bleu_multi30k(m30k: list[list[int]]) -> None:
    hyp = pack(m30k)
    nxt = pack(m30k[1:] + m30k[:1])
    for smooth in ("exp", "floor"):
        torch.testing.assert_close(
            sentence_bleu(hyp, nxt, smooth=smooth), sacre_bleu(hyp, [nxt], smooth_method=smooth), atol=1e-4, rtol=0
        )
    self_bleu = sentence_bleu(hyp, hyp)
    torch.testing.assert_close(self_bleu, sacre_bleu(hyp, [hyp]), atol=1e-4, rtol=0)
    assert bool((self_bleu[torch.tensor([len(s) > 0 for s in m30k])] > 0.999).all())


def test_sentence_bleu_ignores_padding_layout() -> None:
    """Content ends at the first EOS or PAD; what follows, and the tensor width, do not matter."""
    hyp = torch.tensor([[5, 6, 7, EOS_ID, 9, 9], [5, 6, 7, PAD_ID, 9, 9]])
    ref = torch.tensor([[5, 6, 7, 8, EOS_ID, PAD_ID, PAD_ID, PAD_ID]] * 2)
    wide = torch.cat([hyp[:, :4], torch.zeros(2, 20, dtype=torch.long)], 1)
    out = sentence_bleu(hyp, ref)
    torch.testing.assert_close(out, sentence_bleu(wide, ref[:, :5]))
    assert out[0] == out[1]
    assert sentence_bleu(pack([[5, 6, 7, 8]]), pack([[5, 6, 7, 8]])).item() == pytest.approx(1.0)
    assert sentence_bleu(pack([[5, 6]]), pack([[7, 8]])).item() == 0.0


@pytest.mark.parametrize("layout", ["list", "stacked"])
def test_sentence_bleu_multi_reference(layout: str) -> None:
    g = torch.Generator().manual_seed(3)
    n = 200
    hyp = pack(random_seqs(g, n, 12, 9))
    refs = [pack(random_seqs(g, n, k, 9), 12) for k in (11, 7, 9)]
    refs[2][::3] = PAD_ID  # every third example has only two references
    refs[1][::7] = PAD_ID
    refs[0][::7] = PAD_ID  # ... and every 21st only the third one
    ref = refs if layout == "list" else torch.stack(refs, 1)
    for smooth in ("exp", "floor", "none"):
        torch.testing.assert_close(
            sentence_bleu(hyp, ref, smooth=smooth), sacre_bleu(hyp, refs, smooth_method=smooth), atol=1e-5, rtol=0
        )


def test_sentence_bleu_multi_reference_length_ties() -> None:
    """Brevity penalty: closest reference length, the shorter one on ties (sacrebleu's rule)."""
    hyp = pack([[5, 6, 7, 8, 9], [5, 6, 7, 8, 9]])
    r1 = pack([[5, 6, 7, 8], [5, 6, 7, 8, 9, 10, 11]])
    r2 = pack([[5, 6, 7, 8, 9, 10], [5, 6, 7]])
    torch.testing.assert_close(sentence_bleu(hyp, [r1, r2]), sacre_bleu(hyp, [r1, r2]), atol=1e-6, rtol=0)


def test_sentence_bleu_multi30k_multi_reference(m30k: list[list[int]]) -> None:
    data = m30k[:600]
    hyp = pack(data)
    refs = [pack(data[k:] + data[:k]) for k in (1, 2, 3)] + [pack(data)]
    refs[3][1::2] = PAD_ID  # every other example also has its own sentence among the references
    torch.testing.assert_close(sentence_bleu(hyp, refs), sacre_bleu(hyp, refs), atol=1e-4, rtol=0)


def test_sentence_bleu_validates_smoothing() -> None:
    with pytest.raises(ValueError):
        sentence_bleu(pack([[5]]), pack([[5]]), smooth="bogus")


# ----------------------------------------------------------------------------- ROUGE


def rouge_reference(hyp: torch.Tensor, refs: list[torch.Tensor]) -> dict[str, torch.Tensor]:
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=False)
    out: dict[str, list[float]] = {"rouge1": [], "rouge2": [], "rougeL": []}
    for i in range(hyp.size(0)):
        rs = [words(r[i].tolist()) for r in refs if not bool(r[i].eq(PAD_ID).all())] or [""]
        scores = scorer.score_multi(rs, words(hyp[i].tolist()))
        for k in out:
            out[k].append(scores[k].fmeasure)
    return {k: torch.tensor(v, dtype=torch.float32) for k, v in out.items()}


def check_rouge(hyp: torch.Tensor, ref: torch.Tensor | list[torch.Tensor]) -> None:
    want = rouge_reference(hyp, ref if isinstance(ref, list) else [ref])
    r1, r2, rl = rouge_n(hyp, ref, 1), rouge_n(hyp, ref, 2), rouge_l(hyp, ref)
    torch.testing.assert_close(r1, want["rouge1"], atol=1e-5, rtol=0)
    torch.testing.assert_close(r2, want["rouge2"], atol=1e-5, rtol=0)
    torch.testing.assert_close(rl, want["rougeL"], atol=1e-5, rtol=0)
    torch.testing.assert_close(rouge_sum(hyp, ref), r1 + r2 + rl)


def test_rouge_matches_rouge_score_random() -> None:
    g = torch.Generator().manual_seed(4)
    hyps = random_seqs(g, 250, 12, 9) + [[], [5], [], [5, 5, 5]]
    refs = random_seqs(g, 250, 10, 9) + [[5], [], [], [5, 5]]
    check_rouge(pack(hyps), pack(refs))


def test_rouge_multi30k(m30k: list[list[int]]) -> None:
    data = m30k[:400]
    check_rouge(pack(data), pack(data[1:] + data[:1]))
    assert bool((rouge_l(pack(data), pack(data)) > 0.999).all())


def test_rouge_multi_reference() -> None:
    g = torch.Generator().manual_seed(5)
    hyp = pack(random_seqs(g, 120, 10, 9))
    refs = [pack(random_seqs(g, 120, 10, 9), 11), pack(random_seqs(g, 120, 6, 9), 11)]
    refs[1][::4] = PAD_ID
    check_rouge(hyp, refs)


def test_lcs_length_hand_cases() -> None:
    hyp = pack([[5, 6, 7, 8], [5, 6], [], [9, 5, 9, 6]])
    ref = pack([[5, 7, 8], [7, 8], [5], [5, 6, 9]])
    assert lcs_length(hyp, ref).tolist() == [3, 0, 0, 2]


# ----------------------------------------------------------------------------- distances and delta


def test_edit_distance_matches_python() -> None:
    g = torch.Generator().manual_seed(6)
    hyps = random_seqs(g, 300, 11, 8) + [[], [5], []]
    refs = random_seqs(g, 300, 9, 8) + [[5, 6], [], []]
    got = edit_distance(pack(hyps), pack(refs))
    assert got.dtype == torch.long
    assert got.tolist() == [levenshtein(h, r) for h, r in zip(hyps, refs, strict=True)]
    torch.testing.assert_close(neg_edit_distance(pack(hyps), pack(refs)), -got.float())


def test_edit_and_hamming_multi_reference() -> None:
    hyp = pack([[5, 6, 7], [5, 6, 7]])
    r1 = pack([[5, 6, 7, 8, 9], [9, 9, 9]])
    r2 = pack([[5, 9, 7], [0]])  # second row: a missing reference
    r2[1] = PAD_ID
    assert edit_distance(hyp, [r1, r2]).tolist() == [1, 3]
    assert hamming_distance(hyp, [r1, r2]).tolist() == [1, 3]
    assert delta_reward(hyp, [r1, pack([[5, 6, 7], [5, 6, 7]])]).tolist() == [1.0, 1.0]


def test_hamming_and_delta_hand_cases() -> None:
    hyp = pack([[5, 6, 7], [5, 6, 7], [5, 6], [], [], [5, 6, 7]])
    ref = pack([[5, 6, 7], [5, 9, 7, 8, 8], [5, 6, 7], [], [5], [7, 5, 6]])
    assert hamming_distance(hyp, ref).tolist() == [0, 3, 1, 0, 1, 3]
    torch.testing.assert_close(neg_hamming(hyp, ref), -hamming_distance(hyp, ref).float())
    assert delta_reward(hyp, ref).tolist() == [1.0, 0.0, 0.0, 1.0, 0.0, 0.0]


# ----------------------------------------------------------------------------- registry


def test_registry() -> None:
    builtin = {"bleu", "rouge", "rouge_l", "neg_edit", "neg_hamming", "delta"}
    assert builtin <= set(REWARDS)  # tasks may register more (captioning's bleu_multiref)
    hyp, ref = pack([[5, 6, 7, 8], [5]]), pack([[5, 6, 7, 8], [6, 7]])
    for name in sorted(builtin):
        out = get_reward(name)(hyp, ref)
        assert out.shape == (2,) and out.is_floating_point()
        assert out[0] > out[1], name  # an exact match beats a miss for every reward
    floor = get_reward("bleu", smooth="floor")
    torch.testing.assert_close(floor(hyp, ref), sentence_bleu(hyp, ref, smooth="floor"))
    assert get_reward(sentence_bleu) is sentence_bleu
    with pytest.raises(KeyError):
        get_reward("meteor")


@pytest.mark.parametrize("device", DEVICES)
def test_rewards_on_device(device: str) -> None:
    g = torch.Generator().manual_seed(7)
    hyp, ref = pack(random_seqs(g, 64, 10, 9)), pack(random_seqs(g, 64, 10, 9))
    for name, fn in REWARDS.items():
        cpu = fn(hyp, ref)
        dev = fn(hyp.to(device), ref.to(device))
        assert dev.device.type == device
        torch.testing.assert_close(dev.cpu(), cpu, msg=name)
    d_cpu = next_token_rewards("bleu", hyp[:, :4], ref, 40)
    d_dev = next_token_rewards("bleu", hyp[:, :4].to(device), ref.to(device), 40)
    torch.testing.assert_close(d_dev.cpu(), d_cpu)


# ----------------------------------------------------------------------------- prefix rewards and increments


@pytest.mark.parametrize("name", ["bleu", "rouge", "neg_edit"])
def test_prefix_rewards_match_loop(name: str) -> None:
    g = torch.Generator().manual_seed(8)
    seq, ref = pack(random_seqs(g, 20, 7, 8)), pack(random_seqs(g, 20, 7, 8))
    got = prefix_rewards(name, seq, ref)
    fn = get_reward(name)
    assert got.shape == (20, seq.size(1) + 1)
    for t in range(seq.size(1) + 1):
        pre = [content(row)[:t] for row in seq.tolist()]
        torch.testing.assert_close(got[:, t], fn(pack(pre, seq.size(1) + 1), ref).float())


def test_reward_increments_telescope_and_padding() -> None:
    g = torch.Generator().manual_seed(9)
    seq, ref = pack(random_seqs(g, 30, 8, 9, min_len=1)), pack(random_seqs(g, 30, 8, 9))
    inc = reward_increments("bleu", seq, ref)
    assert inc.shape == seq.shape
    assert bool((inc[seq.eq(PAD_ID)] == 0).all()) and bool((inc[seq.eq(EOS_ID)] == 0).all())
    empty = sentence_bleu(pack([[]] * 30, 1), ref)
    torch.testing.assert_close(inc.sum(1), sentence_bleu(seq, ref) - empty, atol=1e-6, rtol=0)
    scaled = reward_increments("bleu", seq, ref, scale_by_length=True)
    ref_len = torch.tensor([len(content(r)) for r in ref.tolist()], dtype=torch.float32)
    torch.testing.assert_close(scaled, inc * ref_len[:, None])


def test_reward_increments_multi_reference_scaling() -> None:
    seq = pack([[5, 6, 7]])
    refs = [pack([[5, 6, 7, 8]]), pack([[5, 6]])]
    inc = reward_increments("bleu", seq, refs, scale_by_length=True)
    torch.testing.assert_close(inc, reward_increments("bleu", seq, refs) * 3.0)  # mean reference length


# ----------------------------------------------------------------------------- next-token rewards


def brute_force_next(
    name: str, prefix: torch.Tensor, ref: torch.Tensor | list[torch.Tensor], vocab: int, **kw
) -> torch.Tensor:
    fn = get_reward(name, **kw)
    rows = [content(r) for r in prefix.tolist()]
    base = fn(pack(rows, prefix.size(1) + 2), ref).float()
    out = torch.zeros(prefix.size(0), vocab)
    for w in range(vocab):
        if w in (PAD_ID, EOS_ID):
            continue
        out[:, w] = fn(pack([r + [w] for r in rows], prefix.size(1) + 2), ref).float() - base
    return out


@pytest.mark.parametrize("name", sorted(REWARDS))
def test_next_token_rewards_brute_force(name: str) -> None:
    g = torch.Generator().manual_seed(10)
    vocab = 11
    ref = pack(random_seqs(g, 40, 7, vocab))
    for t in (0, 1, 3, 6):
        prefix = torch.randint(4, vocab, (40, t), generator=g)
        got = next_token_rewards(name, prefix, ref, vocab)
        assert got.shape == (40, vocab)
        torch.testing.assert_close(got, brute_force_next(name, prefix, ref, vocab), atol=1e-6, rtol=0)


def test_next_token_rewards_bleu_variants() -> None:
    """Multi-reference, padded prefixes of varying length, smoothing options, the generic path."""
    g = torch.Generator().manual_seed(11)
    vocab, n = 10, 60
    prefix = pack(random_seqs(g, n, 6, vocab), 8)
    refs = [pack(random_seqs(g, n, 8, vocab), 9), pack(random_seqs(g, n, 5, vocab), 9)]
    refs[1][::3] = PAD_ID
    for kw in ({}, {"smooth": "floor"}, {"smooth": "add-k", "smooth_value": 0.5}, {"max_order": 3}):
        got = next_token_rewards("bleu", prefix, refs, vocab, **kw)
        want = brute_force_next("bleu", prefix, refs, vocab, **kw)
        torch.testing.assert_close(got, want, atol=1e-6, rtol=0)
    fast = next_token_rewards("bleu", prefix, refs, vocab)
    cand = _candidates(refs)
    generic = _next_token_generic(sentence_bleu, prefix, refs, cand)
    in_ref = cand >= 0
    torch.testing.assert_close(generic[in_ref], fast.gather(1, cand.clamp(min=0))[in_ref], atol=1e-6, rtol=0)
    torch.testing.assert_close(generic[:, -1], fast[:, BOS_ID], atol=1e-6, rtol=0)  # BOS is in no reference
    scaled = next_token_rewards("bleu", prefix, refs[0], vocab, scale_by_length=True)
    ref_len = torch.tensor([len(content(r)) for r in refs[0].tolist()], dtype=torch.float32)
    torch.testing.assert_close(scaled, next_token_rewards("bleu", prefix, refs[0], vocab) * ref_len[:, None])


def test_next_token_rewards_out_of_reference_tokens_share_one_value() -> None:
    ref = pack([[5, 6, 7, 8]])
    prefix = torch.tensor([[5, 9]])
    d = next_token_rewards("bleu", prefix, ref, 50)
    others = [w for w in range(50) if w not in (PAD_ID, EOS_ID, 5, 6, 7, 8)]
    assert torch.unique(d[0, others]).numel() == 1
    assert d[0, EOS_ID] == 0 and d[0, PAD_ID] == 0
    assert d[0, 6] > d[0, others[0]]


def test_reward_draw_concentrates_on_next_reference_token(m30k: list[list[int]]) -> None:
    """When the prefix is a prefix of the reference, the reference's next token maximises dR over the
    whole vocabulary, and a large c puts most of softmax(c * dR) on it; c = 1 is close to uniform.

    (At t = 0 every reference token ties: one unigram match each.  Early on the brevity penalty makes
    dR small, which is why the draw needs its temperature c.)"""
    vocab = max(max(s) for s in m30k if s) + 1
    refs = [s for s in m30k[:300] if len(s) >= 4]
    g = torch.Generator().manual_seed(12)
    ks = [int(torch.randint(0, len(s), (1,), generator=g)) for s in refs]
    ref = pack(refs)
    mass, mass_c1, is_max = [], [], []
    for t in sorted(set(ks)):  # prefixes of one length per call, the way decoding asks
        rows = torch.tensor([i for i, k in enumerate(ks) if k == t])
        delta = next_token_rewards("bleu", ref[rows, :t], ref[rows], vocab, scale_by_length=True)
        target = ref[rows, t]
        d_target = delta.gather(1, target[:, None]).squeeze(1)
        is_max.append(d_target >= delta.max(1).values - 1e-7)
        if t == 0:
            continue
        for c, sink in ((200.0, mass), (1.0, mass_c1)):
            logits = c * delta
            logits[:, PAD_ID] = float("-inf")
            logits[:, BOS_ID] = float("-inf")
            sink.append(logits.softmax(-1).gather(1, target[:, None]).squeeze(1))
    assert len(refs) > 200
    assert bool(torch.cat(is_max).all())
    assert torch.cat(mass).mean() > 0.9
    assert torch.cat(mass_c1).mean() < 0.01  # c = 1: close to uniform over a ~2.4k-word vocabulary


def test_incremental_bleu_on_multi30k_equals_next_token_rewards(m30k: list[list[int]]) -> None:
    """The sampling loop's device-side ΔBLEU (NextTokenBleu: match counts carried from step to step) on real
    references and a real vocabulary (Multi30k val, ~3K words): along the reference itself (on-track prefixes) and
    along prefixes that leave it (every third token a random word), every step's increments over the whole
    vocabulary equal next_token_rewards, which is sentence BLEU of each extended prefix minus the prefix's."""
    from seqlab.rewards.increments import NextTokenBleu

    vocab = max(max(r) for r in m30k if r) + 1
    rows = m30k[:48]
    ref = pack([r + [EOS_ID] for r in rows])
    g = torch.Generator().manual_seed(3)
    width = ref.size(1) + 2
    for off_track in (False, True):
        hyp = torch.full((len(rows), width), PAD_ID)
        for i, r in enumerate(rows):
            hyp[i, : len(r)] = torch.tensor(r)
        if off_track:
            noise = torch.randint(4, vocab, hyp.shape, generator=g)
            hyp = torch.where(torch.arange(width)[None, :] % 3 == 2, noise, hyp).masked_fill(hyp.eq(PAD_ID), 4)
        state = NextTokenBleu(len(rows), ref.size(1), vocab, "cpu").load(ref)
        history = torch.full((len(rows), width), PAD_ID)
        lengths = torch.tensor([len(r) for r in rows])
        for t in range(width - 1):
            live = lengths >= t  # rows still extending their prefix (the loop masks finished rows)
            got = state(history, torch.tensor([t]))
            want = next_token_rewards("bleu", history[:, :t], ref, vocab)
            torch.testing.assert_close(got[live], want[live], atol=1e-6, rtol=0)
            history[:, t] = hyp[:, t]
            state.advance(hyp[:, t])
