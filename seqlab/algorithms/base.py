"""The algorithm interface: an algorithm turns a batch into proposals and coefficients for the one loss.

The trainer only calls ``loss``.  An algorithm may own extra trainable modules (critics, Q-networks)
returned by ``modules``; they are optimised with the model and saved in checkpoints.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from seqlab.models.base import Seq2SeqModel
from seqlab.registry import NoOptions, Registry, load_plugins

__all__ = [
    "ALGORITHMS",
    "Algorithm",
    "AlgorithmContext",
    "NoOptions",
    "Progress",
    "build_algorithm",
    "display_name",
    "load_plugins",
    "register",
]

if TYPE_CHECKING:
    from seqlab.data.batching import Batch
    from seqlab.erpo.schedules import Schedule


@dataclass
class Progress:
    """Where training stands: step, epoch, and the fraction of the budget used (0..1 when known)."""

    step: int = 0
    epoch: int = 0
    fraction: float = 0.0
    total_steps: int | None = None  # the step budget, when known


@dataclass
class AlgorithmContext:
    """What an algorithm may know about the task (never about the architecture)."""

    vocab_size: int
    label_smoothing: float = 0.0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    tgt_tokenizer: Any = None
    src_tokenizer: Any = None  # decodes sources for text rewards
    build_model: Callable[[], Seq2SeqModel] | None = None  # a fresh model of the trained architecture
    unigram: torch.Tensor | None = None  # [V] target unigram distribution of the training data
    #: the validation set in batches on the device, in a fixed order (e.g. to validate a critic's TD error)
    valid_batches: Callable[[], Iterable[Batch]] | None = None
    #: writes a record (kind, step, values) to the run's log
    log: Callable[[str, int, dict[str, float]], None] | None = None


def _forget_host_values(module: Algorithm, incompatible_keys: Any) -> None:
    """After a state dict loads, :meth:`Algorithm.host_value` reads the buffers again."""
    module._host.clear()


class Algorithm(nn.Module):
    """Base class.  Subclasses set their options dataclass ``Options`` and implement :meth:`loss` (or, for a
    proposal x weighting algorithm, the hooks of :class:`~seqlab.algorithms.sequence.SequenceAlgorithm`), and are
    registered by name with :func:`register`.  The class attributes below are facts about the algorithm that
    the catalog, the trainer and ``seqlab compare`` read."""

    name: str = ""
    #: its options: a dataclass whose fields are the keys of ``algorithm.options`` (types, defaults, checks)
    Options: type = NoOptions
    #: one line for ``seqlab list algorithms`` (default: the docstring's first sentence)
    summary: str = ""
    #: its name in reports and figures (default: the registered name)
    display_name: str = ""
    #: how far from the data its training targets reach (the x axis of ERPO Figure 1; ``seqlab compare``'s
    #: figure): 0 the data y*, 1 perturbed data, 2 reward-weighted neighbours of y*, 3 a data / reward / model
    #: mixture, 4 model samples tilted to the reward, 5 model samples; None: not placed
    breadth: float | None = None
    #: whether it moves along that axis during training (a schedule anneals it from the data outwards)
    annealed: bool = False
    #: parameters of the model that some steps leave unused (DDP needs to know)
    has_unused_parameters: bool = False
    #: whether its loss is one fixed sequence of tensor operations on the batch (no host reads, no sampling loops,
    #: statistics as tensors, nothing taken from the training progress: a graph keeps what its capture saw), so
    #: ``train.cuda_graphs`` may capture it (:mod:`seqlab.train.graphed`)
    capturable_step: bool = False
    #: the largest learning rate that is safe when fine-tuning a trained model (None: no known limit).
    #: Algorithms that learn from the model's own samples collapse above it (BENCHMARKS.md, Multi30k).
    max_finetune_lr: float | None = None
    #: the option that caps a critic-only phase before joint training (``seqlab compare --share-critic`` runs that
    #: phase once per algorithm and hands the critic to every seed); None: no such phase
    critic_phase_option: str | None = None

    def __init__(self, ctx: AlgorithmContext, options: Any = None):
        super().__init__()
        if options is None:
            options = self.Options()
        elif not isinstance(options, self.Options):
            raise TypeError(f"algorithm {self.name!r} takes a {self.Options.__name__}, got {options!r}")
        self.ctx = ctx
        self.options = options
        #: host copies of buffers read every step (:meth:`host_value`; an int() of a CUDA buffer waits for the device)
        self._host: dict[str, int] = {}
        self.register_load_state_dict_post_hook(_forget_host_values)

    def host_value(self, name: str) -> int:
        """The buffer ``name`` (a scalar: a phase, a step, a flag) as an int, read from the device once and again
        only after a state dict loads."""
        if name not in self._host:
            self._host[name] = int(getattr(self, name))
        return self._host[name]

    def set_host_value(self, name: str, value: int) -> None:
        """Write the scalar buffer ``name`` and its host copy."""
        getattr(self, name).fill_(value)
        self._host[name] = value

    def __getattr__(self, name: str) -> Any:
        """Options read as attributes (``self.tau`` is ``self.options.tau``), after nn.Module's own."""
        try:
            return super().__getattr__(name)
        except AttributeError:
            options = self.__dict__.get("options")
            if options is not None and name in getattr(options, "__dataclass_fields__", {}):
                return getattr(options, name)
            raise

    def loss(self, model: Seq2SeqModel, batch: Batch, progress: Progress) -> tuple[torch.Tensor, dict[str, float]]:
        raise NotImplementedError

    def on_step_end(self, progress: Progress) -> None:
        """Hook after each optimizer step (target-network updates, moving averages)."""

    def optimizer_groups(self) -> list[dict[str, Any]]:
        """Parameter groups of this algorithm's own modules with their own ``lr_scale`` (e.g. a critic trained
        at 10x the actor's learning rate) and optionally a ``name`` (see :meth:`optimizer_settings`); parameters
        not listed train with the model's settings.
        Each group is also clipped on its own, so a critic's gradient never eats the actor's clipping share."""
        return []

    def optimizer_settings(self, progress: Progress) -> dict[str, dict[str, float]]:
        """Settings for the step about to be taken, by parameter-group name ("model", or a ``name`` given in
        :meth:`optimizer_groups`): ``lr_scale`` (times the scheduled learning rate) and ``beta1`` (Adam's).
        Groups left out train with the config's settings at that step (e.g. phase-dependent critic rates)."""
        return {}

    def preparation_steps(self) -> int:
        """Steps taken so far that trained only the algorithm's own modules (critic pre-training): they do not
        count against ``train.max_steps``, so every algorithm's model gets the same number of updates."""
        return 0

    def schedules(self) -> dict[str, Schedule | Callable[[Progress], Any]]:
        """The annealed hyperparameters by option name: a :class:`Schedule` or a function of the progress (checked
        against the budget by :mod:`seqlab.erpo.budget`, which leaves constant schedules out; logged every step by
        the algorithm itself)."""
        return {}

    def adaptive_schedules(self) -> dict[str, Any]:
        """The schedules that move with validation scores (``adaptive``, e.g. ``validation_anneal``)."""
        return {k: s for k, s in self.schedules().items() if getattr(s, "adaptive", False)}

    def on_validation(self, score: float, higher_is_better: bool) -> bool:
        """After every validation: the adaptive schedules observe the score; True asks the trainer to return the
        model and optimizer to the previous validation's state (a schedule moved)."""
        moved = [s.observe(score, higher_is_better) for s in self.adaptive_schedules().values()]
        return any(moved)

    def trains_model(self, progress: Progress) -> bool:
        """False while only the algorithm's own modules learn (critic pre-training): validation is skipped."""
        return True


