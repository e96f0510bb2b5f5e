"""seqlab: sequence-prediction training from maximum likelihood to reinforcement learning, in one engine.

The Python API (:mod:`seqlab.api`, imported on first use so that ``import seqlab`` stays light):

- ``seqlab.train(config_or_path, overrides=..., reward=...)`` trains a config and returns its results;
- ``seqlab.load(checkpoint)`` gives a model with ``.translate(...)``, ``.score(...)``, ``.sample(...)``;
- ``seqlab.compare(config, algorithms, out, ...)`` runs ``seqlab compare``;
- ``seqlab.text_reward`` / ``seqlab.register_text_reward`` declare rewards on decoded text.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: public names -> the module that defines them (imported on first access).  ``train`` and ``compare`` are the
#: packages seqlab.train and seqlab.compare, which are callable (:func:`seqlab.api.train`, :func:`seqlab.api.compare`):
#: importing a package sets its name on ``seqlab``, so a function of that name would not stay there
_EXPORTS = {
    "train": None,
    "compare": None,
    "load": "seqlab.api",
    "Seq2Seq": "seqlab.api",
    "ConfigError": "seqlab.config",
    "text_reward": "seqlab.rewards.text",
    "register_text_reward": "seqlab.rewards.text",
    "register_reward": "seqlab.rewards.registry",
}

__all__ = [
    "ConfigError",
    "Seq2Seq",
    "__version__",
    "compare",
    "load",
    "register_reward",
    "register_text_reward",
    "text_reward",
    "train",
]

if TYPE_CHECKING:
    from seqlab import compare, train
    from seqlab.api import Seq2Seq, load
    from seqlab.config import ConfigError
    from seqlab.rewards.registry import register_reward
    from seqlab.rewards.text import register_text_reward, text_reward


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'seqlab' has no attribute {name!r}")
    import importlib

    module = _EXPORTS[name]
    value = (
        importlib.import_module(f"seqlab.{name}") if module is None else getattr(importlib.import_module(module), name)
    )
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
