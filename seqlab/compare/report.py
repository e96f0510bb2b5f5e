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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from seqlab.compare.layout import EXTRA_DIR, START_DIR
from seqlab.compare.score import read_scores
from seqlab.provenance import code_commit

#: the x axis of ERPO Figure 1: how far from the data an algorithm's training targets reach (its class attribute
#: ``breadth``: MLE sees only y*; noising perturbs y*; RAML / alpha-DiMT sample y*'s reward-weighted neighbourhood;
#: interpolation / MIXER mix data, reward draws and model samples; SPG reweights model samples toward the reward;
#: PG learns from the model's samples alone)
BREADTH_LABELS = [
    "data y*",
    "perturbed data",
    "reward-weighted\nneighbours of y*",
    "data/reward/model\nmixture",
    "model samples\ntilted to reward",
    "model samples",
]


def _algorithm_class(algorithm: str) -> Any:
    from seqlab.algorithms.base import ALGORITHMS

    return ALGORITHMS.get(algorithm)


def breadth(algorithm: str) -> float | None:
    """Where an algorithm sits on the exploration-breadth axis (its ``breadth``; None: not placed)."""
    cls = _algorithm_class(algorithm)
    return None if cls is None else cls.breadth


def annealed(algorithm: str) -> bool:
    """Whether an algorithm moves along the axis during training (drawn as an arrow from MLE to where it ends)."""
    cls = _algorithm_class(algorithm)
    return bool(cls is not None and cls.annealed)


def display_name(name: str) -> str:
    """An algorithm's name in the report (its ``display_name``); other labels as they are."""
    from seqlab.algorithms.base import display_name as algorithm_display_name

    return algorithm_display_name(name)


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
    train_log: list[dict[str, Any]] = field(default_factory=list)  # the log's train rows (schedules, statistics)

    def hyps(self, split: str = "test") -> list[str] | None:
        """Outputs on ``split``: valid / test (the run's own), or an extra test set's name (``run_dir/extra``)."""
        folder = self.run_dir if split in ("valid", "test") else self.run_dir / EXTRA_DIR
        return read_hyps(folder / f"{split}.hyp.txt")

    def scores(self, split: str = "test") -> dict[str, float]:
        if split in ("valid", "test"):
            return self.results.get(split) or {}
        return read_scores(self.run_dir / EXTRA_DIR).get(split, {})


def read_hyps(path: Path) -> list[str] | None:
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


def collect(out: Path, labels: Sequence[str] | None = None) -> tuple[dict[str, list[RunRecord]], list[str]]:
    """Finished runs by label (in the comparison's algorithm order, or ``labels``': rows whose runs were put under
    ``runs/`` from elsewhere, e.g. the same settings and start trained in another session) and the names of
    unfinished ones."""
    out = Path(out)
    plan = (
        json.loads((out / "compare.json").read_text(encoding="utf-8"))["spec"]
        if (out / "compare.json").exists()
        else {"algorithms": sorted(p.name for p in (out / "runs").iterdir()), "seeds": []}
    )
    labels = list(labels or plan["algorithms"])
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
            train_log = _read_jsonl(rd / "log.jsonl", "train")
            records.setdefault(label, []).append(
                RunRecord(label, _algorithm_of(rd, label), seed, rd, results, curve, train_log)
            )
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
    """Stats over seeds of ``metric`` on ``split`` (valid, test or an extra test set) for every label."""
    return {
        label: Stats.of([float(r.scores(split)[metric]) for r in runs if metric in r.scores(split)])
        for label, runs in records.items()
    }


# ---------------------------------------------------------------------------------------------- significance
def paired_tests(
    records: dict[str, list[RunRecord]],
    reference_hyps: Callable[[int], list[str] | None],
    reference_name: str,
    metric: str,
    references: list[list[str]],
    split: str = "test",
    skip: str | None = None,
    n_samples: int = 1000,
    seed: int = 12345,
) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Paired bootstrap of each label (but ``skip``) against a reference system on seed-matched, concatenated
    ``split`` outputs: ``reference_hyps(seed)`` gives the reference's outputs paired with that seed's run (the
    baseline's run of the same seed, or the shared checkpoint's one output for every seed).

    Returns the test results by label and the runs left out (no reference output for their seed, or outputs
    that do not line up with the references)."""
    from seqlab.metrics import paired_bootstrap

    n_refs = len(references)
    out: dict[str, dict[str, Any]] = {}
    skipped: list[str] = []
    for label, runs in records.items():
        if label == skip:
            continue
        sys_h: list[str] = []
        base_h: list[str] = []
        refs: list[list[str]] = []
        seeds = []
        for r in sorted(runs, key=lambda r: r.seed):
            h, b = r.hyps(split), reference_hyps(r.seed)
            if b is None:
                skipped.append(f"{label}/seed{r.seed} (no {reference_name} output for seed {r.seed})")
                continue
            if h is None or len(h) != n_refs or len(b) != n_refs:
                got = "none" if h is None else len(h)
                skipped.append(f"{label}/seed{r.seed} ({got} {split} hypotheses for {n_refs} references)")
                continue
            sys_h += h
            base_h += b
            refs += references
            seeds.append(r.seed)
        if not seeds:
            continue
        res = paired_bootstrap(base_h, sys_h, refs, metric=metric, n=n_samples, seed=seed)
        out[label] = {**res, "delta": res["score_b"] - res["score_a"], "seeds": seeds}
    holm_adjust(out)
    return out, skipped


def significance(
    records: dict[str, list[RunRecord]],
    baseline: str,
    metric: str,
    references: list[list[str]],
    n_samples: int = 1000,
    seed: int = 12345,
    split: str = "test",
) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Paired bootstrap of each algorithm against ``baseline`` (its run of the same seed); Holm-adjusted."""
    base = {r.seed: r.hyps(split) for r in records.get(baseline, [])}
    return paired_tests(records, base.get, baseline, metric, references, split, baseline, n_samples, seed)


