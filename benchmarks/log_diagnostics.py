"""What the algorithms of a comparison did, from its runs' own logs: the quantities that show an algorithm does what
its paper defines (λ per step, the drawn shares, the reward draw's entropy, the weight on the reference, the MIXER
prefix, P(truth)) and whether a run collapsed (sample reward and greedy validation BLEU early and late).

For every algorithm label of ``OUT/runs`` and every logged quantity among ``--keys``: ``<prefix>_<label>_<key>_min``
and ``_max`` over all seeds and logged steps, and ``_first`` / ``_last`` (the mean over seeds of each run's first and
last logged value); for the greedy validation BLEU also ``valid_bleu_first`` (the first evaluation, mean over
seeds) and ``valid_bleu_lowest`` (each run's lowest, mean over seeds), ``valid_length_ratio_{first,last,min}`` where
the runs logged it; ``<prefix>_<label>_train_seconds_{min,max}``
from the runs' results.json, and for runs that never finished ``<prefix>_<label>_unfinished_runs`` with their
``_last_logged_step_{min,max}``; for the shared pre-training ``<prefix>_pretrain_train_seconds`` and its best
checkpoint's ``<prefix>_checkpoint_valid_<metric>``.  ``--labels`` limits it to some rows (and their critics;
``pretrain`` for the pre-training), for a comparison resumed with new rows whose earlier rows' entries stand.

    python benchmarks/log_diagnostics.py --out runs/multi30k_erpo --prefix multi30k_deen --results multi30k_erpo
"""

from __future__ import annotations

import argparse
import json
import math
import re
import statistics
from pathlib import Path

from seqlab.bench import results as results_io
from seqlab.compare.export import run_commits

KEYS = (
    "reward",
    "advantage_abs",
    "grad_norm",
    "reward_entropy",
    "reward_draw_in_reference",
    "share_data",
    "share_reward",
    "share_model",
    "lambda1",
    "lambda2",
    "lambda3",
    "weight_on_reference",
    "effective_samples",
    "prefix",
    "truth_prob",
    "td_abs",
    "return",
    "entropy",
    "q_argmax_eos",
    "q_argmax_is_pi_argmax",
    "pi_of_q_argmax",
    "sample_length",
    "q_target_share",
    "kl",
    "reward_std",
)


