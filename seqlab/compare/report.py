"""The comparison report: a table (mean ± std, min, max, seeds), paired bootstrap against the baseline,
validation curves and the ERPO "algorithm space" figure, as Markdown and self-contained HTML.

Statistics: ``std`` is the sample standard deviation over seeds (ddof = 1; 0 for a single seed), as in the
ERPO and MIXER papers' "mean ± std over N runs" tables.

Significance: for each algorithm the test hypotheses of every seed it shares with the baseline are
concatenated in seed order (segment i of seed k of the algorithm is paired with segment i of seed k of
the baseline, which started from the same checkpoint with the same seed), and one paired bootstrap test is
run on that concatenation (sacrebleu's paired bootstrap for BLEU; the same resampling over per-segment
statistics for the other metrics).  Concatenating seeds makes the test see the run-to-run variance too,
instead of declaring a single lucky seed significant.
"""

from __future__ import annotations

import base64
import datetime
import html
import json
import math
import statistics
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: exploration breadth of each algorithm (the x axis of ERPO Figure 1): how far from the data its
#: training targets reach.  MLE sees only y*; noising perturbs y*; RAML / alpha-DiMT sample y*'s
#: reward-weighted neighbourhood; interpolation / MIXER mix data, reward draws and model samples; SPG
#: reweights model samples toward the reward; PG learns from the model's samples alone.
BREADTH: dict[str, float] = {
    "mle": 0,
    "noising": 1,
    "scheduled_sampling": 1,
    "raml": 2,
    "alpha_dimt": 2,
    "erpo": 2,
    "vaml": 2,
    "interpolation": 3,
    "mixer": 3,
    "mixer_anneal": 3,
    "spg": 4,
    "pg": 5,
    "ac": 5,
    "erac": 5,
}
BREADTH_LABELS = [
    "data y*",
    "perturbed data",
    "reward-weighted\nneighbours of y*",
    "data/reward/model\nmixture",
    "model samples\ntilted to reward",
    "model samples",
]
#: algorithms that move along the axis during training (drawn as an arrow from MLE to where they end)
ANNEALED = {"interpolation", "mixer", "mixer_anneal", "scheduled_sampling"}
DISPLAY = {
    "mle": "MLE",
    "raml": "RAML",
    "mixer": "MIXER",
    "mixer_anneal": "MIXER-alike anneal",
    "pg": "self-critic (PG)",
    "spg": "SPG",
    "scheduled_sampling": "scheduled sampling",
    "interpolation": "interpolation",
    "noising": "data noising",
    "alpha_dimt": "α-DiMT",
    "erpo": "ERPO",
}


@dataclass
class Stats:
    mean: float
    std: float
    min: float
    max: float
    n: int

    @classmethod
    def of(cls, values: list[float]) -> Stats:
        if not values:
            return cls(math.nan, math.nan, math.nan, math.nan, 0)
        std = statistics.stdev(values) if len(values) > 1 else 0.0
        return cls(statistics.fmean(values), std, min(values), max(values), len(values))


@dataclass
class RunRecord:
    """What one finished run left behind."""

    label: str
    algorithm: str
    seed: int
    run_dir: Path
    results: dict[str, Any]
    curve: list[tuple[int, dict[str, float]]] = field(default_factory=list)

    def hyps(self, split: str = "test") -> list[str] | None:
        path = self.run_dir / f"{split}.hyp.txt"
        if not path.exists():
            return None
        lines = path.read_text(encoding="utf-8").split("\n")
        return lines[:-1] if lines and lines[-1] == "" else lines


def _read_jsonl(path: Path, kind: str) -> list[dict[str, Any]]:
    out = []
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                rec = json.loads(line)
                if rec.get("kind") == kind:
                    out.append(rec)
    return out


def _algorithm_of(run_dir: Path, label: str) -> str:
    cfg = run_dir / "config.yaml"
    if cfg.exists():
        import yaml

        data = yaml.safe_load(cfg.read_text(encoding="utf-8")) or {}
        return str(data.get("algorithm", {}).get("name", label))
    return label


