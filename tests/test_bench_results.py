"""seqlab.bench.results: entries in the house format, merged by (metric, device) into <results dir>/<name>.json."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest
from helpers import load_script

from seqlab.bench import results


def test_write_replaces_same_metric_and_device_and_keeps_the_rest(tmp_path, monkeypatch):
    monkeypatch.setenv("SEQLAB_RESULTS_DIR", str(tmp_path))
    monkeypatch.setenv("SEQLAB_COMMIT", "abc1234")
    old = {**results.entry("a", 1.0, "x", "cmd"), "device": "other GPU"}
    path = results.write("t", [results.entry("a", 1.0, "x", "cmd"), results.entry("b", 2.0, "x", "cmd"), old])
    results.write("t", [results.entry("a", 3.0, "x", "cmd2")])
    rows = json.loads(path.read_text())
    assert path == tmp_path / "t.json"
    assert sorted((r["metric"], r["value"], r["device"] == "other GPU") for r in rows) == [
        ("a", 1.0, True),
        ("a", 3.0, False),
        ("b", 2.0, False),
    ]
    assert {r["commit"] for r in rows if r["device"] != "other GPU"} == {"abc1234"}
    assert set(rows[0]) == {"metric", "value", "unit", "device", "commit", "command", "date"}


def test_entries_name_the_measuring_device_when_exported_elsewhere(monkeypatch):
    monkeypatch.setenv("SEQLAB_DEVICE", "NVIDIA H200")
    assert results.entry("a", 1.0, "x", "cmd")["device"] == "NVIDIA H200"
    monkeypatch.delenv("SEQLAB_DEVICE")
    assert results.entry("a", 1.0, "x", "cmd")["device"] != "NVIDIA H200"


def test_log_diagnostics_summarises_the_runs_logs(tmp_path):
    """benchmarks/log_diagnostics.py: min / max over every logged step, first / last as means over seeds, and the
    greedy validation BLEU at the first evaluation and at each run's lowest."""
    import os
    import subprocess

    logs = {
        1: [
            ("train", 45, {"reward": float("nan")}),  # undefined at that step: neither the first value nor the minimum
            ("train", 50, {"reward": 0.3, "lambda3": 0.72}),
            ("valid", 62, {"bleu": 30.0, "length_ratio": 0.98}),
            ("train", 100, {"reward": 0.1, "lambda3": 0.0}),
            ("valid", 124, {"bleu": 10.0, "length_ratio": 0.7}),
            ("anneal", 124, {"rolled_back_to_step": 62}),
        ],
        2: [
            ("train", 50, {"reward": 0.5, "lambda3": 0.72}),
            ("valid", 62, {"bleu": 40.0}),
            ("train", 100, {"reward": 0.3, "lambda3": 0.0}),
            ("valid", 124, {"bleu": 42.0}),
        ],
    }
    refs = ["a dog runs .", "in the snow", "a cat sleeps ."]
    (tmp_path / "cmp").mkdir()
    (tmp_path / "cmp" / "test.refs.json").write_text(json.dumps({"references": [[r] for r in refs]}))
    for seed, records in logs.items():
        run = tmp_path / "cmp" / "runs" / "pg" / f"seed{seed}"
        run.mkdir(parents=True)
        lines = [json.dumps({"kind": kind, "step": step, **values}) for kind, step, values in records]
        (run / "log.jsonl").write_text("\n".join(lines) + "\n")
        (run / "results.json").write_text(json.dumps({"train_seconds": 100.0 * seed}))
        hyps = ["a dog runs .", "in the snow in the snow with a sled", "a cat''''''"] if seed == 1 else refs
        (run / "test.hyp.txt").write_text("\n".join(hyps) + "\n")
    pretrain = tmp_path / "cmp" / "pretrain"
    pretrain.mkdir()
    scores = {"train_seconds": 235.0, "valid": {"bleu": 41.53}, "test": {"bleu": 40.487}}
    (pretrain / "results.json").write_text(json.dumps(scores))
    (pretrain / "log.jsonl").write_text(json.dumps({"kind": "valid", "step": 500, "bleu": 14.657}) + "\n")
    critic = tmp_path / "cmp" / "critics" / "ac"  # a shared critic's run (share_critic)
    critic.mkdir(parents=True)
    records = [{"kind": "train", "step": 50, "return": 9.35, "entropy": 0.99}]
    records += [  # the critic phase's last 5 logged steps are averaged; the joint step (phase 2) is not
        {"kind": "train", "step": 100 * i, "phase": 1.0, "q_first": float(i), "q_argmax_is_pi_argmax": 0.5}
        for i in range(1, 7)
    ]
    records.append({"kind": "train", "step": 1100, "phase": 2.0, "q_first": 100.0})
    evals = ((500, 0.41), (1000, 0.44))
    records += [{"kind": "critic", "step": s, "valid_td": td, "critic_steps": s} for s, td in evals]
    (critic / "log.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n")
    (critic / "results.json").write_text(json.dumps({"train_seconds": 930.04, "valid": {"bleu": 40.202}}))
    fixed = critic.parent / "erac"  # a fixed-length critic phase (critic_patience null) logged no evaluation
    fixed.mkdir()
    (fixed / "log.jsonl").write_text(json.dumps({"kind": "train", "step": 2000, "phase": 1.0, "q_first": 0.8}) + "\n")
    options = {"critic_patience": None, "critic_pretrain_steps": 2000}
    (fixed / "results.json").write_text(json.dumps({"train_seconds": 896.0, "algorithm_options": options}))
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "log_diagnostics.py"
    env = {**os.environ, "SEQLAB_RESULTS_DIR": str(tmp_path / "results")}
    args = ["--out", str(tmp_path / "cmp"), "--prefix", "m", "--results", "diag", "--curves"]
    subprocess.run([sys.executable, str(script), *args], check=True, env=env, capture_output=True)
    got = {e["metric"]: e["value"] for e in json.loads((tmp_path / "results" / "diag.json").read_text())}
    assert got["m_pg_reward_min"] == 0.1 and got["m_pg_reward_max"] == 0.5
    assert got["m_pg_reward_first"] == 0.4 and got["m_pg_reward_last"] == 0.2
    assert got["m_pg_lambda3_first"] == 0.72 and got["m_pg_lambda3_last"] == 0.0
    assert got["m_pg_valid_bleu_first"] == 35.0 and got["m_pg_valid_bleu_lowest"] == 25.0  # mean of 10 and 40
    assert got["m_pg_valid_length_ratio_first"] == 0.98 and got["m_pg_valid_length_ratio_last"] == 0.7  # 1 seed
    assert got["m_pg_valid_length_ratio_min"] == 0.7
    assert got["m_pg_valid_bleu_step62"] == 35.0 and got["m_pg_valid_bleu_step124"] == 26.0  # --curves: by step
    assert got["m_pretrain_valid_bleu_step500"] == 14.66  # the shared pre-training's validation curve
    assert got["m_pg_train_seconds_min"] == 100.0 and got["m_pg_train_seconds_max"] == 200.0
    assert got["m_pretrain_train_seconds"] == 235.0 and got["m_checkpoint_valid_bleu"] == 41.53
    assert got["m_pretrain_test_bleu"] == 40.49
    assert got["m_pg_anneal_moves_min"] == 0 and got["m_pg_anneal_moves_max"] == 1  # validation_anneal's moves
    assert got["m_ac_critic_valid_td_first"] == 0.41 and got["m_ac_critic_valid_td_best"] == 0.41
    assert got["m_ac_critic_valid_td_last"] == 0.44 and got["m_ac_critic_steps"] == 1000
    assert got["m_ac_critic_valid_td_worst"] == 0.44
    assert got["m_ac_critic_train_seconds"] == 930.0 and got["m_ac_critic_actor_valid_bleu"] == 40.2
    assert got["m_ac_critic_actor_return_first"] == 9.35 and got["m_ac_critic_actor_entropy_first"] == 0.99
    assert got["m_ac_critic_q_first_last"] == 4.0 and got["m_ac_critic_q_argmax_is_pi_argmax_last"] == 0.5
    assert "m_ac_critic_pi_of_q_argmax_last" not in got  # never logged: no entry
    assert got["m_erac_critic_steps"] == 2000 and got["m_erac_critic_q_first_last"] == 0.8
    assert not any(name.startswith("m_erac_critic_valid_td") for name in got)
    # test hypotheses, mean over seeds (seed 2 = the references): seed 1 loops in one of 3, runs long in it, ends
    # in a symbol run in another; its length ratio is (4 + 9 + 2) / (4 + 3 + 4) tokens (13a keeps "cat''''''" whole)
    assert got["m_pg_test_repeat_share"] == round((1 / 3) / 2, 4) == got["m_pg_test_overlong_share"]
    assert got["m_pg_test_symbol_run_end"] == round((1 / 3) / 2, 4)
    assert got["m_pg_test_length_ratio"] == round((15 / 11 + 1) / 2, 4)
    assert not any("entropy" in name for name in got if "critic" not in name)  # never logged by the runs: no entry
    assert not any("unfinished" in name for name in got)  # every run finished
    lost = tmp_path / "cmp" / "runs" / "pg" / "seed3"  # a run whose machine was lost at step 100
    lost.mkdir()
    (lost / "log.jsonl").write_text(json.dumps({"kind": "train", "step": 100, "reward": 0.2}) + "\n")
    subprocess.run([sys.executable, str(script), *args], check=True, env=env, capture_output=True)
    got = {e["metric"]: e["value"] for e in json.loads((tmp_path / "results" / "diag.json").read_text())}
    assert got["m_pg_unfinished_runs"] == 1 and got["m_pg_last_logged_step_max"] == 100
    lost.joinpath("log.jsonl").unlink()
    lost.rmdir()
    # --labels: only the rows named (a comparison resumed with a new row) -- no pre-training, no other critic
    (tmp_path / "results" / "diag.json").unlink()
    subprocess.run([sys.executable, str(script), *args, "--labels", "ac"], check=True, env=env, capture_output=True)
    only = {e["metric"] for e in json.loads((tmp_path / "results" / "diag.json").read_text())}
    assert only and all(name.startswith("m_ac_critic_") for name in only)
    (tmp_path / "results" / "diag.json").unlink()
    subprocess.run(
        [sys.executable, str(script), *args, "--labels", "pg,pretrain"], check=True, env=env, capture_output=True
    )
    only = {e["metric"] for e in json.loads((tmp_path / "results" / "diag.json").read_text())}
    assert "m_pg_reward_min" in only and "m_pretrain_test_bleu" in only
    assert all(name.startswith(("m_pg_", "m_pretrain_", "m_checkpoint_")) for name in only)
    alone = tmp_path / "pre"  # a --pretrain-only comparison: its pre-training and nothing else
    shutil.copytree(pretrain, alone / "pretrain")
    args = ["--out", str(alone), "--prefix", "p", "--results", "diag", "--labels", "pretrain"]
    subprocess.run([sys.executable, str(script), *args], check=True, env=env, capture_output=True)
    got = {e["metric"]: e["value"] for e in json.loads((tmp_path / "results" / "diag.json").read_text())}
    assert got["p_pretrain_test_bleu"] == 40.49


