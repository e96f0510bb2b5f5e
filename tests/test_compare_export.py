"""seqlab compare --export-results: a report's figures as benchmark entries, settings from the suite's export:."""

from __future__ import annotations

import json

import pytest

from seqlab.compare.export import export_results, export_settings
from seqlab.compare.runner import load_compare_yaml
from seqlab.config import ConfigError

SUMMARY = {
    "primary_metric": "wer",
    "baseline": "mle",
    "test": {
        "wer": {
            "mle": {"mean": 40.0, "std": 1.0, "min": 39.0, "max": 41.0, "n": 2},
            "raml": {"mean": 42.0, "std": 0.5, "min": 41.5, "max": 42.5, "n": 2},
        }
    },
    "significance": {"raml": {"p_value": 0.03, "p_holm": 0.06}},
    "significance_vs_start": {},
    "start": {"test": {"wer": 50.0}},
}


def suite(tmp_path, export: str = "") -> str:
    path = tmp_path / "tiny_suite.yaml"
    path.write_text("config: c.yaml\nout: runs/x\nalgorithms: [mle]\nseeds: [1]\nbudget_steps: 5\n" + export)
    return str(path)


def test_settings_default_to_the_suite_name_and_read_its_export_section(tmp_path):
    plain = export_settings(suite(tmp_path), "runs/x")
    assert (plain.results, plain.prefix, plain.split, plain.report_dir) == ("tiny_suite", "tiny_suite", "test", None)
    given = export_settings(suite(tmp_path, "export: {results: r, prefix: p, split: test2016}\n"), "runs/x")
    assert (given.results, given.prefix, given.split) == ("r", "p", "test2016")
    assert export_settings(suite(tmp_path, "export: {results: r}\n"), "runs/x", name="n").results == "n"
    with_dir = suite(tmp_path, "export: {report_dir: benchmarks/reports/t}\n")
    staged = export_settings(with_dir, "runs/x", None, "elsewhere")
    assert staged.report_dir == "elsewhere"
    assert export_settings(None, tmp_path / "cmp_dir").results == "cmp_dir"
    with pytest.raises(ConfigError, match="unknown key"):
        export_settings(suite(tmp_path, "export: {result: r}\n"), "runs/x")
    assert "export" not in load_compare_yaml(suite(tmp_path, "export: {results: r}\n"))  # not a CompareSpec field


def test_export_writes_entries_and_copies_the_report(tmp_path, monkeypatch):
    monkeypatch.setenv("SEQLAB_RESULTS_DIR", str(tmp_path / "results"))
    out = tmp_path / "cmp"
    (out / "report").mkdir(parents=True)
    (out / "report" / "summary.json").write_text(json.dumps(SUMMARY))
    (out / "report" / "report.md").write_text("# report\n")
    settings = export_settings(
        suite(tmp_path, f"export: {{results: r, prefix: p, report_dir: {tmp_path / 'rep'}}}\n"), out
    )
    where = export_results(out, settings, command="seqlab compare ...")
    entries = {e["metric"]: e for e in json.loads((tmp_path / "results" / "r.json").read_text())}
    assert where["results"] == str(tmp_path / "results" / "r.json")
    assert entries["p_raml_test_wer_mean"]["value"] == 42.0 and entries["p_mle_test_wer_n"]["value"] == 2
    assert entries["p_raml_test_wer_p_holm_vs_mle"]["value"] == 0.06 and entries["p_start_test_wer"]["value"] == 50.0
    assert entries["p_raml_test_wer_mean"]["command"] == "seqlab compare ..."
    assert (tmp_path / "rep" / "report.md").read_text() == "# report\n"
    with pytest.raises(ConfigError, match="no report"):
        export_results(tmp_path / "empty", settings)


