"""seqlab compare: planning, resuming, the one-run-per-GPU scheduler, the report and its plots."""

from __future__ import annotations

import json
import random
import shutil
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest
import tiny_task

from seqlab.compare.cli import add_compare_parser, build_spec
from seqlab.compare.report import Stats, write_report
from seqlab.compare.runner import (
    CompareSpec,
    Run,
    detect_gpus,
    execute,
    load_compare_yaml,
    plan_critics,
    plan_pretrain,
    plan_runs,
    ran_out_of_memory,
    run_compare,
    split_overrides,
    uses_reward,
)
from seqlab.config import ConfigError, load_config


def write_task(root: Path, seed: int = 0) -> Path:
    """A tiny symbol-reversal task config (the `parallel` task) and its data (compare sets every run's run_dir)."""
    return tiny_task.write_task(root, seed, run_dir="unused", log_every_steps=2)


def spec_for(root: Path, **kw) -> CompareSpec:
    base = dict(
        config=str(write_task(root)),
        out=str(root / "cmp"),
        algorithms=["mle", "raml"],
        seeds=[1, 2],
        pretrain_steps=6,
        budget_steps=4,
        gpus="none",
    )
    base.update(kw)
    return CompareSpec(**base)


def fake_score(run: Run) -> int:
    """Pretends to score a checkpoint: the references themselves (test) or every other one wrong (extra sets)."""
    from seqlab.compare.score import SCORES
    from seqlab.data.corpus import read_parallel

    args = run.args
    out = Path(args[args.index("--out") + 1])
    out.mkdir(parents=True, exist_ok=True)
    config = load_config(args[args.index("--config") + 1])
    test = config.task.options["test"]
    sets = {"test": [test["src"], test["tgt"]]} if "--test" in args else {}
    for i, item in enumerate(args):
        if item == "--extra-test":
            name, files = args[i + 1].split("=", 1)
            sets[name] = files.split(",")
    scores = {}
    for name, (src, ref) in sets.items():
        _, refs = read_parallel(src, ref).references()
        wrong = 2 if "start" in run.name else 3
        hyps = ["a" if k % wrong == 0 else r[0] for k, r in enumerate(refs)]
        (out / f"{name}.hyp.txt").write_text("\n".join(hyps) + "\n")
        scores[name] = {"bleu": 50.0 if "start" in run.name else 60.0, "chrf": 50.0}
    (out / SCORES).write_text(json.dumps(scores))
    return 0


def fake_launcher(calls: list, score_of=None, pretrain_dtype: str = "fp32", pretrain_test: dict | None = None):
    """Pretends to train: writes what a finished run leaves (results, validation log, test hypotheses)."""

    def launch(run: Run, config: str, gpu: str | None) -> int:
        calls.append((run.name, gpu))
        if run.kind == "score":
            return fake_score(run)
        cfg = load_config(config, run.overrides)
        rd = Path(cfg.run_dir)
        rd.mkdir(parents=True, exist_ok=True)
        (rd / "config.yaml").write_text(json.dumps(cfg.to_dict()))
        if run.name == "pretrain":
            import torch

            weights = {"w": torch.zeros(3, dtype=torch.bfloat16 if pretrain_dtype == "bf16" else torch.float32)}
            torch.save({"model": weights, "config": cfg.to_dict(), "step": 6}, rd / "checkpoint_best.pt")
            (rd / "log.jsonl").write_text(json.dumps({"kind": "valid", "step": 6, "bleu": 10.0}) + "\n")
            results = {"steps": 6, "steps_per_epoch": 2, **({"test": pretrain_test} if pretrain_test else {})}
            (rd / "results.json").write_text(json.dumps(results))
            return 0
        from seqlab.data.corpus import read_parallel

        _, refs = read_parallel(cfg.task.options["test"]["src"], cfg.task.options["test"]["tgt"]).references()
        refs = [r[0] for r in refs]  # one hypothesis per distinct source, as the trainer writes them
        rng = random.Random(cfg.train.seed * 7 + len(cfg.algorithm.name))
        good = 0.9 if cfg.algorithm.name == "raml" else 0.5
        hyps = [r if rng.random() < good else "a" for r in refs]
        bleu = (score_of or {}).get(cfg.algorithm.name, 20.0 + 10 * good) + cfg.train.seed
        (rd / "test.hyp.txt").write_text("\n".join(hyps) + "\n")
        schedule = {"lambda1": 0.1, "lambda3": 0.7} if cfg.algorithm.name == "raml" else {"truth_prob": 0.9}
        (rd / "log.jsonl").write_text(
            "".join(json.dumps({"kind": "valid", "step": s, "bleu": bleu * s / 4, "chrf": 40.0}) + "\n" for s in (2, 4))
            + "".join(json.dumps({"kind": "train", "step": s, "loss": 1.0, **schedule}) + "\n" for s in (2, 4))
        )
        (rd / "results.json").write_text(
            json.dumps(
                {
                    "steps": 4,
                    "steps_per_epoch": 3,
                    "init": {
                        "init_state": cfg.train.init_state,
                        "weights_dtype": "float32",
                        "lr_step_offset": 6,
                        "warmup_steps_by_group": [0],
                    },
                    "train_seconds": 1.0,
                    "valid": {"bleu": bleu, "chrf": 40.0},
                    "test": {"bleu": bleu - 1, "chrf": 41.0},
                }
            )
        )
        return 0

    return launch


# ---------------------------------------------------------------------------------------------- planning
def test_split_overrides_and_yaml(tmp_path):
    common, per = split_overrides(
        ["train.lr=1e-3", "pg:algorithm.options.baseline=mean", "task.options.path=C:/x", "pg:train.lr=1e-4"]
    )
    assert common == ["train.lr=1e-3", "task.options.path=C:/x"]
    assert per == {"pg": ["algorithm.options.baseline=mean", "train.lr=1e-4"]}
    y = tmp_path / "cmp.yaml"
    y.write_text(
        "algorithms: [mle, interpolation]\nseeds: [1, 2]\nbudget_steps: 100\n"
        "algorithm_options: {interpolation: {reward_scale: 20}}\n"
    )
    data = load_compare_yaml(y)
    assert data["algorithm_overrides"] == {"interpolation": ["algorithm.options.reward_scale=20"]}
    y.write_text("algoritms: [mle]\n")
    with pytest.raises(ConfigError, match="unknown key"):
        load_compare_yaml(y)


def test_the_command_line_wins_over_the_compare_file(tmp_path):
    """A key=value on the command line reaches every row, also a row whose own settings in the file
    (algorithm_options) set the same key; a label:key=value there wins over both."""
    import argparse

    y = tmp_path / "cmp.yaml"
    y.write_text(
        "config: configs/g2p_transformer.yaml\nout: OUT\nalgorithms: [raml, pg]\nseeds: [1]\nbudget_steps: 10\n"
        "algorithm_options: {raml: {tau: 0.8, num_samples: 3}, pg: {num_samples: 3}}\n"
    )
    parser = argparse.ArgumentParser()
    add_compare_parser(parser.add_subparsers(dest="command"))
    args = [
        "compare",
        "--compare-config",
        str(y),
        "algorithm.options.num_samples=5",
        "pg:algorithm.options.num_samples=7",
    ]
    spec = build_spec(parser.parse_args(args))

    def options(label):
        return load_config(spec.config, [*spec.overrides, *spec.variant(label).overrides]).algorithm.options

    assert options("raml") == {"tau": 0.8, "num_samples": 5}
    assert options("pg") == {"num_samples": 7}


def test_plan_runs_share_checkpoint_budget_and_per_algorithm_overrides(tmp_path):
    spec = spec_for(
        tmp_path,
        algorithm_overrides={"raml": ["algorithm.options.tau=0.8"]},
        reward="neg_edit",
        variants={"scst": {"algorithm": "pg", "overrides": ["algorithm.options.baseline=greedy"]}},
        algorithms=["mle", "raml", "scst"],
    )
    out = Path(spec.out)
    pre = plan_pretrain(spec, out)
    assert pre is not None and "train.max_steps=6" in pre.overrides and "algorithm.name=mle" in pre.overrides
    runs = {r.name: r for r in plan_runs(spec, out)}
    assert list(runs) == ["mle/seed1", "raml/seed1", "scst/seed1", "mle/seed2", "raml/seed2", "scst/seed2"]
    raml = runs["raml/seed2"].overrides
    assert f"train.init_from={json.dumps(str(out / 'pretrain' / 'checkpoint_best.pt'))}" in raml
    assert "train.max_steps=4" in raml and "train.seed=2" in raml and "algorithm.options.tau=0.8" in raml
    assert "algorithm.options.reward=neg_edit" in raml
    assert "algorithm.options.reward=neg_edit" not in runs["mle/seed1"].overrides  # MLE takes no reward
    assert "algorithm.name=pg" in runs["scst/seed1"].overrides
    cfg = load_config(spec.config, raml)
    assert cfg.algorithm.options == {"reward": "neg_edit", "tau": 0.8} and cfg.train.max_steps == 4
    assert uses_reward("pg") and not uses_reward("scheduled_sampling")
    assert plan_pretrain(spec_for(tmp_path, pretrain_steps=0), out) is None
    scratch = plan_runs(spec_for(tmp_path, pretrain_steps=0), out)[0].overrides
    assert "train.init_from=null" in scratch


def test_share_critic_pre_trains_each_critic_once_and_every_seed_starts_from_it(tmp_path):
    small = "algorithm.options.critic_options=" + json.dumps(
        {"d_model": 8, "n_heads": 2, "ffn_dim": 8, "encoder_layers": 1, "decoder_layers": 1}
    )
    spec = spec_for(
        tmp_path,
        algorithms=["mle", "erac", "vaml"],
        share_critic=True,
        algorithm_overrides={
            "erac": ["algorithm.options.critic_pretrain_steps=50", small],
            "vaml": ["algorithm.options.q_steps=30", small],
        },
    )
    out = Path(spec.out)
    critics = {r.name: r for r in plan_critics(spec, out)}
    assert list(critics) == ["erac/critic", "vaml/critic"]  # mle has no critic
    erac_critic = load_config(spec.config, critics["erac/critic"].overrides)
    assert erac_critic.run_dir == str(out / "critics" / "erac") and erac_critic.train.max_steps == 1
    assert erac_critic.train.seed == 1 and erac_critic.algorithm.options["critic_pretrain_steps"] == 50
    runs = {r.name: load_config(spec.config, r.overrides) for r in plan_runs(spec, out)}
    for seed in (1, 2):
        erac = runs[f"erac/seed{seed}"].algorithm.options
        assert erac["critic_from"] == str(out / "critics" / "erac" / "checkpoint_last.pt")
        assert erac["critic_pretrain_steps"] == 0 and runs[f"erac/seed{seed}"].train.max_steps == 4
        vaml = runs[f"vaml/seed{seed}"].algorithm.options
        assert vaml["critic_from"].endswith("critics/vaml/checkpoint_last.pt") and vaml["q_steps"] == 0
        assert "critic_from" not in runs[f"mle/seed{seed}"].algorithm.options
    unshared = {r.name: r for r in plan_runs(replace(spec, share_critic=False), out)}
    assert plan_critics(replace(spec, share_critic=False), out) == []
    assert "critic_from" not in load_config(spec.config, unshared["erac/seed1"].overrides).algorithm.options


def test_a_critic_is_done_with_its_checkpoint_and_planned_only_while_a_seed_needs_it(tmp_path):
    """A carried comparison folder keeps a critic's results but not its checkpoint: the critic is not done then;
    once every seed of its label has finished, no critic is planned at all."""
    spec = spec_for(tmp_path, algorithms=["mle", "erac"], share_critic=True)
    out = Path(spec.out)
    (critic,) = plan_critics(spec, out)
    critic.run_dir.mkdir(parents=True)
    (critic.run_dir / "results.json").write_text("{}")
    assert not critic.done
    (critic.run_dir / "checkpoint_last.pt").write_bytes(b"critic")
    assert critic.done
    for run in plan_runs(spec, out):
        if run.label == "erac":
            run.run_dir.mkdir(parents=True)
            (run.run_dir / "results.json").write_text("{}")
    assert plan_critics(spec, out) == []


def test_a_finished_run_with_other_settings_is_refused_not_reused(tmp_path):
    """check_runs: a finished run whose saved config differs from what the comparison would now run (an algorithm
    option changed in the suite) stops the comparison with the changed settings named; places (run_dir, init_from,
    critic_from, data paths) may differ, a folder carried between machines, and settings the run did not record
    are not compared."""
    from seqlab.compare.runner import check_runs
    from seqlab.config import save_config

    spec = spec_for(tmp_path, algorithms=["raml"], seeds=[1])
    out = Path(spec.out)
    (run,) = plan_runs(spec, out)
    run.run_dir.mkdir(parents=True)
    (run.run_dir / "results.json").write_text("{}")
    cfg = load_config(spec.config, [*run.overrides, "run_dir=/elsewhere/raml/seed1"])
    save_config(cfg, run.run_dir / "config.yaml")
    check_runs(spec.config, [run])  # the same settings in another place: reused
    added = replace(run, overrides=[*run.overrides, "algorithm.options.tau=0.9"])
    check_runs(spec.config, [added])  # an option the run did not record: its value then is not known
    cfg.algorithm.options["tau"] = 0.5
    save_config(cfg, run.run_dir / "config.yaml")
    changed = replace(added, overrides=[*added.overrides, "train.lr=0.5"])
    with pytest.raises(
        ConfigError, match=r"raml/seed1 finished with other settings.*algorithm\.options\.tau.*train\.lr"
    ):
        check_runs(spec.config, [changed])
    # a run that recorded every option it resolved (results.json, since session 12): a default changed since
    # counts as a change
    from seqlab.algorithms.base import resolved_options

    cfg.algorithm.options.pop("tau")
    save_config(cfg, run.run_dir / "config.yaml")
    recorded = resolved_options("raml", cfg.algorithm.options)
    (run.run_dir / "results.json").write_text(json.dumps({"algorithm_options": recorded}))
    check_runs(spec.config, [run])
    (run.run_dir / "results.json").write_text(json.dumps({"algorithm_options": {**recorded, "tau": 0.123}}))
    with pytest.raises(ConfigError, match=r"algorithm\.options\.tau"):
        check_runs(spec.config, [run])


def critic_writing_launcher(calls: list):
    """fake_launcher, whose critic runs also leave the checkpoint_last.pt a shared critic is done with."""
    launch = fake_launcher(calls)

    def with_critic_checkpoint(run, config, gpu):
        code = launch(run, config, gpu)
        if run.name.endswith("/critic"):
            Path(load_config(config, run.overrides).run_dir, "checkpoint_last.pt").write_bytes(b"critic")
        return code

    return with_critic_checkpoint


def test_shared_critics_train_before_the_runs_that_start_from_them(tmp_path):
    calls: list = []
    with_critic_checkpoint = critic_writing_launcher(calls)
    spec = spec_for(tmp_path, algorithms=["mle", "erac"], share_critic=True)
    run_compare(spec, launcher=with_critic_checkpoint, echo=lambda s: None)
    names = [name for name, _ in calls]
    assert names.count("erac/critic") == 1
    assert names.index("erac/critic") < min(names.index("erac/seed1"), names.index("erac/seed2"))


def test_critics_only_stops_after_the_critics_and_the_runs_that_need_none(tmp_path):
    """``critics_only``: the critic and the runs that start from no shared critic (mle) train, in one batch; the
    runs from the critic wait for a later call, which trains only them, from the critic's checkpoint."""
    calls: list = []
    with_critic_checkpoint = critic_writing_launcher(calls)
    spec = spec_for(tmp_path, algorithms=["mle", "erac"], share_critic=True)
    summary = run_compare(spec, launcher=with_critic_checkpoint, echo=lambda s: None, critics_only=True)
    assert sorted(name for name, _ in calls) == ["erac/critic", "mle/seed1", "mle/seed2", "pretrain"]
    assert summary["failed"] == [] and "report" not in summary
    calls.clear()
    run_compare(spec, launcher=with_critic_checkpoint, echo=lambda s: None)
    trained = sorted(name for name, _ in calls if "/" in name and not name.startswith("score"))
    assert trained == ["erac/seed1", "erac/seed2"], calls


def test_queue_first_moves_the_named_labels_runs_to_the_front(tmp_path):
    spec = spec_for(tmp_path, algorithms=["mle", "raml", "pg"], queue_first=["pg", "raml"])
    names = [r.name for r in plan_runs(spec, Path(spec.out))]
    assert names == ["pg/seed1", "pg/seed2", "raml/seed1", "raml/seed2", "mle/seed1", "mle/seed2"]
    with pytest.raises(ConfigError, match=r"queue_first names \['spg'\]"):
        plan_runs(spec_for(tmp_path, algorithms=["mle", "pg"], queue_first=["spg"]), Path(spec.out))


def test_runs_share_the_checkpoints_tokenizers(tmp_path):
    import torch

    from seqlab.compare.runner import tokenizer_source

    out = tmp_path / "cmp"
    assert tokenizer_source(out, None) == out / "pretrain" / "tokenizers"
    (tmp_path / "mle" / "tokenizers").mkdir(parents=True)
    torch.save({"tokenizers": str(tmp_path / "elsewhere")}, tmp_path / "mle" / "ckpt.pt")
    assert tokenizer_source(out, str(tmp_path / "mle" / "ckpt.pt")) == tmp_path / "mle" / "tokenizers"
    (tmp_path / "elsewhere").mkdir()
    assert tokenizer_source(out, str(tmp_path / "mle" / "ckpt.pt")) == tmp_path / "elsewhere"


def test_cli_flags_build_the_spec(tmp_path):
    import argparse

    parser = argparse.ArgumentParser()
    add_compare_parser(parser.add_subparsers(dest="command"))
    cfg = write_task(tmp_path)
    args = parser.parse_args(
        [
            "compare",
            "--config",
            str(cfg),
            "--algorithms",
            "mle,pg",
            "--seeds",
            "1,2,3",
            "--pretrain-steps",
            "10",
            "--budget-steps",
            "5",
            "--out",
            str(tmp_path / "o"),
            "train.lr=0.002",
            "pg:algorithm.options.num_samples=2",
        ]
    )
    spec = build_spec(args)
    assert spec.algorithms == ["mle", "pg"] and spec.seeds == [1, 2, 3] and spec.overrides == ["train.lr=0.002"]
    assert spec.algorithm_overrides == {"pg": ["algorithm.options.num_samples=2"]}
    bad = parser.parse_args(
        ["compare", "--config", str(cfg), "--algorithms", "mle", "--seeds", "1", "--out", str(tmp_path / "o")]
    )
    with pytest.raises(ConfigError, match="budget"):
        build_spec(bad)
    with pytest.raises(ConfigError, match="not in --algorithms"):
        build_spec_args(tmp_path, ["pg:train.lr=1"])


def test_cli_algorithms_narrow_a_compare_yaml(tmp_path):
    """``--algorithms`` runs a subset of a suite's rows; the suite's settings of the rows left out are dropped, the
    rows kept keep theirs, and a command-line override for a row left out is still an error."""
    suite = tmp_path / "suite.yaml"
    suite.write_text(
        "algorithms: [mle, raml, pg]\nseeds: [1]\nbudget_steps: 3\n"
        "algorithm_options: {raml: {tau: 0.4}, pg: {num_samples: 2}}\n"
        "algorithm_overrides: {pg: [train.lr=0.001]}\nqueue_first: [raml, pg]\n",
        encoding="utf-8",
    )
    spec = build_spec_args(tmp_path, ["--compare-config", str(suite), "--algorithms", "mle,pg"])
    assert spec.algorithms == ["mle", "pg"]
    assert set(spec.algorithm_overrides) == {"pg"} and "train.lr=0.001" in spec.algorithm_overrides["pg"]
    assert any("num_samples" in item for item in spec.algorithm_overrides["pg"]) and spec.queue_first == ["pg"]
    with pytest.raises(ConfigError, match="not in --algorithms"):
        build_spec_args(tmp_path, ["--compare-config", str(suite), "--algorithms", "mle,pg", "raml:train.lr=1"])


def test_detect_gpus(monkeypatch):
    assert detect_gpus("none") == []
    assert detect_gpus("0,3") == ["0", "3"]
    import torch

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,5")
    assert detect_gpus("auto") == ["4", "5"]
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    assert detect_gpus("auto") == []


# ---------------------------------------------------------------------------------------------- execution
def test_scheduler_keeps_one_run_per_gpu(tmp_path):
    runs = [Run(f"r{i}", tmp_path / f"r{i}", []) for i in range(5)]
    busy: dict[str, int] = {}
    peak: dict[str, int] = {}
    lock = threading.Lock()

    def launch(run: Run, config: str, gpu: str | None) -> int:
        with lock:
            busy[gpu] = busy.get(gpu, 0) + 1
            peak[gpu] = max(peak.get(gpu, 0), busy[gpu])
        time.sleep(0.05)
        run.run_dir.mkdir()
        (run.run_dir / "results.json").write_text("{}")
        with lock:
            busy[gpu] -= 1
        return 0

    (tmp_path / "r0").mkdir()
    (tmp_path / "r0" / "results.json").write_text("{}")  # finished before: skipped
    outcomes = execute(runs, "cfg.yaml", ["0", "1"], launch, echo=lambda s: None)
    status = {o.name: o.status for o in outcomes}
    assert status == {"r0": "skipped", "r1": "done", "r2": "done", "r3": "done", "r4": "done"}
    assert peak == {"0": 1, "1": 1}  # both GPUs used, never two runs on one
    failed = execute([Run("bad", tmp_path / "bad", [])], "cfg.yaml", [], lambda r, c, g: 1, echo=lambda s: None)
    assert failed[0].status == "failed" and failed[0].gpu is None


def test_scheduler_runs_several_per_gpu(tmp_path):
    runs = [Run(f"r{i}", tmp_path / f"r{i}", []) for i in range(6)]
    busy = {"n": 0, "peak": 0}
    lock = threading.Lock()
    gpus_seen: set[str | None] = set()

    def launch(run: Run, config: str, gpu: str | None) -> int:
        with lock:
            busy["n"] += 1
            busy["peak"] = max(busy["peak"], busy["n"])
            gpus_seen.add(gpu)
        time.sleep(0.05)
        run.run_dir.mkdir()
        (run.run_dir / "results.json").write_text("{}")
        with lock:
            busy["n"] -= 1
        return 0

    outcomes = execute(runs, "cfg.yaml", ["0"], launch, echo=lambda s: None, runs_per_gpu=3)
    assert all(o.status == "done" for o in outcomes) and len(outcomes) == 6
    assert 1 < busy["peak"] <= 3 and gpus_seen == {"0"}
    with pytest.raises(ConfigError, match="runs_per_gpu"):
        execute(runs[:1], "cfg.yaml", ["0"], launch, runs_per_gpu=0)


def test_compare_resumes_reports_and_refuses_changed_budget(tmp_path):
    pytest.importorskip("matplotlib")
    calls: list = []
    spec = spec_for(tmp_path)
    run_compare(spec, launcher=fake_launcher(calls), echo=lambda s: None, pretrain_only=True)
    assert [c[0] for c in calls] == ["pretrain"]  # stops after the shared pre-training
    summary = run_compare(spec, launcher=fake_launcher(calls), echo=lambda s: None)
    assert [c[0] for c in calls] == [
        "pretrain",
        "mle/seed1",
        "raml/seed1",
        "mle/seed2",
        "raml/seed2",
        "start checkpoint",
    ]  # the shared checkpoint scored on test, once
    assert summary["failed"] == []
    out = Path(spec.out)
    rep = out / "report"
    for name in ("curves.png", "space.png", "schedules.png"):  # schedules: lambda / truth_prob of the train rows
        data = (rep / name).read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 5000
    md = (rep / "report.md").read_text()
    assert "| MLE | 2 |" in md and "| RAML | 2 |" in md and "(baseline)" in md
    assert "| shared MLE checkpoint (start) | 1 | 50.00 |" in md and "p (Holm) vs start" in md
    assert "4 steps = 1.33 epochs of 3 steps" in md and "**label smoothing (every run)**: 0" in md
    assert "schedule step 6" in md and "![schedules](schedules.png)" in md
    html = (rep / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 3 and 'src="http' not in html and "<table>" in html
    summ = json.loads((rep / "summary.json").read_text())
    assert summ["primary_metric"] == "bleu"
    assert summ["test"]["bleu"]["raml"]["n"] == 2 and summ["test"]["bleu"]["raml"]["mean"] == pytest.approx(29.5)
    sig = summ["significance"]["raml"]
    assert sig["seeds"] == [1, 2] and 0 < sig["p_value"] <= 1 and sig["delta"] > 0  # RAML's outputs are better
    assert sig["p_holm"] == sig["p_value"]  # one test against MLE: Holm leaves it as it is
    vs_start = summ["significance_vs_start"]
    assert set(vs_start) == {"mle", "raml"} and vs_start["raml"]["seeds"] == [1, 2]
    smallest = min(t["p_value"] for t in vs_start.values())
    assert min(t["p_holm"] for t in vs_start.values()) == pytest.approx(min(2 * smallest, 1.0))
    assert summ["start"]["test"]["bleu"] == 50.0 and summ["budget"]["steps_per_epoch"] == [3.0] * 4
    # rerun: everything is finished, nothing is launched again
    calls.clear()
    run_compare(spec, launcher=fake_launcher(calls), echo=lambda s: None)
    assert calls == []
    # a third seed is added; the finished ones are kept
    run_compare(spec_for(tmp_path, seeds=[1, 2, 3]), launcher=fake_launcher(calls), echo=lambda s: None)
    assert [c[0] for c in calls] == ["mle/seed3", "raml/seed3"]  # the start's scores are kept too
    # the same directory with another budget would mix incomparable runs
    with pytest.raises(ConfigError, match="budget_steps"):
        run_compare(spec_for(tmp_path, budget_steps=8), launcher=fake_launcher(calls), echo=lambda s: None)


def test_report_statistics_and_missing_runs(tmp_path):
    pytest.importorskip("matplotlib")
    s = Stats.of([1.0, 2.0, 4.0])
    assert (s.mean, s.min, s.max, s.n) == (pytest.approx(7 / 3), 1.0, 4.0, 3)
    assert s.std == pytest.approx(1.5275, abs=1e-4)  # sample std (ddof = 1)
    assert Stats.of([3.0]).std == 0.0
    calls: list = []
    spec = spec_for(tmp_path, algorithms=["mle", "raml", "pg"], seeds=[1])

    def launch(run, config, gpu):
        return 1 if run.name.startswith("pg") else fake_launcher(calls)(run, config, gpu)

    summary = run_compare(spec, launcher=launch, echo=lambda s: None)
    assert summary["failed"] == ["pg/seed1"]
    md = (Path(spec.out) / "report" / "report.md").read_text()
    assert "Unfinished runs (not in the table): pg/seed1" in md
    paths = write_report(spec.out, baseline="raml", n_samples=50)
    assert "(baseline)" in paths["markdown"].read_text()


def test_a_report_can_name_rows_whose_runs_were_put_beside_the_comparisons(tmp_path):
    """write_report(labels): a row trained elsewhere (same start and settings) and put under runs/ is reported with
    the comparison's rows and tested against the baseline; without labels the report keeps the comparison's rows."""
    pytest.importorskip("matplotlib")
    spec = spec_for(tmp_path, algorithms=["mle", "raml"], seeds=[1, 2])
    run_compare(spec, launcher=fake_launcher([]), echo=lambda s: None)
    out = Path(spec.out)
    shutil.copytree(out / "runs" / "raml", out / "runs" / "raml_elsewhere")
    write_report(out, baseline="mle", n_samples=50, labels=["mle", "raml", "raml_elsewhere"])
    summ = json.loads((out / "report" / "summary.json").read_text())
    assert list(summ["runs"]) == ["mle", "raml", "raml_elsewhere"]
    assert summ["significance"]["raml_elsewhere"]["delta"] == summ["significance"]["raml"]["delta"]
    write_report(out, baseline="mle", n_samples=50)
    assert list(json.loads((out / "report" / "summary.json").read_text())["runs"]) == ["mle", "raml"]


@pytest.mark.slow
def test_compare_end_to_end_with_real_training(tmp_path):
    """Real subprocesses: pre-training, MLE and PG from its checkpoint, the report."""
    pytest.importorskip("matplotlib")
    spec = CompareSpec(
        config=str(write_task(tmp_path)),
        out=str(tmp_path / "cmp"),
        algorithms=["mle", "pg"],
        seeds=[1],
        pretrain_steps=8,
        budget_steps=4,
        gpus="none",
        reward="neg_edit",
        algorithm_overrides={"pg": ["algorithm.options.num_samples=2"]},
        extra_tests={"extra": [str(tmp_path / "data" / "valid.src"), str(tmp_path / "data" / "valid.tgt")]},
    )
    summary = run_compare(spec, echo=lambda s: None)
    assert summary["failed"] == [], summary
    out = Path(spec.out)
    assert (out / "runs" / "pg" / "seed1" / "tokenizers").is_dir()  # copied from the pre-training
    cfg = load_config(out / "runs" / "pg" / "seed1" / "config.yaml")
    assert cfg.train.init_from == str(out / "pretrain" / "checkpoint_best.pt") and cfg.train.max_steps == 4
    assert cfg.train.init_state == "full"
    res = json.loads((out / "runs" / "pg" / "seed1" / "results.json").read_text())
    assert res["steps"] == 4 and res["init"]["moments_continued"] == res["init"]["parameters"]
    import torch

    best_step = torch.load(out / "pretrain" / "checkpoint_best.pt", weights_only=False)["step"]
    assert res["init"]["lr_step_offset"] == best_step  # the schedule continues at the shared checkpoint's step
    for where in (out / "start", out / "runs" / "mle" / "seed1" / "extra"):
        assert "extra" in json.loads((where / "scores.json").read_text())
    entries = {n for n, _, _ in __import__("seqlab.compare.report", fromlist=["x"]).benchmark_entries(out, "t")}
    assert {"t_pg_extra_bleu_mean", "t_pg_extra_bleu_std", "t_pg_extra_bleu_n", "t_start_test_bleu"} <= entries
    assert json.loads((out / "test.refs.json").read_text())["metrics"] == ["bleu", "chrf"]
    assert (out / "report" / "report.html").stat().st_size > 10_000


def exited_at_once(envs: list, returncode: int):
    """Stands in for subprocess.Popen (seqlab.launch.spawn): records each run's environment; exits at once."""

    class Exited:
        def __init__(self, argv, env, **kwargs):
            envs.append(env)

        def wait(self, timeout=None):
            return returncode

    return Exited


def test_runs_sharing_a_gpu_share_its_memory(tmp_path, monkeypatch):
    """With --runs-per-gpu N each run's trainer is told to cap its CUDA cache at 0.95 / N of the GPU."""
    import seqlab.compare.runner as runner
    from seqlab.train.trainer import MEMORY_FRACTION_ENV

    seen: list = []
    monkeypatch.setattr(runner.launch.subprocess, "Popen", exited_at_once(seen, 0))
    monkeypatch.setenv("PYTORCH_CUDA_ALLOC_CONF", "")
    monkeypatch.delenv("PYTORCH_CUDA_ALLOC_CONF")
    monkeypatch.delenv(MEMORY_FRACTION_ENV, raising=False)
    runner.subprocess_launcher(Run("a", tmp_path / "a", []), "cfg.yaml", "0", memory_fraction=0.95 / 4)
    runner.subprocess_launcher(Run("b", tmp_path / "b", []), "cfg.yaml", "1")
    assert seen[0][MEMORY_FRACTION_ENV] == "0.2375" and seen[0]["CUDA_VISIBLE_DEVICES"] == "0"
    assert seen[0]["PYTORCH_CUDA_ALLOC_CONF"] == "expandable_segments:True"
    assert MEMORY_FRACTION_ENV not in seen[1] and seen[1]["CUDA_VISIBLE_DEVICES"] == "1"


def test_runs_out_of_memory_while_sharing_are_retried_alone(tmp_path):
    """A run that hits CUDA OOM next to others gets a second attempt once the shared phase is over;
    other failures are not retried."""
    pytest.importorskip("matplotlib")
    calls: list = []
    attempts: dict[str, int] = {}
    finish = fake_launcher(calls)

    def launch(run: Run, config: str, gpu: str | None) -> int:
        attempts[run.name] = attempts.get(run.name, 0) + 1
        run.run_dir.mkdir(parents=True, exist_ok=True)
        with open(run.run_dir / "train.out", "a") as log:
            log.write(f"$ train {run.name}\n")
            if run.name.startswith("raml") and attempts[run.name] == 1:
                log.write("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB\n")
                return 1
            if run.name == "mle/seed2":
                log.write("ValueError: something else\n")
                return 1
        return finish(run, config, gpu)

    spec = spec_for(tmp_path, gpus="0", runs_per_gpu=2)
    summary = run_compare(spec, launcher=launch, echo=lambda s: None)
    assert attempts == {
        "pretrain": 1,
        "mle/seed1": 1,
        "raml/seed1": 2,
        "mle/seed2": 1,
        "raml/seed2": 2,
        "start checkpoint": 1,
    }
    assert summary["failed"] == ["mle/seed2"]
    statuses = {o["name"]: o["status"] for o in summary["outcomes"]}
    assert statuses["raml/seed1"] == statuses["raml/seed2"] == "done"
    # a rerun finds raml's last attempt finished and mle/seed2's failure not memory-related
    assert not ran_out_of_memory(Run("raml/seed1", Path(spec.out) / "runs" / "raml" / "seed1", []))


def test_gpu_memory_share_bounds_the_comparison_on_a_gpu_shared_with_other_work(tmp_path, monkeypatch):
    """--gpu-memory-share S with --runs-per-gpu N caps each run at S / N; a share outside (0, 1] is refused."""
    import seqlab.compare.runner as runner
    from seqlab.train.trainer import MEMORY_FRACTION_ENV

    envs: list = []
    monkeypatch.setattr(runner.launch.subprocess, "Popen", exited_at_once(envs, 1))
    spec = spec_for(tmp_path, gpus="0", runs_per_gpu=2, gpu_memory_share=0.5, pretrain_steps=0)
    with pytest.raises(RuntimeError, match="no finished runs"):  # every fake run failed: nothing to report
        run_compare(spec, echo=lambda s: None)
    assert len(envs) == 4 and {env.get(MEMORY_FRACTION_ENV) for env in envs} == {"0.2500"}
    with pytest.raises(ConfigError, match="gpu_memory_share"):
        run_compare(spec_for(tmp_path, gpus="0", gpu_memory_share=1.5, pretrain_steps=0), echo=lambda s: None)


def test_plan_check_accepts_settings_added_since_at_their_defaults(tmp_path):
    from seqlab.compare.runner import _check_plan

    spec = spec_for(tmp_path)
    out = Path(spec.out)
    _check_plan(out, spec)
    record = json.loads((out / "compare.json").read_text())
    train = record["fingerprint"]["config"]["train"]
    assert train.pop("loss_chunk_tokens") == 32768  # as if written before seqlab had this setting
    (out / "compare.json").write_text(json.dumps(record))
    _check_plan(out, spec)  # the new setting at its default: the same comparison
    (out / "compare.json").write_text(json.dumps(record))  # the old record again, then a changed value
    with pytest.raises(ConfigError, match="different config"):
        _check_plan(out, spec_for(tmp_path, overrides=["train.loss_chunk_tokens=1000"]))


# ---------------------------------------------------------------------------------------------- the protocol
def test_a_resumed_comparison_refuses_a_pretraining_that_gives_another_start(tmp_path):
    """Carried without its checkpoint, a comparison pre-trains again; with other code the checkpoint can differ
    (session 14: test BLEU 40.90 against the 40.49 every finished run started from) and must not be mixed in."""
    calls: list = []
    spec = spec_for(tmp_path)
    run_compare(spec, launcher=fake_launcher(calls, pretrain_test={"bleu": 50.0, "chrf": 50.0}), echo=lambda s: None)
    out = Path(spec.out)
    assert json.loads((out / "start" / "scores.json").read_text())["test"]["bleu"] == 50.0
    shutil.rmtree(out / "pretrain")  # what travels between device sessions: no checkpoint
    calls.clear()
    other = fake_launcher(calls, pretrain_test={"bleu": 50.4, "chrf": 50.0})
    with pytest.raises(
        ConfigError, match=r"not the one the finished runs started from \(test bleu 50.40 against 50.00\)"
    ):
        run_compare(spec_for(tmp_path, seeds=[1, 2, 3]), launcher=other, echo=lambda s: None)
    assert [c[0] for c in calls] == ["pretrain"]  # no run trained from the other start
    shutil.rmtree(out / "pretrain")
    calls.clear()
    same = fake_launcher(calls, pretrain_test={"bleu": 50.0, "chrf": 50.0})
    run_compare(spec_for(tmp_path, seeds=[1, 2, 3]), launcher=same, echo=lambda s: None)
    assert [c[0] for c in calls] == ["pretrain", "mle/seed3", "raml/seed3"]  # the same start: the new seeds run
    assert len(json.loads((out / "start" / "checkpoint.json").read_text())["weights_sha1"]) == 40


def test_a_comparison_older_than_the_digest_scores_its_start_again(tmp_path):
    """Finished runs without OUT/start/checkpoint.json (before the digest): the start is scored again and must
    score what it scored for them before any new run trains from it."""
    pytest.importorskip("matplotlib")
    calls: list = []
    spec = spec_for(tmp_path)
    run_compare(spec, launcher=fake_launcher(calls), echo=lambda s: None)
    start = Path(spec.out) / "start"
    (start / "checkpoint.json").unlink()  # as a comparison of session 12 left it

    def rescoring(bleu: float):
        def launch(run, config, gpu):
            if "verify" not in run.name:
                return fake_launcher(calls)(run, config, gpu)
            calls.append((run.name, gpu))
            run.run_dir.mkdir(parents=True, exist_ok=True)
            (run.run_dir / "scores.json").write_text(json.dumps({"test": {"bleu": bleu, "chrf": 50.0}}))
            return 0

        return launch

    calls.clear()
    with pytest.raises(ConfigError, match=r"started from \(test bleu 49.00 against 50.00\)"):
        run_compare(spec_for(tmp_path, seeds=[1, 2, 3]), launcher=rescoring(49.0), echo=lambda s: None)
    assert [c[0] for c in calls] == ["start checkpoint (verify)"]  # nothing trained from the other start
    shutil.rmtree(start / "verify")
    calls.clear()
    run_compare(spec_for(tmp_path, seeds=[1, 2, 3]), launcher=rescoring(50.0), echo=lambda s: None)
    assert [c[0] for c in calls] == ["start checkpoint (verify)", "mle/seed3", "raml/seed3"]
    assert (start / "checkpoint.json").exists()  # from now on the digest answers


def test_the_start_weights_digest_is_kept_and_checked(tmp_path):
    import torch

    from seqlab.compare.runner import check_start_digest

    out, ckpt, notes = tmp_path / "cmp", tmp_path / "mle.pt", []
    (out / "runs" / "mle" / "seed1").mkdir(parents=True)
    (out / "runs" / "mle" / "seed1" / "results.json").write_text("{}")
    weights = {"w": torch.arange(6.0).reshape(2, 3), "b": torch.tensor(1.5)}
    torch.save({"model": weights, "step": 6, "train_seconds": 10.0}, ckpt)
    check_start_digest(out, ckpt, notes.append)
    assert "runs finished before the start's weights were recorded" in notes[0]  # an older comparison: noted
    torch.save({"model": dict(weights), "step": 9, "train_seconds": 99.0}, ckpt)  # the same weights, saved again
    check_start_digest(out, ckpt, notes.append)
    assert len(notes) == 1
    torch.save({"model": {**weights, "b": torch.tensor(1.25)}, "step": 6, "train_seconds": 10.0}, ckpt)
    with pytest.raises(ConfigError, match="other weights than the one the finished runs started from"):
        check_start_digest(out, ckpt, notes.append)


def test_a_start_at_another_path_is_accepted_when_its_weights_are_the_recorded_ones(tmp_path):
    """Session 16 re-made the start on another machine at another path: the same weights (digest) continue the
    comparison; other weights at the new path are still refused."""
    import torch

    from seqlab.compare.runner import _check_plan, check_start_digest

    weights = {"w": torch.arange(6.0).reshape(2, 3)}
    first, moved = tmp_path / "a" / "best.pt", tmp_path / "b" / "best.pt"
    for path in (first, moved):
        path.parent.mkdir()
        torch.save({"model": weights, "step": 6}, path)
    out = tmp_path / "cmp"
    _check_plan(out, spec_for(tmp_path, init_from=str(first), pretrain_steps=0))
    (out / "runs" / "mle" / "seed1").mkdir(parents=True)
    (out / "runs" / "mle" / "seed1" / "results.json").write_text("{}")
    with pytest.raises(ConfigError, match="different init_from"):  # no digest recorded yet: the path decides
        _check_plan(out, spec_for(tmp_path, init_from=str(moved), pretrain_steps=0))
    check_start_digest(out, first, lambda s: None)
    _check_plan(out, spec_for(tmp_path, init_from=str(moved), pretrain_steps=0))  # same weights, new path
    assert json.loads((out / "compare.json").read_text())["fingerprint"]["init_from"] == str(moved)
    torch.save({"model": {"w": torch.zeros(2, 3)}, "step": 6}, first)  # other weights at the first path
    with pytest.raises(ConfigError, match="different init_from"):
        _check_plan(out, spec_for(tmp_path, init_from=str(first), pretrain_steps=0))


def test_runs_continue_the_pretraining_schedule_with_one_label_smoothing(tmp_path):
    """init_state full (default): every run continues the shared checkpoint's optimizer state, with the
    pre-training's optimizer / schedule settings unless an algorithm overrides them; one label smoothing."""
    spec = spec_for(
        tmp_path,
        pretrain_overrides=["train.lr=0.02", "train.scheduler=inverse_sqrt", "train.warmup_steps=3"],
        overrides=["train.label_smoothing=0.1"],
        algorithm_overrides={"raml": ["train.lr=0.001"]},
    )
    out = Path(spec.out)
    runs = {r.name: load_config(spec.config, [*spec.overrides, *r.overrides]) for r in plan_runs(spec, out)}
    mle, raml = runs["mle/seed1"].train, runs["raml/seed2"].train
    assert mle.init_state == "full" and mle.init_from == str(out / "pretrain" / "checkpoint_best.pt")
    assert (mle.lr, mle.scheduler, mle.warmup_steps, mle.optimizer) == (0.02, "inverse_sqrt", 3, "adam")
    assert raml.lr == 0.001 and raml.scheduler == "inverse_sqrt"  # a per-algorithm override still applies
    assert {c.train.label_smoothing for c in runs.values()} == {0.1} and not mle.allow_short_schedules
    # one value for every row, also where the task config says otherwise
    runs = [
        load_config(spec.config, r.overrides)
        for r in plan_runs(spec_for(tmp_path, label_smoothing=0.2, allow_short_schedules=True), out)
    ]
    assert {c.train.label_smoothing for c in runs} == {0.2} and all(c.train.allow_short_schedules for c in runs)
    with pytest.raises(ConfigError, match="label_smoothing is one value"):
        plan_runs(spec_for(tmp_path, algorithm_overrides={"raml": ["train.label_smoothing=0"]}), out)
    # init_state model: the old protocol, weights only with the run's own optimizer settings
    old = load_config(spec.config, plan_runs(spec_for(tmp_path, init_state="model"), out)[0].overrides).train
    assert old.init_state == "model" and old.lr == 0.01 and old.scheduler == "constant"
    with pytest.raises(ConfigError, match="init_state"):
        plan_runs(spec_for(tmp_path, init_state="optimizer"), out)
    # --init-from: the settings stored in that checkpoint
    import torch

    torch.save(
        {
            "model": {},
            "config": {
                "train": {
                    "lr": 0.005,
                    "scheduler": "linear",
                    "optimizer": "adamw",
                    "betas": [0.9, 0.99],
                    "warmup_steps": 7,
                    "weight_decay": 0.0,
                }
            },
        },
        tmp_path / "mle.pt",
    )
    cfg = load_config(spec.config, plan_runs(spec_for(tmp_path, init_from=str(tmp_path / "mle.pt")), out)[0].overrides)
    assert (cfg.train.lr, cfg.train.scheduler, cfg.train.betas, cfg.train.warmup_steps) == (
        0.005,
        "linear",
        (0.9, 0.99),
        7,
    )


def test_compare_refuses_rounded_start_weights_and_old_protocol_changes(tmp_path):
    """A bf16-rounded shared checkpoint is refused for init_state full (the fp32 weights and optimizer state are
    gone); a comparison recorded before the protocol existed continues only with its protocol (init_state model)."""
    pytest.importorskip("matplotlib")
    spec = spec_for(tmp_path)
    with pytest.raises(ConfigError, match="bfloat16 weights"):
        run_compare(spec, launcher=fake_launcher([], pretrain_dtype="bf16"), echo=lambda s: None)
    run_compare(
        spec_for(tmp_path, init_state="model"), launcher=fake_launcher([], pretrain_dtype="bf16"), echo=lambda s: None
    )  # the old behaviour, on request
    from seqlab.compare.runner import _check_plan

    out = Path(spec.out)
    record = json.loads((out / "compare.json").read_text())
    for key in ("init_state", "label_smoothing"):
        del record["fingerprint"][key]  # as written before compare recorded them
    (out / "compare.json").write_text(json.dumps(record))
    _check_plan(out, spec_for(tmp_path, init_state="model", label_smoothing=0.0))
    (out / "compare.json").write_text(json.dumps(record))
    with pytest.raises(ConfigError, match="init_state"):
        _check_plan(out, spec_for(tmp_path))
    with pytest.raises(ConfigError, match="label_smoothing"):
        _check_plan(out, spec_for(tmp_path, init_state="model", label_smoothing=0.1))


def test_holm_adjustment():
    from seqlab.compare.report import holm

    assert holm({"a": 0.01, "b": 0.04, "c": 0.03}) == pytest.approx({"a": 0.03, "c": 0.06, "b": 0.06})
    assert holm({"a": 0.5, "b": 0.6}) == pytest.approx({"a": 1.0, "b": 1.0})  # capped at 1, monotone
    assert holm({"a": 0.001, "b": 0.2, "c": 0.04, "d": 0.3}) == pytest.approx(
        {"a": 0.004, "c": 0.12, "b": 0.4, "d": 0.4}
    )
    assert holm({}) == {}


def test_extra_test_sets_are_scored_reported_and_in_the_entries(tmp_path):
    pytest.importorskip("matplotlib")
    from seqlab.compare.report import benchmark_entries

    src, ref = tmp_path / "extra.src", tmp_path / "extra.ref"
    src.write_text("a b\nc d e\nf a\nb b c\n")
    ref.write_text("b a\ne d c\na f\nc b b\n")
    with pytest.raises(ConfigError, match="NAME=SRC,REF"):
        build_spec_args(tmp_path, ["--extra-test", f"bad name={src},{ref}"])
    with pytest.raises(ConfigError, match="no file"):
        build_spec_args(tmp_path, ["--extra-test", f"flickr={src},{tmp_path / 'missing'}"])
    spec = build_spec_args(
        tmp_path,
        [
            "--extra-test",
            f"flickr={src},{ref}",
            "--extra-test",
            f"coco={src},{ref}",
            "--init-state",
            "model",
            "--label-smoothing",
            "0.1",
            "--allow-short-schedules",
        ],
    )
    assert spec.extra_tests == {"flickr": [str(src), str(ref)], "coco": [str(src), str(ref)]}
    assert (spec.init_state, spec.label_smoothing, spec.allow_short_schedules) == ("model", 0.1, True)
    calls: list = []
    spec = spec_for(tmp_path, extra_tests={"flickr": [str(src), str(ref)]})
    run_compare(spec, launcher=fake_launcher(calls), echo=lambda s: None)
    scored = [c[0] for c in calls if "extra" in c[0] or "start" in c[0]]
    assert scored == [
        "start checkpoint",
        "mle/seed1 extra tests",
        "raml/seed1 extra tests",
        "mle/seed2 extra tests",
        "raml/seed2 extra tests",
    ]
    out = Path(spec.out)
    md = (out / "report" / "report.md").read_text()
    assert f"## Extra test set flickr ({src}, {ref})" in md and "on flickr:" in md
    summ = json.loads((out / "report" / "summary.json").read_text())
    flickr = summ["extra_tests"]["flickr"]
    assert flickr["test"]["bleu"]["raml"] == {"mean": 60.0, "std": 0.0, "min": 60.0, "max": 60.0, "n": 2}
    assert flickr["start"]["bleu"] == 50.0 and flickr["significance"]["raml"]["seeds"] == [1, 2]
    assert set(flickr["significance_vs_start"]) == {"mle", "raml"}
    entries = {name: value for name, value, _ in benchmark_entries(out, "tiny")}
    assert entries["tiny_raml_flickr_bleu_mean"] == 60.0 and entries["tiny_raml_flickr_bleu_n"] == 2
    assert entries["tiny_raml_flickr_bleu_std"] == 0.0 and entries["tiny_start_flickr_bleu"] == 50.0
    assert entries["tiny_mle_test_bleu_n"] == 2 and "tiny_raml_test_bleu_p_holm_vs_start" in entries
    assert "tiny_raml_test_bleu_p_vs_mle" in entries and "tiny_raml_flickr_bleu_p_holm_vs_mle" in entries
    best = summ["valid"]["raml"]
    assert entries["tiny_raml_valid_bleu_best_n"] == best["n"] == 2
    assert entries["tiny_raml_valid_bleu_best_mean"] == round(best["mean"], 4)
    # a later invocation adds a set: only the scoring of the new set runs, the first set stays in the report
    calls.clear()
    run_compare(
        spec_for(tmp_path, extra_tests={"coco": [str(src), str(ref)]}),
        launcher=fake_launcher(calls),
        echo=lambda s: None,
    )
    assert [c[0] for c in calls] == [
        "start checkpoint",
        "mle/seed1 extra tests",
        "raml/seed1 extra tests",
        "mle/seed2 extra tests",
        "raml/seed2 extra tests",
    ]
    summ = json.loads((out / "report" / "summary.json").read_text())
    assert set(summ["extra_tests"]) == {"flickr", "coco"}


def build_spec_args(tmp_path: Path, extra: list[str]) -> CompareSpec:
    import argparse

    parser = argparse.ArgumentParser()
    add_compare_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(
        [
            "compare",
            "--config",
            str(write_task(tmp_path)),
            "--algorithms",
            "mle",
            "--seeds",
            "1",
            "--budget-steps",
            "3",
            "--out",
            str(tmp_path / "o"),
            *extra,
        ]
    )
    return build_spec(args)


def test_score_checkpoint_decodes_extra_files_as_the_task_reads_them(tmp_path):
    """The scoring step on a real (tiny, 2-step) checkpoint: the test split and an extra set of plain files,
    one hypothesis per distinct source; scored sets are not decoded again."""
    from seqlab.compare.score import main as score_main
    from seqlab.compare.score import read_scores
    from seqlab.train.trainer import train

    cfg = load_config(write_task(tmp_path), [f"run_dir={tmp_path / 'run'}", "train.max_steps=2"])
    train(cfg, console=False)
    src, ref = tmp_path / "x.src", tmp_path / "x.ref"
    src.write_text("a b\nc d\na b\n")  # the repeated source is one item with two references
    ref.write_text("b a\nd c\nb a b\n")
    args = [
        "--checkpoint",
        str(tmp_path / "run" / "checkpoint_last.pt"),
        "--config",
        str(tmp_path / "task.yaml"),
        "--tokenizers",
        str(tmp_path / "run" / "tokenizers"),
        "--out",
        str(tmp_path / "scored"),
    ]
    assert score_main([*args, "--test", "--extra-test", f"x={src},{ref}"]) == 0
    scores = read_scores(tmp_path / "scored")
    assert set(scores) == {"test", "x"} and set(scores["x"]) == {"bleu", "chrf"}
    assert len((tmp_path / "scored" / "x.hyp.txt").read_text().splitlines()) == 2
    n_test = len(set((tmp_path / "data" / "test.src").read_text().splitlines()))
    assert len((tmp_path / "scored" / "test.hyp.txt").read_text().splitlines()) == n_test
    (tmp_path / "scored" / "x.hyp.txt").unlink()
    assert score_main([*args, "--extra-test", f"x={src},{ref}"]) == 0
    assert not (tmp_path / "scored" / "x.hyp.txt").exists()  # already scored: not decoded again


def test_schedules_are_checked_against_the_budget_before_anything_trains(tmp_path, monkeypatch):
    """compare counts the schedule stages of every scheduled algorithm (once per label) with the steps per
    epoch its runs will have, before the pre-training: a refusal names the run; --allow-short-schedules
    reaches the check and every run."""
    pytest.importorskip("matplotlib")
    import seqlab.erpo.budget as budget
    from seqlab.train.trainer import Trainer

    seen: list = []

    def check(algorithm, steps_per_epoch, total_steps, allow_short=False):
        seen.append((algorithm.name, steps_per_epoch, total_steps, allow_short))
        if not allow_short:
            raise ConfigError("algorithm.options.truth_prob: passes 1 stage(s); pass --allow-short-schedules")
        return {"truth_prob": 1}

    monkeypatch.setattr(budget, "check_schedule_budget", check)
    calls: list = []
    spec = spec_for(tmp_path, algorithms=["mle", "scheduled_sampling"])
    with pytest.raises(ConfigError, match=r"run scheduled_sampling/seed1: algorithm.options.truth_prob"):
        run_compare(spec, launcher=fake_launcher(calls), echo=lambda s: None)
    assert calls == [] and len(seen) == 1  # refused before the pre-training; MLE has no schedule
    spec = spec_for(tmp_path, algorithms=["mle", "scheduled_sampling"], allow_short_schedules=True)
    run_compare(spec, launcher=fake_launcher(calls), echo=lambda s: None)
    run = next(r for r in plan_runs(spec, Path(spec.out)) if r.name == "scheduled_sampling/seed1")
    assert "train.allow_short_schedules=true" in run.overrides
    monkeypatch.setattr("seqlab.train.trainer.check_schedule_budget", check)
    trainer = Trainer(
        load_config(
            str(Path(spec.out) / "task.yaml"), [*run.overrides, f"run_dir={tmp_path / 'probe'}", "train.init_from=null"]
        ),
        console=False,
    )
    assert seen[1] == ("scheduled_sampling", len(trainer.sampler), 4, True) == seen[2]  # what the run will count


def test_a_shared_checkpoint_that_decodes_one_sentence_for_every_source_is_flagged(tmp_path):
    """Session 10's Hugging Face pre-training decoded one sentence for all sources, and five fine-tuning rows
    started from it: the runner and the report now say so."""
    from seqlab.compare.report import _pretrain_results, degenerate_checkpoint_warning

    (tmp_path / "pretrain").mkdir()
    hyps = tmp_path / "pretrain" / "valid.hyp.txt"
    (tmp_path / "pretrain" / "results.json").write_text(json.dumps({"valid": {"bleu": 3.8}}))
    hyps.write_text("A man in a black shirt .\n" * 30)
    assert "1 distinct hypotheses for 30" in degenerate_checkpoint_warning(tmp_path)
    assert "distinct validation hypotheses 1 of 30 (**warning**" in _pretrain_results(tmp_path)
    hyps.write_text("".join(f"sentence {i}\n" for i in range(30)))
    assert degenerate_checkpoint_warning(tmp_path) is None
    assert _pretrain_results(tmp_path) == "valid bleu 3.80; distinct validation hypotheses 30 of 30"
    hyps.write_text("same\n" * 5)  # too few to judge
    assert degenerate_checkpoint_warning(tmp_path) is None


def test_schedule_series_hold_the_actor_critic_statistics(tmp_path):
    """schedules.png draws, beside the ERPO schedules, what AC / ERAC log per step (issue 17's report: the critic's
    TD error, the actor's entropy, the sample return, the critic's preferred action), one list of seed values per
    step; rows without a quantity add nothing."""
    from seqlab.compare.report import RunRecord, plot_schedules, schedule_series

    def run(seed: int, scale: float) -> RunRecord:
        rows = [
            {"kind": "train", "step": s, "td_abs": 0.4 * scale, "entropy": 0.8, "return": 7.5 + seed, "loss": 1.0}
            for s in (50, 100)
        ]
        rows.append({"kind": "train", "step": 150, "q_argmax_is_pi_argmax": 0.25, "q_first": float("nan")})
        return RunRecord("erac", "erac", seed, tmp_path, {}, train_log=rows)

    records = {"erac": [run(1, 1.0), run(2, 2.0)], "mle": [RunRecord("mle", "mle", 1, tmp_path, {}, train_log=[])]}
    series = schedule_series(records)
    assert set(series) == {"td_abs", "entropy", "return", "q_argmax_is_pi_argmax"}  # q_first only NaN: none
    assert series["td_abs"]["erac"][50] == pytest.approx([0.4, 0.8]) and series["return"]["erac"][100] == [8.5, 9.5]
    assert "mle" not in series["entropy"] and "loss" not in series
    pytest.importorskip("matplotlib")
    assert plot_schedules(records, tmp_path / "schedules.png").exists()


def test_critic_curves_read_the_shared_critics_and_the_runs_own(tmp_path):
    """critics.png: the validation TD error of every critic pre-training, shared (OUT/critics/<label>) or in a run
    of its own (OUT/runs/<label>/seed*), per step and seed; other rows add nothing."""
    from seqlab.compare.report import critic_curves, plot_critics

    def log(path: Path, rows: list[dict]) -> None:
        path.mkdir(parents=True)
        (path / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))

    log(tmp_path / "critics" / "ac", [{"kind": "critic", "step": 250, "valid_td": 0.39}, {"kind": "train", "step": 50}])
    for seed, td in ((1, 0.5), (2, 0.7)):
        rows = [{"kind": "critic", "step": 62, "valid_td": td}, {"kind": "valid", "step": 62, "bleu": 30.0}]
        log(tmp_path / "runs" / "erac_beta1" / f"seed{seed}", rows)
    log(tmp_path / "runs" / "mle" / "seed1", [{"kind": "valid", "step": 62, "bleu": 40.0}])
    curves = critic_curves(tmp_path)
    assert curves == {"ac": {250: [0.39]}, "erac_beta1": {62: [0.5, 0.7]}}
    assert critic_curves(tmp_path / "runs" / "mle") == {}
    pytest.importorskip("matplotlib")
    assert plot_critics(tmp_path, tmp_path / "critics.png").exists()
    assert plot_critics(tmp_path / "runs" / "mle", tmp_path / "none.png") is None
