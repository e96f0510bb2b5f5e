"""The trainer end to end on a tiny synthetic task: resume equivalence, DDP, CLI, early stopping."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import REPO, TINY_MODEL, tiny_overrides

from seqlab.cli import main as cli_main
from seqlab.config import load_config
from seqlab.train.trainer import Trainer, train


def test_resume_matches_uninterrupted_run(tmp_path):
    full = Trainer(load_config(None, tiny_overrides(tmp_path, "full", **{"train.max_steps": "16"})), console=False)
    full.fit()
    first = Trainer(load_config(None, tiny_overrides(tmp_path, "split", **{"train.max_steps": "8"})), console=False)
    first.fit()
    assert first.step == 8
    resumed = Trainer(load_config(None, tiny_overrides(tmp_path, "split", **{"train.max_steps": "16"})), console=False)
    assert resumed.step == 8  # picked up checkpoint_last.pt
    resumed.fit()
    assert full.epoch == resumed.epoch and full.step == resumed.step == 16
    for (name, a), (_, b) in zip(full.model.state_dict().items(), resumed.model.state_dict().items(), strict=True):
        assert torch.allclose(a, b, atol=1e-6), name


def test_training_learns_and_writes_artifacts(tmp_path):
    model = "{d_model: 64, n_heads: 4, ffn_dim: 128, encoder_layers: 2, decoder_layers: 2, dropout: 0.0}"
    cfg = load_config(
        None,
        tiny_overrides(
            tmp_path,
            "learn",
            **{
                "train.max_steps": "300",
                "train.max_epochs": "1000",
                "train.eval_every_steps": "100",
                "model.options": model,
            },
        ),
    )
    results = train(cfg, console=False)
    run = Path(cfg.run_dir)
    for name in (
        "checkpoint_best.pt",
        "checkpoint_last.pt",
        "results.json",
        "log.jsonl",
        "config.yaml",
        "test.hyp.txt",
    ):
        assert (run / name).exists(), name
    assert results["test"]["per"] < 40.0  # an untrained model is near 100
    saved = json.loads((run / "results.json").read_text())
    assert saved["algorithm_options"] == {"label_smoothing": None}  # every option the run resolved (mle: one)
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert sum(r["kind"] == "valid" for r in records) == 3
    assert all(r["loss"] > 0 for r in records if r["kind"] == "train")


@pytest.mark.parametrize("metric", ["bleu", "wer"])
def test_validation_logs_the_length_ratio_on_bleu_tasks(tmp_path, metric):
    """A BLEU task's validation records carry the hypotheses' BLEU length ratio (what shows a policy that stops
    early), from the very hypotheses scored; a task without BLEU logs none."""
    over = tiny_overrides(tmp_path, metric, **{"train.max_steps": "1"})
    task = json.loads(next(o for o in over if o.startswith("task.options="))[len("task.options=") :])
    over = [o for o in over if not o.startswith("task.options=")]
    cfg = load_config(None, [*over, "task.options=" + json.dumps({**task, "metrics": [metric]})])
    trainer = Trainer(cfg, console=False)
    refs = [r[0] for r in trainer.task.valid.references()[1]]
    shorter = [" ".join(r.split()[:-1]) for r in refs]  # every hypothesis one symbol short
    trainer.evaluate = lambda *args, **kwargs: ({metric: 1.0}, shorter)
    logged = []
    trainer.logger.log = lambda kind, step, values: logged.append((kind, values))
    trainer.step = 1
    trainer._validate()
    ((kind, values),) = logged
    assert kind == "valid"
    if metric == "bleu":
        n_ref = sum(len(r.split()) for r in refs)
        assert values["length_ratio"] == pytest.approx((n_ref - len(refs)) / n_ref, abs=1e-12)
    else:
        assert "length_ratio" not in values


def test_early_stopping(tmp_path):
    cfg = load_config(
        None,
        tiny_overrides(
            tmp_path,
            "early",
            **{"train.max_steps": "400", "train.lr": "0.0", "train.eval_every_steps": "5", "train.patience": "2"},
        ),
    )
    results = train(cfg, console=False)
    assert results["stopped_early"] and results["steps"] == 15


def test_cli_train_translate_evaluate(tmp_path, capsys, monkeypatch):
    args = tiny_overrides(tmp_path, "cli", **{"train.max_steps": "30"})
    assert cli_main(["train", *args]) == 0
    ckpt = tmp_path / "cli" / "checkpoint_last.pt"
    inp = tmp_path / "in.txt"
    inp.write_text("a b c\nd e\nh\n")
    out = tmp_path / "out.txt"
    assert cli_main(["translate", str(ckpt), "-i", str(inp), "-o", str(out), "--beam-size", "3"]) == 0
    assert len(out.read_text().splitlines()) == 3
    from seqlab.train import evaluate

    asked, decode_ids = [], evaluate.decode_ids
    monkeypatch.setattr(evaluate, "decode_ids", lambda *a, **kw: asked.append(a[2].compile) or decode_ids(*a, **kw))
    assert cli_main(["translate", str(ckpt), "-i", str(inp), "-o", str(out), "--compile"]) == 0
    assert asked == [True] and len(out.read_text().splitlines()) == 3  # on the CPU the searches run uncompiled
    capsys.readouterr()
    assert cli_main(["evaluate", str(ckpt), "--split", "valid", "--beam-size", "2"]) == 0
    scores = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert scores["split"] == "valid" and 0 <= scores["wer"] <= 100


def test_bad_config_gives_clear_error(tmp_path, capsys):
    assert cli_main(["train", *tiny_overrides(tmp_path, "bad"), "train.nonsense=1"]) == 2
    assert "unknown key 'nonsense'" in capsys.readouterr().err


def test_two_process_gloo_ddp(tmp_path):
    args = tiny_overrides(tmp_path, "ddp", **{"train.max_steps": "12", "train.max_tokens": "120"})
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            "2",
            "--master_port",
            "29517",
            "-m",
            "seqlab.cli",
            "train",
            *args,
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((tmp_path / "ddp" / "results.json").read_text())
    assert results["world_size"] == 2 and results["steps"] == 12
    state = torch.load(tmp_path / "ddp" / "checkpoint_last.pt", weights_only=False)
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


@pytest.mark.parametrize("arch", ["lstm"])
def test_lstm_trains_through_the_same_trainer(tmp_path, arch):
    cfg = load_config(
        None,
        tiny_overrides(
            tmp_path,
            arch,
            **{
                "model.arch": arch,
                "model.options": "{embed_dim: 16, hidden_dim: 32, layers: 1}",
                "train.max_steps": "10",
            },
        ),
    )
    results = train(cfg, console=False)
    assert results["steps"] == 10 and "wer" in results["test"]


def test_quickstart_runs_on_a_tiny_budget(tmp_path, capsys):
    code = cli_main(
        [
            "quickstart",
            f"run_dir={tmp_path / 'qs'}",
            "task.options.max_train=300",
            "train.max_minutes=null",
            "train.max_steps=6",
            "train.eval_every_steps=3",
            "train.eval_max_examples=20",
            "train.progress_bar=false",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "wer" in out and "per" in out
    assert json.loads((tmp_path / "qs" / "results.json").read_text())["test"]["wer"] >= 0


def test_overrides_read_scientific_notation_as_numbers():
    """PyYAML leaves 2e-05 (no decimal point) as text; an override must still give a float."""
    from seqlab.config import parse_value

    assert parse_value("2e-05") == 2e-05 and isinstance(parse_value("2e-05"), float)
    assert parse_value("1E3") == 1000.0 and parse_value("-3.5e-2") == -0.035
    assert parse_value("0.001") == 0.001 and parse_value("4") == 4
    assert parse_value("e5") == "e5" and parse_value("bleu") == "bleu"


def test_config_files_read_scientific_notation_and_check_types(tmp_path):
    """A YAML file's 1e-3 is a float (PyYAML alone leaves it text), also inside algorithm options; whole numbers
    fit float and int fields; a value of the wrong type is an error naming the file and the key."""
    from seqlab.config import ConfigError, load_config

    good = tmp_path / "good.yaml"
    good.write_text(
        "train: {lr: 1e-3, max_steps: 1e3, max_minutes: 5, clip_norm: null}\n"
        "algorithm: {name: erpo, options: {alpha: 2e-5, beta: 1}}\n"
    )
    cfg = load_config(good)
    assert cfg.train.lr == 0.001 and isinstance(cfg.train.lr, float)
    assert cfg.train.max_steps == 1000 and isinstance(cfg.train.max_steps, int)
    assert cfg.train.max_minutes == 5.0 and cfg.train.clip_norm is None
    assert cfg.algorithm.options == {"alpha": 2e-5, "beta": 1}
    for bad, key in (
        ("train: {lr: fast}", "train.lr"),
        ("train: {max_tokens: 12.5}", "train.max_tokens"),
        ("train: {bf16: 1}", "train.bf16"),
        ("decode: {beam_size: null}", "decode.beam_size"),
    ):
        path = tmp_path / "bad.yaml"
        path.write_text(bad + "\n")
        with pytest.raises(ConfigError, match=rf"bad.yaml: {key.split('.')[0]}\.{key.split('.')[1]}: expected"):
            load_config(path)
    with pytest.raises(ConfigError, match=r"override 'train.warmup_steps=ten': train\.warmup_steps: expected int"):
        load_config(None, ["train.warmup_steps=ten"])


# ---------------------------------------------------------------------------------------------- init_state=full
def _continue_overrides(tmp_path: Path, run: str, **extra: str) -> list[str]:
    """The tiny task without dropout, an inverse-sqrt schedule and label smoothing: one MLE run to continue."""
    base = {
        "model.options": TINY_MODEL.replace("dropout: 0.1", "dropout: 0.0"),
        "train.scheduler": "inverse_sqrt",
        "train.warmup_steps": "6",
        "train.label_smoothing": "0.1",
        "train.eval_every_steps": "4",
    }
    return tiny_overrides(tmp_path, run, **{**base, **extra})


def _one_step(trainer: Trainer, batch) -> None:
    torch.manual_seed(123)
    trainer.train_step(batch)


def test_continued_run_takes_the_step_the_uninterrupted_run_would(tmp_path):
    """init_state=full: the continued run has the MLE run's optimizer moments and lr at its last step, so its
    first update is the one the MLE run itself would make next; its own step counter starts at 0."""
    from seqlab.data.batching import collate

    Trainer(load_config(None, _continue_overrides(tmp_path, "mle", **{"train.max_steps": "8"})), console=False).fit()
    start = tmp_path / "mle" / "checkpoint_last.pt"
    # the uninterrupted run: the same MLE run given one more step (resumed exactly from its last checkpoint)
    mle = Trainer(load_config(None, _continue_overrides(tmp_path, "mle", **{"train.max_steps": "9"})), console=False)
    assert mle.step == 8
    cont = Trainer(
        load_config(
            None,
            _continue_overrides(
                tmp_path,
                "cont",
                **{
                    "train.max_steps": "5",
                    "train.init_from": str(start),
                    "train.init_state": "full",
                    "train.tokenizers_from": str(tmp_path / "mle" / "tokenizers"),
                },
            ),
        ),
        console=False,
    )
    assert cont.step == 0 and cont.lr_offset == 8 and cont.group_warmup == [0]
    assert cont.init_info["moments_continued"] == cont.init_info["parameters"] > 0
    assert cont.init_info["fresh_moments"] == []
    assert cont.scheduler.get_last_lr() == pytest.approx(mle.scheduler.get_last_lr(), rel=1e-12)
    assert cont.scheduler.get_last_lr()[0] < 0.003  # inverse-sqrt decay past its 6 warm-up steps
    for p_mle, p_cont in zip(
        mle.optimizer.param_groups[0]["params"], cont.optimizer.param_groups[0]["params"], strict=True
    ):
        a, b = mle.optimizer.state[p_mle], cont.optimizer.state[p_cont]
        assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)
    batch = collate(mle.train_data, next(iter(mle.sampler)))
    _one_step(mle, batch)
    _one_step(cont, batch)
    for (name, a), (_, b) in zip(mle.model.state_dict().items(), cont.model.state_dict().items(), strict=True):
        assert torch.allclose(a, b, atol=1e-7, rtol=0), name
    # the default (init_state=model) starts a fresh optimizer at the start of its own schedule
    fresh = Trainer(
        load_config(
            None, _continue_overrides(tmp_path, "fresh", **{"train.max_steps": "5", "train.init_from": str(start)})
        ),
        console=False,
    )
    assert not fresh.optimizer.state and fresh.lr_offset == 0
    assert fresh.scheduler.get_last_lr()[0] == pytest.approx(0.003 / 6)
    # a resumed continued run keeps the schedule offset (from its own checkpoint)
    cont.fit()
    again = Trainer(
        load_config(
            None,
            _continue_overrides(
                tmp_path, "cont", **{"train.max_steps": "7", "train.init_from": str(start), "train.init_state": "full"}
            ),
        ),
        console=False,
    )
    assert again.step == 5 and again.lr_offset == 8
    assert again.scheduler.get_last_lr() == pytest.approx(cont.scheduler.get_last_lr(), rel=1e-12)
    results = json.loads((tmp_path / "cont" / "results.json").read_text())
    assert results["steps"] == 5 and results["init"]["lr_step_offset"] == 8 and results["steps_per_epoch"] > 0


def test_continuing_without_optimizer_state_warms_up_and_flags_rounded_weights(tmp_path):
    """A weights-only bf16 checkpoint (benchmarks/ckpt_weights.py): a warning names the rounding; the schedule
    continues at the checkpoint's step with a linear warm-up over 10 % of the budget."""
    from seqlab.train.trainer import lr_lambda

    Trainer(load_config(None, _continue_overrides(tmp_path, "mle", **{"train.max_steps": "8"})), console=False).fit()
    state = torch.load(tmp_path / "mle" / "checkpoint_last.pt", weights_only=False)
    rounded = {
        "model": {k: v.to(torch.bfloat16) if v.is_floating_point() else v for k, v in state["model"].items()},
        "step": 8,
        "config": state["config"],
    }
    torch.save(rounded, tmp_path / "weights.pt")
    with pytest.warns(UserWarning, match="bfloat16"):
        cont = Trainer(
            load_config(
                None,
                _continue_overrides(
                    tmp_path,
                    "cont",
                    **{
                        "train.max_steps": "30",
                        "train.init_from": str(tmp_path / "weights.pt"),
                        "train.init_state": "full",
                    },
                ),
            ),
            console=False,
        )
    assert cont.init_info["weights_dtype"] == "bfloat16" and cont.init_info["moments_continued"] == 0
    assert cont.init_info["fresh_moments"][0].startswith("model.")  # which parameters start fresh, by name
    assert cont.lr_offset == 8 and cont.group_warmup == [3]  # ceil(0.1 * 30)
    schedule = lr_lambda(cont.cfg.train, 38)
    lrs = []
    for _ in range(4):
        lrs.append(cont.scheduler.get_last_lr()[0])
        cont.optimizer.step()
        cont.scheduler.step()
    assert lrs == pytest.approx([0.003 * schedule(8 + k) * min((k + 1) / 3, 1.0) for k in range(4)])
    with pytest.raises(Exception, match="init_state"):
        Trainer(load_config(None, _continue_overrides(tmp_path, "bad", **{"train.init_state": "all"})), console=False)


