"""Non-autoregressive translation (NAT) and imitate-NAT (Wei et al. 2019): models ``nat`` and ``dat``,
algorithms ``nat``, ``imitate_nat`` and ``dat``, length-parallel decoding, sequence-level distillation.

Importing this package registers the models (the algorithms register through
``seqlab.algorithms.base.PLUGIN_MODULES``)."""

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

__all__ = ["DAT", "NAT", "DATConfig", "NATConfig", "ImitationModule", "action_regularizer", "imitation_kl",
           "redistribute", "init_from_teacher", "scaled_copy_stride", "soft_copy_weights", "uniform_copy_indices",
           "length_parallel_decode", "make_nat_decoder", "nat_candidates", "rescore"]
