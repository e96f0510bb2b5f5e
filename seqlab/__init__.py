"""seqlab: sequence-prediction training from maximum likelihood to reinforcement learning, in one engine."""

__version__ = "0.1.0"