def read_log(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def series(records: list[dict], kind: str, key: str) -> list[float]:
    """The finite values of ``key`` in ``kind`` records (NaN: undefined at that step, e.g. the reward draw's
    entropy while the interpolation draws nothing from the reward)."""
    values = (r.get(key) for r in records if r.get("kind") == kind)
    return [float(v) for v in values if isinstance(v, (int, float)) and math.isfinite(v)]


def label_entries(
    prefix: str, label: str, logs: list[list[dict]], keys: tuple[str, ...], curves: bool = False
) -> list[dict]:
    """The entries of one algorithm label from its seeds' logs (``curves``: also every validation, by step)."""
    entries = []
    name = f"{prefix}_{label}"
    for key in keys:
        runs = [s for s in (series(log, "train", key) for log in logs) if s]
        if not runs:
            continue
        values = [v for s in runs for v in s]
        for stat, value in (
            ("min", min(values)),
            ("max", max(values)),
            ("first", statistics.mean(s[0] for s in runs)),
            ("last", statistics.mean(s[-1] for s in runs)),
        ):
            entries.append(results_io.entry(f"{name}_{key}_{stat}", round(value, 4), f"logged {key} ({stat})"))
    valid = [s for s in (series(log, "valid", "bleu") for log in logs) if s]
    if valid:
        n = len(valid)
        entries.append(
            results_io.entry(
                f"{name}_valid_bleu_first",
                round(statistics.mean(s[0] for s in valid), 2),
                f"greedy valid BLEU at the first evaluation (mean of {n} seeds)",
            )
        )
        entries.append(
            results_io.entry(
                f"{name}_valid_bleu_lowest",
                round(statistics.mean(min(s) for s in valid), 2),
                f"each run's lowest greedy valid BLEU (mean of {n} seeds)",
            )
        )
    ratios = [s for s in (series(log, "valid", "length_ratio") for log in logs) if s]
    if ratios:  # the validation hypotheses' BLEU length ratio (logged since session 15)
        for stat, value in (
            ("first", statistics.mean(s[0] for s in ratios)),
            ("last", statistics.mean(s[-1] for s in ratios)),
            ("min", min(min(s) for s in ratios)),
        ):
            unit = f"greedy valid hypotheses' BLEU length ratio ({stat}; {len(ratios)} seeds)"
            entries.append(results_io.entry(f"{name}_valid_length_ratio_{stat}", round(value, 4), unit))
    if curves and valid:  # every evaluation, as the report's validation curves
        steps = sorted({r["step"] for log in logs for r in log if r.get("kind") == "valid" and "bleu" in r})
        for step in steps:
            at = [r["bleu"] for log in logs for r in log if r.get("kind") == "valid" and r["step"] == step]
            unit = f"greedy valid BLEU at step {step} (mean of {len(at)} seeds)"
            entries.append(results_io.entry(f"{name}_valid_bleu_step{step}", round(statistics.mean(at), 2), unit))
    moves = [sum(1 for r in log if r.get("kind") == "anneal") for log in logs]
    if any(moves):  # validation_anneal: how often the weights moved (each with a roll-back)
        entries += [
            results_io.entry(f"{name}_anneal_moves_{stat}", value, "weight moves with roll-back per run")
            for stat, value in (("min", min(moves)), ("max", max(moves)))
        ]
    return entries


def time_entries(prefix: str, label: str, results: list[dict]) -> list[dict]:
    """``<prefix>_<label>_train_seconds_{min,max}`` over the seeds' results.json (training time, evaluations
    excluded)."""
    seconds = [float(r["train_seconds"]) for r in results if "train_seconds" in r]
    if not seconds:
        return []
    unit = f"training seconds ({len(seconds)} runs)"
    return [
        results_io.entry(f"{prefix}_{label}_train_seconds_{stat}", round(value, 1), unit)
        for stat, value in (("min", min(seconds)), ("max", max(seconds)))
    ]


def unfinished_entries(prefix: str, label: str, log_paths: list[Path], logs: list[list[dict]]) -> list[dict]:
    """Runs that logged but never finished (no results.json beside their log: a machine lost mid-run): their count
    as ``<prefix>_<label>_unfinished_runs`` and the last step they logged, ``_last_logged_step_{min,max}``, so
    figures read from their logs say how far they got."""
    steps = [
        max((r.get("step", 0) for r in log), default=0)
        for path, log in zip(log_paths, logs, strict=True)
        if not (path.parent / "results.json").exists()
    ]
    if not steps:
        return []
    return [
        results_io.entry(f"{prefix}_{label}_unfinished_runs", len(steps), "runs without results.json"),
        results_io.entry(f"{prefix}_{label}_last_logged_step_min", min(steps), "step"),
        results_io.entry(f"{prefix}_{label}_last_logged_step_max", max(steps), "step"),
    ]


def pretrain_entries(prefix: str, out: Path) -> list[dict]:
    """The shared pre-training: its training seconds and its best checkpoint's validation and test scores."""
    path = out / "pretrain" / "results.json"
    if not path.exists():
        return []
    res = json.loads(path.read_text(encoding="utf-8"))
    entries = [results_io.entry(f"{prefix}_pretrain_train_seconds", round(res["train_seconds"], 1), "s")]
    log = out / "pretrain" / "log.jsonl"
    for r in read_log(log) if log.exists() else []:  # its validation curve
        if r.get("kind") == "valid" and "bleu" in r:
            unit = f"greedy valid BLEU of the shared pre-training at step {r['step']}"
            entries.append(results_io.entry(f"{prefix}_pretrain_valid_bleu_step{r['step']}", round(r["bleu"], 2), unit))
    for metric, value in (res.get("valid") or {}).items():
        unit = f"{metric} of the shared checkpoint on the valid set"
        entries.append(results_io.entry(f"{prefix}_checkpoint_valid_{metric.lower()}", round(value, 2), unit))
    for metric, value in (res.get("test") or {}).items():
        unit = f"{metric} of the shared checkpoint on the test set, as its pre-training scored it"
        entries.append(results_io.entry(f"{prefix}_pretrain_test_{metric.lower()}", round(value, 2), unit))
    return entries


#: the critic-only phase's value in the logs' ``phase``, and what :func:`critic_entries` averages over its last
#: ``LAST_RECORDS`` logged steps: the horizon the critic has learnt (Q(s0, a0) against the sample's return) and
#: whether its preferred actions are ones the actor takes
CRITIC_PHASE, LAST_RECORDS = 1.0, 5
CRITIC_LAST = {
    "q_first": "Q(s0, a0) of the samples, mean of the critic phase's last 5 logged steps",
    "return": "the samples' return, same steps",
    "q_argmax_is_pi_argmax": "share of positions where Q's argmax is the actor's argmax, same steps",
    "pi_of_q_argmax": "the actor's probability of Q's argmax, same steps",
}


def critic_entries(prefix: str, out: Path, labels: set[str] | None = None) -> list[dict]:
    """The shared critics (``share_critic``: OUT/critics/<label>): the critic-only phase's validation TD error at
    its first evaluation, its best and where it ended, the critic steps it took and their training seconds, the
    fixed actor's sample return and entropy at the first logged step, its validation scores at the phase's end
    (``actor_valid_<metric>``: the start's, scored by the critic run), and :data:`CRITIC_LAST` at its end."""
    entries = []
    for log_path in sorted((out / "critics").glob("*/log.jsonl")):
        records = read_log(log_path)
        label, evals = log_path.parent.name, [r for r in records if r.get("kind") == "critic"]
        results = log_path.parent / "results.json"
        res = json.loads(results.read_text(encoding="utf-8")) if results.exists() else {}
        fixed = (res.get("algorithm_options") or {}).get("critic_patience", 0) is None  # a fixed-length phase
        if not (evals or fixed) or (labels is not None and label not in labels):
            continue
        name = f"{prefix}_{label}_critic"
        actor = [(k, series(records, "train", k)) for k in ("return", "entropy")]
        rows = [(f"actor_{k}_first", round(v[0], 4), f"the fixed actor's logged {k} (first)") for k, v in actor if v]
        if evals:
            rows += [
                ("valid_td_first", round(float(evals[0]["valid_td"]), 4), "validation |TD| at the first evaluation"),
                ("valid_td_best", round(min(float(r["valid_td"]) for r in evals), 4), "best validation |TD|"),
                ("valid_td_worst", round(max(float(r["valid_td"]) for r in evals), 4), "worst validation |TD|"),
                ("valid_td_last", round(float(evals[-1]["valid_td"]), 4), "validation |TD| at the last evaluation"),
            ]
        steps = int(evals[-1]["critic_steps"]) if evals else int(res["algorithm_options"]["critic_pretrain_steps"])
        rows.append(("steps", steps, "critic-only steps until the phase ended"))
        critic_phase = [r for r in records if r.get("kind") == "train" and r.get("phase") == CRITIC_PHASE]
        for key, what in CRITIC_LAST.items():
            values = series(critic_phase[-LAST_RECORDS:], "train", key)
            if values:
                rows.append((f"{key}_last", round(sum(values) / len(values), 4), what))
        if res:
            seconds = res.get("train_seconds")
            rows += [("train_seconds", round(seconds, 1), "s (the critic phase and one joint step)")] if seconds else []
            rows += [
                (f"actor_valid_{m.lower()}", round(v, 2), f"{m} of the fixed actor on valid at the critic phase's end")
                for m, v in (res.get("valid") or {}).items()
            ]
        entries += with_commit([results_io.entry(f"{name}_{k}", v, u) for k, v, u in rows], log_path.parent)
    return entries


def repeats_an_ngram(words: list[str], max_n: int = 4) -> bool:
    """Whether some n-gram (n <= ``max_n``) is immediately followed by itself ("in the snow in the snow")."""
    return any(
        words[i : i + n] == words[i + n : i + 2 * n] for n in range(1, max_n + 1) for i in range(len(words) - 2 * n + 1)
    )


def hypothesis_entries(prefix: str, label: str, label_dir: Path, refs: list[str]) -> list[dict]:
    """What the test hypotheses look like (mean over seeds): sacrebleu's length ratio (hypothesis / reference
    tokens), the share of hypotheses that repeat an n-gram back to back, the share longer than 1.5x their reference,
    and the share ending in a run of 3 or more symbols (a rare token repeated up to the length limit: a policy that
    does not stop).  A policy that never stops or loops shows here before it shows in BLEU."""
    import sacrebleu

    stats: dict[str, list[float]] = {
        k: [] for k in ("length_ratio", "repeat_share", "overlong_share", "symbol_run_end")
    }
    tokenize = sacrebleu.BLEU().tokenizer
    ref_lengths = [len(tokenize(r).split()) for r in refs]
    for path in sorted(label_dir.glob("seed*/test.hyp.txt")):
        hyps = path.read_text(encoding="utf-8").splitlines()
        if len(hyps) != len(refs):
            continue
        bleu = sacrebleu.corpus_bleu(hyps, [refs])
        words = [tokenize(h).split() for h in hyps]
        stats["length_ratio"].append(bleu.sys_len / bleu.ref_len)
        stats["repeat_share"].append(statistics.mean(repeats_an_ngram(w) for w in words))
        longer = [len(w) > 1.5 * n for w, n in zip(words, ref_lengths, strict=True)]
        stats["overlong_share"].append(statistics.mean(longer))
        stats["symbol_run_end"].append(statistics.mean(bool(re.search(r"[^\w\s]{3,}$", h)) for h in hyps))
    units = {"length_ratio": "hypothesis / reference tokens"}
    return [
        results_io.entry(
            f"{prefix}_{label}_test_{k}", round(statistics.mean(v), 4), f"{units.get(k, 'fraction')} (mean of {len(v)})"
        )
        for k, v in stats.items()
        if v
    ]


def test_references(out: Path) -> list[str] | None:
    """The comparison's test references (OUT/test.refs.json, the first reference of each source), if stored."""
    path = out / "test.refs.json"
    if not path.exists():
        return None
    refs = json.loads(path.read_text(encoding="utf-8"))["references"]
    return [r[0] if isinstance(r, list) else r for r in refs]


def with_commit(entries: list[dict], runs: Path) -> list[dict]:
    """``entries`` stamped with the commit(s) the runs under ``runs`` were trained at, where they recorded one."""
    code = run_commits(runs)
    return [{**e, "commit": code} for e in entries] if code else entries


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True, help="the comparison's output folder (its runs/ are read)")
    p.add_argument("--prefix", required=True, help="metric name prefix, e.g. multi30k_deen")
    p.add_argument("--results", required=True, help="results file name under benchmarks/results (no .json)")
    p.add_argument("--keys", default=",".join(KEYS), help="logged quantities to report")
    p.add_argument("--curves", action="store_true", help="also every validation BLEU by step (mean over seeds)")
    p.add_argument(
        "--labels", help="only these rows (comma-separated labels) and their critics; pretrain: the pre-training"
    )
    args = p.parse_args()
    keys = tuple(k for k in args.keys.split(",") if k)
    labels = set(args.labels.split(",")) if args.labels else None
    runs = args.out / "runs"
    if not any((args.out / part).is_dir() for part in ("runs", "critics", "pretrain")):
        raise SystemExit(f"{runs}: no such folder (give the comparison's --out)")
    pretraining = labels is None or "pretrain" in labels
    entries = with_commit(pretrain_entries(args.prefix, args.out), args.out / "pretrain") if pretraining else []
    entries += critic_entries(args.prefix, args.out, labels)
    refs = test_references(args.out)
    chosen = sorted(d for d in runs.glob("*") if d.is_dir() and (labels is None or d.name in labels))
    for label_dir in chosen:  # none when only critics ran
        log_paths = sorted(label_dir.glob("seed*/log.jsonl"))
        logs = [read_log(f) for f in log_paths]
        results = [json.loads(f.read_text(encoding="utf-8")) for f in sorted(label_dir.glob("seed*/results.json"))]
        row = label_entries(args.prefix, label_dir.name, logs, keys, args.curves)
        row += time_entries(args.prefix, label_dir.name, results)
        row += unfinished_entries(args.prefix, label_dir.name, log_paths, logs)
        row += hypothesis_entries(args.prefix, label_dir.name, label_dir, refs) if refs else []
        entries += with_commit(row, label_dir)
    for e in entries:
        print(f"{e['metric']:60s} {e['value']}")
    print(f"{len(entries)} entries -> {results_io.write(args.results, entries)}")


if __name__ == "__main__":
    main()
