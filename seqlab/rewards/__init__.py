"""Batched sequence rewards on the device (BLEU, ROUGE, edit / Hamming distance, δ) and their
token-level increments ΔR.

Inputs are LongTensors of token ids ``tokens.., EOS, PAD..`` (no BOS); a reward reads the content
before the first EOS / PAD.  References: [N, T'], or several as a list of [N, T_k] / a tensor
[N, K, T'] (an all-PAD row is a missing reference).  All functions are pure torch, CPU or CUDA,
with no Python loop over the batch.  BLEU and ROUGE are in [0, 1] and equal sacrebleu / rouge-score
on the ids written as words.

Text rewards (``fn(hyps, refs, sources, **fields) -> list[float]`` on detokenised text, by name or
``module:function``) and which rewards decompose over tokens: :mod:`seqlab.rewards.text`.
"""

from seqlab.rewards.bleu import BleuStats, bleu_from_stats, bleu_stats, sentence_bleu
from seqlab.rewards.distance import (
    delta_reward,
    edit_distance,
    hamming_distance,
    neg_edit_distance,
    neg_hamming,
)
from seqlab.rewards.increments import next_token_rewards, prefix_rewards, reward_increments
from seqlab.rewards.registry import (
    REWARDS,
    BleuOptions,
    RewardFn,
    get_reward,
    register_reward,
    token_reward_decomposes,
)
from seqlab.rewards.rouge import lcs_length, rouge_l, rouge_n, rouge_sum
from seqlab.rewards.text import (
    TEXT_REWARDS,
    RewardSpec,
    TextReward,
    TextRewardAdapter,
    add_text_reward,
    bind_reward,
    register_text_reward,
    resolve_reward,
    text_reward,
)

__all__ = [
    "REWARDS",
    "TEXT_REWARDS",
    "BleuOptions",
    "BleuStats",
    "RewardFn",
    "RewardSpec",
    "TextReward",
    "TextRewardAdapter",
    "add_text_reward",
    "bind_reward",
    "bleu_from_stats",
    "bleu_stats",
    "delta_reward",
    "edit_distance",
    "get_reward",
    "hamming_distance",
    "lcs_length",
    "neg_edit_distance",
    "neg_hamming",
    "next_token_rewards",
    "prefix_rewards",
    "register_reward",
    "register_text_reward",
    "resolve_reward",
    "reward_increments",
    "rouge_l",
    "rouge_n",
    "rouge_sum",
    "sentence_bleu",
    "text_reward",
    "token_reward_decomposes",
]
