"""Token-level credit assignment on batches: rewards, soft values, TD targets and actor coefficients.

Conventions (those of :mod:`seqlab.models.base`): a sequence row is ``y_1 .. y_m, EOS, PAD ..``.  Position
``t`` (0-based) is the decision taken in state ``s_t = y_<t``; its action is ``tokens[:, t]``, so ``Q`` tensors
are [N, T, V] with ``Q[:, t]`` = Q(y_<t, .), exactly the layout of a decoder's logits under teacher forcing.
Choosing EOS moves to the terminal state, whose value is 0.

Rewards are per-token increments from :func:`seqlab.rewards.reward_increments` (prefix semantics: R of an
unfinished prefix is R(prefix + EOS), so  r_t = s * (R(y_<=t) - R(y_<t)),  sum_t r_t = s * (R(y) - R(empty))
and the EOS action has r = 0; ``s`` is the reward scale, see docs/credit.md).

A Q of ``-inf`` marks an action that cannot be taken (PAD and BOS always, see
:func:`seqlab.models.base.mask_special`); every function here treats such entries as absent.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from seqlab.data.vocab import EOS_ID, PAD_ID


# --------------------------------------------------------------------------- masks and values
def finite(x: torch.Tensor) -> torch.Tensor:
    """torch.isfinite in two kernels instead of its four (|x| < inf: False for +-inf and NaN alike); these masks
    run over [N, T, V] tensors, so each pass saved is one read of the vocabulary-wide tensor."""
    return x.abs() < math.inf


def next_state_mask(tokens: torch.Tensor) -> torch.Tensor:
    """[N, T] True where the action at t leads to a non-terminal state whose values sit at t+1."""
    live = tokens.ne(PAD_ID) & tokens.ne(EOS_ID)
    nxt = F.pad(tokens[:, 1:], (0, 1), value=PAD_ID).ne(PAD_ID)
    return live & nxt


def shift_next(values: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """values [N, T] of states s_t -> values of s_{t+1} at position t, 0 where s_{t+1} is terminal."""
    nxt = F.pad(values[:, 1:], (0, 1))
    return torch.where(next_state_mask(tokens), nxt, 0.0)


def soft_value(q: torch.Tensor, tau: float) -> torch.Tensor:
    """V(s) = tau * log sum_w exp(Q(s, w) / tau) over the allowed actions; max_w Q for tau = 0."""
    if tau == 0:
        return q.max(-1).values
    return tau * torch.logsumexp(q / tau, dim=-1)


def soft_policy(q: torch.Tensor, tau: float) -> torch.Tensor:
    """P_Q(w | s) = softmax(Q(s, .) / tau) (0 on forbidden actions)."""
    return torch.softmax(q / tau, dim=-1)


def expectation(probs: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """sum_w p(w) v(w), skipping entries where p = 0 or v = -inf (forbidden actions)."""
    return (probs * torch.where(finite(values), values, 0.0)).sum(-1)  # p = 0 gives 0 * v = 0: no second mask


def entropy(log_probs: torch.Tensor) -> torch.Tensor:
    """H(pi) = -sum_w pi(w) log pi(w), with 0 log 0 = 0."""
    probs = log_probs.exp()
    return -expectation(probs, log_probs)


# --------------------------------------------------------------------------- VAML: soft Q-learning
def soft_bellman_residual(q: torch.Tensor, tokens: torch.Tensor, rewards: torch.Tensor, tau: float) -> torch.Tensor:
    """Q(s_t, a_t) - [r_t + V(s_{t+1})] with V the soft value of the *same* Q (no target network), [N, T]."""
    q_taken = q.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
    v_next = shift_next(soft_value(q, tau), tokens)
    valid = tokens.ne(PAD_ID)
    return torch.where(valid, q_taken - (rewards + v_next), 0.0)


def vaml_coefficients(q: torch.Tensor, tau: float) -> torch.Tensor:
    """VAML's token-level target distribution P_Q(. | y_<t) = softmax(Q / tau), [N, T, V] (detached)."""
    return soft_policy(q.detach().float(), tau)