def holm(p_values: dict[str, float]) -> dict[str, float]:
    """Holm's step-down adjustment of a family of p-values: the i-th smallest of m becomes
    max over j <= i of min(1, (m - j + 1) p_(j)).  Rejecting where the adjusted value is below alpha bounds
    the family-wise error rate at alpha."""
    order = sorted(p_values, key=lambda k: p_values[k])
    m, running, out = len(order), 0.0, {}
    for j, key in enumerate(order):
        running = max(running, min(1.0, (m - j) * p_values[key]))
        out[key] = running
    return out


def holm_adjust(tests: dict[str, dict[str, Any]]) -> None:
    """Add ``p_holm`` (Holm over this family of tests) to each test result."""
    for label, p in holm({k: float(t["p_value"]) for k, t in tests.items()}).items():
        tests[label]["p_holm"] = p


# ---------------------------------------------------------------------------------------------- figures
def _display(label: str, algorithm: str) -> str:
    return display_name(label) if label == algorithm or _algorithm_class(label) is not None else label


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
    return _save_line_plot(
        fig,
        ax,
        path,
        "training step (after the shared MLE checkpoint)",
        f"validation {metric}",
        f"Validation {metric}: mean over seeds (band: min–max)",
    )


def plot_space(records: dict[str, list[RunRecord]], stats: dict[str, Stats], metric: str, path: Path) -> Path:
    """ERPO Fig. 1 with numbers: nested exploration spaces (top) and the algorithms placed by exploration
    breadth with their measured mean ± std (bottom)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Ellipse

    other = len(BREADTH_LABELS)
    placed: dict[float, list[str]] = {}
    for label, runs in records.items():
        x = breadth(runs[0].algorithm)
        placed.setdefault(other if x is None else x, []).append(label)
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
            if annealed(runs[0].algorithm) and x > 0:
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


#: per-step quantities of the algorithms' logs drawn in schedules.png (when a run logs them): the schedules and
#: weightings of the ERPO family, and what AC / ERAC's critic and actor do (TD error, entropy, sample return, the
#: critic's preferred action)
SCHEDULE_KEYS = (
    "lambda1",
    "lambda2",
    "lambda3",
    "prefix",
    "truth_prob",
    "weight_on_reference",
    "reward_entropy",
    "td_abs",
    "entropy",
    "return",
    "q_first",
    "q_argmax_is_pi_argmax",
)
SCHEDULE_TITLES = {
    "lambda1": "λ1 (model samples)",
    "lambda2": "λ2 (reward draw)",
    "lambda3": "λ3 (data)",
    "prefix": "MIXER prefix m (tokens)",
    "truth_prob": "scheduled sampling P(truth)",
    "weight_on_reference": "weight on the reference",
    "reward_entropy": "reward-draw entropy (nats)",
    "td_abs": "critic |TD error| per token",
    "entropy": "actor entropy per token (nats)",
    "return": "mean sample return",
    "q_first": "critic's Q(s0, a0) (predicted return)",
    "q_argmax_is_pi_argmax": "critic's argmax = actor's argmax (share)",
}


def schedule_series(records: dict[str, list[RunRecord]]) -> dict[str, dict[str, dict[int, list[float]]]]:
    """``series[key][label][step]``: every seed's value of each :data:`SCHEDULE_KEYS` quantity its train rows
    logged at that step (undefined values, NaN, left out)."""
    series: dict[str, dict[str, dict[int, list[float]]]] = {}
    for label, runs in records.items():
        for r in runs:
            for row in r.train_log:
                for key in SCHEDULE_KEYS:
                    if isinstance(row.get(key), (int, float)) and math.isfinite(row[key]):
                        series.setdefault(key, {}).setdefault(label, {}).setdefault(int(row["step"]), []).append(
                            float(row[key])
                        )
    return series


def plot_schedules(records: dict[str, list[RunRecord]], path: Path) -> Path | None:
    """The annealed hyperparameters and training statistics the runs log per step (train rows of log.jsonl,
    :func:`schedule_series`): one panel per quantity, one line per algorithm (mean over seeds).  None when no run
    logs any."""
    series = schedule_series(records)
    if not series:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [k for k in SCHEDULE_KEYS if k in series]
    cols = min(len(keys), 3)
    rows = math.ceil(len(keys) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.0 * rows), dpi=110, squeeze=False)
    labels = list(records)
    for ax, key in zip(axes.flat, keys, strict=False):
        for label, by_step in series[key].items():
            steps = sorted(by_step)
            ax.plot(
                steps,
                [statistics.fmean(by_step[s]) for s in steps],
                lw=1.4,
                color=f"C{labels.index(label) % 10}",
                label=_display(label, records[label][0].algorithm),
            )
        ax.set_title(SCHEDULE_TITLES.get(key, key), fontsize=9)
        ax.set_xlabel("training step", fontsize=8)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    for ax in list(axes.flat)[len(keys) :]:
        ax.axis("off")
    fig.suptitle("Schedules and training statistics per training step (mean over seeds)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def critic_curves(out: Path) -> dict[str, dict[int, list[float]]]:
    """``curves[label][step]``: the validation TD error (``valid_td`` of the logs' ``critic`` rows) of every critic
    pre-training of the comparison: the shared critics (``OUT/critics/<label>``) and the runs that pre-train their
    own (``OUT/runs/<label>/seed*``), one value per seed."""
    logs = [(p.parent.name, p) for p in sorted(out.glob("critics/*/log.jsonl"))]
    logs += [(p.parent.parent.name, p) for p in sorted(out.glob("runs/*/seed*/log.jsonl"))]
    curves: dict[str, dict[int, list[float]]] = {}
    for label, path in logs:
        for line in path.read_text(encoding="utf-8").splitlines():
            row = json.loads(line) if line.strip() else {}
            if row.get("kind") == "critic" and isinstance(row.get("valid_td"), (int, float)):
                curves.setdefault(label, {}).setdefault(int(row["step"]), []).append(float(row["valid_td"]))
    return curves


def plot_critics(out: Path, path: Path) -> Path | None:
    """The critics' validation TD error during their pre-training (:func:`critic_curves`), one line per label
    (mean over seeds).  None when the comparison has no critic."""
    curves = critic_curves(out)
    if not curves:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.0), dpi=110)
    for i, (label, by_step) in enumerate(sorted(curves.items())):
        steps = sorted(by_step)
        ax.plot(steps, [statistics.fmean(by_step[s]) for s in steps], marker="o", ms=3, color=f"C{i % 10}", label=label)
    return _save_line_plot(
        fig,
        ax,
        path,
        "critic pre-training step (the actor fixed)",
        "validation |TD error| per token",
        "Critic pre-training: validation TD error (mean over seeds)",
    )


def _save_line_plot(fig: Any, ax: Any, path: Path, xlabel: str, ylabel: str, title: str) -> Path:
    """Label, grid and legend one line plot, write it to ``path`` and close it."""
    import matplotlib.pyplot as plt

    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


# ---------------------------------------------------------------------------------------------- writing
#: significance level of the report's marks (after Holm's correction)
ALPHA = 0.05
START_LABEL = "start"  # the shared checkpoint, in summary.json and benchmark entries
#: the shared checkpoint's names in benchmark entries (``checkpoint`` is the issues' name for it)
START_NAMES = (START_LABEL, "checkpoint")
START_DISPLAY = "shared MLE checkpoint (start)"


def _fmt(x: float, digits: int = 2) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def _settings(out: Path) -> dict[str, Any]:
    data = json.loads((out / "compare.json").read_text(encoding="utf-8")) if (out / "compare.json").exists() else {}
    cfg: dict[str, Any] = {}
    if (out / "task.yaml").exists():
        import yaml

        cfg = yaml.safe_load((out / "task.yaml").read_text(encoding="utf-8")) or {}
    return {"spec": data.get("spec", {}), "fingerprint": data.get("fingerprint", {}), "config": cfg}


def _p_cell(t: dict[str, Any]) -> str:
    p = t.get("p_holm", t["p_value"])
    return f"{p:.4f}{' *' if p < ALPHA else ''}"


@dataclass
class EvalSet:
    """One test set of the report: the task's test split or an extra test set, with its paired tests."""

    name: str
    title: str
    references: list[list[str]] | None
    start_scores: dict[str, float]
    start_hyps: list[str] | None
    vs_baseline: dict[str, dict[str, Any]] = field(default_factory=dict)
    vs_start: dict[str, dict[str, Any]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _evaluate_set(records: dict[str, list[RunRecord]], es: EvalSet, baseline: str, metric: str, n_samples: int) -> None:
    """Fill the paired tests of one set: every algorithm against the baseline, every row against the start."""
    if es.references is None:
        es.notes.append(f"No references for {es.name}: no significance tests.")
        return
    try:
        if baseline in records:
            es.vs_baseline, skipped = significance(records, baseline, metric, es.references, n_samples, split=es.name)
            if skipped:
                es.notes.append(f"Left out of the tests against {baseline} on {es.name}: {'; '.join(skipped)}.")
        else:
            es.notes.append(f"No finished {baseline} runs: no tests against it on {es.name}.")
        if es.start_hyps is not None:
            es.vs_start, skipped = paired_tests(
                records, lambda seed: es.start_hyps, "start checkpoint", metric, es.references, es.name, None, n_samples
            )
            if skipped:
                es.notes.append(f"Left out of the tests against the start on {es.name}: {'; '.join(skipped)}.")
    except Exception as e:  # noqa: BLE001  (report without the columns rather than no report)
        es.notes.append(f"Significance tests on {es.name} failed: {e}")


def _rows(
    records: dict[str, list[RunRecord]], metrics: list[str], es: EvalSet, baseline: str
) -> tuple[list[str], list[list[str]]]:
    primary = metrics[0]
    base_name = display_name(baseline) + (" (continued)" if baseline == "mle" else "")
    head = ["algorithm", "runs (n)"]
    for m in metrics:
        head += [f"{m} mean ± std", f"{m} min", f"{m} max"]
    head += [f"Δ{primary} vs {base_name}", "p (Holm)", "Δ>0 in", f"Δ{primary} vs start", "p (Holm) vs start"]
    stats = {m: table(records, es.name, m) for m in metrics}
    rows = []
    if es.start_scores:
        row = [START_DISPLAY, "1"]
        for m in metrics:
            row += [_fmt(es.start_scores.get(m, math.nan)), "", ""]
        rows.append(row + ["", "", "", "(start)", ""])
    for label, runs in records.items():
        s0 = stats[primary][label]
        row = [_display(label, runs[0].algorithm), str(s0.n)]
        for m in metrics:
            s = stats[m][label]
            row += [f"{_fmt(s.mean)} ± {_fmt(s.std)}", _fmt(s.min), _fmt(s.max)]
        t = es.vs_baseline.get(label)
        if label == baseline:
            row += ["(baseline)", "", ""]
        elif t:
            row += [f"{t['delta']:+.2f}", _p_cell(t), f"{100 * t['b_wins']:.0f}%"]
        else:
            row += ["–", "–", "–"]
        t = es.vs_start.get(label)
        row += [f"{t['delta']:+.2f}", _p_cell(t)] if t else ["–", "–"]
        rows.append(row)
    return head, rows


def _significant(records: dict[str, list[RunRecord]], es: EvalSet, baseline: str) -> str:
    """The rows whose difference is significant at ALPHA after Holm's correction, in words."""

    def names(tests: dict[str, dict[str, Any]]) -> str:
        hits = [
            f"{_display(k, records[k][0].algorithm)} ({t['delta']:+.2f})"
            for k, t in tests.items()
            if t.get("p_holm", 1.0) < ALPHA
        ]
        return ", ".join(hits) if hits else "none"

    parts = []
    if es.vs_baseline:
        parts.append(f"against {display_name(baseline)} ({len(es.vs_baseline)} tests): {names(es.vs_baseline)}")
    if es.vs_start:
        parts.append(f"against the starting checkpoint ({len(es.vs_start)} tests): {names(es.vs_start)}")
    if not parts:
        return ""
    return f"Significant at {ALPHA} after Holm's correction on {es.name}: " + "; ".join(parts) + "."


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


def benchmark_entries(
    out: str | Path, prefix: str, split_name: str = "test", label_suffix: str = ""
) -> list[tuple[str, float, str]]:
    """(metric, value, unit) rows of a finished report for benchmark result files:
    ``<prefix>_<label><label_suffix>_<split_name>_<metric>_{mean,std,min,max,n}`` (and without a suffix when one run
    makes the row), ``..._p_vs_<baseline>`` (raw), ``..._p_holm_vs_<baseline>`` and ``..._p_holm_vs_start``;
    ``<prefix>_start_<split_name>_<metric>`` and ``<prefix>_checkpoint_<split_name>_<metric>`` (the shared
    checkpoint); the same per extra test set ``NAME`` in place of ``<split_name>``; and each row's best validation
    score ``<prefix>_<label><label_suffix>_valid_<primary>_best_{mean,std,n}``.  Metric names are lower case
    (``rougeL`` is ``rougel``)."""
    summary = json.loads((Path(out) / "report" / "summary.json").read_text(encoding="utf-8"))
    primary, baseline = summary["primary_metric"].lower(), summary["baseline"]
    sets = [
        (
            split_name,
            summary["test"],
            summary["significance"],
            summary.get("significance_vs_start", {}),
            summary.get("start", {}).get("test", {}),
        )
    ]
    for name, extra in summary.get("extra_tests", {}).items():
        sets.append((name, extra["test"], extra["significance"], extra["significance_vs_start"], extra["start"]))
    rows: list[tuple[str, float, str]] = []
    for set_name, by_metric, vs_base, vs_start, start in sets:
        for metric, by_label in by_metric.items():
            for label, st in by_label.items():
                if not st["n"]:
                    continue
                base = f"{prefix}_{label}{label_suffix}_{set_name}_{metric.lower()}"
                rows += [(f"{base}_{k}", round(float(st[k]), 4), metric.upper()) for k in ("mean", "std", "min", "max")]
                rows.append((f"{base}_n", int(st["n"]), "runs"))
                if st["n"] == 1:
                    rows.append((base, round(float(st["mean"]), 4), metric.upper()))
            if metric in start:
                value = round(float(start[metric]), 4)
                rows += [
                    (f"{prefix}_{name}_{set_name}_{metric.lower()}", value, metric.upper()) for name in START_NAMES
                ]
        for label, t in vs_base.items():
            base = f"{prefix}_{label}{label_suffix}_{set_name}_{primary}"
            if set_name == split_name:  # the raw p-value, as before Holm's correction was reported
                rows.append((f"{base}_p_vs_{baseline}", round(float(t["p_value"]), 4), "p-value"))
            rows.append((f"{base}_p_holm_vs_{baseline}", round(float(t.get("p_holm", t["p_value"])), 4), "p-value"))
        for label, t in vs_start.items():
            rows.append(
                (
                    f"{prefix}_{label}{label_suffix}_{set_name}_{primary}_p_holm_vs_{START_LABEL}",
                    round(float(t.get("p_holm", t["p_value"])), 4),
                    "p-value",
                )
            )
    for label, st in summary.get("valid", {}).items():  # the best validation score of each run, over the seeds
        if st["n"]:
            base = f"{prefix}_{label}{label_suffix}_valid_{primary}_best"
            rows += [(f"{base}_{k}", round(float(st[k]), 4), primary.upper()) for k in ("mean", "std")]
            rows.append((f"{base}_n", int(st["n"]), "runs"))
    return rows


#: below this share of distinct validation hypotheses the shared checkpoint is reported as degenerate
DEGENERATE_DISTINCT_SHARE = 0.5


def distinct_hypotheses(path: Path) -> tuple[int, int] | None:
    """(distinct, total) lines of a hypothesis file, or None when it does not exist."""
    if not path.exists():
        return None
    lines = path.read_text(encoding="utf-8").splitlines()
    return len(set(lines)), len(lines)


def degenerate_checkpoint_warning(out: Path, counts: tuple[int, int] | None = None) -> str | None:
    """A warning when the shared checkpoint decodes few distinct validation hypotheses (a model that ignores its
    source decodes one sentence for every input; fine-tuning it says nothing about the algorithms).  ``counts``:
    :func:`distinct_hypotheses` of its validation output, when the caller has read them."""
    counts = counts or distinct_hypotheses(out / "pretrain" / "valid.hyp.txt")
    if counts is None or counts[1] < 20 or counts[0] / counts[1] >= DEGENERATE_DISTINCT_SHARE:
        return None
    return (
        f"the shared checkpoint decodes {counts[0]} distinct hypotheses for {counts[1]} validation sources: "
        "it may ignore its source (benchmarks/source_sensitivity.py measures it)"
    )


def _pretrain_results(out: Path) -> str:
    path = out / "pretrain" / "results.json"
    if not path.exists():
        return "–"
    res = json.loads(path.read_text(encoding="utf-8"))
    text = "; ".join(
        f"{split} " + ", ".join(f"{k} {v:.2f}" for k, v in res.get(split, {}).items())
        for split in ("valid", "test")
        if res.get(split)
    )
    counts = distinct_hypotheses(out / "pretrain" / "valid.hyp.txt")
    if counts:
        text += f"; distinct validation hypotheses {counts[0]} of {counts[1]}"
    warning = degenerate_checkpoint_warning(out, counts)
    return text + (f" (**warning**: {warning})" if warning else "")


def _span(values: list[float], digits: int = 0) -> str:
    lo, hi = min(values), max(values)
    return f"{lo:.{digits}f}" if lo == hi else f"{lo:.{digits}f}–{hi:.{digits}f}"


def budget_facts(records: dict[str, list[RunRecord]], spec: dict[str, Any], out: Path) -> dict[str, Any]:
    """The budget in steps and epochs (steps per epoch as the runs measured them), for the run and pre-training."""
    runs = [r for rs in records.values() for r in rs]
    per_epoch = [float(r.results["steps_per_epoch"]) for r in runs if r.results.get("steps_per_epoch")]
    steps = [float(r.results["steps"]) for r in runs if r.results.get("steps") is not None]
    facts: dict[str, Any] = {
        "budget_steps": spec.get("budget_steps"),
        "budget_minutes": spec.get("budget_minutes"),
        "steps_taken": steps,
        "steps_per_epoch": per_epoch,
    }
    parts = []
    if spec.get("budget_steps"):
        parts.append(f"{spec['budget_steps']} steps")
    if spec.get("budget_minutes"):
        parts.append(
            f"{spec['budget_minutes']} min ({_span(steps)} steps taken)" if steps else f"{spec['budget_minutes']} min"
        )
    if steps and per_epoch:
        epochs = [s / e for s, e in zip(steps, per_epoch, strict=False)]
        facts["epochs"] = epochs
        parts.append(f"= {_span(epochs, 2)} epochs of {_span(per_epoch)} steps")
    facts["text"] = " ".join(parts) or "the task config's"
    pre = out / "pretrain" / "results.json"
    if pre.exists():
        res = json.loads(pre.read_text(encoding="utf-8"))
        if res.get("steps_per_epoch"):
            facts["pretrain_epochs"] = res["steps"] / res["steps_per_epoch"]
    return facts


def init_facts(records: dict[str, list[RunRecord]], spec: dict[str, Any], fingerprint: dict[str, Any]) -> str:
    """How the runs started from the shared checkpoint, as their results.json recorded it."""
    inits = {label: [r.results.get("init") or {} for r in runs] for label, runs in records.items()}
    state = fingerprint.get("init_state", "model")
    known = [i for v in inits.values() for i in v if i]
    if not known:
        return f"init_state {state}" if spec.get("pretrain_steps") or spec.get("init_from") else "from scratch"
    dtypes = sorted({i.get("weights_dtype", "?") for i in known})
    text = f"init_state {state}; shared checkpoint weights {', '.join(dtypes)}"
    if state == "full":
        offsets = sorted({i.get("lr_step_offset") for i in known if i.get("lr_step_offset") is not None})
        text += f"; optimizer moments and lr schedule continued at schedule step {', '.join(map(str, offsets))}"
        warm = sorted(
            {
                f"{_display(label, records[label][0].algorithm)} ({max(w)} steps, group(s) "
                f"{', '.join(str(g) for g, x in enumerate(w) if x)})"
                for label, v in inits.items()
                for i in v
                for w in [i.get("warmup_steps_by_group") or []]
                if any(w)
            }
        )
        text += "; warm-up where moments were missing: " + ("; ".join(warm) if warm else "none")
    return text


def _eval_sets(
    out: Path, records: dict[str, list[RunRecord]], task_refs: dict[str, Any], spec: dict[str, Any]
) -> list[EvalSet]:
    start_dir = out / START_DIR
    start = read_scores(start_dir)
    sets = [
        EvalSet(
            "test", "Test", task_refs.get("references"), start.get("test", {}), read_hyps(start_dir / "test.hyp.txt")
        )
    ]
    extra_path = out / "extra_tests.refs.json"
    extra = json.loads(extra_path.read_text(encoding="utf-8")) if extra_path.exists() else {}
    for name in dict.fromkeys([*spec.get("extra_tests", {}), *extra]):
        info = extra.get(name, {})
        files = f" ({info['src']}, {info['ref']})" if info else ""
        sets.append(
            EvalSet(
                name,
                f"Extra test set {name}{files}",
                info.get("references"),
                start.get(name, {}),
                read_hyps(start_dir / f"{name}.hyp.txt"),
            )
        )
    return sets


@dataclass
class _Report:
    """What the report shows, gathered once and rendered as Markdown and HTML."""

    task: str
    primary: str
    metrics: list[str]
    baseline: str
    records: dict[str, list[RunRecord]]
    eval_sets: list[EvalSet]
    tables: list[tuple[EvalSet, list[str], list[list[str]]]]
    valid_head: list[str]
    valid_rows: list[list[str]]
    facts: list[tuple[str, str]]
    notes: list[str]
    curves: Path
    space: Path
    schedules: Path | None
    critics: Path | None = None

    def set_title(self, es: EvalSet) -> str:
        return f"Test {', '.join(self.metrics)}" if es.name == "test" else es.title


def _report_facts(
    out: Path,
    records: dict[str, list[RunRecord]],
    settings: dict[str, Any],
    budget: dict[str, Any],
    smoothing: float | None,
) -> list[tuple[str, str]]:
    """The report's header: task, model, pre-training, budget, start, smoothing, seeds, decoding, provenance."""
    from seqlab.metrics.signature import signature_summary

    spec, fingerprint, cfg = settings["spec"], settings["fingerprint"], settings["config"]
    task = cfg.get("task", {}).get("name", "?")
    when = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    seconds = [r.results.get("train_seconds", 0.0) for runs in records.values() for r in runs]
    pretrain = (
        (
            f"{spec.get('pretrain_steps', 0)} steps"
            + (f" ({budget['pretrain_epochs']:.1f} epochs)" if budget.get("pretrain_epochs") else "")
        )
        if not spec.get("init_from")
        else f"from {spec['init_from']}"
    )
    return [
        ("task", f"{task} ({json.dumps(cfg.get('task', {}).get('options', {}))})"),
        ("model", f"{cfg.get('model', {}).get('arch', '?')} {json.dumps(cfg.get('model', {}).get('options', {}))}"),
        ("shared MLE pre-training", pretrain),
        ("budget per run", budget["text"]),
        ("start of every run", init_facts(records, spec, fingerprint)),
        ("label smoothing (every run)", "?" if smoothing is None else f"{smoothing:g}"),
        ("shared MLE checkpoint scores", _pretrain_results(out)),
        ("seeds", ", ".join(map(str, spec.get("seeds", [])))),
        ("decoding", f"beam {cfg.get('decode', {}).get('beam_size', '?')} (test), best validation checkpoint"),
        ("sacrebleu signatures (test)", signature_summary(r.results for runs in records.values() for r in runs)),
        ("training time per run", f"{statistics.fmean(seconds) / 60:.1f} min on average" if seconds else "?"),
        ("generated", f"{when}, seqlab commit {code_commit()}"),
    ]


def _report_notes(baseline: str, n_samples: int, eval_sets: list[EvalSet], missing: list[str]) -> list[str]:
    """How to read the statistics, then each evaluation set's notes and the unfinished runs."""
    notes = [
        f'mean ± std over seeds (sample std, ddof=1). Δ, p and "Δ>0 in" from a paired bootstrap ({n_samples} '
        f"resamples) on the seed-matched, concatenated outputs (sacrebleu's paired bootstrap statistics for BLEU): "
        f"against {baseline}, each seed's run is paired with {baseline}'s run of the same seed; against the start, "
        "with the shared checkpoint's one output. Δ is the difference of the corpus scores of the concatenations, "
        '"Δ>0 in" the share of resamples where the row scores higher (for error rates such as WER / PER, lower '
        "is better).",
        f"p (Holm): two-sided p-values adjusted with Holm's step-down method over the tests of their column (one "
        f"family per column and test set); * marks significance at {ALPHA} after the adjustment. summary.json "
        "also holds the raw p-values.",
        f"{display_name(baseline)} continues maximum-likelihood training from the shared checkpoint for "
        "the same budget, so every row has seen the same number of updates.",
    ]
    for es in eval_sets:
        notes += es.notes
    if missing:
        notes.append(f"Unfinished runs (not in the table): {', '.join(missing)}.")
    return notes


def _report_summary(
    report: _Report,
    spec: dict[str, Any],
    fingerprint: dict[str, Any],
    budget: dict[str, Any],
    smoothing: float | None,
    valid_stats: dict[str, Stats],
    missing: list[str],
) -> dict[str, Any]:
    """summary.json: the tables, significance tests and every run's scores, machine-readable."""
    records, eval_sets, test_set = report.records, report.eval_sets, report.eval_sets[0]

    def set_summary(es: EvalSet) -> dict[str, Any]:
        return {
            "test": {m: {k: vars(s) for k, s in table(records, es.name, m).items()} for m in report.metrics},
            "significance": es.vs_baseline,
            "significance_vs_start": es.vs_start,
            "start": es.start_scores,
        }

    return {
        "task": report.task,
        "primary_metric": report.primary,
        "baseline": report.baseline,
        "settings": spec,
        "label_smoothing": smoothing,
        "init_state": fingerprint.get("init_state"),
        "budget": {k: v for k, v in budget.items() if k != "text"},
        "test": set_summary(test_set)["test"],
        "valid": {k: vars(s) for k, s in valid_stats.items()},
        "significance": test_set.vs_baseline,
        "significance_vs_start": test_set.vs_start,
        "start": {es.name: es.start_scores for es in eval_sets if es.start_scores},
        "extra_tests": {es.name: set_summary(es) for es in eval_sets[1:]},
        "alpha": ALPHA,
        "missing": missing,
        "runs": {
            k: [
                {
                    "seed": r.seed,
                    "test": r.results.get("test"),
                    "valid": r.results.get("valid"),
                    "extra_tests": {es.name: r.scores(es.name) for es in eval_sets[1:]},
                    "steps": r.results.get("steps"),
                    "steps_per_epoch": r.results.get("steps_per_epoch"),
                    "init": r.results.get("init"),
                    "train_seconds": r.results.get("train_seconds"),
                }
                for r in v
            ]
            for k, v in records.items()
        },
    }


def _report_markdown(report: _Report) -> str:
    """report.md: facts, one table per evaluation set, validation, figures (linked), notes."""
    md = [f"# seqlab compare: {report.task}", "", *[f"- **{k}**: {v}" for k, v in report.facts], ""]
    for es, head, rows in report.tables:
        md += [f"## {report.set_title(es)}", "", _markdown_table(head, rows), ""]
        sig_line = _significant(report.records, es, report.baseline)
        md += [sig_line, ""] if sig_line else []
    md += [
        f"## Validation {report.primary} (best checkpoint)",
        "",
        _markdown_table(report.valid_head, report.valid_rows),
        "",
        "## Validation curves",
        "",
        "![validation curves](curves.png)",
        "",
    ]
    if report.schedules:
        md += [
            "## Schedules",
            "",
            "λ1..λ3, the MIXER prefix, P(truth), the weighting statistics and, for actor-critic runs, the critic's "
            "TD error, the actor's entropy and the sample return, as the runs logged them per step.",
            "",
            "![schedules](schedules.png)",
            "",
        ]
    if report.critics:
        md += [
            "## Critic pre-training",
            "",
            "The critics' validation TD error while they pre-train with the actor fixed.",
            "",
            "![critic pre-training](critics.png)",
            "",
        ]
    md += [
        "## Algorithm space",
        "",
        "Algorithms placed by how far their training targets reach from the data (ERPO paper, Fig. 1), "
        "annotated with the measured test scores.",
        "",
        "![algorithm space](space.png)",
        "",
        "## Notes",
        "",
        *[f"- {n}" for n in report.notes],
        "",
    ]
    return "\n".join(md)


def _img(p: Path, alt: str) -> str:
    data = base64.b64encode(p.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _report_html(report: _Report) -> str:
    """report.html: the Markdown report's content, self-contained (figures inlined)."""
    style = (
        "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
        "table{border-collapse:collapse;margin:1em 0;font-size:14px}th,td{border:1px solid #ccc;"
        "padding:4px 8px;text-align:right}th{background:#f3f5f8}td:first-child,th:first-child{text-align:left}"
        "img{max-width:100%;border:1px solid #eee}li{margin:.2em 0}"
    )
    task = html.escape(report.task)
    body = [
        f"<h1>seqlab compare: {task}</h1>",
        "<ul>" + "".join(f"<li><b>{html.escape(k)}</b>: {html.escape(str(v))}</li>" for k, v in report.facts) + "</ul>",
    ]
    for es, head, rows in report.tables:
        body += [f"<h2>{html.escape(report.set_title(es))}</h2>", _html_table(head, rows)]
        sig_line = _significant(report.records, es, report.baseline)
        body += [f"<p>{html.escape(sig_line)}</p>"] if sig_line else []
    body += [
        f"<h2>Validation {html.escape(report.primary)} (best checkpoint)</h2>",
        _html_table(report.valid_head, report.valid_rows),
        "<h2>Validation curves</h2>",
        _img(report.curves, "validation curves"),
    ]
    if report.schedules:
        body += ["<h2>Schedules</h2>", _img(report.schedules, "schedules")]
    if report.critics:
        body += ["<h2>Critic pre-training</h2>", _img(report.critics, "critic pre-training")]
    body += [
        "<h2>Algorithm space</h2>",
        "<p>Algorithms placed by how far their training targets reach from the "
        "data (ERPO paper, Fig. 1), annotated with the measured test scores.</p>",
        _img(report.space, "algorithm space"),
        "<h2>Notes</h2>",
        "<ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in report.notes) + "</ul>",
    ]
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>seqlab compare: "
        f"{task}</title><style>{style}</style></head><body>{''.join(body)}</body></html>"
    )


def _report_inputs(
    out: Path, baseline: str | None, labels: Sequence[str] | None = None
) -> tuple[dict[str, Any], str, dict[str, list[RunRecord]], list[str], dict[str, Any], list[str]]:
    """(settings, baseline, finished runs, unfinished run names, test references, metrics); refuses no runs."""
    settings = _settings(out)
    baseline = baseline or settings["spec"].get("baseline", "mle")
    records, missing = collect(out, labels)
    refs_path = out / "test.refs.json"
    task_refs = json.loads(refs_path.read_text(encoding="utf-8")) if refs_path.exists() else {}
    metrics = metric_names(records, (task_refs.get("metrics") or [None])[0])
    if not records or not metrics:
        raise RuntimeError(f"{out}: no finished runs to report")
    return settings, baseline, records, missing, task_refs, metrics


def write_report(
    out: str | Path, baseline: str | None = None, n_samples: int = 1000, labels: Sequence[str] | None = None
) -> dict[str, Path]:
    """Write ``out/report/{report.md, report.html, curves.png, space.png, schedules.png, critics.png,
    summary.json}`` (schedules and critics where the runs logged them); ``labels``: these rows instead of the
    comparison's (:func:`collect`)."""
    out = Path(out)
    rep = out / "report"
    rep.mkdir(parents=True, exist_ok=True)
    settings, baseline, records, missing, task_refs, metrics = _report_inputs(out, baseline, labels)
    spec, fingerprint = settings["spec"], settings["fingerprint"]
    primary = metrics[0]
    eval_sets = _eval_sets(out, records, task_refs, spec)
    for es in eval_sets:
        _evaluate_set(records, es, baseline, primary, n_samples)
    if not task_refs:
        eval_sets[0].notes = ["No test references (test.refs.json): no significance tests."]
    test_stats = table(records, "test", primary)
    valid_stats = table(records, "valid", primary)
    start_valid = _pretrain_score(out, primary)
    curves = plot_curves(records, primary, rep / "curves.png", start_valid)
    space = plot_space(records, test_stats, primary, rep / "space.png")
    schedules = plot_schedules(records, rep / "schedules.png")
    critics = plot_critics(out, rep / "critics.png")
    tables = [(es, *_rows(records, metrics, es, baseline)) for es in eval_sets]
    valid_head = ["algorithm", "n", f"valid {primary} mean ± std", "min", "max"]
    valid_rows = [
        [_display(k, records[k][0].algorithm), str(s.n), f"{_fmt(s.mean)} ± {_fmt(s.std)}", _fmt(s.min), _fmt(s.max)]
        for k, s in valid_stats.items()
    ]
    budget = budget_facts(records, spec, out)
    smoothing = fingerprint.get("label_smoothing", settings["config"].get("train", {}).get("label_smoothing"))
    report = _Report(
        task=settings["config"].get("task", {}).get("name", "?"),
        primary=primary,
        metrics=metrics,
        baseline=baseline,
        records=records,
        eval_sets=eval_sets,
        tables=tables,
        valid_head=valid_head,
        valid_rows=valid_rows,
        facts=_report_facts(out, records, settings, budget, smoothing),
        notes=_report_notes(baseline, n_samples, eval_sets, missing),
        curves=curves,
        space=space,
        schedules=schedules,
        critics=critics,
    )
    summary = _report_summary(report, spec, fingerprint, budget, smoothing, valid_stats, missing)
    (rep / "summary.json").write_text(json.dumps(summary, indent=2, default=float), encoding="utf-8")
    md_path = rep / "report.md"
    md_path.write_text(_report_markdown(report), encoding="utf-8")
    html_path = rep / "report.html"
    html_path.write_text(_report_html(report), encoding="utf-8")
    paths = {"markdown": md_path, "html": html_path, "curves": curves, "space": space, "summary": rep / "summary.json"}
    paths.update({name: p for name, p in (("schedules", schedules), ("critics", critics)) if p})
    return paths
