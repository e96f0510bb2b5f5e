"""Rewards by name: ``get_reward(name)(hyp [N, T], ref) -> [N]`` (higher is better).

:data:`REWARDS` holds each reward with its options dataclass (the keyword arguments it accepts, e.g. BLEU's
smoothing); a task may register more (captioning's ``bleu_multiref``)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from seqlab.registry import NoOptions, Registry
from seqlab.rewards._common import Refs
from seqlab.rewards.bleu import sentence_bleu
from seqlab.rewards.distance import delta_reward, neg_edit_distance, neg_hamming
from seqlab.rewards.rouge import rouge_l, rouge_sum

RewardFn = Callable[[torch.Tensor, Refs], torch.Tensor]


@dataclass
class BleuOptions:
    """Options of sentence BLEU (:func:`~seqlab.rewards.bleu.sentence_bleu`)."""

    max_order: int = 4
    smooth: str = "exp"
    smooth_value: float | None = None
    effective_order: bool = True
    brevity_penalty: bool = True


#: the rewards by name, each with the options it accepts
REWARDS: Registry[RewardFn] = Registry("reward")
REWARDS.add("bleu", sentence_bleu, BleuOptions)  # sentence BLEU-4, exp smoothing, [0, 1]
REWARDS.add("rouge", rouge_sum, NoOptions)  # ROUGE-1 + ROUGE-2 + ROUGE-L F1, [0, 3]
REWARDS.add("rouge_l", rouge_l, NoOptions)  # ROUGE-L F1, [0, 1]
REWARDS.add("neg_edit", neg_edit_distance, NoOptions)  # −Levenshtein distance
REWARDS.add("neg_hamming", neg_hamming, NoOptions)  # −Hamming distance
REWARDS.add("delta", delta_reward, NoOptions)  # 1 for an exact match, else 0


#: token-id rewards that do not decompose over tokens (registered with ``decomposes=False``): the algorithms that
#: need token increments ΔR(w | y_<t) (interpolation, mixer_anneal, vaml, ac, erac) refuse them
NON_DECOMPOSABLE: set[str] = set()


def register_reward(name: str, options: type = NoOptions, decomposes: bool = True) -> Callable[[RewardFn], RewardFn]:
    """Decorator: register ``fn(hyp, ref, **options) -> [N]`` as reward ``name``.

    ``decomposes``: R may be scored on every token prefix (an unfinished prefix as if it ended there) and treats
    every token absent from the references alike, so its increments ΔR(w | y_<t) are meaningful
    (:mod:`seqlab.rewards.increments`); every built-in token-id reward does."""
    (NON_DECOMPOSABLE.add if not decomposes else NON_DECOMPOSABLE.discard)(name)
    return REWARDS.register(name, options)


def token_reward_decomposes(name: str) -> bool:
    """Whether the token-id reward ``name`` decomposes over tokens (see :func:`register_reward`)."""
    return name not in NON_DECOMPOSABLE


def get_reward(name: str | RewardFn, **kwargs: Any) -> RewardFn:
    """The reward registered as ``name`` (a callable passes through), with ``kwargs`` bound and checked against
    its options (e.g. ``get_reward("bleu", smooth="floor")``)."""
    if callable(name):
        fn = name
    else:
        if name not in REWARDS:
            raise KeyError(f"unknown reward {name!r}; choose from {sorted(REWARDS)}")
        fn = REWARDS[name]
        if kwargs:
            REWARDS.parse_options(name, kwargs, "reward options", error=TypeError)
    return functools.partial(fn, **kwargs) if kwargs else fn