def test_a_critic_added_by_the_algorithm_warms_up_while_the_model_continues(tmp_path):
    """ERAC adds a critic group: the model's group continues the MLE moments, the critic's warms up."""
    Trainer(load_config(None, _continue_overrides(tmp_path, "mle", **{"train.max_steps": "8"})), console=False).fit()
    options = "{num_samples: 2, critic_arch: lstm, critic_options: {embed_dim: 8, hidden_dim: 16}}"
    cont = Trainer(
        load_config(
            None,
            _continue_overrides(
                tmp_path,
                "erac",
                **{
                    "algorithm.name": "erac",
                    "algorithm.options": options,
                    "train.max_steps": "20",
                    "train.init_from": str(tmp_path / "mle" / "checkpoint_last.pt"),
                    "train.init_state": "full",
                    "train.tokenizers_from": str(tmp_path / "mle" / "tokenizers"),
                },
            ),
        ),
        console=False,
    )
    assert len(cont.optimizer.param_groups) == 2 and cont.group_warmup == [0, 2]
    model_params = {id(p) for p in cont.model.parameters()}
    continued = {id(p) for p in cont.optimizer.state}
    assert model_params <= continued
    assert not continued & {id(p) for p in cont.optimizer.param_groups[1]["params"]}


def test_train_checks_schedules_against_the_budget(tmp_path, monkeypatch, capsys):
    """seqlab train passes the algorithm, the steps per epoch and the step budget to the schedule check before
    training; its refusal is a one-line error, --allow-short-schedules reaches the check."""
    import seqlab.train.trainer as trainer_module
    from seqlab.config import ConfigError

    seen: list = []

    def check(algorithm, steps_per_epoch, total_steps, allow_short):
        seen.append((algorithm.name, steps_per_epoch, total_steps, allow_short))
        if not allow_short:
            raise ConfigError("algorithm.options.lambdas: passes 1 stage(s); pass --allow-short-schedules")
        return {"lambdas": 1}

    monkeypatch.setattr(trainer_module, "check_schedule_budget", check)
    args = tiny_overrides(tmp_path, "sched", **{"train.max_steps": "3"})
    assert cli_main(["train", *args]) == 2
    assert "lambdas: passes 1 stage" in capsys.readouterr().err
    assert not (tmp_path / "sched" / "checkpoint_last.pt").exists()
    assert cli_main(["train", "--allow-short-schedules", *args]) == 0
    steps_per_epoch = json.loads((tmp_path / "sched" / "results.json").read_text())["steps_per_epoch"]
    assert seen == [("mle", steps_per_epoch, 3, False), ("mle", steps_per_epoch, 3, True)]
    assert json.loads((tmp_path / "sched" / "results.json").read_text())["schedule_stages"] == {"lambdas": 1}