def collect(out: Path) -> tuple[dict[str, list[RunRecord]], list[str]]:
    """Finished runs by label (in the comparison's algorithm order) and the names of unfinished ones."""
    out = Path(out)
    plan = (
        json.loads((out / "compare.json").read_text(encoding="utf-8"))["spec"]
        if (out / "compare.json").exists()
        else {"algorithms": sorted(p.name for p in (out / "runs").iterdir()), "seeds": []}
    )
    labels = list(plan["algorithms"])
    records: dict[str, list[RunRecord]] = {}
    missing = []
    for label in labels:
        seeds = plan["seeds"] or sorted(int(p.name[4:]) for p in (out / "runs" / label).glob("seed*"))
        for seed in seeds:
            rd = out / "runs" / label / f"seed{seed}"
            if not (rd / "results.json").exists():
                missing.append(f"{label}/seed{seed}")
                continue
            results = json.loads((rd / "results.json").read_text(encoding="utf-8"))
            curve = [
                (int(r["step"]), {k: v for k, v in r.items() if isinstance(v, (int, float))})
                for r in _read_jsonl(rd / "log.jsonl", "valid")
            ]
            records.setdefault(label, []).append(RunRecord(label, _algorithm_of(rd, label), seed, rd, results, curve))
    return records, missing


def metric_names(records: dict[str, list[RunRecord]], primary: str | None = None) -> list[str]:
    """The test metrics of the runs, ``primary`` (the task's checkpoint-selection metric) first."""
    for runs in records.values():
        for r in runs:
            if r.results.get("test"):
                names = list(r.results["test"])
                if primary in names:
                    names.remove(primary)
                    names.insert(0, primary)
                return names
    return []


def table(records: dict[str, list[RunRecord]], split: str, metric: str) -> dict[str, Stats]:
    return {
        label: Stats.of([float(r.results[split][metric]) for r in runs if metric in r.results.get(split, {})])
        for label, runs in records.items()
    }