#: the algorithms by name, each with its options dataclass
ALGORITHMS: Registry[type[Algorithm]] = Registry("algorithm")


def register(name: str) -> Callable[[type[Algorithm]], type[Algorithm]]:
    """Class decorator: register an algorithm as ``name`` with its ``Options``."""

    def deco(cls: type[Algorithm]) -> type[Algorithm]:
        cls.name = name
        return ALGORITHMS.add(name, cls, cls.Options)

    return deco


def build_algorithm(name: str, ctx: AlgorithmContext, options: Any = None) -> Algorithm:
    """Algorithm ``name`` with ``options`` (a mapping, checked against its options dataclass, or the dataclass)."""
    cls = ALGORITHMS.entry(name).obj
    parsed = ALGORITHMS.parse_options(name, options, "algorithm.options")
    try:
        return cls(ctx, parsed)
    except TypeError as e:
        raise ValueError(f"algorithm {name!r}: {e}") from e


def resolved_options(name: str, options: Any) -> dict[str, Any]:
    """Every option of algorithm ``name`` as ``options`` (a mapping or its dataclass) resolve them, defaults
    included, in JSON form (a callable reward as its repr): what a run records of how it was trained."""
    parsed = options if dataclasses.is_dataclass(options) else ALGORITHMS.parse_options(name, options, "options")
    values = dataclasses.asdict(parsed) if dataclasses.is_dataclass(parsed) else dict(parsed or {})
    return json.loads(json.dumps(values, default=repr))


def display_name(algorithm: str) -> str:
    """An algorithm's name in reports (its ``display_name``; the name itself for unknown names)."""
    cls = ALGORITHMS.get(algorithm)
    return (cls.display_name or algorithm) if cls is not None else algorithm
