"""Issue 20, a newcomer's first hour: runs that explain themselves and no bad input that costs a traceback.

Each test names the item of the issue it covers; all fail on the code before the issue was worked on.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from helpers import REPO, tiny_overrides, write_reverse_task

from seqlab.cli import main as cli_main
from seqlab.config import ConfigError, load_config
from seqlab.train import checkpoint as ckpt
from seqlab.train.trainer import train


def _records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


def _one_line_error(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("seqlab: error: "), err
    return lines[0]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> tuple[Path, list[str]]:
    """A tiny run of 12 steps (no evaluation scheduled: an epoch is longer), and the arguments that made it."""
    root = tmp_path_factory.mktemp("newcomer")
    args = tiny_overrides(root, "run", **{"train.max_steps": "12", "train.max_tokens": "60"})
    assert cli_main(["train", *args]) == 0
    return root / "run", args


# ------------------------------------------------------------------------------------------------ item 1
def _quickstart_args(tmp_path: Path, *extra: str) -> list[str]:
    return [
        f"run_dir={tmp_path / 'qs'}",
        "task.options.max_train=300",
        "task.options.test_percent=0.5",
        "model.options={d_model: 32, n_heads: 4, ffn_dim: 64, encoder_layers: 1, decoder_layers: 1}",
        "train.eval_max_examples=20",
        "train.tensorboard=false",
        *extra,
    ]


def test_quickstart_has_a_step_budget_a_progress_total_and_a_verdict(tmp_path, capsys):
    """Item 1: the quickstart trains a number of steps (not minutes), shows the total, and judges the result."""
    assert cli_main(["quickstart", "--steps", "4", *_quickstart_args(tmp_path)]) == 0
    out, err = capsys.readouterr()
    results = json.loads((tmp_path / "qs" / "results.json").read_text())
    assert results["steps"] == 4 and not results["cut_short_by_max_minutes"] and results["commit"]
    assert "4/4" in err  # the progress bar knows its total (so it shows an ETA)
    verdict = out.strip().splitlines()[-1]
    assert verdict.startswith("undertrained: 4 steps") and "seqlab quickstart --steps" in verdict


def test_quickstart_wall_clock_cap_warns_when_it_cuts_the_run_short(tmp_path, capsys):
    """Item 1: on a slow machine the cap stops the run early, and says so rather than printing a bad model."""
    assert (
        cli_main(
            [
                "quickstart",
                "--steps",
                "500",
                "--max-minutes",
                "0.0001",
                *_quickstart_args(tmp_path, "train.progress_bar=false"),
            ]
        )
        == 0
    )
    out, err = capsys.readouterr()
    results = json.loads((tmp_path / "qs" / "results.json").read_text())
    assert results["steps"] < 500 and results["cut_short_by_max_minutes"]
    assert "train.max_minutes" in err and "undertrained" in err
    assert "--max-minutes" in out.strip().splitlines()[-1]


# ------------------------------------------------------------------------------------------------ item 2
def test_rerunning_a_finished_run_says_so_and_trains_nothing(trained_run, capsys):
    """Item 2: a rerun of a finished run exits at once: no decoding, no duplicate final row, results untouched."""
    run, args = trained_run
    stamp = (run / "results.json").stat().st_mtime_ns
    capsys.readouterr()
    assert cli_main(["train", *args]) == 0
    out = capsys.readouterr().out
    assert "has finished" in out and "train.max_steps" in out
    assert (run / "results.json").stat().st_mtime_ns == stamp
    assert sum(r["kind"] == "final" for r in _records(run)) == 1


# ------------------------------------------------------------------------------------------------ item 3
def test_a_short_run_leaves_a_best_checkpoint(trained_run):
    """Item 3: no evaluation was scheduled within 12 steps, yet checkpoint_best.pt exists (evaluated at the end)."""
    run, _ = trained_run
    assert (run / "checkpoint_best.pt").is_file()
    assert [r["step"] for r in _records(run) if r["kind"] == "valid"] == [12]


def test_a_missing_best_checkpoint_names_the_one_that_exists(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "checkpoint_last.pt").write_bytes(b"x")
    assert cli_main(["evaluate", str(run / "checkpoint_best.pt")]) == 2
    line = _one_line_error(capsys.readouterr().err)
    assert "checkpoint_best.pt" in line and "checkpoint_last.pt" in line


# ------------------------------------------------------------------------------------------------ item 4
@pytest.mark.parametrize("split", ["train", "valid"])
def test_an_empty_data_file_is_rejected_at_load_naming_the_file(tmp_path, capsys, split):
    args = tiny_overrides(tmp_path, "empty", **{"train.max_steps": "3"})
    (tmp_path / "data" / f"{split}.tgt").write_text("")
    assert cli_main(["train", *args]) == 2
    line = _one_line_error(capsys.readouterr().err)
    assert f"{split}.tgt" in line and "empty file" in line
    assert not (tmp_path / "empty" / "checkpoint_last.pt").exists()


# ------------------------------------------------------------------------------------------------ items 5 and 9
BAD_OVERRIDES = [
    ("algorithm.name=rmal", "did you mean 'raml'"),
    ("algorithm.options.tua=0.4", "did you mean 'tau'"),
    ("model.arch=t5", "unknown architecture 't5'"),
    ("train.max_tokens=0", "train.max_tokens must be"),
    ("train.lr=-1", "train.lr must be"),
    ("train.cuda_graphs_width=0", "train.cuda_graphs_width must be at least 1"),
    ("train.lerning_rate=0.1", "did you mean 'lr'"),
    ("task.options.metrics=[bleu, wre]", "did you mean 'wer'"),
]


@pytest.mark.parametrize(("override", "expected"), BAD_OVERRIDES)
def test_bad_input_is_one_line_exit_2_before_loading_or_writing(
    trained_run, tmp_path, capsys, monkeypatch, override, expected
):
    """Items 5 and 9: one line naming the command-line override, exit 2, no data loaded, nothing written (the
    finished run's config.yaml still matches its checkpoint)."""
    run, args = trained_run
    before = (run / "config.yaml").read_bytes()
    if override.startswith("algorithm.options."):
        args = [*args, "algorithm.name=raml"]

    def no_data(*a, **k):
        raise AssertionError("data loaded before the config was checked")

    monkeypatch.setattr("seqlab.train.trainer.load_task", no_data)
    assert cli_main(["train", *args, "train.max_steps=20", override]) == 2
    line = _one_line_error(capsys.readouterr().err)
    assert expected in line
    if override.split("=")[0] in {"train.max_tokens", "train.lr", "train.lerning_rate"}:
        assert f"command-line override {override!r}" in line
    assert (run / "config.yaml").read_bytes() == before


def test_config_file_errors_name_the_file_and_suggest(tmp_path):
    """Item 9: a key of the YAML file is reported against the file, with a suggestion."""
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  max_step: 10\n")
    with pytest.raises(ConfigError, match=r"c\.yaml: unknown key 'max_step' in section 'train'; did you mean"):
        load_config(path, ["train.lr=0.1"])


def test_a_callable_in_a_config_is_a_one_line_config_error(tmp_path):
    """Item 5: a callable put into a config from Python is refused before anything is written."""
    cfg = load_config(None, tiny_overrides(tmp_path, "callable", **{"algorithm.name": "raml"}))
    cfg.algorithm.options["reward"] = lambda hyp, ref: hyp.sum(1)
    with pytest.raises(ConfigError, match=r"algorithm\.options\.reward: a callable .* is not a config value"):
        train(cfg, console=False)
    assert not (tmp_path / "callable").exists()


# ------------------------------------------------------------------------------------------------ item 6
@pytest.mark.parametrize("kind", ["truncated", "random", "empty", "directory"])
def test_a_corrupt_checkpoint_is_one_line_naming_the_file(trained_run, tmp_path, capsys, kind):
    run, _ = trained_run
    bad = tmp_path / "bad.pt"
    data = (run / "checkpoint_last.pt").read_bytes()
    if kind == "truncated":
        bad.write_bytes(data[: len(data) // 2])
    elif kind == "random":
        bad.write_bytes(random.Random(0).randbytes(4096))
    elif kind == "empty":
        bad.write_bytes(b"")
    else:
        bad.mkdir()
    assert cli_main(["evaluate", str(bad)]) == 2
    assert str(bad) in _one_line_error(capsys.readouterr().err)


def test_any_random_bytes_are_a_checkpoint_error_not_a_crash(tmp_path):
    """The weights-only unpickler meets arbitrary opcodes in random bytes (IndexError, TypeError, ...)."""
    bad = tmp_path / "bad.pt"
    for seed in range(300):
        bad.write_bytes(random.Random(seed).randbytes(64 + seed))
        with pytest.raises(ckpt.CheckpointError, match="bad.pt"):
            ckpt.load(bad)


def test_a_corrupt_last_checkpoint_on_resume_says_how_to_proceed(tmp_path, capsys):
    args = tiny_overrides(tmp_path, "torn", **{"train.max_steps": "20"})
    run = tmp_path / "torn"
    run.mkdir()
    (run / "checkpoint_last.pt").write_bytes(b"PK\x03\x04 torn")
    assert cli_main(["train", *args]) == 2
    line = _one_line_error(capsys.readouterr().err)
    assert "checkpoint_last.pt" in line and "train.resume=false" in line


class _Payload:
    """Not tensors or plain data: loading it would need unpickling an arbitrary class."""


def test_checkpoints_load_with_weights_only(trained_run, tmp_path):
    run, _ = trained_run
    assert ckpt.load(run / "checkpoint_last.pt")["step"] == 12  # seqlab's own checkpoints are weights-only safe
    path = tmp_path / "foreign.pt"
    torch.save({"model": {}, "payload": _Payload()}, path)
    with pytest.raises(ckpt.CheckpointError, match="SEQLAB_TRUST_CHECKPOINTS"):
        ckpt.load(path)


# ------------------------------------------------------------------------------------------------ item 7
def _wait_for_train_record(run: Path, proc: subprocess.Popen, min_step: int = 10) -> None:
    for _ in range(1200):
        if proc.poll() is not None:
            raise AssertionError(proc.stderr.read())
        log = run / "log.jsonl"
        if log.exists() and any(r["kind"] == "train" and r["step"] >= min_step for r in _records(run)):
            return
        time.sleep(0.1)
    raise AssertionError("no training progress")


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_saves_a_checkpoint_and_the_rerun_resumes_exactly(tmp_path, signum):
    """Item 7: Ctrl-C / SIGTERM: one line, exit 130, a checkpoint at the step reached (without any evaluation
    scheduled), stale temporaries removed; the rerun continues to the same weights as an uninterrupted run."""
    args = tiny_overrides(
        tmp_path,
        "sig",
        **{
            "train.max_steps": "100000",
            "train.max_tokens": "60",
            "train.eval_every_steps": "100000",
            "train.max_epochs": "100000",
        },
    )
    run = tmp_path / "sig"
    run.mkdir()
    (run / "checkpoint_last.pt.k1ll3d.tmp").write_bytes(b"torn")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "seqlab.cli", "train", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    _wait_for_train_record(run, proc)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    last = [line for line in err.strip().splitlines() if line.startswith("seqlab:")]
    assert len(last) == 1 and "run the same command again to resume" in last[0]
    step = ckpt.load(run / "checkpoint_last.pt")["step"]
    assert step >= 10 and f"at step {step}" in last[0]
    assert not list(run.glob("*.tmp"))

    more = {
        "train.max_steps": str(step + 7),
        "train.max_tokens": "60",
        "train.eval_every_steps": "100000",
        "train.max_epochs": "100000",
    }
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in the interrupted process: the same kernels, the same rounding
    try:
        resumed = train(load_config(None, tiny_overrides(tmp_path, "sig", **more)), console=False)
        straight = train(load_config(None, tiny_overrides(tmp_path, "straight", **more)), console=False)
    finally:
        torch.set_num_threads(threads)
    assert resumed["steps"] == straight["steps"] == step + 7
    a = ckpt.load(run / "checkpoint_last.pt")["model"]
    b = ckpt.load(tmp_path / "straight" / "checkpoint_last.pt")["model"]
    for name in a:
        assert torch.allclose(a[name], b[name], atol=1e-6), name


# ------------------------------------------------------------------------------------------------ item 8
def test_the_log_has_each_step_once_after_a_resume(tmp_path):
    """Item 8: records an interrupted attempt wrote after the checkpoint are dropped on resume, which is marked."""
    args = tiny_overrides(tmp_path, "log", **{"train.max_steps": "10", "train.max_tokens": "60"})
    train(load_config(None, args), console=False)
    run = tmp_path / "log"
    with open(run / "log.jsonl", "a", encoding="utf-8") as f:  # what a kill -9 after step 15 leaves behind
        for step in (15, 20):
            f.write(json.dumps({"kind": "train", "step": step, "loss": 1.0}) + "\n")
        f.write('{"kind": "train", "st')
    train(load_config(None, [*args, "train.max_steps=20"]), console=False)
    records = _records(run)
    steps = [r["step"] for r in records if r["kind"] == "train"]
    assert steps == sorted(set(steps)) and steps[-1] == 20
    assert any(r["kind"] == "resume" and r["step"] == 10 for r in records)


# ------------------------------------------------------------------------------------------------ item 10
def test_list_commands_and_algorithm_help(capsys):
    assert cli_main(["list", "algorithms"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert any(re.match(r"raml\s+reward-augmented", line) for line in lines)
    for kind, name in (("tasks", "g2p-cmudict"), ("models", "transformer"), ("rewards", "bleu")):
        assert cli_main(["list", kind]) == 0
        assert any(line.split()[0] == name for line in capsys.readouterr().out.splitlines())
    assert cli_main(["train", "--help-algorithm", "raml"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^\s+tau = 0\.4\s+\(float\)\s+\S", out, re.M)
    assert cli_main(["train", "--help-algorithm", "rmal"]) == 2
    assert "did you mean 'raml'" in _one_line_error(capsys.readouterr().err)


def test_help_is_plain_and_lists_what_train_accepts(capsys):
    from seqlab import catalog
    from seqlab.cli import ALGORITHM_NAMES, MODEL_NAMES, TASK_NAMES, build_parser

    assert set(TASK_NAMES) == set(catalog.tasks())
    assert set(ALGORITHM_NAMES) == set(catalog.algorithms())
    assert set(MODEL_NAMES) == set(catalog.models())
    for argv in (["--help"], ["train", "--help"], ["distill", "--help"], ["quickstart", "--help"]):
        with pytest.raises(SystemExit):
            cli_main(argv)
        text = capsys.readouterr().out
        assert "``" not in text and ":func:" not in text and "Importing this module" not in text, argv
    with pytest.raises(SystemExit):
        cli_main(["train", "--help"])
    text = capsys.readouterr().out
    assert "raml" in text and "g2p-cmudict" in text and "transformer" in text
    parser = build_parser()
    for sub in parser._subparsers._group_actions[0].choices.values():  # every positional argument has help
        for action in sub._actions:
            if not action.option_strings and action.dest != "help" and not action.choices:
                assert action.help, (sub.prog, action.dest)


def test_help_imports_no_torch():
    """Item 10: --help answers at once because it imports nothing heavy (measured: README)."""
    code = (
        "import sys\nfrom seqlab.cli import main\nfor argv in (['--help'], ['train', '--help']):\n"
        "    try:\n        main(argv)\n    except SystemExit:\n        pass\nprint('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True).stdout
    assert out.strip().splitlines()[-1] == "False"


def test_a_plugin_adds_a_sub_command_through_the_commands_registry(tmp_path):
    """Sub-commands are registry entries (seqlab.cli.COMMANDS): a plugin module named by --plugin registers its own,
    which `seqlab --help` lists and `seqlab NAME` runs; without plugins, --help still imports no torch."""
    (tmp_path / "hello_plugin.py").write_text(
        "from seqlab.cli import register_command\n"
        "register_command('hello', 'hello_plugin', 'add_parser', 'say hello')\n"
        "def add_parser(sub):\n"
        "    p = sub.add_parser('hello', help='say hello')\n"
        "    p.add_argument('name')\n"
        "    p.set_defaults(func=lambda args: print('hello ' + args.name))\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO)]), "SEQLAB_PLUGINS": ""}
    cli = [sys.executable, "-m", "seqlab.cli", "--plugin", "hello_plugin"]
    listed = subprocess.run([*cli, "--help"], capture_output=True, text=True, env=env, check=True).stdout
    assert "hello" in listed and "say hello" in listed
    ran = subprocess.run([*cli, "hello", "world"], capture_output=True, text=True, env=env, check=True).stdout
    assert ran.strip() == "hello world"


# ------------------------------------------------------------------------------------------------ item 11
def test_the_parallel_example_config_trains_on_plain_tsv_and_jsonl_data(tmp_path):
    """Item 11: configs/parallel_example.yaml works on the three formats it documents."""
    data = tmp_path / "data"
    data.mkdir()
    paths = write_reverse_task(data)
    src = (data / "valid.src").read_text().splitlines()
    tgt = (data / "valid.tgt").read_text().splitlines()
    (data / "valid.tsv").write_text("source\ttarget\n" + "".join(f"{s}\t{t}\n" for s, t in zip(src, tgt, strict=True)))
    refs = [{"source": s, "target": [t, s]} for s, t in zip(src, tgt, strict=True)]
    (data / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in refs))
    example = yaml.safe_load((REPO / "configs" / "parallel_example.yaml").read_text())
    assert example["task"]["name"] == "parallel"
    cfg = load_config(
        REPO / "configs" / "parallel_example.yaml",
        [
            f"run_dir={tmp_path / 'run'}",
            f"task.options.root={data}",
            f"task.options.train={json.dumps(paths['train'])}",
            "task.options.valid={path: valid.tsv, format: tsv, header: true}",
            "task.options.test={path: test.jsonl}",
            "task.options.tokenizer=symbol",
            "model.options={d_model: 32, n_heads: 4, ffn_dim: 64, encoder_layers: 1, decoder_layers: 1}",
            "train.max_steps=3",
            "train.device=cpu",
            "train.progress_bar=false",
            "train.tensorboard=false",
        ],
    )
    results = train(cfg, console=False)
    assert results["steps"] == 3 and set(results["test"]) == set(example["task"]["options"]["metrics"])


# ------------------------------------------------------------------------------------------------ items 12, 13
def test_slow_tests_are_deselected_by_default_and_run_by_ci():
    """Item 12: pytest deselects @slow by default; .ci/run runs both selections and fails on either."""
    import tomllib

    ini = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    assert '-m "not slow"' in ini["addopts"]
    ci = (REPO / ".ci" / "run").read_text()
    assert re.search(r"pytest .*-m slow", ci) and re.search(r"pytest(?!.*-m slow)", ci)


def test_readme_first_command_needs_no_extra_index():
    """Item 13: the README's first command works on a CPU-only machine as written; the PyTorch CPU index is only
    an optional speed-up."""
    readme = (REPO / "README.md").read_text()
    first_block = readme.split("```bash", 1)[1].split("```", 1)[0].strip().splitlines()
    assert first_block[0] == "pip install -e . && seqlab quickstart"
    top = readme.split("\n## ", 1)[0]
    for sentence in re.split(r"(?<=[.!?])\s+", top):
        if "index-url" in sentence:
            assert "optional" in sentence.lower(), sentence
    from seqlab.cli import QUICKSTART_OVERRIDES

    assert "train.device=cpu" in QUICKSTART_OVERRIDES