def test_profile_steps_record_the_training_loop(tmp_path):
    """train.profile_steps=[first, last] profiles those steps of the real loop (batch building included) into
    run_dir/profile; a run that ends before ``last`` writes what it recorded; bad values are one-line errors."""
    cfg = load_config(
        None, tiny_overrides(tmp_path, "prof", **{"train.max_steps": "6", "train.profile_steps": "[2, 3]"})
    )
    Trainer(cfg, console=False).fit()
    out = Path(cfg.run_dir) / "profile"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == [2, 3] and summary["wall_ms_per_step"] > 0
    table = (out / "ops_by_host_time.txt").read_text()
    for region in ("seqlab.batch", "seqlab.loss", "seqlab.backward", "seqlab.optimizer"):
        assert region in table, region
    assert json.loads((out / "trace.json").read_text())["traceEvents"]
    short = load_config(
        None, tiny_overrides(tmp_path, "short", **{"train.max_steps": "4", "train.profile_steps": "[3, 9]"})
    )
    Trainer(short, console=False).fit()
    assert json.loads((Path(short.run_dir) / "profile" / "summary.json").read_text())["steps"] == [3, 4]
    from seqlab.config import ConfigError

    for bad in ("[3, 2]", "[0, 2]", "[2]"):
        with pytest.raises(ConfigError, match="profile_steps"):
            load_config(None, tiny_overrides(tmp_path, "bad", **{"train.profile_steps": bad}))