def test_a_label_suffix_names_the_rows_and_one_run_rows_get_a_plain_entry(tmp_path, monkeypatch):
    monkeypatch.setenv("SEQLAB_RESULTS_DIR", str(tmp_path / "results"))
    out = tmp_path / "cmp"
    (out / "report").mkdir(parents=True)
    one_run = json.loads(json.dumps(SUMMARY))
    one_run["test"]["wer"]["raml"].update(n=1, std=0.0)
    (out / "report" / "summary.json").write_text(json.dumps(one_run))
    export = f"export: {{results: r, prefix: p, label_suffix: _credit, report_dir: {tmp_path / 'rep'}}}\n"
    settings = export_settings(suite(tmp_path, export), out)
    assert settings.label_suffix == "_credit"
    export_results(out, settings, command="c")
    entries = {e["metric"]: e["value"] for e in json.loads((tmp_path / "results" / "r.json").read_text())}
    assert entries["p_mle_credit_test_wer_mean"] == 40.0 and entries["p_raml_credit_test_wer_p_holm_vs_mle"] == 0.06
    assert entries["p_raml_credit_test_wer"] == 42.0  # one run: also the plain name
    assert "p_mle_credit_test_wer" not in entries and "p_mle_test_wer_mean" not in entries
    assert entries["p_start_test_wer"] == entries["p_checkpoint_test_wer"] == 50.0


def test_metric_names_are_lower_case(tmp_path, monkeypatch):
    """ROUGE-L is reported as rougeL (rouge-score's name); the entries call it rougel, as the issues name them."""
    monkeypatch.setenv("SEQLAB_RESULTS_DIR", str(tmp_path / "results"))
    out = tmp_path / "cmp"
    (out / "report").mkdir(parents=True)
    rouge = json.loads(json.dumps(SUMMARY).replace('"wer"', '"rougeL"'))
    (out / "report" / "summary.json").write_text(json.dumps(rouge))
    export = f"export: {{results: r, prefix: aeslc, split: dev, report_dir: {tmp_path / 'rep'}}}\n"
    export_results(out, export_settings(suite(tmp_path, export), out), command="c")
    entries = {e["metric"]: e for e in json.loads((tmp_path / "results" / "r.json").read_text())}
    assert entries["aeslc_mle_dev_rougel_mean"]["value"] == 40.0 and entries["aeslc_mle_dev_rougel_n"]["value"] == 2
    assert entries["aeslc_raml_dev_rougel_p_holm_vs_mle"]["value"] == 0.06
    assert (
        entries["aeslc_checkpoint_dev_rougel"]["value"] == 50.0
        and entries["aeslc_mle_dev_rougel_mean"]["unit"] == "ROUGEL"
    )
    assert not any("rougeL" in name for name in entries)


def test_entries_carry_the_commits_the_runs_were_trained_at(tmp_path, monkeypatch):
    """A comparison resumed with newer code combines runs of two commits: the entries name both, not the exporter's."""
    monkeypatch.setenv("SEQLAB_RESULTS_DIR", str(tmp_path / "results"))
    monkeypatch.setenv("SEQLAB_COMMIT", "exporter")
    out = tmp_path / "cmp"
    (out / "report").mkdir(parents=True)
    (out / "report" / "summary.json").write_text(json.dumps(SUMMARY))
    settings = export_settings(suite(tmp_path, f"export: {{results: r, report_dir: {tmp_path / 'rep'}}}\n"), out)
    export_results(out, settings, command="c")
    assert {e["commit"] for e in json.loads((tmp_path / "results" / "r.json").read_text())} == {"exporter"}
    for run, code in (("pretrain", "bbb"), ("runs/mle/seed1", "aaa"), ("runs/raml/seed1", "bbb")):
        (out / run).mkdir(parents=True)
        (out / run / "results.json").write_text(json.dumps({"steps": 5, "commit": code}))
    export_results(out, settings, command="c")
    assert {e["commit"] for e in json.loads((tmp_path / "results" / "r.json").read_text())} == {"aaa+bbb"}


def test_only_the_reported_rows_runs_name_the_commits(tmp_path):
    """run_commits(labels): a row of the folder left out of the report (and its critic) does not name the entries'
    commit; the pre-training still does."""
    from seqlab.compare.export import run_commits

    out = tmp_path / "cmp"
    for run, code in (("start", "s0"), ("runs/a/seed1", "a1"), ("runs/b/seed1", "b1"), ("critics/b", "b0")):
        (out / run).mkdir(parents=True)
        (out / run / "results.json").write_text(json.dumps({"commit": code}))
    assert run_commits(out) == "a1+b0+b1+s0"
    assert run_commits(out, {"a"}) == "a1+s0"
