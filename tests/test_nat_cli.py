"""The NAT's decoding flags live in seqlab.nat.cli; the main CLI adds them to evaluate / translate only."""

from __future__ import annotations

import subprocess
import sys
from types import SimpleNamespace

import pytest

from seqlab.cli import build_parser
from seqlab.config import ConfigError
from seqlab.nat.cli import apply_decoding_flags


@pytest.mark.parametrize("command", ["evaluate", "translate"])
def test_evaluate_and_translate_take_the_nat_flags(command):
    args = build_parser(command).parse_args([command, "ckpt.pt", "--length-delta", "2", "--rescorer", "ar.pt"])
    assert (args.length_delta, args.rescorer) == (2, "ar.pt")


def test_top_level_help_imports_no_nat_code():
    code = "import sys, seqlab.cli as c; c.build_parser(''); print('seqlab.nat' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_length_delta_sets_the_nat_and_refuses_other_models():
    nat = SimpleNamespace(cfg=SimpleNamespace(length_delta=0), set_rescorer=lambda model: None)
    apply_decoding_flags(nat, SimpleNamespace(length_delta=3, rescorer=None), "cpu")
    assert nat.cfg.length_delta == 3
    with pytest.raises(ConfigError, match="NAT checkpoints only"):
        apply_decoding_flags(object(), SimpleNamespace(length_delta=3, rescorer=None), "cpu")
    apply_decoding_flags(object(), SimpleNamespace(length_delta=None, rescorer=None), "cpu")  # no flags: no-op
