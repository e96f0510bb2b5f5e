"""Encoding corpora to ids, length-bucketed token-budget batching (DDP-aware, resumable) and collation.

Batching recipe of one epoch (the same on every rank, from ``(seed, epoch)`` only):

1. shuffle the example indices, cut them into chunks of ``chunk_size`` examples;
2. inside each chunk, sort by length (stable, so equal lengths keep their shuffled order) and cut greedily
   into batches whose padded size ``batch_size * max(max src length, max tgt length)`` is at most
   ``max_tokens`` (and at most ``max_sentences`` examples);
3. shuffle the order of all batches;
4. DDP: make the number of batches a multiple of ``world_size`` by splitting the largest batches in two
   (no example is duplicated or dropped), then order them in rounds of ``world_size`` batches of neighbouring
   widths, the rounds shuffled; rank ``r`` takes batches ``r, r + world_size, ...`` (one of every round), so
   every rank gets the same number of batches and the ranks of one step get batches of about the same shape.
   Only when there are fewer examples than ranks is a batch repeated (the *padding rule*: the first batches
   are reused until every rank has one).

Lengths count the EOS token.  A single example longer than ``max_tokens`` is an error (raise the budget or
set ``max_len`` in :func:`encode_corpus`).
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from seqlab.data.corpus import Corpus
from seqlab.data.errors import DataWarning
from seqlab.data.tokenizers import Tokenizer
from seqlab.data.vocab import EOS_ID, PAD_ID


class RaggedIds(Sequence[np.ndarray]):
    """Variable-length int32 id rows in one flat buffer: row ``i`` is ``data[offsets[i]:offsets[i + 1]]``."""

    def __init__(self, data: np.ndarray, offsets: np.ndarray):
        self.data = np.asarray(data, dtype=np.int32)
        self.offsets = np.asarray(offsets, dtype=np.int64)
        if self.offsets.ndim != 1 or len(self.offsets) < 1 or self.offsets[-1] != len(self.data):
            raise ValueError("offsets must be [N + 1] and end at len(data)")
        self.lengths = np.diff(self.offsets)

    @classmethod
    def from_lists(cls, rows: Sequence[Sequence[int]], append_eos: bool = True) -> RaggedIds:
        """Pack id lists (optionally each followed by EOS) without per-token Python work."""
        lens = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
        tokens = np.fromiter(itertools.chain.from_iterable(rows), dtype=np.int32, count=int(lens.sum()))
        extra = 1 if append_eos else 0
        offsets = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(lens + extra, out=offsets[1:])
        if not append_eos:
            return cls(tokens, offsets)
        data = np.empty(int(offsets[-1]), dtype=np.int32)
        is_token = np.ones(len(data), dtype=bool)
        is_token[offsets[1:] - 1] = False
        data[is_token] = tokens
        data[offsets[1:] - 1] = EOS_ID
        return cls(data, offsets)

    def __len__(self) -> int:
        return len(self.lengths)

    def __getitem__(self, i: int) -> np.ndarray:  # type: ignore[override]
        i = range(len(self))[i]
        return self.data[self.offsets[i] : self.offsets[i + 1]]

    def pad(self, indices: Sequence[int] | np.ndarray, pad_id: int = PAD_ID) -> np.ndarray:
        """[B, max length] int64 matrix of rows ``indices``, right-padded with ``pad_id`` (vectorized)."""
        idx = np.asarray(indices, dtype=np.int64)
        lens = self.lengths[idx]
        width = int(lens.max()) if len(idx) else 0
        cols = np.arange(width)
        mask = cols[None, :] < lens[:, None]
        pos = np.where(mask, self.offsets[idx][:, None] + cols[None, :], 0)
        out = self.data[pos].astype(np.int64) if len(self.data) else np.zeros(pos.shape, dtype=np.int64)
        out[~mask] = pad_id
        return out


@dataclass
class EncodedCorpus:
    """Id rows (EOS appended) of a corpus's examples that survived the length filter.

    ``src[i]`` / ``tgt[i]`` are int32 arrays; ``index[i]`` is the corpus example that encoded example ``i``
    came from and ``group[i]`` its source group."""

    src: RaggedIds
    tgt: RaggedIds
    index: np.ndarray
    group: np.ndarray
    num_truncated: int = 0
    num_dropped: int = 0

    def __post_init__(self) -> None:
        if not (len(self.src) == len(self.tgt) == len(self.index) == len(self.group)):
            raise ValueError("src, tgt, index and group must have the same length")

    def __len__(self) -> int:
        return len(self.src)

    @property
    def src_lengths(self) -> np.ndarray:
        return self.src.lengths

    @property
    def tgt_lengths(self) -> np.ndarray:
        return self.tgt.lengths

    def lengths(self) -> np.ndarray:
        """[N, 2] int array of (source length, target length), EOS included (what the sampler needs)."""
        return np.stack([self.src.lengths, self.tgt.lengths], axis=1)


def encode_corpus(
    corpus: Corpus, src_tok: Tokenizer, tgt_tok: Tokenizer, max_len: int | None = None, on_long: str = "drop"
) -> EncodedCorpus:
    """Encode every example to int32 id arrays with EOS appended.

    Examples whose source or target (EOS included) exceeds ``max_len`` are dropped (``on_long="drop"``,
    the default: truncated targets teach wrong endings) or truncated to ``max_len`` keeping the final EOS
    (``on_long="truncate"``); a DataWarning gives the count."""
    if on_long not in ("drop", "truncate"):
        raise ValueError(f"on_long must be 'drop' or 'truncate', got {on_long!r}")
    if max_len is not None and max_len < 2:
        raise ValueError(f"max_len must be at least 2 (one token and EOS), got {max_len}")
    src_ids = src_tok.encode_batch(corpus.sources)
    tgt_ids = tgt_tok.encode_batch(corpus.targets)
    n = len(src_ids)
    src_len = np.fromiter(map(len, src_ids), dtype=np.int64, count=n)
    tgt_len = np.fromiter(map(len, tgt_ids), dtype=np.int64, count=n)
    truncated = dropped = 0
    keep = np.arange(n)
    if max_len is not None:
        long = (src_len >= max_len) | (tgt_len >= max_len)
        if on_long == "drop":
            dropped = int(long.sum())
            keep = np.flatnonzero(~long)
        else:
            truncated = int(long.sum())
            for i in np.flatnonzero(long).tolist():
                src_ids[i], tgt_ids[i] = src_ids[i][: max_len - 1], tgt_ids[i][: max_len - 1]
    if dropped or truncated:
        what = f"dropped {dropped}" if dropped else f"truncated {truncated}"
        warnings.warn(
            f"{corpus.name or 'corpus'}: {what} of {len(corpus)} examples longer than max_len={max_len}",
            DataWarning,
            stacklevel=2,
        )
    keep_list = keep.tolist()
    if len(keep_list) < n:
        src_ids, tgt_ids = [src_ids[i] for i in keep_list], [tgt_ids[i] for i in keep_list]
    src, tgt = RaggedIds.from_lists(src_ids), RaggedIds.from_lists(tgt_ids)
    index = keep.astype(np.int64)
    group = np.asarray(corpus.group, dtype=np.int64)[index] if len(index) else np.zeros(0, dtype=np.int64)
    return EncodedCorpus(src, tgt, index, group, truncated, dropped)


@dataclass
class Batch:
    """A padded training batch: ``src`` [B, S] and ``tgt`` [B, T] (tokens + EOS, PAD-padded, no BOS).

    ``index`` [B] holds the corpus example index of each row (``EncodedCorpus.index``)."""

    src: torch.Tensor
    tgt: torch.Tensor
    index: torch.Tensor | None = None
    num_tgt_tokens: int = -1  # non-PAD target tokens (EOS included); computed when not given

    def __post_init__(self) -> None:
        if self.num_tgt_tokens < 0:
            self.num_tgt_tokens = int(self.tgt.ne(PAD_ID).sum())

    def __len__(self) -> int:
        return self.src.size(0)

    @property
    def num_src_tokens(self) -> int:
        return int(self.src.ne(PAD_ID).sum())

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        idx = None if self.index is None else self.index.to(device, non_blocking=non_blocking)
        return Batch(
            self.src.to(device, non_blocking=non_blocking),
            self.tgt.to(device, non_blocking=non_blocking),
            idx,
            self.num_tgt_tokens,
        )

    def pin_memory(self) -> Batch:
        idx = None if self.index is None else self.index.pin_memory()
        return Batch(self.src.pin_memory(), self.tgt.pin_memory(), idx, self.num_tgt_tokens)


def batch_dims(encoded: EncodedCorpus, indices: Sequence[int] | np.ndarray) -> tuple[int, int, int]:
    """(rows, source width, target width) of the batch :func:`collate` makes of ``indices``, without making it."""
    idx = np.asarray(indices, dtype=np.int64)
    return len(idx), int(encoded.src.lengths[idx].max(initial=0)), int(encoded.tgt.lengths[idx].max(initial=0))


def collate(encoded: EncodedCorpus, indices: Sequence[int]) -> Batch:
    """The padded batch of encoded examples ``indices`` (positions in ``encoded``, as the sampler yields)."""
    idx = np.asarray(indices, dtype=np.int64)
    src = torch.from_numpy(encoded.src.pad(idx))
    tgt = torch.from_numpy(encoded.tgt.pad(idx))
    return Batch(src, tgt, torch.from_numpy(encoded.index[idx]), int(encoded.tgt.lengths[idx].sum()))


class TokenBatchSampler:
    """Length-bucketed batches under a padded-token budget; deterministic, DDP-sharded and resumable.

    ``lengths``: [N] or [N, 2] (source, target) lengths; the budget counts ``batch size * max length``.
    Iterating yields lists of example indices for this rank, continuing from the saved position:
    ``state_dict()`` after k batches, loaded into a fresh sampler, resumes at batch k + 1.  Call
    ``set_epoch(e)`` before each epoch (a new epoch restarts at its first batch; the current epoch keeps
    its position).  Iterating an epoch that was already completed restarts it."""

    def __init__(
        self,
        lengths: Sequence[int] | np.ndarray,
        max_tokens: int = 4096,
        max_sentences: int | None = None,
        shuffle: bool = True,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        chunk_size: int = 16384,
    ):
        lens = np.asarray(lengths, dtype=np.int64)
        if lens.ndim == 2:
            self.sort_key = lens.max(axis=1) * (int(lens.max(initial=0)) + 1) + lens[:, 0]
            lens = lens.max(axis=1)
        elif lens.ndim == 1:
            self.sort_key = lens
        else:
            raise ValueError(f"lengths must have shape [N] or [N, 2], got {lens.shape}")
        if len(lens) == 0:
            raise ValueError("TokenBatchSampler: no examples")
        if max_tokens < 1 or (max_sentences is not None and max_sentences < 1) or chunk_size < 1:
            raise ValueError("max_tokens, max_sentences and chunk_size must be positive")
        too_long = int((lens > max_tokens).sum())
        if too_long:
            raise ValueError(
                f"{too_long} examples are longer than max_tokens={max_tokens} (longest "
                f"{int(lens.max())}); raise max_tokens or set max_len when encoding"
            )
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world_size {world_size}")
        self.lengths = lens
        self.max_tokens, self.max_sentences = int(max_tokens), max_sentences
        self.shuffle, self.seed, self.chunk_size = shuffle, int(seed), int(chunk_size)
        self.rank, self.world_size = int(rank), int(world_size)
        self.epoch, self.position = 0, 0
        self._plan_cache: tuple[int, list[np.ndarray]] | None = None
        self._rounds_cache: tuple[int, list[np.ndarray]] | None = None

    # -------------------------------------------------------------------------------- planning
    def _batches_of_chunk(self, chunk: np.ndarray) -> list[np.ndarray]:
        order = chunk[np.argsort(self.sort_key[chunk], kind="stable")]
        lens = self.lengths[order]
        cap_sent = self.max_sentences or len(order)
        out, s, n = [], 0, len(order)
        while s < n:
            cap = min(self.max_tokens // int(lens[s]), cap_sent, n - s)
            window = lens[s : s + cap]
            k = int((np.arange(1, cap + 1) * window <= self.max_tokens).sum())  # sizes 1..k fit (monotone)
            out.append(order[s : s + k])
            s += k
        return out

    def _global_batches(self, epoch: int) -> list[np.ndarray]:
        n = len(self.lengths)
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, epoch]))
        perm = rng.permutation(n) if self.shuffle else np.arange(n)
        batches: list[np.ndarray] = []
        for start in range(0, n, self.chunk_size):
            batches.extend(self._batches_of_chunk(perm[start : start + self.chunk_size]))
        if self.shuffle:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        ws = self.world_size
        while len(batches) % ws:
            sizes = np.fromiter((len(b) for b in batches), dtype=np.int64, count=len(batches))
            j = int(sizes.argmax())
            if sizes[j] < 2:  # fewer examples than ranks: repeat batches (the padding rule)
                need = ws - len(batches) % ws
                batches.extend(batches[i % len(batches)] for i in range(need))
                break
            b, half = batches[j], int(sizes[j]) // 2
            batches[j : j + 1] = [b[:half], b[half:]]
        if ws > 1 and self.shuffle:
            batches = self._aligned_rounds(batches, rng)
        return batches

    def _aligned_rounds(self, batches: list[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
        """DDP: the batches in rounds of ``world_size`` neighbours by width (a round is one step of every rank),
        the rounds in random order.  Ranks that step together then get batches of about the same shape, so none
        waits long for the others at the gradient all-reduce (randomly paired, a short-sentence batch and a
        long-sentence one take different times under the same token budget)."""
        widths = np.fromiter((int(self.lengths[b].max()) for b in batches), dtype=np.int64, count=len(batches))
        rounds = np.argsort(widths, kind="stable").reshape(-1, self.world_size)
        return [batches[i] for i in rounds[rng.permutation(len(rounds))].reshape(-1)]

    def plan(self, epoch: int | None = None) -> list[np.ndarray]:
        """All of this rank's batches (index arrays) of ``epoch`` (default: the current one)."""
        epoch = self.epoch if epoch is None else int(epoch)
        if self._plan_cache is None or self._plan_cache[0] != epoch:
            self._plan_cache = (epoch, self._all_batches(epoch)[self.rank :: self.world_size])
        return self._plan_cache[1]

    def _all_batches(self, epoch: int) -> list[np.ndarray]:
        if self._rounds_cache is None or self._rounds_cache[0] != epoch:
            self._rounds_cache = (epoch, self._global_batches(epoch))
        return self._rounds_cache[1]

    def round_at(self, position: int) -> list[np.ndarray]:
        """The batches every rank takes at ``position`` of the current epoch (rank order), without communication:
        each rank plans the whole epoch alike (e.g. so that all pad a step to the same shape)."""
        ws = self.world_size
        return self._all_batches(self.epoch)[position * ws : (position + 1) * ws]

    # -------------------------------------------------------------------------------- iteration
    def set_epoch(self, epoch: int) -> None:
        """Select the epoch; a different epoch than the current one starts at its first batch."""
        if int(epoch) != self.epoch:
            self.epoch, self.position = int(epoch), 0

    def __len__(self) -> int:
        """Number of batches of this rank in the current epoch (the whole epoch, not what is left)."""
        return len(self.plan())

    def remaining(self) -> int:
        """Batches left in the current epoch."""
        n = len(self.plan())
        return n - self.position if self.position < n else n

    def __iter__(self) -> Iterator[list[int]]:
        batches = self.plan()
        if self.position >= len(batches):
            self.position = 0
        while self.position < len(batches):
            b = batches[self.position]
            self.position += 1
            yield b.tolist()

    # -------------------------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "position": self.position,
            "seed": self.seed,
            "world_size": self.world_size,
            "num_examples": len(self.lengths),
            "max_tokens": self.max_tokens,
            "max_sentences": self.max_sentences,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore epoch and position.  Settings that changed since saving (seed, data, budget, world size)
        change the epoch's batches: a DataWarning says so and the position is kept (scaled for world size)."""
        changed = [
            k
            for k in ("seed", "num_examples", "max_tokens", "max_sentences", "world_size")
            if k in state and state[k] != self.state_dict()[k]
        ]
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
        if changed:
            warnings.warn(
                f"TokenBatchSampler: resuming with changed {', '.join(changed)}; the rest of epoch "
                f"{self.epoch} is only approximately the remaining data",
                DataWarning,
                stacklevel=2,
            )
            if "world_size" in changed:
                self.position = self.position * int(state["world_size"]) // self.world_size


def iterate_batches(
    encoded: EncodedCorpus, sampler: TokenBatchSampler, device: torch.device | str | None = None
) -> Iterator[Batch]:
    """Collated batches of ``sampler``'s current epoch (moved to ``device`` when given)."""
    for indices in sampler:
        batch = collate(encoded, indices)
        yield batch if device is None else batch.to(device)
