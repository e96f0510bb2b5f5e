"""seqlab.utils.eval_mode: eval mode inside the block, each module's own mode back afterwards."""

from __future__ import annotations

import pytest
import torch.nn as nn

from seqlab.utils import eval_mode


def test_eval_mode_sets_eval_and_restores_each_modules_mode():
    training, evaluating = nn.Linear(2, 2), nn.Linear(2, 2).eval()
    with eval_mode(training, evaluating):
        assert not training.training and not evaluating.training
    assert training.training and not evaluating.training


def test_eval_mode_restores_on_error():
    model = nn.Sequential(nn.Dropout(0.5))
    with pytest.raises(RuntimeError), eval_mode(model):
        assert not model[0].training
        raise RuntimeError("inside")
    assert model.training and model[0].training


def test_eval_mode_leaves_a_module_in_eval_mode_as_it_is():
    """The caller's eval-mode model is not switched (nor its submodules, even one the caller left in training)."""
    model = nn.Sequential(nn.Dropout(0.5), nn.Dropout(0.5)).eval()
    model[1].train()
    calls = []
    model.train = lambda mode=True: calls.append(mode)  # type: ignore[method-assign]
    with eval_mode(model):
        assert not model.training and model[1].training
    assert calls == [] and not model.training and model[1].training