def test_device_busy_time_counts_overlapping_kernels_once():
    from types import SimpleNamespace

    from seqlab.train.profiling import device_busy_us

    cuda, cpu = torch.autograd.DeviceType.CUDA, torch.autograd.DeviceType.CPU

    def event(device, start, end):
        return SimpleNamespace(device_type=device, time_range=SimpleNamespace(start=start, end=end))

    events = [event(cuda, 0, 10), event(cuda, 5, 12), event(cuda, 20, 25), event(cpu, 0, 100), event(cuda, 21, 22)]
    assert device_busy_us(SimpleNamespace(events=lambda: events)) == 17  # [0, 12] and [20, 25]


def test_inverse_sqrt_and_constant_schedules_do_not_depend_on_the_budget():
    """docs/compare.md: a pre-training stopped at its best checkpoint's step trains what the full one trained up to
    there, with an inverse-sqrt (or constant) schedule; linear and cosine decay towards the budget, so they do not."""
    from types import SimpleNamespace

    from seqlab.train.trainer import lr_lambda

    steps = range(0, 3000, 7)
    for name in ("inverse_sqrt", "constant"):
        cfg = SimpleNamespace(scheduler=name, warmup_steps=1000)
        short, full = lr_lambda(cfg, 2500), lr_lambda(cfg, 4000)
        assert [short(s) for s in steps] == [full(s) for s in steps]
    for name in ("linear", "cosine"):
        cfg = SimpleNamespace(scheduler=name, warmup_steps=1000)
        assert lr_lambda(cfg, 2500)(2000) != lr_lambda(cfg, 4000)(2000)