# --------------------------------------------------------------------------- ERAC
def erac_next_value(
    tokens: torch.Tensor, log_pi: torch.Tensor, q_bar: torch.Tensor, tau: float, future_entropy: bool = True
) -> torch.Tensor:
    """V_bar(s_{t+1}) = sum_w pi(w | y_<=t) Q_bar(y_<=t, w) + tau H(pi(. | y_<=t)) at position t, [N, T]
    (0 where s_{t+1} is terminal; detached).

    ``log_pi`` and ``q_bar`` are [N, T, V] on the same positions as the tokens (index t+1 is the next state);
    ``future_entropy=False`` drops the tau H term (the actor keeps it)."""
    log_pi, q_bar = log_pi.detach().float(), q_bar.detach().float()
    probs = log_pi.exp()
    v = expectation(probs, q_bar)
    if future_entropy and tau > 0:
        v = v - tau * expectation(probs, log_pi)  # + tau H(pi), with pi computed once
    return shift_next(v, tokens).detach()


def erac_critic_target(
    rewards: torch.Tensor,
    tokens: torch.Tensor,
    log_pi: torch.Tensor,
    q_bar: torch.Tensor,
    tau: float,
    future_entropy: bool = True,
) -> torch.Tensor:
    """Q^_t = r_t + V_bar(s_{t+1}) (:func:`erac_next_value`), [N, T] (detached)."""
    return (rewards + erac_next_value(tokens, log_pi, q_bar, tau, future_entropy)).detach()


def other_action_targets(action_rewards: torch.Tensor, next_value: torch.Tensor) -> torch.Tensor:
    """Targets for every action of a visited state: r(s_t, w) + V_bar(s_{t+1}) for w != EOS, 0 for EOS, [N, T, V].

    The actions the actor did not sample get the sampled path's next-state value (the approximation of
    Bahdanau et al. 2017), so only their immediate rewards tell them apart.  For the sampled action this is
    exactly the TD target Q^_t.  ``action_rewards`` [N, T, V] comes from :func:`action_rewards`."""
    target = action_rewards.float() + next_value.float()[..., None]
    target[..., EOS_ID] = 0.0  # EOS ends the episode: r = 0 and no future
    return target.detach()


def action_rewards(
    reward_fn: Any, tokens: torch.Tensor, refs: torch.Tensor, vocab_size: int, scale_by_length: bool = False
) -> torch.Tensor:
    """r(s_t, w) = R(y_<t w) - R(y_<t) for every position t of ``tokens`` [N, T] and every id w, [N, T, V].

    One batched :func:`seqlab.rewards.next_token_rewards` call on the N*T prefixes y_<t; at the sampled
    token it equals :func:`seqlab.rewards.reward_increments`."""
    from seqlab.rewards import next_token_rewards

    n, t = tokens.shape
    pos = torch.arange(t, device=tokens.device)
    prefixes = tokens[:, None, :].expand(n, t, t).masked_fill(pos[None, None, :] >= pos[None, :, None], PAD_ID)
    with torch.no_grad():
        r = next_token_rewards(
            reward_fn,
            prefixes.reshape(n * t, t),
            refs.repeat_interleave(t, 0),
            vocab_size,
            scale_by_length=scale_by_length,
        )
    return r.view(n, t, vocab_size)


