"""Pieces shared by the sequence-level algorithms: rewards and schedules from options."""

from __future__ import annotations

from typing import Any

import torch
from torch.profiler import record_function

from seqlab.algorithms.base import Algorithm, AlgorithmContext


class RewardAlgorithm(Algorithm):
    """An algorithm scoring its proposals with a task reward R(y | y*) from :mod:`seqlab.rewards`."""

    def __init__(self, ctx: AlgorithmContext, reward: str = "bleu", **options: Any):
        super().__init__(ctx, **options)
        from seqlab.rewards import get_reward

        self.reward_name = reward
        self._reward = get_reward(reward)

    def reward(self, tokens: torch.Tensor, refs: torch.Tensor) -> torch.Tensor:
        with torch.no_grad(), record_function("seqlab.reward"):
            return self._reward(tokens, refs).float()
