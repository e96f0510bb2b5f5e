"""Rewards by name: ``get_reward(name)(hyp [N, T], ref) -> [N]`` (higher is better)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch

from seqlab.rewards._common import Refs
from seqlab.rewards.bleu import sentence_bleu
from seqlab.rewards.distance import delta_reward, neg_edit_distance, neg_hamming
from seqlab.rewards.rouge import rouge_l, rouge_sum

RewardFn = Callable[[torch.Tensor, Refs], torch.Tensor]

REWARDS: dict[str, RewardFn] = {
    "bleu": sentence_bleu,  # sentence BLEU-4, exp smoothing, [0, 1]
    "rouge": rouge_sum,  # ROUGE-1 + ROUGE-2 + ROUGE-L F1, [0, 3]
    "rouge_l": rouge_l,  # ROUGE-L F1, [0, 1]
    "neg_edit": neg_edit_distance,  # −Levenshtein distance
    "neg_hamming": neg_hamming,  # −Hamming distance
    "delta": delta_reward,  # 1 for an exact match, else 0
}


def get_reward(name: str | RewardFn, **kwargs: Any) -> RewardFn:
    """The reward registered as ``name`` (a callable passes through), with ``kwargs`` bound
    (e.g. ``get_reward("bleu", smooth="floor")``)."""
    if callable(name):
        fn = name
    else:
        try:
            fn = REWARDS[name]
        except KeyError:
            raise KeyError(f"unknown reward {name!r}; choose from {sorted(REWARDS)}") from None
    return functools.partial(fn, **kwargs) if kwargs else fn
