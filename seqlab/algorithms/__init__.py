"""Algorithms by name. Importing this package registers the built-in algorithms (:data:`ALGORITHMS`)."""

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
    display_name,
    register,
)
from seqlab.algorithms.sequence import Candidates, RewardAlgorithm, RewardOptions, SequenceAlgorithm, Step, Weights

__all__ = [
    "ALGORITHMS",
    "Algorithm",
    "AlgorithmContext",
    "Candidates",
    "Progress",
    "RewardAlgorithm",
    "RewardOptions",
    "SequenceAlgorithm",
    "Step",
    "Weights",
    "build_algorithm",
    "display_name",
    "register",
]
