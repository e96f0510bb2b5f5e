"""``seqlab compare``: algorithms x seeds on one task, one shared MLE checkpoint, the same budget, a report.

    seqlab compare --config configs/g2p_lstm.yaml --algorithms mle,raml,pg --seeds 1,2,3 \\
        --pretrain-steps 4000 --budget-steps 2000 --out runs/compare_g2p [--gpus auto|0,1|none] \\
        [train.lr=3e-4 interpolation:algorithm.options.reward_scale=20 ...]

``key=value`` overrides apply to every run (and the pre-training); ``label:key=value`` only to that
algorithm's runs; ``pretrain:key=value`` only to the shared MLE pre-training.
``seqlab compare --report-only --out DIR`` rewrites the report of an existing comparison; ``--export-results``
also writes its figures as benchmark entries (:mod:`seqlab.compare.export`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from seqlab.compare.runner import CompareSpec, load_compare_yaml, parse_extra_test, run_compare, split_overrides
from seqlab.config import ConfigError

#: ``pretrain:key=value`` overrides only the shared MLE pre-training (e.g. its own learning rate)
PRETRAIN_LABEL = "pretrain"


def _int_list(text: str) -> list[int]:
    return [int(x) for x in str(text).split(",") if x.strip()]


def _str_list(text: str) -> list[str]:
    return [x.strip() for x in str(text).split(",") if x.strip()]


def build_spec(args: argparse.Namespace) -> CompareSpec:
    """Command-line flags over the compare YAML (if any) over the defaults."""
    data: dict[str, Any] = load_compare_yaml(args.compare_config) if args.compare_config else {}
    common, per = split_overrides(args.overrides)
    for key, value in (
        ("config", args.config),
        ("out", args.out),
        ("pretrain_steps", args.pretrain_steps),
        ("budget_steps", args.budget_steps),
        ("budget_minutes", args.budget_minutes),
        ("init_from", args.init_from),
        ("gpus", args.gpus),
        ("runs_per_gpu", args.runs_per_gpu),
        ("gpu_memory_share", args.gpu_memory_share),
        ("baseline", args.baseline),
        ("reward", args.reward),
        ("init_state", args.init_state),
        ("label_smoothing", args.label_smoothing),
    ):
        if value is not None:
            data[key] = value
    for key in ("allow_short_schedules", "share_critic"):  # switches: on when given
        if getattr(args, key):
            data[key] = True
    extra = {name: files for name, files in (data.get("extra_tests") or {}).items()}
    extra = dict(parse_extra_test(f"{name}={','.join(files)}") for name, files in extra.items())
    extra.update(parse_extra_test(item) for item in args.extra_test or [])
    data["extra_tests"] = extra
    if args.algorithms:  # a subset of the YAML's rows: its settings for the rows left out are not used
        data["algorithms"] = _str_list(args.algorithms)
        for key in ("algorithm_overrides", "variants"):
            if data.get(key):
                data[key] = {k: v for k, v in data[key].items() if k in data["algorithms"]}
        if data.get("queue_first"):
            data["queue_first"] = [label for label in data["queue_first"] if label in data["algorithms"]]
    if args.seeds:
        data["seeds"] = _int_list(args.seeds)
    data["overrides"] = list(data.get("overrides", [])) + common
    data["pretrain_overrides"] = list(data.get("pretrain_overrides", [])) + per.pop(PRETRAIN_LABEL, [])
    # the command line over the file: a row's own settings in the file (algorithm_options, algorithm_overrides), then
    # the command line's key=value again (it would lose to them otherwise), then its label:key=value
    in_file = data.get("algorithm_overrides", {})
    data["algorithm_overrides"] = {
        label: [*in_file.get(label, []), *(common if label in in_file else []), *per.get(label, [])]
        for label in dict.fromkeys([*in_file, *per])
    }
    return CompareSpec(**_checked(data))


def _checked(data: dict[str, Any]) -> dict[str, Any]:
    """The comparison's settings with algorithms / seeds as lists, or a one-line error on what is missing."""
    for key in ("config", "out", "algorithms", "seeds"):
        if not data.get(key):
            raise ConfigError(f"seqlab compare: --{key} is required (on the command line or in --compare-config)")
    if isinstance(data["algorithms"], str):
        data["algorithms"] = _str_list(data["algorithms"])
    if isinstance(data["seeds"], (str, int)):
        data["seeds"] = _int_list(str(data["seeds"]))
    unknown = set(data["algorithm_overrides"]) - set(data["algorithms"])
    if unknown:
        raise ConfigError(f"seqlab compare: overrides for {sorted(unknown)}, which are not in --algorithms")
    if PRETRAIN_LABEL in data["algorithms"]:
        raise ConfigError(f"seqlab compare: {PRETRAIN_LABEL!r} is reserved for the shared pre-training")
    if len(set(data["algorithms"])) != len(data["algorithms"]):
        raise ConfigError("seqlab compare: an algorithm is listed twice (use variants for several settings)")
    if data.get("budget_steps") is None and data.get("budget_minutes") is None:
        raise ConfigError("seqlab compare: give --budget-steps or --budget-minutes (the same budget for every run)")
    return data


