"""``seqlab compare --export-results``: a finished comparison's report as benchmark result entries.

The entries (:func:`seqlab.compare.report.benchmark_entries`) go to ``benchmarks/results/<results>.json`` and the
report's files to ``<report_dir>/``.  A suite file (``--compare-config``) may set them under ``export:``::

    export: {results: compare_multi30k, prefix: multi30k_deen, split: test2016, report_dir: benchmarks/reports/m30k}

``label_suffix`` goes after each row's label in the metric names (``_credit``: ``multi30k_deen_mle_credit_...``).

Defaults: ``results`` = the suite file's name (else the comparison folder's), ``prefix`` = ``results``,
``split`` = ``test``, ``report_dir`` = ``benchmarks/reports/<results>``.
"""

from __future__ import annotations

import json
import shlex
import shutil
import sys
from collections.abc import Collection
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import yaml

from seqlab.config import ConfigError

#: the suite-file key :func:`seqlab.compare.runner.load_compare_yaml` leaves to this module
EXPORT_KEY = "export"


@dataclass
class ExportSettings:
    """Where a comparison's figures go."""

    results: str  # benchmarks/results/<results>.json
    prefix: str  # metric names <prefix>_<label>_<split>_<metric>_...
    split: str = "test"
    report_dir: str | None = None  # default benchmarks/reports/<results>
    label_suffix: str = ""  # metric names <prefix>_<label><label_suffix>_<split>_... (e.g. _credit)


def export_settings(
    compare_config: str | None, out: str | Path, name: str | None = None, report_dir: str | None = None
) -> ExportSettings:
    """The suite file's ``export:`` section over the defaults; ``name`` (``--export-results NAME``) and ``report_dir``
    (``--export-report-dir``: a stage of a table reported beside the committed report) over both."""
    given: dict[str, Any] = {}
    if compare_config:
        with open(compare_config, encoding="utf-8") as f:
            given = dict((yaml.safe_load(f) or {}).get(EXPORT_KEY) or {})
        known = {f.name for f in fields(ExportSettings)}
        unknown = set(given) - known
        if unknown:
            raise ConfigError(
                f"{compare_config}: unknown key(s) {sorted(unknown)} under {EXPORT_KEY}:; known: {sorted(known)}"
            )
    results = name or given.get("results") or Path(compare_config or out).stem
    return ExportSettings(
        results=str(results),
        prefix=str(given.get("prefix") or results),
        split=str(given.get("split") or "test"),
        report_dir=report_dir or given.get("report_dir"),
        label_suffix=str(given.get("label_suffix") or ""),
    )


def run_commits(out: str | Path, labels: Collection[str] | None = None) -> str:
    """The commits the comparison's runs were trained at (``commit`` in each results.json), joined by ``+`` when a
    comparison resumed with newer code; empty when no run recorded one.  ``labels``: only these rows' runs and
    critics count (with the pre-training), not the other rows' in the folder."""
    found, root = set(), Path(out)
    for path in root.glob("**/results.json"):
        parts = path.relative_to(root).parts
        if labels is not None and parts[0] in ("runs", "critics") and parts[1] not in labels:
            continue
        code = json.loads(path.read_text(encoding="utf-8")).get("commit")
        if code:
            found.add(str(code))
    return "+".join(sorted(found))


def export_results(out: str | Path, settings: ExportSettings, command: str | None = None) -> dict[str, str]:
    """Write the entries of ``out``'s report and copy its files; returns where they went."""
    from seqlab.bench import results
    from seqlab.compare.report import benchmark_entries

    report = Path(out) / "report"
    if not (report / "summary.json").exists():
        raise ConfigError(f"{out}: no report to export (report/summary.json); run the comparison first")
    command = command or "seqlab " + shlex.join(sys.argv[1:])
    rows = benchmark_entries(out, settings.prefix, settings.split, settings.label_suffix)
    reported = json.loads((report / "summary.json").read_text(encoding="utf-8")).get("runs")
    code = run_commits(out, None if reported is None else set(reported)) or results.commit()
    entries = [{**results.entry(m, v, u, command), "commit": code} for m, v, u in rows]
    path = results.write(settings.results, entries)
    target = (
        Path(settings.report_dir) if settings.report_dir else results.REPO / "benchmarks" / "reports" / settings.results
    )
    target.mkdir(parents=True, exist_ok=True)
    for item in report.iterdir():
        if item.is_file():
            shutil.copy2(item, target / item.name)
    return {"results": str(path), "entries": str(len(rows)), "report": str(target)}