def test_training_throughput_reads_nothing_from_the_device_while_timed(monkeypatch):
    """bench_speed's time_training: both passes step every batch, the tokens (non-PAD targets after the warm-up
    batches) are counted before the timed pass, so no host read waits for a step inside it."""
    from types import SimpleNamespace

    import torch

    bench = load_script("bench_speed")
    events = []

    class Target(torch.Tensor):
        def ne(self, other):
            events.append("count")
            return torch.Tensor.ne(self.as_subclass(torch.Tensor), other)

    batches = [SimpleNamespace(tgt=torch.tensor([[5, 6, 2, 0], [7, 2, 0, 0]]).as_subclass(Target)) for _ in range(3)]
    clock = iter([10.0, 12.0])
    monkeypatch.setattr(bench.time, "perf_counter", lambda: next(clock))
    rate = bench.time_training(lambda b: events.append("step"), batches, warmup=1)
    assert rate == 5 * 2 / 2.0  # 5 target tokens in each of the 2 timed batches, over 2 s
    assert events == ["step"] * 3 + ["count"] * 2 + ["step"] * 2


def test_the_speed_bench_labels_its_entries_when_asked(tmp_path, monkeypatch):
    """bench_speed --label: every metric name ends with the label (a run beside the defaults' entries keeps them), each
    with its unit; without one the names stay."""
    import torch

    bench = load_script("bench_speed")
    monkeypatch.setenv("SEQLAB_RESULTS_DIR", str(tmp_path))
    bench.write_results({"batch1_greedy_latency_ms": 2.5, "greedy_decode_sent_per_s": 9.0}, torch.device("cpu"))
    bench.write_results({"batch1_greedy_latency_ms": 2.0}, torch.device("cpu"), "_compiled_decode")
    entries = {e["metric"]: e for e in json.loads((tmp_path / "speed_cpu.json").read_text())}
    assert set(entries) == {
        "batch1_greedy_latency_ms",
        "greedy_decode_sent_per_s",
        "batch1_greedy_latency_ms_compiled_decode",
    }
    assert entries["batch1_greedy_latency_ms_compiled_decode"]["value"] == 2.0
    assert (
        entries["batch1_greedy_latency_ms"]["value"] == 2.5
        and entries["greedy_decode_sent_per_s"]["unit"] == "sentences/s"
    )


def test_decoding_profiles_are_written_for_each_search_and_leave_the_environment_as_it_was(tmp_path, monkeypatch):
    """bench_speed --profile: one profiler table per search (greedy, beam 5; eager only on the CPU) with the
    operators the decoding ran, and the switches it set for them restored afterwards."""
    from types import SimpleNamespace

    from helpers import tiny_overrides

    from seqlab.config import load_config
    from seqlab.train.trainer import Trainer

    bench = load_script("bench_speed")
    monkeypatch.setenv("SEQLAB_CUDA_GRAPHS", "1")
    monkeypatch.delenv("SEQLAB_STATIC_BEAM", raising=False)
    trainer = Trainer(load_config(None, tiny_overrides(tmp_path, "run")), console=False)
    src_ids = [[5, 6, 7, 2], [8, 9, 2]]
    args = SimpleNamespace(profile=tmp_path / "profiles", decode_batch=8)
    written = bench.profile_decoding(trainer.model.eval(), src_ids, trainer.cfg, trainer.device, args)
    assert [p.name for p in written] == ["decode_greedy_eager.txt", "decode_beam5_eager.txt"]
    assert all("aten::" in p.read_text() for p in written)
    assert os.environ["SEQLAB_CUDA_GRAPHS"] == "1" and "SEQLAB_STATIC_BEAM" not in os.environ


