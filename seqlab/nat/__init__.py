"""Non-autoregressive translation (NAT) and imitate-NAT (Wei et al. 2019): models ``nat`` and ``dat``,
algorithms ``nat``, ``imitate_nat`` and ``dat``, length-parallel decoding, sequence-level distillation.

Its models and algorithms register in :mod:`seqlab.registry` when ``seqlab.nat.models`` and
``seqlab.nat.algorithms`` are imported (both are among the registry's built-in modules)."""

from seqlab.nat.decoding import length_parallel_decode, make_nat_decoder, nat_candidates, rescore
from seqlab.nat.imitation import ImitationModule, action_regularizer, imitation_kl, redistribute
from seqlab.nat.models import (
    DAT,
    NAT,
    DATConfig,
    NATConfig,
    init_from_teacher,
    scaled_copy_stride,
    soft_copy_weights,
    uniform_copy_indices,
)

__all__ = [
    "DAT",
    "NAT",
    "DATConfig",
    "NATConfig",
    "ImitationModule",
    "action_regularizer",
    "imitation_kl",
    "redistribute",
    "init_from_teacher",
    "scaled_copy_stride",
    "soft_copy_weights",
    "uniform_copy_indices",
    "length_parallel_decode",
    "make_nat_decoder",
    "nat_candidates",
    "rescore",
]
