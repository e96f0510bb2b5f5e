"""Decoding: greedy, sampling and beam search over any :class:`~seqlab.models.base.Seq2SeqModel`."""

from seqlab.decoding.search import Hypotheses, beam_search, greedy_search, sample, sample_or_greedy

__all__ = ["Hypotheses", "beam_search", "greedy_search", "sample", "sample_or_greedy"]