def test_the_speed_bench_scores_decoded_ids_against_the_test_references(tmp_path):
    """bench_speed's test BLEU (fp32 against bf16 decoding): the references' own ids score 100, a truncated
    decoding less."""
    from types import SimpleNamespace

    from helpers import tiny_overrides

    from seqlab.config import load_config
    from seqlab.train.trainer import Trainer

    bench = load_script("bench_speed")
    trainer = Trainer(load_config(None, tiny_overrides(tmp_path, "run")), console=False)
    args = SimpleNamespace(test_sentences=None)
    _, refs = trainer.task.test.references()
    ids = [trainer.task.tgt_tokenizer.encode(r[0]) for r in refs]
    bleu = bench.test_bleu_of(trainer, args)
    assert bleu(ids) == pytest.approx(100.0)
    assert bleu([row[: max(1, len(row) // 2)] for row in ids]) < 90.0


def test_step_time_overrides_for_one_algorithm_reach_only_it(monkeypatch):
    """bench_step_time: ``key=value`` reaches every algorithm's config, ``algo:key=value`` only that algorithm's
    (an option of AC that MLE's options would reject)."""
    bench = load_script("bench_step_time")
    seen = {}

    class Trainer:
        def __init__(self, cfg, console=False):
            seen[cfg.algorithm.name] = cfg

    monkeypatch.setattr(bench, "Trainer", Trainer)
    overrides = ["train.lr=0.00002", "ac:algorithm.options.other_actions_weight=1.0", "ac:train.max_tokens=1024"]
    for algo in ("mle", "ac"):
        bench.make_trainer("configs/multi30k_transformer.yaml", algo, overrides, None, None)
    assert seen["mle"].train.lr == seen["ac"].train.lr == 2e-5
    assert seen["ac"].algorithm.options["other_actions_weight"] == 1.0 and seen["ac"].train.max_tokens == 1024
    assert "other_actions_weight" not in seen["mle"].algorithm.options
    assert seen["mle"].train.max_tokens != 1024


def test_epoch_step_times_cover_every_batch_of_each_epoch(monkeypatch):
    """bench_step_time --epochs: each epoch's mean is over all of its batches (in the sampler's order for that
    epoch), and the sampling loops captured during it are counted per epoch."""
    bench = load_script("bench_step_time")

    class Batch:
        def __init__(self, indices):
            self.indices = indices

        def to(self, device):
            return self

    class Sampler:
        epoch = 0

        def set_epoch(self, epoch):
            self.epoch = epoch

        def __iter__(self):
            return iter([[0, 1], [2]] if self.epoch == 0 else [[2], [1], [0]])

    class Trainer:
        sampler, train_data, device, seen = Sampler(), None, "cpu", []

        def train_step(self, batch):
            self.seen.append(batch.indices)

    costs = iter([1.0, 3.0, 2.0, 2.0, 5.0])  # seconds of the five steps

    def timed(trainer, batch):
        trainer.train_step(batch)
        bench.sampling.CAPTURES[0] += 1 if batch.indices == [2] else 0
        return next(costs)

    monkeypatch.setattr(bench, "collate", lambda data, indices: Batch(indices))
    monkeypatch.setattr(bench, "timed_train_step", timed)
    trainer = Trainer()
    means, captured = bench.epoch_step_times(trainer, 2)
    assert means == [2.0, 3.0] and captured == [1, 1]
    assert trainer.seen == [[0, 1], [2], [2], [1], [0]]


def test_profile_entries_read_host_time_per_call_calls_and_totals():
    """benchmarks/profile_entries.py: from a torch.profiler table, an operator's CPU time average per call (us, ms
    or s), its calls, and the tables' host and CUDA totals."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "profile_entries.py"
    spec = importlib.util.spec_from_file_location("profile_entries", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    row = "aten::_cudnn_attention_backward  23.26%  425.777ms  23.40%  428.376ms  9.519ms  12.018ms  3.84%  12.018ms"
    fmha = "fmha_cutlassF_f32_aligned_64x64_rf_sm80(x...  0.00%  0.000us  0.00%  0.000us  0.000us  332.107ms  49.59%"
    flash = "aten::_flash_attention_forward  0.62%  5.294ms  1.89%  16.190ms  62.751us  81.461ms  26.00%  81.461ms"
    text = "\n".join(
        [
            row + "  267.067us  45",
            fmha + "  332.107ms  494.208us  672",
            flash + "  315.741us  258",
            "Self CPU time total: 1.831s",
            "Self CUDA time total: 312.615ms",
        ]
    )
    got = {e["metric"]: e["value"] for e in mod.entries_of("pg", text)}
    assert got == {
        "step_profile_pg_cudnn_attention_backward_host_ms_per_call": 9.519,
        "step_profile_pg_cudnn_attention_backward_calls": 45,
        "step_profile_pg_fp32_mem_efficient_attention_cuda_ms": 332.107,
        "step_profile_pg_fp32_mem_efficient_attention_calls": 672,
        "step_profile_pg_flash_attention_forward_cuda_ms_per_call": 0.3157,
        "step_profile_pg_flash_attention_forward_calls": 258,
        "step_profile_pg_host_ms_total": 1831.0,
        "step_profile_pg_cuda_ms_total": 312.615,
    }
    assert mod.ms("522.164us") == 0.522164


def test_bench_ddp_from_logs_records_the_runs_it_finds_and_launches_nothing(tmp_path, monkeypatch):
    """benchmarks/bench_ddp.py --from-logs: the scaling efficiency from runs already on disk (world size x rank 0's
    median after the skipped windows), written to ddp_cuda.json with the command that made the runs."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_ddp.py"
    spec = importlib.util.spec_from_file_location("bench_ddp", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    monkeypatch.setattr(mod, "launch", lambda *a, **k: (_ for _ in ()).throw(AssertionError("launched")))
    monkeypatch.setenv("SEQLAB_RESULTS_DIR", str(tmp_path / "results"))
    monkeypatch.setenv("SEQLAB_DEVICE", "GPU x2")
    for run, rates in {"mle_1": [1.0, 400.0, 390.0, 410.0], "mle_2": [1.0, 300.0, 310.0, 320.0]}.items():
        (tmp_path / run).mkdir()
        lines = [json.dumps({"kind": "train", "time": i, "tgt_tok_per_s": r}) for i, r in enumerate(rates)]
        (tmp_path / run / "log.jsonl").write_text("\n".join(lines + ['{"kind": "valid"}']) + "\n")
    argv = ["--from-logs", "--work-dir", str(tmp_path), "--algorithms", "mle", "--skip-windows", "1"]
    assert mod.main([*argv, "--measured-by", "run.py ddp"]) == 0
    got = {e["metric"]: e for e in json.loads((tmp_path / "results" / "ddp_cuda.json").read_text())}
    assert got["ddp_train_tok_per_s_1gpu_mle"]["value"] == 400.0
    assert got["ddp_train_tok_per_s_2gpu_mle"]["value"] == 620.0
    assert got["ddp_scaling_efficiency_2gpu_mle"]["value"] == 0.775
    assert got["ddp_scaling_efficiency_2gpu_mle"]["command"].endswith("(runs made by: run.py ddp)")
    for n in (1, 2):  # --label: its own runs and metric names
        (tmp_path / f"mle_cuda_graphs_{n}").mkdir()
        lines = [json.dumps({"kind": "train", "tgt_tok_per_s": r}) for r in (1.0, 500.0 if n == 1 else 450.0)]
        (tmp_path / f"mle_cuda_graphs_{n}" / "log.jsonl").write_text("\n".join(lines) + "\n")
    assert mod.main([*argv, "--label", "_cuda_graphs"]) == 0
    got = {e["metric"]: e["value"] for e in json.loads((tmp_path / "results" / "ddp_cuda.json").read_text())}
    assert got["ddp_scaling_efficiency_2gpu_mle_cuda_graphs"] == 0.9 and got["ddp_scaling_efficiency_2gpu_mle"] == 0.775
    (tmp_path / "mle_cuda_graphs_2" / "results.json").write_text(json.dumps({"cuda_graphs": {"captures": 0}}))
    with pytest.raises(SystemExit, match="captured no step"):  # it trained eagerly: not a captured figure
        mod.main([*argv, "--label", "_cuda_graphs"])
    (tmp_path / "mle_2" / "log.jsonl").unlink()
    try:
        mod.main(argv)
    except SystemExit as exc:
        assert "mle_2" in str(exc)
    else:
        raise AssertionError("a missing run must stop --from-logs")


def test_step_time_ratios_are_rewritten_against_both_mle_passes(monkeypatch, tmp_path):
    """bench_step_time times MLE first and again last; every ratio is then against the median over both passes'
    steps, and each pass's median is kept."""
    bench = load_script("bench_step_time")
    seconds = {"mle": [[0.030, 0.030, 0.030], [0.020, 0.020, 0.020]], "pg": [[0.150, 0.150, 0.150]]}
    made = []

    def make_trainer(cfg, algo, *args):
        made.append(algo)
        return algo

    monkeypatch.setattr(bench, "make_trainer", make_trainer)
    monkeypatch.setattr(bench, "step_times", lambda trainer, *a, **k: (seconds[trainer].pop(0), 0))
    written = {}
    monkeypatch.setattr(bench.results_io, "write", lambda name, rows: written.update({e["metric"]: e for e in rows}))
    monkeypatch.setattr(bench.torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr("sys.argv", ["bench_step_time.py", "--algorithms", "mle,pg", "--steps", "3", "--warmup", "0"])
    bench.main()
    assert made == ["mle", "pg", "mle"]
    values = {k: e["value"] for k, e in written.items()}
    assert values["mle_first_step_ms"] == 30.0 and values["mle_end_step_ms"] == 20.0
    assert values["mle_step_ms"] == 25.0  # the median of the six steps
    assert values["pg_step_time_ratio_vs_mle"] == 6.0  # 150 / 25, not the first pass's 5.0


def test_step_times_warm_up_again_while_a_pass_captures(monkeypatch):
    """bench_step_time.step_times: the untimed pass over the timed batches repeats while it captured sampling loops
    (stale loops after the shared memory grew), so the timed pass replays only; at most WARM_PASSES of them."""
    bench = load_script("bench_step_time")
    captures_per_pass = iter([3, 2, 0, 0])

    class Trainer:
        steps = 0

        def train_step(self, batch):
            self.steps += 1
            if batch == 1:  # one capture count per pass, at its last batch
                bench.sampling.CAPTURES[0] += next(captures_per_pass)

    monkeypatch.setattr(bench, "first_batches", lambda trainer, count: [0, 1])
    monkeypatch.setattr(bench, "timed_train_step", lambda trainer, b: (trainer.train_step(b), 0.5)[1])
    trainer = Trainer()
    times, captured = bench.step_times(trainer, n_steps=1, warmup=1)
    assert trainer.steps == 3 * 2 + 2  # three untimed passes (the third captured nothing), then the timed one
    assert times == [0.5] and captured == 0
    monkeypatch.setattr(bench, "WARM_PASSES", 1)
    captures_per_pass = iter([3, 4])
    trainer = Trainer()
    times, captured = bench.step_times(trainer, n_steps=1, warmup=1)
    assert trainer.steps == 2 + 2 and captured == 4  # no second warm pass: the timed pass's captures are counted


def test_nat_throughput_batches_under_a_token_budget():
    """bench_nat.token_batches: sources sorted by length, packed while rows x longest stays within the budget; every
    source once; one longer than the budget alone."""
    bench = load_script("bench_nat")
    sources = [[5] * n for n in (3, 9, 2, 4, 4, 12, 1)]
    batches = bench.token_batches(sources, 10)
    assert sorted(i for b in batches for i in b) == list(range(7))
    assert all(len(b) * max(len(sources[i]) for i in b) <= 10 for b in batches if len(b) > 1)
    assert batches == [[6, 2, 0], [3, 4], [1], [5]]  # lengths (1, 2, 3), (4, 4), (9), (12: over the budget, alone)


def test_nat_rows_may_add_imitate_nat_of_another_imitation_weight():
    """bench_nat.select_rows: ``--rows`` picks table rows in the table's order and adds ``imitate_nat_w<weight>``
    rows (imitate-NAT, only λ2 differing); a name that is neither is refused with the known ones."""
    bench = load_script("bench_nat")
    rows = bench.select_rows("imitate_nat_w0.1,imitate_nat,nat_softcopy,imitate_nat_w0", bench.TRAINED_ROWS)
    assert list(rows) == ["nat_softcopy", "imitate_nat", "imitate_nat_w0", "imitate_nat_w0.1"]
    assert rows["imitate_nat_w0.1"] == bench.Row("multi30k_imitate_nat.yaml", "softcopy", True, 0.1)
    assert rows["imitate_nat_w0"] is bench.TRAINED_ROWS["imitate_nat_w0"]
    assert bench.evaluated_rows(rows, True)[-1] == "imitate_nat_lpd"
    with pytest.raises(SystemExit, match="imitate_nat_wx"):
        bench.select_rows("nat_softcopy,imitate_nat_wx", bench.TRAINED_ROWS)


def test_nat_latency_entries_carry_the_issues_names():
    """bench_nat.latency_entries: batch-1 speed-ups over AT greedy and beam as <row>_speedup_vs_at_*_batch1, both
    throughputs, captured and eager; NAT SoftCopy's also as nat_* (issue 18's names)."""
    from types import SimpleNamespace

    bench = load_script("bench_nat")
    rows = ["at_greedy", "at_beam", "nat_softcopy", "nat_softcopy_nokd", "imitate_nat_lpd"]
    ms = {"at_greedy": 8.0, "at_beam": 20.0, "nat_softcopy": 1.0, "nat_softcopy_nokd": 4.0, "imitate_nat_lpd": 2.0}
    res = {}
    for row in rows:
        for mode, suffix, scale in (("", "_latency_ms", 1.0), ("_eager", "_latency_eager_ms", 2.0)):
            res[f"{row}{suffix}"] = ms[row] * scale
            res[f"{row}_sent_per_s{mode}"], res[f"{row}_sent_per_s_tokens{mode}"] = 100.0 / scale, 200.0 / scale
        res[f"{row}_graph_equals_eager"] = 1.0
    args = SimpleNamespace(rows=rows, throughput_batch=64, throughput_tokens=4096)
    got = {e["metric"]: e["value"] for e in bench.latency_entries(args, res, "cmd")}
    assert got["nat_speedup_vs_at_greedy_batch1"] == 8.0 == got["nat_softcopy_speedup_vs_at_greedy_batch1"]
    assert got["nat_speedup_vs_at_beam_batch1"] == 20.0 and got["imitate_nat_lpd_speedup_vs_at_greedy_batch1"] == 4.0
    assert got["nat_speedup_vs_at_beam_batch1_eager"] == 20.0 and got["nat_sent_per_s_batch64"] == 100.0
    assert got["at_greedy_sent_per_s_batch64"] == 100.0 and got["at_beam_sent_per_s_tokens4096_eager"] == 100.0
    assert "at_greedy_speedup_vs_at_greedy_batch1" not in got and got["at_beam_speedup_vs_at_greedy_batch1"] == 0.4
    assert not any(name.startswith("nat_batch1") for name in got)  # only speed-ups and throughputs get nat_ names
    assert not any(name.startswith("nat_nokd") for name in got)  # another row whose name begins the same
    assert "batch1_latency_timing_contended" not in got  # a cache from before the timing conditions were kept
    quiet = {"gpu_utilization_idle_percent": 0.0, "load_1min": 1.0, "cpus": 16, "contended": False}
    for after, flag in ((quiet, 0.0), ({**quiet, "contended": True}, 1.0)):
        res["timing_conditions"] = [quiet, after]
        got = {e["metric"]: e["value"] for e in bench.latency_entries(args, res, "cmd")}
        assert got["batch1_latency_timing_contended"] == flag


def test_nat_report_names_the_demonstrator_and_corpus_and_what_each_run_trained_for(tmp_path):
    """bench_nat.provenance_digests / train_seconds: the weights digests of the demonstrator and the plain AT and the
    distilled targets' digest (equal in two work folders with the same weights and corpus, different when one weight
    differs), and each run's training seconds up to the stage (rows: their stage's results)."""
    from types import SimpleNamespace

    import torch

    bench = load_script("bench_nat")

    def work(folder: str, bump: float = 0.0) -> SimpleNamespace:
        root = tmp_path / folder
        for run, seconds in (("dat", 120.0), ("at", 110.0)):
            (root / "de-en" / run).mkdir(parents=True)
            torch.save({"model": {"w": torch.arange(4.0) + bump}}, root / "de-en" / run / "checkpoint_best.pt")
            (root / "de-en" / run / "results.json").write_text(json.dumps({"train_seconds": seconds}))
        (root / "de-en" / "imitate_nat").mkdir()
        (root / "de-en" / "imitate_nat" / "results_step100.json").write_text(json.dumps({"train_seconds": 33.3}))
        (root / "de-en" / "distilled").mkdir()
        (root / "de-en" / "distilled" / "train.tgt").write_text("a man .\n")
        return SimpleNamespace(work=str(root), at_plain=True, trained_rows={"imitate_nat": None})

    first, again, other = work("a"), work("b"), work("c", bump=1.0)
    digests = [
        bench.provenance_digests(w, "de-en", Path(w.work) / "de-en" / "dat" / "checkpoint_best.pt")
        for w in (first, again, other)
    ]
    assert digests[0] == digests[1] and set(digests[0]) == {"dat_weights", "at_weights", "distilled_train_tgt"}
    assert digests[2]["dat_weights"] != digests[0]["dat_weights"]
    assert digests[2]["distilled_train_tgt"] == digests[0]["distilled_train_tgt"]
    assert bench.train_seconds(first, "de-en", "step100") == {"dat": 120.0, "at": 110.0, "imitate_nat": 33.3}
    assert bench.train_seconds(first, "de-en", "step200") == {"dat": 120.0, "at": 110.0}  # the stage not reached


def test_nat_stages_and_latencies_are_per_row_so_a_second_call_trains_and_times_its_own_rows(tmp_path, monkeypatch):
    """bench_nat: a stage counts as done only for the rows of this call that kept it (a second call with other
    ``--rows`` in the same work folder trains them, instead of finding the first call's stages done), and the latency
    cache is reused only when it holds every row (else all rows are timed again, in one process)."""
    from types import SimpleNamespace

    bench = load_script("bench_nat")
    for steps in (2500, 5000):
        (tmp_path / "de-en" / "imitate_nat").mkdir(parents=True, exist_ok=True)
        (tmp_path / "de-en" / "imitate_nat" / f"results_step{steps}.json").write_text("{}")

    def call(*rows: str) -> SimpleNamespace:
        names = ["at_greedy", *rows]
        return SimpleNamespace(
            work=str(tmp_path), pairs=["de-en"], stages=[2500, 5000], trained_rows=dict.fromkeys(rows), rows=names
        )

    assert bench.completed_stages(call("imitate_nat")) == [2500, 5000]
    assert bench.completed_stages(call("nat_softcopy")) == []
    assert bench.completed_stages(call("imitate_nat", "nat_softcopy")) == []

    cached = {"at_greedy_latency_ms": 4.7, "imitate_nat_latency_ms": 1.0}
    (tmp_path / "de-en" / "latency_step5000.json").write_text(json.dumps(cached))

    class Measured(Exception):
        pass

    def measure(*_args):
        raise Measured

    monkeypatch.setattr(bench, "PairModels", measure)
    assert bench.latency_pass(call("imitate_nat"), "de-en", tmp_path / "dat.pt", "step5000") == cached
    with pytest.raises(Measured):
        bench.latency_pass(call("imitate_nat", "nat_softcopy"), "de-en", tmp_path / "dat.pt", "step5000")
    # a cache timed beside other work is timed again, every row in it or not
    quiet = {"gpu_utilization_idle_percent": 0.0, "load_1min": 1.0, "cpus": 16, "contended": False}
    for found, reused in (([quiet, quiet], True), ([quiet, {**quiet, "contended": True}], False)):
        cached["timing_conditions"] = found
        (tmp_path / "de-en" / "latency_step5000.json").write_text(json.dumps(cached))
        if reused:
            assert bench.latency_pass(call("imitate_nat"), "de-en", tmp_path / "dat.pt", "step5000") == cached
        else:
            with pytest.raises(Measured):
                bench.latency_pass(call("imitate_nat"), "de-en", tmp_path / "dat.pt", "step5000")


def test_nat_demonstrator_is_the_trained_dats_best_checkpoint_named_after_it_trained(tmp_path, monkeypatch):
    """bench_nat.train_demonstrators: the demonstrator the distillation and the rows get is the DAT's best
    checkpoint as training left it (named before training, a first call got checkpoint_last.pt: session 21), and a
    ``--teacher`` checkpoint given is taken as is, untrained."""
    from types import SimpleNamespace

    bench = load_script("bench_nat")
    trained = []

    def train(jobs, *_args, **_kwargs):  # what the DAT's training leaves: its last and its best checkpoint
        for job in jobs:
            trained.append(job.name)
            run = tmp_path / job.name
            run.mkdir(parents=True)
            (run / "checkpoint_last.pt").write_bytes(b"last")
            (run / "checkpoint_best.pt").write_bytes(b"best")

    monkeypatch.setattr(bench, "run_jobs", train)
    given = tmp_path / "given.pt"
    args = SimpleNamespace(
        work=str(tmp_path),
        pairs=["de-en", "en-de"],
        gpus=0,
        deadline=None,
        teacher_minutes=1.0,
        teacher_steps=10,
        teacher_override=[],
        smoke=False,
        data=str(tmp_path),
        vocab_size=100,
        max_train=None,
    )
    monkeypatch.setattr(bench, "common_overrides", lambda *_a: [])
    monkeypatch.setattr(bench, "multi30k_options", lambda *_a: {})
    got = bench.train_demonstrators(args, {"en-de": str(given)}, {})
    assert trained == ["de-en/dat"]
    assert got == {"de-en": tmp_path / "de-en" / "dat" / "checkpoint_best.pt", "en-de": given.resolve()}


def test_nat_imitation_entries_average_the_logged_term_over_the_first_and_last_window(tmp_path):
    """bench_nat.imitation_entries: the imitation KL a row logged, averaged over its first and its stage's last
    IMITATION_WINDOW steps (the stage's steps from the row's results, later steps left out); rows without it none."""
    from types import SimpleNamespace

    bench = load_script("bench_nat")
    window = bench.IMITATION_WINDOW
    lines = [{"kind": "train", "step": s, "imitation_kl": float(s)} for s in range(100, 4 * window + 1, 100)]
    lines.insert(2, {"kind": "valid", "step": 200, "bleu": 30.0})
    (tmp_path / "de-en" / "imitate_nat").mkdir(parents=True)
    (tmp_path / "de-en" / "imitate_nat" / "log.jsonl").write_text("\n".join(json.dumps(e) for e in lines) + "\n")
    (tmp_path / "de-en" / "nat_softcopy").mkdir()
    (tmp_path / "de-en" / "nat_softcopy" / "log.jsonl").write_text(json.dumps({"kind": "train", "step": 100}) + "\n")
    args = SimpleNamespace(work=str(tmp_path), trained_rows=dict.fromkeys(["imitate_nat", "nat_softcopy"]))
    res = {"imitate_nat_steps": 3 * window, "nat_softcopy_steps": 3 * window}
    got = {e["metric"]: e["value"] for e in bench.imitation_entries(args, "de-en", res, "cmd")}
    first = [float(s) for s in range(100, window + 1, 100)]
    last = [float(s) for s in range(2 * window + 100, 3 * window + 1, 100)]
    assert got == {
        "multi30k_deen_imitate_nat_imitation_kl_start": round(sum(first) / len(first), 3),
        "multi30k_deen_imitate_nat_imitation_kl_end": round(sum(last) / len(last), 3),
    }


def test_nat_validation_entries_are_each_kept_stages_best_validation_bleu(tmp_path):
    """bench_nat.validation_entries: per trained row, each kept stage's validation BLEU (results_step<N>.json),
    rounded; a stage without validation gives none."""
    from types import SimpleNamespace

    bench = load_script("bench_nat")
    run = tmp_path / "de-en" / "imitate_nat"
    run.mkdir(parents=True)
    (run / "results_step2500.json").write_text(json.dumps({"steps": 2500, "valid": {"bleu": 30.02386}}))
    (run / "results_step5000.json").write_text(json.dumps({"steps": 5000, "valid": {"bleu": 30.97258}}))
    (run / "results_step7500.json").write_text(json.dumps({"steps": 7500}))
    args = SimpleNamespace(work=str(tmp_path), trained_rows={"imitate_nat": None})
    got = {e["metric"]: e["value"] for e in bench.validation_entries(args, "de-en", "cmd")}
    assert got == {
        "multi30k_deen_imitate_nat_valid_bleu_step2500": 30.02,
        "multi30k_deen_imitate_nat_valid_bleu_step5000": 30.97,
    }


def test_a_shared_critic_shrunk_to_bf16_is_what_the_next_runs_load(tmp_path):
    """ckpt_weights.py --critic: a trainer checkpoint becomes its critic's weights alone in bf16 (the full file kept
    beside it, tied embeddings stored once: written twice, the Multi30k critic was 18.8 MiB, over the 16 a device
    call returns); ``critic_from`` loads that file, giving the critic (and ERAC's target) the rounded weights."""
    import numpy as np
    import torch

    from seqlab.algorithms.base import AlgorithmContext, build_algorithm

    tiny = {"critic_options": {"d_model": 8, "n_heads": 2, "ffn_dim": 8, "encoder_layers": 1, "decoder_layers": 1}}
    context = AlgorithmContext(vocab_size=12, label_smoothing=0.0)
    torch.manual_seed(0)
    trained = build_algorithm("erac", context, tiny)
    path = tmp_path / "critics" / "erac" / "checkpoint_last.pt"
    path.parent.mkdir(parents=True)
    rng = {"numpy": np.random.get_state(), "torch": torch.get_rng_state()}  # as a trainer checkpoint holds
    torch.save({"model": {"w": torch.ones(3)}, "optimizer": {}, "rng": rng, "algorithm": trained.state_dict()}, path)
    load_script("ckpt_weights").main(["--critic", str(tmp_path / "critics")])  # a folder: each */checkpoint_last.pt
    load_script("ckpt_weights").main(["--critic", str(path)])  # once more: nothing to do, the full file kept
    shrunk = torch.load(path, weights_only=True)
    assert "algorithm" in torch.load(path.with_name("checkpoint_last.pt.full"), weights_only=False)
    assert set(shrunk) == set(trained.critic.state_dict())
    assert all(t.dtype == torch.bfloat16 for t in shrunk.values() if t.is_floating_point())
    tied = [
        (a, b)
        for a, x in trained.critic.state_dict().items()
        for b, y in trained.critic.state_dict().items()
        if a < b and x.data_ptr() == y.data_ptr()
    ]
    assert tied  # the critic's source and target embeddings (one vocabulary): written once, loaded shared
    assert all(shrunk[a].data_ptr() == shrunk[b].data_ptr() for a, b in tied)
    torch.manual_seed(1)
    resumed = build_algorithm("erac", context, {**tiny, "critic_from": str(path)})
    for name, weight in trained.critic.state_dict().items():
        expected = weight.to(torch.bfloat16).float() if weight.is_floating_point() else weight
        assert torch.equal(resumed.critic.state_dict()[name], expected), name
    for a, b in zip(resumed.target_critic.parameters(), resumed.critic.parameters(), strict=True):
        assert torch.equal(a, b)


def test_pack_state_brings_back_a_comparison_without_checkpoints_but_with_the_kept_files(tmp_path, monkeypatch):
    """pack_state.py: state.tgz leaves out checkpoints and large files, a kept file (a critic's weights) comes back
    as a file of its own, and unpack puts everything back at its path; a kept file too large to return stops it."""
    module = load_script("pack_state")
    cmp = tmp_path / "credit"
    (cmp / "runs" / "mle" / "seed1").mkdir(parents=True)
    (cmp / "runs" / "mle" / "seed1" / "results.json").write_text("{}")
    (cmp / "runs" / "mle" / "seed1" / "checkpoint_best.pt").write_bytes(b"x" * 100)
    (cmp / "runs" / "mle" / "seed1" / "big.log").write_bytes(b"x" * (2 * 2**20))
    (cmp / "critics" / "ac").mkdir(parents=True)
    (cmp / "critics" / "ac" / "checkpoint_last.pt").write_bytes(b"critic")
    out = tmp_path / "OUT"
    written = module.pack(cmp, out, ["critics/*/checkpoint_last.pt"])
    assert sorted(p.name for p in written) == ["critics__ac__checkpoint_last.pt", "state.tgz"]
    back = tmp_path / "next"
    module.unpack(out, back)
    assert (back / "runs" / "mle" / "seed1" / "results.json").exists()
    assert not (back / "runs" / "mle" / "seed1" / "checkpoint_best.pt").exists()
    assert not (back / "runs" / "mle" / "seed1" / "big.log").exists()
    assert (back / "critics" / "ac" / "checkpoint_last.pt").read_bytes() == b"critic"
    monkeypatch.setattr(module, "RETURN_LIMIT", 3)
    with pytest.raises(SystemExit, match="16 MiB"):
        module.pack(cmp, tmp_path / "OUT2", ["critics/*/checkpoint_last.pt"])


def test_a_critic_that_prefers_the_reference_tokens_ranks_them_first_along_the_references():
    """critic_on_references.reference_stats: a stand-in critic whose Q is the reward to come for the reference token
    and -1 for every other ranks the reference token first everywhere, values the whole reference at its return and
    has no error against the return to go; one that values an outside token above all ranks the reference's second."""
    import torch

    from seqlab.data.vocab import EOS_ID, PAD_ID
    from seqlab.rewards import reward_increments

    bench = load_script("critic_on_references")
    refs = torch.tensor([[5, 6, 7, 8, EOS_ID], [9, 10, EOS_ID, PAD_ID, PAD_ID]])
    to_go = reward_increments("bleu", refs, refs, scale_by_length=True).flip(-1).cumsum(-1).flip(-1)

    def oracle(ref, tokens):
        q = torch.full((*tokens.shape, 12), -1.0)
        return q.scatter(-1, tokens.unsqueeze(-1), to_go[: len(ref)].unsqueeze(-1))

    got = bench.reference_stats(oracle, refs)
    assert got["next_token_top1"] == 1.0 and got["next_token_rank_median"] == 1.0
    assert got["q_return_to_go_abs_error"] == 0.0
    assert got["q_first_mean"] == pytest.approx(got["return_mean"]) and got["return_mean"] > 1.0

    def elsewhere(ref, tokens):
        return oracle(ref, tokens).index_fill(-1, torch.tensor([11]), 1e3)  # token 11 is in no reference

    worse = bench.reference_stats(elsewhere, refs)
    assert worse["next_token_top1"] == 0.0 and worse["next_token_rank_median"] == 2.0


def test_the_critics_architecture_comes_from_the_run_beside_it(tmp_path):
    """critic_on_references.critic_architecture: the run's config.yaml beside the checkpoint names the critic's
    architecture and options; without one, the credit table's critic."""
    bench = load_script("critic_on_references")
    assert bench.critic_architecture(tmp_path / "bare.pt") == ("transformer", bench.CRITIC_OPTIONS)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.yaml").write_text(
        "algorithm:\n  options:\n    critic_arch: lstm\n    critic_options: {hidden: 64}\n"
    )
    assert bench.critic_architecture(tmp_path / "run" / "checkpoint_last.pt") == ("lstm", {"hidden": 64})


def test_op_counts_counts_kernel_launching_operations_and_where_they_run():
    """benchmarks/op_counts.py: views and detach are not counted; the optimizer's operations are counted apart;
    operations inside a capturable loop (seqlab/decoding/sampling.py) are marked so."""
    import torch

    from seqlab.decoding.sampling import inverse_cdf

    ops = load_script("op_counts")
    layer = torch.nn.Linear(4, 4)
    optimizer = torch.optim.SGD(layer.parameters(), lr=0.1)
    counter = ops.OpCounter(sites=True)
    optimizer.step = counter.apart(optimizer.step)
    x = torch.randn(2, 4)
    with counter:
        # forward addmm, relu, sum; backward ones_like (the seed), threshold_backward, mm (weight), sum (bias)
        layer(x).relu().sum().backward()
        outside, loops = counter.total, counter.in_loops
        optimizer.step()
        inverse_cdf(torch.tensor([[0.5, 0.5]]), torch.tensor([0.7]))
    assert outside == 7 and loops == 0
    assert counter.optimizer > 0 and counter.total > outside  # SGD's steps apart; the draw's in total
    assert counter.in_loops == counter.total - outside > 0
    assert all(site.endswith("(loop)") for site in counter.by_site if "decoding/sampling.py" in site)


def test_trainer_throughput_counts_only_the_windows_before_the_profiled_steps(tmp_path, monkeypatch):
    """benchmarks/trainer_throughput.py: after the warm-up, trainer_tok_per_s is the median of the windows that end
    before train.profile_steps (a CUDA profile can slow every later launch); those that start after the profiled
    steps give trainer_tok_per_s_after_profile, and a window that holds profiled steps counts for neither."""
    mod = load_script("trainer_throughput")
    monkeypatch.setenv("SEQLAB_RESULTS_DIR", str(tmp_path / "results"))
    monkeypatch.setenv("SEQLAB_DEVICE", "GPU")
    run = tmp_path / "run"
    (run / "profile").mkdir(parents=True)
    # windows of 50 steps, one every 10 s; the first (warm-up) is slow; steps 301-330 are profiled
    rates = [50.0, 400.0, 410.0, 390.0, 420.0, 405.0, 100.0, 300.0, 310.0, 290.0]
    lines = [
        json.dumps({"kind": "train", "step": 50 * (i + 1), "time": 10.0 * i, "tgt_tok_per_s": r})
        for i, r in enumerate(rates)
    ]
    (run / "log.jsonl").write_text("\n".join([json.dumps({"kind": "valid", "step": 50}), *lines]) + "\n")
    summary = {"steps": [301, 330], "wall_ms_per_step": 40.0, "device_busy_share": 0.5}
    (run / "profile" / "summary.json").write_text(json.dumps(summary))
    assert mod.main([str(run), "--warmup-seconds", "5"]) == 0
    got = {e["metric"]: e["value"] for e in json.loads((tmp_path / "results" / "speed_cuda.json").read_text())}
    assert got["trainer_tok_per_s"] == 405.0  # windows 2-6 (steps 51-300); window 7 holds the profiled steps
    assert got["trainer_counted_seconds"] == 50.0  # from window 1's end (0 s) to window 6's (50 s)
    assert got["trainer_tok_per_s_after_profile"] == 300.0  # windows 8-10 (steps 351-500)
    assert got["trainer_device_busy_share"] == 0.5
    (run / "profile" / "summary.json").write_text(json.dumps({**summary, "steps": [1, 30]}))
    with pytest.raises(SystemExit, match="before the profiled steps"):
        mod.main([str(run), "--warmup-seconds", "5", "--no-write"])


def test_trainer_throughput_counts_the_captures_of_a_cuda_graphs_run(tmp_path, monkeypatch):
    """A train.cuda_graphs run logs its captures so far: trainer_throughput counts those inside the counted windows
    and gives the median of the counted windows without one (trainer_tok_per_s_between_captures)."""
    mod = load_script("trainer_throughput")
    monkeypatch.setenv("SEQLAB_RESULTS_DIR", str(tmp_path / "results"))
    monkeypatch.setenv("SEQLAB_DEVICE", "GPU")
    run = tmp_path / "run"
    run.mkdir()
    # (captures so far, rate) per window of 50 steps, one every 10 s; the first window is the warm-up
    windows = [(20, 50.0), (24, 300.0), (24, 500.0), (25, 350.0), (25, 520.0), (25, 510.0)]
    lines = [
        json.dumps(
            {"kind": "train", "step": 50 * (i + 1), "time": 10.0 * i, "tgt_tok_per_s": r, "cuda_graph_captures": c}
        )
        for i, (c, r) in enumerate(windows)
    ]
    (run / "log.jsonl").write_text("\n".join(lines) + "\n")
    assert mod.main([str(run), "--warmup-seconds", "5", "--label", "_cuda_graphs"]) == 0
    got = {e["metric"]: e["value"] for e in json.loads((tmp_path / "results" / "speed_cuda.json").read_text())}
    assert got["trainer_tok_per_s_cuda_graphs"] == 500.0  # windows 2-6
    assert got["trainer_cuda_graph_captures_counted_cuda_graphs"] == 5  # 4 in window 2, 1 in window 4
    assert got["trainer_tok_per_s_between_captures_cuda_graphs"] == 510.0  # windows 3, 5 and 6
    assert mod.capture_counts(mod.windows(run / "log.jsonl"), []) is None
    eager = [{**json.loads(line), "cuda_graph_captures": 0} for line in lines]
    (run / "log.jsonl").write_text("\n".join(json.dumps(r) for r in eager) + "\n")
    with pytest.raises(SystemExit, match="captured no step"):  # it trained eagerly: not a captured figure
        mod.main([str(run), "--warmup-seconds", "5", "--no-write"])


def test_graphed_training_is_timed_at_each_width_and_the_trainer_is_left_as_it_was(tmp_path, monkeypatch):
    """bench_speed's time_graphed_training (fixed-shape steps, eager on the CPU): one figure per
    train.cuda_graphs_width, the default's also as train_tok_per_s_cuda_graphs, each width's own step (batches
    padded to its buckets), and afterwards the trainer steps as before (no graphed step, the default width)."""
    from types import SimpleNamespace

    import torch
    from helpers import tiny_overrides

    from seqlab.config import load_config
    from seqlab.data.batching import collate
    from seqlab.train.trainer import Trainer

    bench = load_script("bench_speed")
    trainer = Trainer(load_config(None, tiny_overrides(tmp_path, "run")), console=False)
    trainer.sampler.set_epoch(0)
    batches = [collate(trainer.train_data, i) for i, _ in zip(trainer.sampler, range(3), strict=False)]
    widths = []
    step = trainer.train_step
    monkeypatch.setattr(trainer, "train_step", lambda b: (widths.append(trainer.graphed.width), step(b)))
    with pytest.warns(UserWarning, match="no CUDA device"):
        got = bench.time_graphed_training(trainer, batches, SimpleNamespace(warmup=1))
    assert sorted(got) == sorted(
        ["train_tok_per_s_cuda_graphs", *(f"train_tok_per_s_cuda_graphs_w{w}" for w in bench.GRAPH_WIDTHS)]
    )
    assert got["train_tok_per_s_cuda_graphs"] == got["train_tok_per_s_cuda_graphs_w2"] > 0
    assert widths == [w for w in bench.GRAPH_WIDTHS for _ in range(2 * len(batches) - 1)]
    assert (
        trainer.graphed is None and trainer.cfg.train.cuda_graphs is None and trainer.cfg.train.cuda_graphs_width == 2
    )
    assert all(p.grad is None for p in trainer.model.parameters())
    assert torch.isfinite(step(batches[0])["loss"])


def test_shape_keys_counts_each_widths_padding_and_the_captures_of_a_least_recently_used_cache(monkeypatch):
    """shape_keys.count_width: buckets of (rows, source width, target width); a bucket evicted from a full cache is
    captured again when it recurs."""
    keys = load_script("shape_keys")
    dims = [(16, 5, 7), (16, 6, 8), (10, 5, 7), (16, 9, 9), (16, 5, 7)]
    four = keys.count_width(dims, 4, early=2)
    # buckets (16, 8, 8), (16, 8, 8), (16, 8, 8), (16, 12, 12), (16, 8, 8): two captures, one of them in 2 steps
    assert (four.captures, four.captures_early) == (2, 1)
    real = sum(r * (s + t) for r, s, t in dims)
    assert four.padding == pytest.approx((4 * 16 * 16 + 16 * 24) / real)
    one = keys.count_width(dims, 1)
    assert one.captures == 3 and one.padding == pytest.approx((real + 6 * 12) / real)  # 10 rows -> 16
    monkeypatch.setattr(keys, "MAX_GRAPHS", 1)
    assert keys.count_width(dims, 1).captures == 5  # (16, 5, 7) is evicted each time before it recurs


def test_the_speed_bench_compares_the_searches_with_eager_and_uncaptured_ones(tmp_path, monkeypatch, capsys):
    """bench_speed's decoding comparison (CUDA by default, asked for here on the CPU): the searches' hypotheses against
    ``beam_search``'s own loop and against their fixed-shape search run uncaptured, as shares of identical
    hypotheses; a search that differs lowers the share and names the sources."""
    from types import SimpleNamespace

    from helpers import tiny_overrides

    from seqlab.config import load_config
    from seqlab.train.trainer import Trainer

    bench = load_script("bench_speed")
    monkeypatch.delenv("SEQLAB_STATIC_BEAM", raising=False)
    trainer = Trainer(load_config(None, tiny_overrides(tmp_path, "run")), console=False)
    model, args = trainer.model.eval(), SimpleNamespace(decode_batch=8)
    src_ids = [[5, 6, 7, 2], [8, 9, 2], [6, 6, 5, 9, 2]]
    results, _, _ = bench.time_seqlab_decoding(model, src_ids, trainer.cfg, trainer.device, args, compare_eager=True)
    for name in ("greedy", "beam5"):
        assert results[f"{name}_graph_vs_eager_identical_fraction"] == 1.0
        assert results[f"{name}_graph_vs_uncaptured_identical_fraction"] == 1.0
    real = bench.static_search

    def first_token_changed(*a, **kw):
        hyp = real(*a, **kw)
        hyp.tokens[0, 0] = hyp.tokens[0, 0] + 1
        hyp.host_rows = None  # the rows as read back, now from the changed tokens
        return hyp

    monkeypatch.setattr(bench, "static_search", first_token_changed)
    capsys.readouterr()
    results, _, _ = bench.time_seqlab_decoding(model, src_ids, trainer.cfg, trainer.device, args, compare_eager=True)
    assert results["beam5_graph_vs_uncaptured_identical_fraction"] == pytest.approx(2 / 3)
    assert results["beam5_graph_vs_eager_identical_fraction"] == 1.0
    assert "test source 1: uncaptured" in capsys.readouterr().out  # the shortest source is decoded first