# ---------------------------------------------------------------------------------------------- significance
def significance(
    records: dict[str, list[RunRecord]],
    baseline: str,
    metric: str,
    references: list[list[str]],
    n_samples: int = 1000,
    seed: int = 12345,
) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Paired bootstrap of each algorithm against ``baseline`` on seed-matched, concatenated test outputs.

    Returns the test results by label and the runs left out (no seed-matched baseline run, or test
    hypotheses that do not line up with the references)."""
    from seqlab.metrics import paired_bootstrap

    n_refs = len(references)
    base = {r.seed: r.hyps("test") for r in records.get(baseline, [])}
    out: dict[str, dict[str, Any]] = {}
    skipped: list[str] = []
    for label, runs in records.items():
        if label == baseline:
            continue
        sys_h: list[str] = []
        base_h: list[str] = []
        refs: list[list[str]] = []
        seeds = []
        for r in sorted(runs, key=lambda r: r.seed):
            h, b = r.hyps("test"), base.get(r.seed)
            if b is None:
                skipped.append(f"{label}/seed{r.seed} (no {baseline} run with seed {r.seed})")
                continue
            if h is None or len(h) != n_refs or len(b) != n_refs:
                got = "none" if h is None else len(h)
                skipped.append(f"{label}/seed{r.seed} ({got} test hypotheses for {n_refs} references)")
                continue
            sys_h += h
            base_h += b
            refs += references
            seeds.append(r.seed)
        if not seeds:
            continue
        res = paired_bootstrap(base_h, sys_h, refs, metric=metric, n=n_samples, seed=seed)
        out[label] = {**res, "delta": res["score_b"] - res["score_a"], "seeds": seeds}
    return out, skipped


# ---------------------------------------------------------------------------------------------- figures
def _display(label: str, algorithm: str) -> str:
    return DISPLAY.get(label, label if label != algorithm else DISPLAY.get(algorithm, algorithm))


def plot_curves(records: dict[str, list[RunRecord]], metric: str, path: Path, start: float | None = None) -> Path:
    """Validation ``metric`` against fine-tuning step: mean over seeds, min-max band, one line per algorithm."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.5), dpi=120)
    for i, (label, runs) in enumerate(records.items()):
        by_step: dict[int, list[float]] = {}
        for r in runs:
            for step, vals in r.curve:
                if metric in vals:
                    by_step.setdefault(step, []).append(float(vals[metric]))
        if not by_step:
            continue
        if start is not None and 0 not in by_step:
            by_step[0] = [start] * len(runs)  # every run starts from the shared checkpoint
        steps = sorted(by_step)
        mean = [statistics.fmean(by_step[s]) for s in steps]
        color = f"C{i % 10}"
        ax.plot(
            steps,
            mean,
            marker="o",
            ms=3,
            lw=1.6,
            color=color,
            label=f"{_display(label, runs[0].algorithm)} (n={len(runs)})",
        )
        if len(runs) > 1:
            ax.fill_between(
                steps, [min(by_step[s]) for s in steps], [max(by_step[s]) for s in steps], color=color, alpha=0.15, lw=0
            )
    if start is not None:
        ax.axhline(start, color="gray", ls="--", lw=1, label="shared MLE checkpoint (step 0)")
    ax.set_xlabel("training step (after the shared MLE checkpoint)")
    ax.set_ylabel(f"validation {metric}")
    ax.set_title(f"Validation {metric}: mean over seeds (band: min–max)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_space(records: dict[str, list[RunRecord]], stats: dict[str, Stats], metric: str, path: Path) -> Path:
    """ERPO Fig. 1 with numbers: nested exploration spaces (top) and the algorithms placed by exploration
    breadth with their measured mean ± std (bottom)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Ellipse

    other = max(BREADTH.values()) + 1
    placed: dict[float, list[str]] = {}
    for label, runs in records.items():
        placed.setdefault(BREADTH.get(runs[0].algorithm, other), []).append(label)
    n_pos = int(max(placed)) + 1 if placed else 1
    n_pos = max(n_pos, len(BREADTH_LABELS))
    names = [BREADTH_LABELS[t] if t < len(BREADTH_LABELS) else "other" for t in range(n_pos)]
    fig, (top, ax) = plt.subplots(
        2, 1, figsize=(10, 7.2), dpi=120, sharex=True, gridspec_kw={"height_ratios": [1.9, 3], "hspace": 0.05}
    )
    # top: nested spaces around the data point y*, each containing every narrower one
    for k in range(n_pos - 1, -1, -1):
        top.add_patch(
            Ellipse(
                (-0.5, 0), 2 * (k + 1), 1.9 * (k + 1) / n_pos, fc=plt.cm.Blues(0.08 + 0.075 * k), ec="white", lw=1.5
            )
        )
    top.plot([-0.5], [0], "k*", ms=9)
    top.annotate("y*", (-0.5, 0), xytext=(-2, -14), textcoords="offset points", fontsize=9)
    for k, name in enumerate(names):
        top.text(k, 0.55, name, ha="center", va="bottom", fontsize=7.5, style="italic")
        lines = []
        for lb in placed.get(k, []):
            st = stats[lb]
            score = f"{st.mean:.2f} ± {st.std:.2f}" if st.n else "–"
            lines.append(f"{_display(lb, records[lb][0].algorithm)}\n{score}")
        if lines:
            top.text(k, 0.5, "\n".join(lines), ha="center", va="top", fontsize=7, weight="bold", linespacing=1.15)
    top.set_ylim(-1, 1)
    top.set_yticks([])
    top.set_title(
        "Algorithm space (ERPO paper, Fig. 1): exploration breadth of the training targets, with measured scores",
        fontsize=10,
    )
    for spine in ("left", "right", "top"):
        top.spines[spine].set_visible(False)
    # bottom: measured scores
    means = [s.mean for s in stats.values() if s.n and not math.isnan(s.mean)]
    lo = min((s.mean - s.std for s in stats.values() if s.n), default=0.0)
    hi = max((s.mean + s.std for s in stats.values() if s.n), default=1.0)
    pad = max((hi - lo) * 0.3, 0.5) if means else 1.0
    for x, labels in placed.items():
        for j, label in enumerate(labels):
            runs, st = records[label], stats[label]
            if not st.n:
                continue
            xx = x + (j - (len(labels) - 1) / 2) * 0.25
            color = f"C{list(records).index(label) % 10}"
            if runs[0].algorithm in ANNEALED and x > 0:
                ax.annotate(
                    "",
                    xy=(xx, st.mean),
                    xytext=(0, st.mean),
                    arrowprops=dict(arrowstyle="->", color=color, lw=0.8, ls=":", alpha=0.7),
                    zorder=1,
                )
            ax.errorbar(
                [xx],
                [st.mean],
                yerr=[st.std],
                fmt="o",
                ms=7,
                capsize=4,
                color=color,
                zorder=3,
                label=f"{_display(label, runs[0].algorithm)}: {st.mean:.2f} ± {st.std:.2f} (n={st.n})",
            )
    ax.set_xticks(range(n_pos), [n.replace("\n", " ") if len(n) < 14 else n for n in names], fontsize=7.5)
    ax.set_xlim(-0.6, n_pos - 0.4)
    ax.set_ylim(lo - pad, hi + pad)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7.5, loc="best", framealpha=0.9)
    ax.set_xlabel(
        "exploration breadth  →  (data only … the model's own samples);  dotted arrows: annealed "
        "from MLE during training"
    )
    ax.set_ylabel(f"test {metric}\n(mean ± std over seeds)")
    fig.subplots_adjust(left=0.09, right=0.98, top=0.94, bottom=0.12)
    fig.savefig(path)
    plt.close(fig)
    return path


# ---------------------------------------------------------------------------------------------- writing
def _fmt(x: float, digits: int = 2) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def _git_commit() -> str:
    try:
        return subprocess.check_output(
            ["git", "rev-parse", "--short", "HEAD"], text=True, cwd=Path(__file__).parent, stderr=subprocess.DEVNULL
        ).strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _settings(out: Path) -> dict[str, Any]:
    spec = (
        json.loads((out / "compare.json").read_text(encoding="utf-8"))["spec"]
        if (out / "compare.json").exists()
        else {}
    )
    cfg: dict[str, Any] = {}
    if (out / "task.yaml").exists():
        import yaml

        cfg = yaml.safe_load((out / "task.yaml").read_text(encoding="utf-8")) or {}
    return {"spec": spec, "config": cfg}


def _rows(
    records: dict[str, list[RunRecord]], metrics: list[str], sig: dict[str, dict[str, Any]], baseline: str
) -> tuple[list[str], list[list[str]]]:
    primary = metrics[0]
    head = ["algorithm", "runs (n)"]
    for m in metrics:
        head += [f"{m} mean ± std", f"{m} min", f"{m} max"]
    head += [f"Δ{primary} vs {DISPLAY.get(baseline, baseline)}", "p (paired bootstrap)", "Δ>0 in"]
    stats = {m: table(records, "test", m) for m in metrics}
    rows = []
    for label, runs in records.items():
        s0 = stats[primary][label]
        row = [_display(label, runs[0].algorithm), str(s0.n)]
        for m in metrics:
            s = stats[m][label]
            row += [f"{_fmt(s.mean)} ± {_fmt(s.std)}", _fmt(s.min), _fmt(s.max)]
        t = sig.get(label)
        if label == baseline:
            row += ["(baseline)", "", ""]
        elif t:
            row += [f"{t['delta']:+.2f}", f"{t['p_value']:.4f}", f"{100 * t['b_wins']:.0f}%"]
        else:
            row += ["–", "–", "–"]
        rows.append(row)
    return head, rows


def _markdown_table(head: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _html_table(head: list[str], rows: list[list[str]]) -> str:
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def _pretrain_score(out: Path, metric: str) -> float | None:
    recs = _read_jsonl(out / "pretrain" / "log.jsonl", "valid")
    vals = [float(r[metric]) for r in recs if metric in r]
    if not vals:
        return None
    from seqlab.metrics import higher_is_better

    return max(vals) if higher_is_better(metric) else min(vals)


def benchmark_entries(out: str | Path, prefix: str, split_name: str = "test") -> list[tuple[str, float, str]]:
    """(metric, value, unit) rows of a finished report for benchmark result files:
    ``<prefix>_<label>_<split_name>_<metric>_{mean,std,min,max,n}`` and ``..._p_vs_<baseline>``."""
    summary = json.loads((Path(out) / "report" / "summary.json").read_text(encoding="utf-8"))
    rows: list[tuple[str, float, str]] = []
    for metric, by_label in summary["test"].items():
        for label, st in by_label.items():
            if not st["n"]:
                continue
            base = f"{prefix}_{label}_{split_name}_{metric}"
            rows += [(f"{base}_{k}", round(float(st[k]), 4), metric.upper()) for k in ("mean", "std", "min", "max")]
            rows.append((f"{base}_n", int(st["n"]), "runs"))
    primary, baseline = summary["primary_metric"], summary["baseline"]
    for label, t in summary["significance"].items():
        rows.append(
            (f"{prefix}_{label}_{split_name}_{primary}_p_vs_{baseline}", round(float(t["p_value"]), 4), "p-value")
        )
    return rows


def _pretrain_results(out: Path) -> str:
    path = out / "pretrain" / "results.json"
    if not path.exists():
        return "–"
    res = json.loads(path.read_text(encoding="utf-8"))
    return "; ".join(
        f"{split} " + ", ".join(f"{k} {v:.2f}" for k, v in res.get(split, {}).items())
        for split in ("valid", "test")
        if res.get(split)
    )


def write_report(out: str | Path, baseline: str | None = None, n_samples: int = 1000) -> dict[str, Path]:
    """Write ``out/report/{report.md, report.html, curves.png, space.png, summary.json}``; returns the paths."""
    out = Path(out)
    rep = out / "report"
    rep.mkdir(parents=True, exist_ok=True)
    settings = _settings(out)
    spec = settings["spec"]
    baseline = baseline or spec.get("baseline", "mle")
    records, missing = collect(out)
    refs_path = out / "test.refs.json"
    task_refs = json.loads(refs_path.read_text(encoding="utf-8")) if refs_path.exists() else {}
    metrics = metric_names(records, (task_refs.get("metrics") or [None])[0])
    if not records or not metrics:
        raise RuntimeError(f"{out}: no finished runs to report")
    primary = metrics[0]
    sig: dict[str, dict[str, Any]] = {}
    sig_note = ""
    if baseline in records and task_refs:
        try:
            sig, skipped = significance(records, baseline, primary, task_refs["references"], n_samples=n_samples)
            if skipped:
                sig_note = f"Left out of the significance tests: {'; '.join(skipped)}."
        except Exception as e:  # noqa: BLE001  (report without the column rather than no report)
            sig_note = f"Significance tests failed: {e}"
    elif baseline not in records:
        sig_note = f"No finished {baseline} runs: no significance tests."
    else:
        sig_note = "No test references (test.refs.json): no significance tests."
    test_stats = table(records, "test", primary)
    valid_stats = table(records, "valid", primary)
    curves = plot_curves(records, primary, rep / "curves.png", _pretrain_score(out, primary))
    space = plot_space(records, test_stats, primary, rep / "space.png")
    head, rows = _rows(records, metrics, sig, baseline)
    vhead = ["algorithm", "n", f"valid {primary} mean ± std", "min", "max"]
    vrows = [
        [_display(k, records[k][0].algorithm), str(s.n), f"{_fmt(s.mean)} ± {_fmt(s.std)}", _fmt(s.min), _fmt(s.max)]
        for k, s in valid_stats.items()
    ]
    cfg = settings["config"]
    task = cfg.get("task", {}).get("name", "?")
    budget = (f"{spec.get('budget_steps')} steps" if spec.get("budget_steps") else "") + (
        f" {spec.get('budget_minutes')} min" if spec.get("budget_minutes") else ""
    )
    when = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    seconds = [r.results.get("train_seconds", 0.0) for runs in records.values() for r in runs]
    facts = [
        ("task", f"{task} ({json.dumps(cfg.get('task', {}).get('options', {}))})"),
        ("model", f"{cfg.get('model', {}).get('arch', '?')} {json.dumps(cfg.get('model', {}).get('options', {}))}"),
        (
            "shared MLE pre-training",
            f"{spec.get('pretrain_steps', 0)} steps" if not spec.get("init_from") else f"from {spec['init_from']}",
        ),
        ("budget per run", budget.strip() or "the task config's"),
        ("shared MLE checkpoint scores", _pretrain_results(out)),
        ("seeds", ", ".join(map(str, spec.get("seeds", [])))),
        ("decoding", f"beam {cfg.get('decode', {}).get('beam_size', '?')} (test), best validation checkpoint"),
        ("training time per run", f"{statistics.fmean(seconds) / 60:.1f} min on average" if seconds else "?"),
        ("generated", f"{when}, seqlab commit {_git_commit()}"),
    ]
    notes = [
        f'mean ± std over seeds (sample std, ddof=1). Δ, p and "Δ>0 in" from a paired bootstrap ({n_samples} '
        f"resamples) of each algorithm against {baseline} on the seed-matched, concatenated test outputs "
        "(sacrebleu's paired bootstrap statistics for BLEU): Δ is the difference of the corpus scores of the "
        'concatenations, p the two-sided p-value, "Δ>0 in" the share of resamples where the algorithm\'s '
        "score is the higher one (for error rates such as WER / PER, lower is better).",
        f"{DISPLAY.get(baseline, baseline)} continues maximum-likelihood training from the shared checkpoint for "
        "the same budget, so every row has seen the same number of updates.",
    ]
    if sig_note:
        notes.append(sig_note)
    if missing:
        notes.append(f"Unfinished runs (not in the table): {', '.join(missing)}.")
    summary = {
        "task": task,
        "primary_metric": primary,
        "baseline": baseline,
        "settings": spec,
        "test": {m: {k: vars(s) for k, s in table(records, "test", m).items()} for m in metrics},
        "valid": {k: vars(s) for k, s in valid_stats.items()},
        "significance": sig,
        "missing": missing,
        "runs": {
            k: [
                {
                    "seed": r.seed,
                    "test": r.results.get("test"),
                    "valid": r.results.get("valid"),
                    "steps": r.results.get("steps"),
                    "train_seconds": r.results.get("train_seconds"),
                }
                for r in v
            ]
            for k, v in records.items()
        },
    }
    (rep / "summary.json").write_text(json.dumps(summary, indent=2, default=float), encoding="utf-8")

    md = [
        f"# seqlab compare: {task}",
        "",
        *[f"- **{k}**: {v}" for k, v in facts],
        "",
        f"## Test {', '.join(metrics)}",
        "",
        _markdown_table(head, rows),
        "",
        f"## Validation {primary} (best checkpoint)",
        "",
        _markdown_table(vhead, vrows),
        "",
        "## Validation curves",
        "",
        "![validation curves](curves.png)",
        "",
        "## Algorithm space",
        "",
        "Algorithms placed by how far their training targets reach from the data (ERPO paper, Fig. 1), "
        "annotated with the measured test scores.",
        "",
        "![algorithm space](space.png)",
        "",
        "## Notes",
        "",
        *[f"- {n}" for n in notes],
        "",
    ]
    md_path = rep / "report.md"
    md_path.write_text("\n".join(md), encoding="utf-8")

    def img(p: Path, alt: str) -> str:
        data = base64.b64encode(p.read_bytes()).decode("ascii")
        return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'

    style = (
        "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
        "table{border-collapse:collapse;margin:1em 0;font-size:14px}th,td{border:1px solid #ccc;"
        "padding:4px 8px;text-align:right}th{background:#f3f5f8}td:first-child,th:first-child{text-align:left}"
        "img{max-width:100%;border:1px solid #eee}li{margin:.2em 0}"
    )
    body = [
        f"<h1>seqlab compare: {html.escape(task)}</h1>",
        "<ul>" + "".join(f"<li><b>{html.escape(k)}</b>: {html.escape(str(v))}</li>" for k, v in facts) + "</ul>",
        f"<h2>Test {html.escape(', '.join(metrics))}</h2>",
        _html_table(head, rows),
        f"<h2>Validation {html.escape(primary)} (best checkpoint)</h2>",
        _html_table(vhead, vrows),
        "<h2>Validation curves</h2>",
        img(curves, "validation curves"),
        "<h2>Algorithm space</h2>",
        "<p>Algorithms placed by how far their training targets reach from the "
        "data (ERPO paper, Fig. 1), annotated with the measured test scores.</p>",
        img(space, "algorithm space"),
        "<h2>Notes</h2>",
        "<ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + "</ul>",
    ]
    html_path = rep / "report.html"
    html_path.write_text(
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>seqlab compare: "
        f"{html.escape(task)}</title><style>{style}</style></head><body>{''.join(body)}</body></html>",
        encoding="utf-8",
    )
    return {"markdown": md_path, "html": html_path, "curves": curves, "space": space, "summary": rep / "summary.json"}
