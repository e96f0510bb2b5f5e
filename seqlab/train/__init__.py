"""The trainer, checkpoints, DDP, logging and evaluation.

The package is also callable: ``seqlab.train(config, overrides=..., reward=...)`` is :func:`seqlab.api.train`
(this package takes the name ``train`` on ``seqlab`` once it is imported, so it forwards the call)."""

import sys
import types
from typing import Any


class _CallablePackage(types.ModuleType):
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from seqlab.api import train

        return train(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage
