"""One registry and one plugin mechanism (issue 21, items 2 and 3): typed options checked when the config is loaded,
plugins from --plugin / $SEQLAB_PLUGINS (also in subprocesses), and a new algorithm in a few lines through the
SequenceAlgorithm hooks."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from tiny import TableModel, TinyBatch, make_targets

from seqlab.algorithms import ALGORITHMS, AlgorithmContext, Progress, build_algorithm
from seqlab.catalog import check_config
from seqlab.cli import main as cli_main
from seqlab.cli import split_plugins
from seqlab.config import ConfigError, load_config
from seqlab.registry import PLUGIN_ENV, Registry, check_type, parse_options

PLUGIN = textwrap.dedent('''
    """A plugin: the likelihood of the reference, through the SequenceAlgorithm hooks."""
    from dataclasses import dataclass

    import torch

    from seqlab.algorithms import Candidates, SequenceAlgorithm, register


    @dataclass
    class ReferenceOptions:
        copies: int = 1


    @register("unit_reference")
    class Reference(SequenceAlgorithm):
        """The reference, ``copies`` times, each with weight 1 / copies."""

        Options = ReferenceOptions

        def propose(self, model, batch, enc, progress=None):
            rows = torch.arange(batch.tgt.size(0)).repeat_interleave(self.options.copies)
            return Candidates(batch.tgt.index_select(0, rows), rows)

        def weigh(self, cand, reward, log_p, step):
            w = super().weigh(cand, reward, log_p, step)
            w.coef = w.coef / self.options.copies
            return w
''')


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    """A plugin module on sys.path; the algorithm it registers is taken out again afterwards."""
    (tmp_path / "unit_seqlab_plugin.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv(PLUGIN_ENV, os.environ.get(PLUGIN_ENV, ""))
    yield "unit_seqlab_plugin"
    ALGORITHMS.remove("unit_reference")
    sys.modules.pop("unit_seqlab_plugin", None)
    import seqlab.registry as registry

    registry._imported.discard("unit_seqlab_plugin")
    registry._loaded_for = None


def test_a_plugin_algorithm_is_a_few_lines_and_gives_the_mle_loss_and_gradient(plugin, capsys):
    """--plugin imports the module; its algorithm has options (--help-algorithm prints them) and, proposing the
    reference with weight 1, gives MLE's loss and gradient exactly (label smoothing included)."""
    assert cli_main(["--plugin", plugin, "train", "--help-algorithm", "unit_reference"]) == 0
    assert "copies = 1  (int)" in capsys.readouterr().out
    assert plugin in os.environ[PLUGIN_ENV].split(",")
    model = TableModel(seed=2)
    batch = TinyBatch(torch.tensor([[4, 2], [5, 2]]), make_targets([[5, 6, 4], [4, 4]]))
    ctx = AlgorithmContext(vocab_size=7, label_smoothing=0.1)
    grads = []
    for name, options in (("mle", {}), ("unit_reference", {"copies": 3})):
        model.zero_grad()
        loss, _ = build_algorithm(name, ctx, options).loss(model, batch, Progress())
        loss.backward()
        grads.append((loss.detach(), model.table.grad.clone()))
    assert torch.allclose(grads[0][0], grads[1][0], atol=1e-6)
    assert torch.allclose(grads[0][1], grads[1][1], atol=1e-6)