def cmd_compare(args: argparse.Namespace) -> int:
    if args.report_only:
        from seqlab.compare.report import write_report

        out = args.out or (load_compare_yaml(args.compare_config).get("out") if args.compare_config else None)
        if not out:
            raise ConfigError("seqlab compare --report-only needs --out DIR (or a --compare-config with out:)")
        labels = _str_list(args.algorithms) if args.algorithms else None  # rows whose runs were put under runs/
        paths = write_report(out, baseline=args.baseline, n_samples=args.bootstrap_samples, labels=labels)
        print(json.dumps({k: str(v) for k, v in paths.items()}, indent=2))
        _export(args, out)
        return 0
    spec = build_spec(args)
    if args.dry_run:
        from seqlab.compare.runner import check_runs, plan_critics, plan_pretrain, plan_runs, train_command

        out = Path(spec.out).resolve()
        pre = plan_pretrain(spec, out)
        runs = ([pre] if pre else []) + plan_critics(spec, out) + plan_runs(spec, out)
        check_runs(spec.config, runs, spec.overrides)
        for run in runs:
            print(("[done] " if run.done else "") + " ".join(train_command(str(out / "task.yaml"), run)))
        return 0
    if args.pretrain_only and args.critics_only:
        raise ConfigError("seqlab compare: --pretrain-only and --critics-only are two different stages; give one")
    summary = run_compare(spec, pretrain_only=args.pretrain_only, critics_only=args.critics_only)
    if not (args.pretrain_only or args.critics_only):
        _export(args, spec.out)
    return 1 if summary["failed"] else 0


def _export(args: argparse.Namespace, out: str) -> None:
    """``--export-results``: the report's entries to benchmarks/results, its files to benchmarks/reports."""
    if not args.export_results:
        return
    from seqlab.compare.export import export_results, export_settings

    name = args.export_results if isinstance(args.export_results, str) else None
    settings = export_settings(args.compare_config, out, name, args.export_report_dir)
    print(json.dumps(export_results(out, settings), indent=2))


def add_compare_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "compare",
        help="algorithms x seeds on one task from one MLE checkpoint; a report",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", help="task YAML (the same file `seqlab train` takes)")
    p.add_argument(
        "--compare-config",
        help="YAML with compare settings: algorithms, seeds, budget_steps, "
        "algorithm_options {label: {option: value}}, algorithm_overrides, variants {label: {algorithm, "
        "overrides}}, ...; flags override it",
    )
    p.add_argument(
        "--algorithms",
        help="comma-separated algorithm names or variant labels, e.g. mle,raml,pg; with --report-only the rows to "
        "report (runs/<label>/ of each), also rows whose runs were put there from another comparison",
    )
    p.add_argument("--seeds", help="comma-separated seeds, e.g. 1,2,3,4,5")
    p.add_argument("--pretrain-steps", type=int, help="steps of the shared MLE pre-training (0: none)")
    p.add_argument("--init-from", help="an existing MLE checkpoint to start every run from (skips pre-training)")
    p.add_argument("--budget-steps", type=int, help="training steps of every run")
    p.add_argument("--budget-minutes", type=float, help="wall-clock minutes of training of every run")
    p.add_argument("--out", help="comparison directory (rerun it to resume)")
    p.add_argument("--gpus", help="auto (default: every visible GPU, one run each), none (in sequence), or 0,1")
    p.add_argument("--runs-per-gpu", type=int, help="concurrent runs on each GPU (default 1)")
    p.add_argument(
        "--gpu-memory-share",
        type=float,
        help="share of each GPU's memory all runs together may hold (default 0.95; less when other "
        "work shares the GPU)",
    )
    p.add_argument("--baseline", help="the label significance is tested against (default mle)")
    p.add_argument("--reward", help="reward of every reward-based algorithm (e.g. rouge for summarization)")
    p.add_argument(
        "--init-state",
        choices=["full", "model"],
        help="full (default): every run continues the shared checkpoint's optimizer state and lr schedule; "
        "model: its weights only, with each run's own optimizer settings",
    )
    p.add_argument(
        "--label-smoothing",
        type=float,
        help="label smoothing of every run (default: the task config's train.label_smoothing)",
    )
    p.add_argument(
        "--allow-short-schedules",
        action="store_true",
        help="let runs whose schedules pass fewer than 3 stages within the budget train anyway",
    )
    p.add_argument(
        "--share-critic",
        action="store_true",
        help="ac / erac / vaml: pre-train each label's critic once (a run of its own, under OUT/critics) and start "
        "every seed from it, as the authors do; default: every run pre-trains its own",
    )
    p.add_argument(
        "--extra-test",
        action="append",
        metavar="NAME=SRC,REF",
        help="also score every run's best checkpoint on these files (one sentence per line); repeatable",
    )
    p.add_argument("--bootstrap-samples", type=int, default=1000)
    p.add_argument("--report-only", action="store_true", help="only rewrite the report of --out")
    p.add_argument("--pretrain-only", action="store_true", help="stop after the shared MLE pre-training")
    p.add_argument(
        "--critics-only",
        action="store_true",
        help="stop after the shared critics (share_critic); the runs that start from no shared critic (e.g. mle) "
        "train beside them; rerun without it for the rest",
    )
    p.add_argument("--dry-run", action="store_true", help="print the training commands and exit")
    p.add_argument(
        "--export-results",
        nargs="?",
        const=True,
        default=None,
        metavar="NAME",
        help="after the report, write its figures to benchmarks/results/NAME.json and copy it to "
        "benchmarks/reports/NAME (NAME, metric prefix, split and folder: the suite's export: "
        "section; default NAME: the suite file's name)",
    )
    p.add_argument(
        "--export-report-dir",
        metavar="DIR",
        help="with --export-results: copy the report to DIR instead of the suite's report_dir (e.g. one stage of a "
        "table beside the committed report)",
    )
    p.add_argument(
        "overrides",
        nargs="*",
        help="key=value (every run), label:key=value (one algorithm's runs) or pretrain:key=value (the pre-training)",
    )
    p.set_defaults(func=cmd_compare)
    return p
