"""Side-by-side comparison of algorithms: ``seqlab compare`` runs, resumes and reports.

The package is also callable: ``seqlab.compare(config, algorithms, out, ...)`` is :func:`seqlab.api.compare` (this
package takes the name ``compare`` on ``seqlab`` once it is imported, so it forwards the call)."""

import sys
import types
from typing import Any

from seqlab.compare.runner import CompareSpec, Run, run_compare

__all__ = ["CompareSpec", "Run", "run_compare"]


class _CallablePackage(types.ModuleType):
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from seqlab.api import compare

        return compare(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage
