"""seqlab compare: planning, resuming, the one-run-per-GPU scheduler, the report and its plots."""

from __future__ import annotations

import json
import random
import threading
import time
from pathlib import Path

import pytest

from seqlab.compare.cli import add_compare_parser, build_spec
from seqlab.compare.report import Stats, write_report
from seqlab.compare.runner import (
    CompareSpec,
    Run,
    detect_gpus,
    execute,
    load_compare_yaml,
    plan_pretrain,
    plan_runs,
    ran_out_of_memory,
    run_compare,
    split_overrides,
    uses_reward,
)
from seqlab.config import ConfigError, load_config


def write_task(root: Path, seed: int = 0) -> Path:
    """A tiny symbol-reversal task config (the `parallel` task) and its data."""
    rng = random.Random(seed)
    data = root / "data"
    data.mkdir(parents=True, exist_ok=True)
    paths = {}
    for split, n in (("train", 120), ("valid", 12), ("test", 12)):
        src, tgt = [], []
        for _ in range(n):
            word = [rng.choice("abcdef") for _ in range(rng.randint(2, 5))]
            src.append(" ".join(word))
            tgt.append(" ".join(reversed(word)))
        (data / f"{split}.src").write_text("\n".join(src) + "\n")
        (data / f"{split}.tgt").write_text("\n".join(tgt) + "\n")
        paths[split] = {"src": str(data / f"{split}.src"), "tgt": str(data / f"{split}.tgt")}
    cfg = {
        "run_dir": str(root / "unused"),
        "task": {"name": "parallel", "options": {**paths, "tokenizer": "symbol", "metrics": ["bleu", "chrf"]}},
        "model": {"arch": "lstm", "options": {"embed_dim": 16, "hidden_dim": 32, "layers": 1, "dropout": 0.0}},
        "train": {
            "device": "cpu",
            "max_tokens": 300,
            "optimizer": "adam",
            "lr": 0.01,
            "scheduler": "constant",
            "warmup_steps": 1,
            "eval_every_steps": 4,
            "log_every_steps": 2,
            "progress_bar": False,
            "tensorboard": False,
            "label_smoothing": 0.0,
        },
        "decode": {"beam_size": 1},
    }
    path = root / "task.yaml"
    path.write_text(json.dumps(cfg))  # JSON is YAML
    return path


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
    sets = {"test": [config.task.options["test"]["src"], config.task.options["test"]["tgt"]]} if "--test" in args else {}
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


def fake_launcher(calls: list, score_of=None, pretrain_dtype: str = "fp32"):
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
            (rd / "results.json").write_text(json.dumps({"steps": 6, "steps_per_epoch": 2}))
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
                    "init": {"init_state": cfg.train.init_state, "weights_dtype": "float32", "lr_step_offset": 6,
                             "warmup_steps_by_group": [0]},
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
    bad = parser.parse_args(
        [
            "compare",
            "--config",
            str(cfg),
            "--algorithms",
            "mle",
            "--seeds",
            "1",
            "--budget-steps",
            "3",
            "--out",
            str(tmp_path / "o"),
            "pg:train.lr=1",
        ]
    )
    with pytest.raises(ConfigError, match="not in --algorithms"):
        build_spec(bad)


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
    assert [c[0] for c in calls] == ["pretrain", "mle/seed1", "raml/seed1", "mle/seed2", "raml/seed2",
                                     "start checkpoint"]  # the shared checkpoint scored on test, once
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
    assert min(t["p_holm"] for t in vs_start.values()) == pytest.approx(2 * min(t["p_value"] for t in vs_start.values()))
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
    )
    summary = run_compare(spec, echo=lambda s: None)
    assert summary["failed"] == [], summary
    out = Path(spec.out)
    assert (out / "runs" / "pg" / "seed1" / "tokenizers").is_dir()  # copied from the pre-training
    cfg = load_config(out / "runs" / "pg" / "seed1" / "config.yaml")
    assert cfg.train.init_from == str(out / "pretrain" / "checkpoint_best.pt") and cfg.train.max_steps == 4
    res = json.loads((out / "runs" / "pg" / "seed1" / "results.json").read_text())
    assert res["steps"] == 4
    assert json.loads((out / "test.refs.json").read_text())["metrics"] == ["bleu", "chrf"]
    assert (out / "report" / "report.html").stat().st_size > 10_000


def test_runs_sharing_a_gpu_share_its_memory(tmp_path, monkeypatch):
    """With --runs-per-gpu N each run's trainer is told to cap its CUDA cache at 0.95 / N of the GPU."""
    import seqlab.compare.runner as runner
    from seqlab.train.trainer import MEMORY_FRACTION_ENV

    seen: list = []
    monkeypatch.setattr(runner.subprocess, "call", lambda cmd, stdout, stderr, env: seen.append(env) or 0)
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
    assert attempts == {"pretrain": 1, "mle/seed1": 1, "raml/seed1": 2, "mle/seed2": 1, "raml/seed2": 2,
                        "start checkpoint": 1}
    assert summary["failed"] == ["mle/seed2"]
    statuses = {o["name"]: o["status"] for o in summary["outcomes"]}
    assert statuses["raml/seed1"] == statuses["raml/seed2"] == "done"
    # a rerun finds raml's last attempt finished and mle/seed2's failure not memory-related
    assert not ran_out_of_memory(Run("raml/seed1", Path(spec.out) / "runs" / "raml" / "seed1", []))


def test_gpu_memory_share_bounds_the_comparison_on_a_gpu_shared_with_other_work(tmp_path, monkeypatch):
    """--gpu-memory-share S with --runs-per-gpu N caps each run at S / N; a share outside (0, 1] is refused."""
    import seqlab.compare.runner as runner
    from seqlab.train.trainer import MEMORY_FRACTION_ENV

    fractions: list = []
    monkeypatch.setattr(runner.subprocess, "call",
                        lambda cmd, stdout, stderr, env: fractions.append(env.get(MEMORY_FRACTION_ENV)) or 1)
    spec = spec_for(tmp_path, gpus="0", runs_per_gpu=2, gpu_memory_share=0.5, pretrain_steps=0)
    with pytest.raises(RuntimeError, match="no finished runs"):  # every fake run failed: nothing to report
        run_compare(spec, echo=lambda s: None)
    assert len(fractions) == 4 and set(fractions) == {"0.2500"}
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
