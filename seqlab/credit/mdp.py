"""Exact dynamic programming on an enumerable sequence MDP, for tests and for checking the algorithms.

The MDP of Dai, Xie & Hovy (2018): a state is a prefix y_<t (a tuple of regular token ids), an action is the
next token (EOS ends the sequence; at ``max_len`` tokens only EOS is allowed), the reward of action a in state
s is r = scale * (R(s + a) - R(s)) with R(prefix) = R(prefix + EOS) (so r(EOS) = 0), gamma = 1, entropy weight
tau.

* :meth:`EnumerableMDP.soft_q_star`: the optimal soft Q-function, Q*(s, a) = r + tau log sum_w exp(Q*(s', w) /
  tau).
* :meth:`EnumerableMDP.soft_q_policy`: the soft Q-function of a fixed policy, the fixed point of ERAC's critic
  target Q(s, a) = r + sum_w pi(w|s') Q(s', w) [+ tau H(pi(.|s'))].
* :class:`PrefixTable`: a tabular model behind the model protocol, one free logit vector per prefix: used as
  an exact critic / Q-network or as an arbitrary actor on the enumerable MDP.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence

import torch
from torch import nn

from seqlab.data.vocab import EOS_ID, PAD_ID
from seqlab.models.base import Encoded, Seq2SeqModel

State = tuple[int, ...]
LogPolicy = Callable[[State], torch.Tensor]  # state -> log pi(. | state) [V]


class EnumerableMDP:
    """Sequences over ``tokens`` of length <= ``max_len``; ``reward`` maps a content tuple (no EOS) to R."""

    def __init__(
        self,
        reward: Callable[[State], float] | Mapping[State, float],
        tokens: Sequence[int],
        max_len: int,
        vocab_size: int,
        scale: float = 1.0,
    ):
        self._reward = reward if callable(reward) else (lambda s, table=dict(reward): float(table[s]))
        self.tokens, self.max_len, self.vocab_size, self.scale = list(tokens), max_len, vocab_size, scale

    # ---------------------------------------------------------------- structure
    def R(self, state: State) -> float:
        return float(self._reward(tuple(state)))

    def states(self) -> list[State]:
        """Every non-terminal state (prefix), shortest first."""
        return [p for n in range(self.max_len + 1) for p in itertools.product(self.tokens, repeat=n)]

    def sequences(self) -> list[State]:
        """Every complete sequence (content without EOS)."""
        return self.states()

    def actions(self, state: State) -> list[int]:
        return [EOS_ID] if len(state) >= self.max_len else [EOS_ID, *self.tokens]

    def action_mask(self, state: State) -> torch.Tensor:
        mask = torch.zeros(self.vocab_size, dtype=torch.bool)
        mask[self.actions(state)] = True
        return mask

    def step_reward(self, state: State, action: int) -> float:
        if action == EOS_ID:
            return 0.0
        return self.scale * (self.R(state + (action,)) - self.R(state))

    def return_of(self, seq: State) -> float:
        """sum_t r_t = scale * (R(y) - R(empty))."""
        return self.scale * (self.R(seq) - self.R(()))

    # ---------------------------------------------------------------- dynamic programming
    def soft_q_star(self, tau: float) -> dict[State, torch.Tensor]:
        """Optimal soft Q-values [V] per state (float64, -inf on forbidden actions); tau = 0: hard max."""
        q: dict[State, torch.Tensor] = {}
        for state in reversed(self.states()):
            row = torch.full((self.vocab_size,), -math.inf, dtype=torch.float64)
            for a in self.actions(state):
                nxt = 0.0 if a == EOS_ID else self._value(q[state + (a,)], tau)
                row[a] = self.step_reward(state, a) + nxt
            q[state] = row
        return q

    @staticmethod
    def _value(q_row: torch.Tensor, tau: float) -> float:
        return float(q_row.max()) if tau == 0 else float(tau * torch.logsumexp(q_row / tau, 0))

    def soft_q_policy(
        self, log_policy: LogPolicy, tau: float, future_entropy: bool = True
    ) -> dict[State, torch.Tensor]:
        """Q^pi: Q(s, a) = r + sum_w pi(w|s') Q(s', w) + [future_entropy] tau H(pi(.|s')), 0 after EOS."""
        q: dict[State, torch.Tensor] = {}
        for state in reversed(self.states()):
            row = torch.full((self.vocab_size,), -math.inf, dtype=torch.float64)
            for a in self.actions(state):
                nxt = 0.0
                if a != EOS_ID:
                    s2 = state + (a,)
                    logp = log_policy(s2).detach().double()
                    allowed = self.action_mask(s2)
                    p = logp.exp() * allowed
                    nxt = float((p * torch.where(allowed, q[s2], 0.0)).sum())
                    if future_entropy and tau > 0:
                        nxt += float(-(p * torch.where(p > 0, logp, 0.0)).sum()) * tau
                row[a] = self.step_reward(state, a) + nxt
            q[state] = row
        return q

    # ---------------------------------------------------------------- distributions
    def sequence_log_prob(self, log_policy: LogPolicy, seq: State) -> float:
        total = 0.0
        for t in range(len(seq) + 1):
            a = seq[t] if t < len(seq) else EOS_ID
            total += float(log_policy(tuple(seq[:t])).detach()[a])
        return total

    def raml_distribution(self, tau: float) -> torch.Tensor:
        """exp(return(y) / tau) / Z over :meth:`sequences` (the sequence-level RAML target)."""
        r = torch.tensor([self.return_of(s) for s in self.sequences()], dtype=torch.float64)
        return torch.softmax(r / tau, 0)

    @staticmethod
    def q_policy(q: Mapping[State, torch.Tensor], tau: float) -> LogPolicy:
        """log softmax(Q(s, .) / tau) as a policy."""
        return lambda s: torch.log_softmax(q[tuple(s)] / tau, 0)

    # ---------------------------------------------------------------- tensors
    def targets(self, seqs: Sequence[State] | None = None) -> torch.Tensor:
        """Sequences in the target convention (content, EOS, PAD), [N, max_len + 1]."""
        seqs = self.sequences() if seqs is None else seqs
        out = torch.full((len(seqs), self.max_len + 1), PAD_ID, dtype=torch.long)
        for i, s in enumerate(seqs):
            out[i, : len(s)] = torch.tensor(s, dtype=torch.long)
            out[i, len(s)] = EOS_ID
        return out

    def reward_fn(self) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        """The table reward as a batched reward on token ids (the reference is implied by the table)."""

        def fn(hyp: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
            return torch.tensor([self.R(content(row)) for row in hyp.tolist()], dtype=torch.float)

        return fn

    def q_tensor(self, q: Mapping[State, torch.Tensor], tokens: torch.Tensor) -> torch.Tensor:
        """Q(y_<t, .) for every position of ``tokens`` [N, T] -> [N, T, V] (past EOS: the last state)."""
        rows = []
        for row in tokens.tolist():
            states = prefix_states(row, self.max_len)
            rows.append(torch.stack([q[s] for s in states]))
        return torch.stack(rows)


def content(row: Sequence[int]) -> State:
    """Token ids before the first EOS / PAD."""
    out = []
    for t in row:
        if t in (EOS_ID, PAD_ID):
            break
        out.append(int(t))
    return tuple(out)


def prefix_states(row: Sequence[int], max_len: int | None = None) -> list[State]:
    """The state y_<t for every position t of a target row (positions past the end keep the full content)."""
    body = content(row)
    if max_len is not None:
        body = body[:max_len]
    return [body[: min(t, len(body))] for t in range(len(row))]


class PrefixTable(Seq2SeqModel):
    """Logits = a free vector per prefix state of ``mdp`` plus -inf on the actions the MDP forbids there.

    Behind the model protocol (encode / decode / init_state / step); the source is ignored."""

    def __init__(self, mdp: EnumerableMDP, init_std: float = 0.0, seed: int = 0):
        super().__init__()
        self.mdp, self.vocab_size = mdp, mdp.vocab_size
        self.index = {s: i for i, s in enumerate(mdp.states())}
        g = torch.Generator().manual_seed(seed)
        self.table = nn.Parameter(init_std * torch.randn(len(self.index), mdp.vocab_size, generator=g))
        bias = torch.stack([torch.where(mdp.action_mask(s), 0.0, -math.inf) for s in mdp.states()])
        self.register_buffer("bias", bias)

    def rows(self, prefixes: torch.Tensor) -> torch.Tensor:
        """Decoder inputs [N, T] (BOS, y_1, ..) -> state row of every position [N, T]."""
        out = []
        for row in prefixes.tolist():
            states = prefix_states(row[1:] + [PAD_ID], self.mdp.max_len)
            out.append([self.index[s] for s in states])
        return torch.tensor(out, dtype=torch.long, device=prefixes.device)

    def encode(self, src: torch.Tensor) -> Encoded:
        return Encoded(torch.zeros(src.size(0), 1, 1), torch.zeros(src.size(0), 1, dtype=torch.bool))

    def decode(self, enc: Encoded, tgt_in: torch.Tensor) -> torch.Tensor:
        idx = self.rows(tgt_in)
        return self.table[idx] + self.bias[idx]

    def init_state(self, enc: Encoded) -> dict:
        return {"prefix": torch.zeros(enc.memory.size(0), 0, dtype=torch.long)}

    def step(self, enc: Encoded, tokens: torch.Tensor, state: dict) -> tuple[torch.Tensor, dict]:
        prefix = torch.cat([state["prefix"], tokens[:, None]], 1)
        return self.decode(enc, prefix)[:, -1], {"prefix": prefix}

    @torch.no_grad()
    def load_q(self, q: Mapping[State, torch.Tensor]) -> None:
        """Set the table to given Q-values (forbidden actions stay -inf through the bias)."""
        for s, i in self.index.items():
            self.table[i] = torch.where(torch.isfinite(q[s]), q[s], 0.0).float()