def value_variance(q: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """sum_w (Q(w) - mean_w Q)^2 over the allowed actions (``"sum"``) or its mean (``"mean"``), [N, T]."""
    allowed = finite(q)
    count = allowed.sum(-1).clamp(min=1)
    q0 = torch.where(allowed, q, 0.0)
    mean = q0.sum(-1, keepdim=True) / count[..., None]
    sq = torch.where(allowed, (q0 - mean).pow(2), 0.0).sum(-1)
    if reduction == "sum":
        return sq
    if reduction == "mean":
        return sq / count
    raise ValueError(f"variance reduction must be 'mean' or 'sum', got {reduction!r}")


def critic_loss(
    q: torch.Tensor,
    tokens: torch.Tensor,
    target: torch.Tensor,
    var_weight: float = 0.0,
    var_reduction: str = "mean",
    other_targets: torch.Tensor | None = None,
    other_weight: float = 0.0,
) -> torch.Tensor:
    """sum_t [(Q(s_t, a_t) - Q^_t)^2 / 2 + lambda_var * spread_w Q(s_t, w)
    + lambda_other * mean_{w != a_t} (Q(s_t, w) - target(s_t, w))^2 / 2] over valid positions.

    The last term (``other_targets`` [N, T, V], :func:`other_action_targets`) trains the actions not taken,
    which the TD term alone never reaches; the mean runs over the allowed actions other than a_t."""
    valid = tokens.ne(PAD_ID)
    q_taken = q.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
    td = torch.where(valid, q_taken - target.detach(), 0.0)
    loss = 0.5 * td.pow(2).sum()
    if var_weight > 0:
        loss = loss + var_weight * (value_variance(q, var_reduction) * valid).sum()
    if other_targets is not None and other_weight > 0:
        others = finite(q) & ~F.one_hot(tokens, q.size(-1)).bool()
        diff = torch.where(others, q - other_targets.detach(), 0.0)
        per_state = 0.5 * diff.pow(2).sum(-1) / others.sum(-1).clamp(min=1)
        loss = loss + other_weight * (per_state * valid).sum()
    return loss


def entropy_signal(log_pi: torch.Tensor, keep: torch.Tensor, l2_normalize: bool = False) -> torch.Tensor:
    """log pi on the ``keep`` entries (0 elsewhere); ``l2_normalize`` divides it by its L2 norm over the vocabulary
    at each position, as the authors' train_erac.py does in the actor's signal (which shrinks tau's effect by that
    norm, large for a vocabulary of thousands)."""
    signal = torch.where(keep, log_pi, 0.0)
    if l2_normalize:
        signal = signal / (1e-8 + signal.norm(p=2, dim=-1, keepdim=True))
    return signal


def actor_coefficients(log_pi: torch.Tensor, q: torch.Tensor, tau: float, l2_log_pi: bool = False) -> torch.Tensor:
    """Dense coefficients c = pi * (Q - tau log pi) over the vocabulary, [N, T, V] (detached).

    With the one loss  -sum <c, log pi>  their gradient is exactly that of  -sum_t [sum_w pi(w) Q(w) + tau
    H(pi)] (sum_w pi(w) grad log pi(w) = 0, so no baseline is needed and a constant shift of Q changes
    nothing). Forbidden actions (pi = 0 or Q = -inf) get 0.  ``l2_log_pi`` uses log pi / ||log pi||_2 in place of
    log pi (:func:`entropy_signal`; the authors' code), which is no longer the gradient of tau H."""
    probs, _, adv = soft_advantages(log_pi, q, tau, l2_log_pi)
    return probs * adv


def soft_advantages(
    log_pi: torch.Tensor, q: torch.Tensor, tau: float, l2_log_pi: bool = False
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(pi, the allowed actions, A = Q - tau log pi on them and 0 elsewhere), all detached float [N, T, V]: what
    :func:`actor_coefficients` and its normalised variant weight."""
    log_pi, q = log_pi.detach().float(), q.detach().float()
    probs = log_pi.exp()
    keep = (probs > 0) & finite(q) & finite(log_pi)
    adv = torch.where(keep, q - tau * entropy_signal(log_pi, keep, l2_log_pi), 0.0)
    return probs, keep, adv


def preferred_action_stats(q: torch.Tensor, log_pi: torch.Tensor, tokens: torch.Tensor) -> dict[str, torch.Tensor]:
    """What the critic asks the actor to do, over the valid states of ``tokens`` [N, T] (Q, log pi [N, T, V]):
    ``q_argmax_eos`` the share of states whose argmax_w Q(s, w) is EOS, ``q_argmax_is_pi_argmax`` the share
    where it is the actor's own most likely token, ``pi_of_q_argmax`` the actor's mean probability of it, and
    ``sample_length`` the mean number of sampled tokens (EOS included)."""
    valid = tokens.ne(PAD_ID)
    mask = valid.float()
    n = mask.sum().clamp(min=1)
    log_pi = log_pi.detach()
    best = q.detach().argmax(-1)
    pi_best = log_pi.gather(-1, best.unsqueeze(-1)).squeeze(-1).float().exp()  # pi of the critic's argmax only
    stats = [
        (best.eq(EOS_ID).float() * mask).sum() / n,
        (best.eq(log_pi.argmax(-1)).float() * mask).sum() / n,
        (pi_best * mask).sum() / n,
        mask.sum(1).mean(),
    ]  # on the device: read when the trainer logs them
    names = ("q_argmax_eos", "q_argmax_is_pi_argmax", "pi_of_q_argmax", "sample_length")
    return dict(zip(names, stats, strict=True))


def finite_log_probs(log_probs: torch.Tensor) -> torch.Tensor:
    """log-probabilities with -inf (PAD, BOS) replaced by 0, so that 0 * log p stays 0 in the one loss."""
    return torch.where(finite(log_probs), log_probs, 0.0)
