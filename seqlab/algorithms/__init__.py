"""Algorithms by name. Importing this package registers every algorithm."""

from seqlab.algorithms import (  # noqa: F401  (registration)
    erpo,
    interpolation,
    mle,
    noising,
    policy,
    raml,
    scheduled_sampling,
)
from seqlab.algorithms.base import (
    ALGORITHMS,
    Algorithm,
    AlgorithmContext,
    Progress,
    build_algorithm,
    register,
)

__all__ = ["ALGORITHMS", "Algorithm", "AlgorithmContext", "Progress", "build_algorithm", "register"]
