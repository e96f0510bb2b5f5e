"""Text rewards: ``fn(hyps: list[str], refs: list[list[str]], sources: list[str], **fields) -> list[float]``.

A text reward scores detokenised text, as evaluation sees it: hypotheses and references are decoded from token ids
by the run's target tokenizer (``Tokenizer.decode``: up to the first EOS, specials dropped), sources by its source
tokenizer; ``refs[i]`` holds the references of row ``i`` (one in training: the example's target).  No extra
``fields`` are passed today; accept ``**fields`` so that later ones do not break the function.

An algorithm takes one by its ``reward`` option in any of three forms:

* ``algorithm.options.reward=mypkg.rewards:chrf`` (``module:function``): imported wherever the config is loaded,
  so ``seqlab compare`` runs and ``torchrun`` workers find it as long as the module is importable there;
* a name registered with :func:`register_text_reward` by a plugin (``--plugin`` / ``$SEQLAB_PLUGINS`` / entry
  points, which subprocesses inherit);
* a Python callable given to ``seqlab.train(..., reward=fn)`` (in-process only; :func:`add_text_reward`).

**Decomposition.**  A reward *decomposes over tokens* when it may be scored on every token prefix (an unfinished
prefix as if it ended there) and treats every token absent from the references alike: then the increments
ΔR(w | y_<t, y*) that interpolation, mixer_anneal, vaml, ac and erac learn from are meaningful, and seqlab computes
them by scoring prefixes (:mod:`seqlab.rewards.increments`).  Corpus-level or learned rewards (COMET, a QE model,
BLEU on detokenised text) do not; a text reward is non-decomposable unless it says otherwise
(``@text_reward(decomposes=True)``, or ``fn.decomposes = True``), and those algorithms refuse it at config load,
naming ``algorithm.options.reward``.  The token-id rewards of :data:`~seqlab.rewards.REWARDS` decompose unless
registered with ``decomposes=False``.
"""

from __future__ import annotations

import contextlib
import importlib
import itertools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from seqlab.data.vocab import EOS_ID, PAD_ID, UNK_ID
from seqlab.registry import Registry
from seqlab.rewards._common import missing_refs, ref_list

TextRewardFn = Callable[..., Sequence[float]]

#: the prefix of the names :func:`add_text_reward` gives to callables registered in-process
CALLABLE_PREFIX = "python:"


@dataclass(frozen=True)
class TextReward:
    """A registered text reward: its name, the function and whether it decomposes over tokens."""

    name: str
    fn: TextRewardFn
    decomposes: bool = False


#: text rewards by name (registered by plugins or in-process); ``module:function`` specs are not listed here
TEXT_REWARDS: Registry[TextReward] = Registry("text reward")


def text_reward(fn: TextRewardFn | None = None, *, decomposes: bool = False) -> Any:
    """Mark ``fn`` as a text reward that does (``decomposes=True``) or does not decompose over tokens; usable as
    ``@text_reward`` or ``@text_reward(decomposes=True)``.  Unmarked functions count as non-decomposable."""

    def mark(f: TextRewardFn) -> TextRewardFn:
        f.decomposes = decomposes  # type: ignore[attr-defined]
        return f

    return mark(fn) if fn is not None else mark


def register_text_reward(name: str, decomposes: bool | None = None) -> Callable[[TextRewardFn], TextRewardFn]:
    """Decorator: register ``fn(hyps, refs, sources, **fields) -> list[float]`` as the text reward ``name``
    (``decomposes``: see the module doc; default: the function's own ``decomposes`` attribute, else False)."""

    def deco(fn: TextRewardFn) -> TextRewardFn:
        flag = getattr(fn, "decomposes", False) if decomposes is None else decomposes
        TEXT_REWARDS.add(name, TextReward(name, fn, bool(flag)))
        return fn

    return deco


def add_text_reward(fn: TextRewardFn, name: str | None = None, decomposes: bool | None = None) -> str:
    """Register the callable ``fn`` in this process and return its name (``python:<module>.<qualname>`` unless
    ``name`` is given; another callable of the same name gets ``#2``, ``#3``, ...)."""
    if not callable(fn):
        raise TypeError(f"a reward must be callable, got {fn!r}")
    flag = bool(getattr(fn, "decomposes", False) if decomposes is None else decomposes)
    base = (
        name
        or f"{CALLABLE_PREFIX}{getattr(fn, '__module__', None) or 'callable'}."
        f"{getattr(fn, '__qualname__', type(fn).__name__)}"
    )
    for k in itertools.count(1):
        candidate = base if k == 1 else f"{base}#{k}"
        entry = TEXT_REWARDS._entries.get(candidate)  # no plugin loading needed to find our own names
        if entry is None or (entry.obj.fn is fn and entry.obj.decomposes == flag):
            TEXT_REWARDS._entries.pop(candidate, None)
            TEXT_REWARDS.add(candidate, TextReward(candidate, fn, flag))
            return candidate
    raise AssertionError("unreachable")


def import_reward(spec: str) -> TextRewardFn:
    """The function named by ``module:function`` (``function`` may be dotted: ``module:Class.method``)."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ValueError(f"reward {spec!r}: expected module:function")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as e:
        raise ValueError(
            f"reward {spec!r}: module {module_name!r} could not be imported ({e}); it must be "
            "importable in every process that trains (PYTHONPATH, an installed package)"
        ) from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"reward {spec!r}: module {module_name!r} has no {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ValueError(f"reward {spec!r} is not callable ({type(obj).__name__})")
    return obj


@dataclass(frozen=True)
class RewardSpec:
    """What a ``reward`` option names: a token-id reward (``kind`` ``ids``: ``fn(hyp, ref) -> [N]``) or a text
    reward (``kind`` ``text``), and whether it decomposes over tokens."""

    name: str
    kind: str  # "ids" | "text"
    fn: Callable[..., Any]
    decomposes: bool


def resolve_reward(spec: str) -> RewardSpec:
    """The reward a ``reward`` option names: a token-id reward of ``REWARDS``, a registered text reward, or
    ``module:function`` (a text reward); ValueError for anything else."""
    from seqlab.rewards.registry import REWARDS, token_reward_decomposes

    if not isinstance(spec, str):
        raise ValueError(f"a reward is a name or module:function, got {spec!r}")
    if spec in REWARDS:
        return RewardSpec(spec, "ids", REWARDS[spec], token_reward_decomposes(spec))
    if spec in TEXT_REWARDS:
        entry = TEXT_REWARDS[spec]
        return RewardSpec(spec, "text", entry.fn, entry.decomposes)
    if ":" in spec and not spec.startswith(CALLABLE_PREFIX):
        fn = import_reward(spec)
        return RewardSpec(spec, "text", fn, bool(getattr(fn, "decomposes", False)))
    from seqlab.config import did_you_mean

    names = [*REWARDS, *TEXT_REWARDS]
    where = (
        " (a callable given to seqlab.train(reward=...) exists only in the process that registered it)"
        if spec.startswith(CALLABLE_PREFIX)
        else ""
    )
    raise ValueError(
        f"unknown reward {spec!r}{did_you_mean(spec, names)} (rewards: {', '.join(names)}; or a text "
        f"reward as module:function){where}"
    )


def _content_ids(row: Sequence[int]) -> list[int]:
    """The ids before the first EOS / PAD (the content every reward reads), negative stand-ins as UNK."""
    out = []
    for i in row:
        if i == EOS_ID or i == PAD_ID:
            break
        out.append(i if i >= 0 else UNK_ID)
    return out


class TextRewardAdapter:
    """A text reward on token ids: ``adapter(hyp [N, T], ref, src [N, S] | None) -> [N]`` float32 on ``hyp``'s
    device, with hypotheses and references decoded by ``tgt_tokenizer`` and sources by ``src_tokenizer``.

    Called without ``src`` (the token-increment code scores prefixes against references only), the source of a
    row is the one whose reference it carries in the batch given to :meth:`batch_sources` (two sources with the
    same reference in one batch: the first one's; none given: the empty string)."""

    def __init__(self, reward: RewardSpec | TextReward, tgt_tokenizer: Any, src_tokenizer: Any = None):
        self.name, self.fn, self.decomposes = reward.name, reward.fn, reward.decomposes
        self.tgt_tokenizer, self.src_tokenizer = tgt_tokenizer, src_tokenizer
        self._source_of: dict[tuple[int, ...], str] = {}

    def _decode(self, ids: torch.Tensor, tokenizer: Any, side: str) -> list[str]:
        if tokenizer is None:
            raise RuntimeError(
                f"text reward {self.name!r} needs the {side} tokenizer to decode token ids "
                f"(AlgorithmContext.{side}_tokenizer)"
            )
        cache: dict[tuple[int, ...], str] = {}
        out = []
        for row in ids.tolist():
            key = tuple(_content_ids(row))
            if key not in cache:
                cache[key] = tokenizer.decode(list(key))
            out.append(cache[key])
        return out

    def references(self, ref: Any) -> list[list[str]]:
        """The decoded references of every row (missing ones of the multi-reference forms left out)."""
        refs, multi = ref_list(ref)
        decoded = [self._decode(r, self.tgt_tokenizer, "tgt") for r in refs]
        missing = missing_refs(refs, multi).tolist()
        return [[decoded[k][i] for k in range(len(refs)) if not missing[k][i]] for i in range(refs[0].size(0))]

    @contextlib.contextmanager
    def batch_sources(self, src: torch.Tensor, tgt: torch.Tensor) -> Iterator[TextRewardAdapter]:
        """Within the block, a call without ``src`` finds each row's source by its reference (a row of ``tgt``)."""
        keys = [tuple(_content_ids(r)) for r in tgt.tolist()]
        texts = self._decode(src, self.src_tokenizer, "src")
        previous = self._source_of
        self._source_of = {}
        for key, text in zip(keys, texts, strict=True):
            self._source_of.setdefault(key, text)
        try:
            yield self
        finally:
            self._source_of = previous

    def __call__(self, hyp: torch.Tensor, ref: Any, src: torch.Tensor | None = None) -> torch.Tensor:
        hyps = self._decode(hyp, self.tgt_tokenizer, "tgt")
        refs = self.references(ref)
        if src is not None:
            sources = self._decode(src, self.src_tokenizer, "src")
        else:
            first = ref_list(ref)[0][0]
            sources = [self._source_of.get(tuple(_content_ids(r)), "") for r in first.tolist()]
        values = self.fn(hyps, refs, sources)
        values = torch.as_tensor([float(v) for v in values], dtype=torch.float32)
        if values.numel() != len(hyps):
            raise ValueError(f"text reward {self.name!r} returned {values.numel()} values for {len(hyps)} hypotheses")
        return values.to(hyp.device)

    def __repr__(self) -> str:
        return f"TextRewardAdapter({self.name!r}, decomposes={self.decomposes})"


def bind_reward(spec: str, tgt_tokenizer: Any = None, src_tokenizer: Any = None) -> str | TextRewardAdapter:
    """What the algorithms score with: a token-id reward's name as it is (the increments code recognises BLEU by
    it), or a text reward as a :class:`TextRewardAdapter` over the run's tokenizers."""
    resolved = resolve_reward(spec)
    if resolved.kind == "ids":
        return spec
    return TextRewardAdapter(resolved, tgt_tokenizer, src_tokenizer)