def test_plugins_named_in_the_environment_register_in_a_subprocess(plugin, tmp_path):
    """What `seqlab compare` runs and torchrun workers rely on: $SEQLAB_PLUGINS is read by a fresh process."""
    env = {**os.environ, PLUGIN_ENV: plugin, "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path])}
    code = "from seqlab.algorithms import ALGORITHMS; print('unit_reference' in ALGORITHMS)"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"


def test_a_missing_plugin_is_a_one_line_error(capsys, monkeypatch):
    monkeypatch.setenv(PLUGIN_ENV, os.environ.get(PLUGIN_ENV, ""))
    assert cli_main(["train", "--plugin=no_such_seqlab_plugin", "--help-algorithm", "raml"]) == 2
    err = capsys.readouterr().err.strip()
    assert "no_such_seqlab_plugin" in err and len(err.splitlines()) == 1
    import seqlab.registry as registry

    monkeypatch.setenv(PLUGIN_ENV, "")
    registry._loaded_for = None


def test_split_plugins_anywhere_on_the_command_line():
    assert split_plugins(["--plugin", "a", "train", "--plugin=b", "x.y=1"]) == (["a", "b"], ["train", "x.y=1"])


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("algorithm.options.tau=abc", "algorithm.options.tau: expected float, got 'abc'"),
        ("algorithm.options.num_samples=2.5", "algorithm.options.num_samples: expected int"),
        ("algorithm.options.proposal=gauss", "proposal must be one of"),
        ("algorithm.options.reward=bleu4", "unknown reward 'bleu4'; did you mean 'bleu'?"),
        ("model.options.d_model=big", "model.options.d_model: expected int"),
        ("task.options.max_train=all", "task.options.max_train: expected int | None"),
        ("task.options.strip_stres=true", "did you mean 'strip_stress'"),
    ],
)
def test_option_types_and_values_are_checked_at_config_load(override, expected):
    cfg = load_config(None, ["algorithm.name=raml", override])
    with pytest.raises(ConfigError, match=expected.replace("|", r"\|").replace("?", r"\?")):
        check_config(cfg)


def test_parse_options_converts_and_fills_defaults():
    @dataclass
    class Opts:
        path: str
        rate: float = 0.5
        pair: tuple[float, float] = (1.0, 2.0)
        schedule: float | dict | None = None

    got = parse_options(Opts, {"path": "p", "rate": 1, "pair": [3, 4], "schedule": {"type": "step"}}, "x", "thing")
    assert got == Opts("p", 1.0, (3.0, 4.0), {"type": "step"}) and isinstance(got.rate, float)
    with pytest.raises(ConfigError, match=r"x\.path: thing: option 'path' is required"):
        parse_options(Opts, {}, "x", "thing")
    with pytest.raises(ConfigError, match="expected bool"):
        check_type(1, bool, "flag")


def test_registry_names_duplicates_and_unknown_names():
    reg: Registry = Registry("widget")
    reg.add("a", len)
    reg.add("a", len)  # the same object again: a no-op
    with pytest.raises(ValueError, match="already registered"):
        reg.add("a", max)
    assert reg.names() == ["a"] and "a" in reg and reg.options("a") is None
    assert reg.parse_options("a", {"anything": 1}) == {"anything": 1}  # no options dataclass: passed on unchecked
    with pytest.raises(ConfigError, match="unknown widget 'b'"):
        reg.entry("b")


def test_per_algorithm_facts_live_on_the_class():
    from seqlab.compare.report import annealed, breadth, display_name

    assert (breadth("mle"), breadth("raml"), breadth("pg"), breadth("erac")) == (0, 2, 5, 5)
    assert annealed("interpolation") and annealed("mixer") and not annealed("raml")
    assert display_name("alpha_dimt") == "α-DiMT" and display_name("my-label") == "my-label"
    assert ALGORITHMS["pg"].max_finetune_lr == 5e-5


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.lr=abc", "train.lr: expected float, got 'abc' (str)"),
        ("train.max_steps=2.5", "train.max_steps: expected int | None, got 2.5 (float)"),
        ("train.bf16=1", "train.bf16: expected bool, got 1 (int)"),
        ("run_dir=5", "run_dir: expected str, got 5 (int)"),
    ],
)
def test_config_fields_use_the_registry_type_check(override, message):
    config = str(Path(__file__).resolve().parents[1] / "configs" / "g2p_transformer.yaml")
    with pytest.raises(ConfigError) as err:
        load_config(config, [override])
    assert message in str(err.value)
    cfg = load_config(config, ["train.lr=1", "train.max_steps=3.0", "train.max_minutes=null"])
    assert (cfg.train.lr, cfg.train.max_steps, cfg.train.max_minutes) == (1.0, 3, None)
    assert isinstance(cfg.train.lr, float) and isinstance(cfg.train.max_steps, int)
