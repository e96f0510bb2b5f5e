"""seqlab.decoding.beam: when a source's best beam hypothesis is settled, and that stopping there changes nothing."""

from __future__ import annotations

import pytest
import torch
from tiny import DECODING_VOCAB as V
from tiny import random_sources as sources

from seqlab.data.vocab import EOS_ID
from seqlab.decoding import beam_search, search
from seqlab.decoding.beam import gnmt_length_penalty, settled_sources
from seqlab.models.base import Encoded, Seq2SeqModel


def lp(length: int, alpha: float = 0.6) -> float:
    return float(gnmt_length_penalty(torch.tensor(length), alpha))


@pytest.mark.parametrize(
    "live_score,expected",
    [
        (-2.5, False),  # above the finished one's raw score (-3): its extensions could push it out of the beam
        (-3.0 * lp(20) / lp(4) + 0.01, False),  # below it raw, but at the length limit it could still rank first
        (-3.0 * lp(20) / lp(4) - 0.01, True),  # below it raw and at its best: settled
    ],
)
def test_a_source_is_settled_when_no_live_hypothesis_can_overtake_its_best_finished_one(live_score, expected):
    """One source, beam 2: a finished hypothesis (raw -3, 4 tokens) and a live one (length 3, limit 20)."""
    scores = torch.tensor([[-3.0, live_score]])
    lengths, done, limits = torch.tensor([4, 3]), torch.tensor([True, False]), torch.tensor([20, 20])
    assert bool(settled_sources(scores, lengths, done, limits, 0.6)) is expected


def test_a_live_hypothesis_above_the_best_finished_ones_raw_score_keeps_the_source_open():
    """Its extensions could push the finished one out of the beam, whatever its bound.  (Rows of one source share
    their length limit in the searches, and then a higher raw score also means a higher bound; here the live row's
    limit is shorter, so only the raw test keeps the source open.)"""
    scores, lengths, done = torch.tensor([[-3.0, -2.9]]), torch.tensor([12, 2]), torch.tensor([True, False])
    limits = torch.tensor([20, 3])
    assert -2.9 / lp(3) < -3.0 / lp(12)  # its bound is below the finished one's normalised score
    assert not settled_sources(scores, lengths, done, limits, 0.6).item()


def test_settled_needs_a_finished_hypothesis_and_a_non_negative_alpha():
    scores, lengths, limits = torch.tensor([[-3.0, -9.0]]), torch.tensor([4, 3]), torch.tensor([20, 20])
    assert not settled_sources(scores, lengths, torch.tensor([False, False]), limits, 0.6).item()  # none finished
    assert settled_sources(scores, lengths, torch.tensor([True, True]), limits, 0.6).item()  # all finished
    assert settled_sources(scores, lengths, torch.tensor([True, False]), limits, 0.6).item()
    assert not settled_sources(scores, lengths, torch.tensor([True, False]), limits, -0.5).item()  # no bound
    # the best finished one by normalised score decides: here the second (raw -3.2 over 12 tokens)
    scores, lengths = torch.tensor([[-3.0, -3.2, -3.1]]), torch.tensor([4, 12, 3])
    done = torch.tensor([True, True, False])
    assert lp(12) * -3.0 / lp(4) < -3.2  # normalised, the longer one ranks first
    assert not settled_sources(scores, lengths, done, torch.tensor([20, 20, 20]), 0.6).item()  # -3.1 > -3.2 raw


class PrevTokenModel(Seq2SeqModel):
    """logits = W[previous token], a random table: a quarter of the tokens make EOS likely next, the rest make it
    rare, so some hypotheses end early while others run on to the length limit (EOS forced there)."""

    def __init__(self, seed: int):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.vocab_size = V
        table = torch.randn(V, V, generator=g) * 2.0
        table[:, EOS_ID] = -6.0
        table[torch.randperm(V, generator=g)[: V // 4], EOS_ID] = 3.0
        self.register_buffer("table", table)

    def encode(self, src: torch.Tensor) -> Encoded:
        return Encoded(torch.zeros(src.size(0), 1, 1), torch.zeros(src.size(0), 1, dtype=torch.bool))

    def init_state(self, enc: Encoded) -> dict:
        return {"rows": torch.zeros(enc.memory.size(0))}

    def step(self, enc: Encoded, tokens: torch.Tensor, state: dict):
        return self.table[tokens], state


@pytest.mark.parametrize("alpha", [0.0, 0.6, 1.0])
def test_beam_search_stopped_at_settled_sources_returns_the_full_searchs_best(monkeypatch, alpha):
    """Over many sources and tables: the best hypothesis and its score are the full search's, and stopping at
    settled sources takes fewer decoder steps in all."""
    full_rule = lambda scores, lengths, done, limits, a: done.view(scores.shape).all(1)  # noqa: E731
    steps = {"settled": 0, "full": 0}
    for seed in range(8):
        model = PrevTokenModel(seed).eval()
        src = sources(seed, rows=6, longest=9)
        results = {}
        for rule in ("settled", "full"):
            if rule == "full":
                monkeypatch.setattr(search, "settled_sources", full_rule)
            counted = model.step

            def step(*args, _step=counted, _rule=rule, **kwargs):
                steps[_rule] += 1
                return _step(*args, **kwargs)

            monkeypatch.setattr(model, "step", step)
            results[rule] = beam_search(model, src, beam_size=4, length_penalty=alpha)
            monkeypatch.undo()
        assert torch.equal(results["settled"].tokens, results["full"].tokens)
        assert torch.equal(results["settled"].scores, results["full"].scores)
    assert steps["settled"] < steps["full"]
