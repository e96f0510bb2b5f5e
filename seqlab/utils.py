"""Small helpers shared across seqlab."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch


def tree_map(fn: Callable[[torch.Tensor], torch.Tensor], obj: Any) -> Any:
    """Apply ``fn`` to every tensor inside nested dicts / lists / tuples / dataclass-free containers."""
    if isinstance(obj, torch.Tensor):
        return fn(obj)
    if isinstance(obj, dict):
        return {k: tree_map(fn, v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [tree_map(fn, v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(tree_map(fn, v) for v in obj)
    return obj


@contextmanager
def eval_mode(*modules: torch.nn.Module) -> Iterator[None]:
    """Put ``modules`` in eval mode for the block; afterwards each is set back to the mode it was in
    (``module.train(True)``), also when the block raises.  A module already in eval mode is left as it is,
    submodules included: setting a model's mode visits every submodule in Python, twice per block, host time that a
    batch-1 greedy search on a GPU waits for."""
    switched = [m for m in modules if m.training]
    for m in switched:
        m.eval()
    try:
        yield
    finally:
        for m in switched:
            m.train(True)


def select_rows(obj: Any, index: torch.Tensor) -> Any:
    """Select (or repeat) rows along dim 0 of every tensor in ``obj``; used for beams and K samples."""
    return tree_map(lambda t: t.index_select(0, index), obj)


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def import_plugins(modules: list[str]) -> None:
    """Import optional modules that register components; a module that is not installed is skipped."""
    import importlib

    for module in modules:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as e:
            if not (e.name and module.startswith(e.name)):
                raise


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` where ``mask`` holds (NaN where it never does), computed on the device: boolean indexing
    would read the mask's size back to the host first."""
    mask = mask.to(values.dtype)
    return (values * mask).sum() / mask.sum()
