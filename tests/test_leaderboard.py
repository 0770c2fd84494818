"""Tests of the leaderboard package: record schema, files, table statistics, report and CLI."""

from __future__ import annotations

import io
import json
import math
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

import leaderboard
from data.synthetic import Budget, SyntheticSet
from leaderboard import (
    RecordCosts,
    RecordError,
    ResultRecord,
    build_table,
    find_record,
    grids,
    load_records,
    plots,
    record_path,
    render_report,
    summarize_accuracies,
    to_csv,
    to_json,
    to_markdown,
    write_outputs,
    write_record,
)
from leaderboard.cli import main
from leaderboard.table import BaselineGap, baseline_gaps
from tests.record_factory import make_record, row_of

# ----------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------


def independent_welch_p(sample: list[float], baseline: list[float]) -> float:
    """Welch's two-sided p-value from the textbook formula (Welch-Satterthwaite df)."""
    a, b = np.asarray(sample), np.asarray(baseline)
    var_a, var_b = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    t_stat = (a.mean() - b.mean()) / math.sqrt(var_a + var_b)
    dof = (var_a + var_b) ** 2 / (var_a**2 / (a.size - 1) + var_b**2 / (b.size - 1))
    return float(2 * stats.t.sf(abs(t_stat), dof))


def assert_offline(html: str) -> None:
    """No URL anywhere, and every embedded resource is a data: URI."""
    assert not re.search(r"(?i)https?://", html)
    assert not re.search(r"(?i)<link|@import|<iframe|<script\s+src", html)
    assert all(source.startswith("data:image/png;base64,") for source in re.findall(r'src="([^"]*)"', html))


RANDOM_10 = [0.50, 0.55, 0.60]
DC_10_SEED0 = [0.70, 0.72]
DC_10_SEED1 = [0.74, 0.71]
HERDING_10 = [0.58, 0.62, 0.57]
FULL = [0.95, 0.97]
RANDOM_1 = [0.20, 0.25]
DC_1 = [0.40, 0.41]


@pytest.fixture
def benchmark_records() -> list[ResultRecord]:
    return [
        make_record("random", RANDOM_10),
        make_record("dc", DC_10_SEED0, family="distillation", seed=0),
        make_record("dc", DC_10_SEED1, family="distillation", seed=1),
        make_record("herding", HERDING_10),
        make_record("full", FULL, family="reference"),
        make_record("random", RANDOM_1, ipc=1),
        make_record("dc", DC_1, ipc=1, family="distillation"),
        # Another protocol: must never be pooled with or compared to the "fast" rows.
        make_record("random", [0.9, 0.91], protocol="long"),
        make_record("dc", [0.1, 0.11], protocol="long", family="distillation"),
    ]


# ----------------------------------------------------------------------------------------------
# Package boundary
# ----------------------------------------------------------------------------------------------


# ----------------------------------------------------------------------------------------------
# Statistics and record schema
# ----------------------------------------------------------------------------------------------


def test_summarize_accuracies_matches_textbook_formulas() -> None:
    values = [0.91, 0.92, 0.90, 0.95]
    summary = summarize_accuracies(values)
    mean = sum(values) / 4
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / 3)
    half = stats.t.ppf(0.975, 3) * std / 2
    assert summary["mean"] == pytest.approx(mean, abs=1e-15)
    assert summary["std"] == pytest.approx(std, abs=1e-15)
    assert summary["ci95"] == pytest.approx([mean - half, mean + half], abs=1e-15)


def test_intervals_stay_inside_zero_and_one() -> None:
    """Three runs near 100% (the `full` row's case) give a t-interval reaching above 1: clipped."""
    values = [1.0, 0.99, 0.93]
    mean, std = sum(values) / 3, float(np.std(values, ddof=1))
    half = stats.t.ppf(0.975, 2) * std / math.sqrt(3)
    assert mean + half > 1.0  # the unclipped interval leaves [0, 1]
    assert summarize_accuracies(values)["ci95"] == pytest.approx([mean - half, 1.0], abs=1e-15)
    assert summarize_accuracies([0.0, 0.01, 0.07])["ci95"][0] == 0.0
    # A record written with the unclipped interval still reads, and reads back clipped.
    record = make_record("dc", {"convnet3": values}, family="distillation").to_dict()
    record["results"]["convnet3"]["ci95"] = [mean - half, mean + half]
    restored = ResultRecord.from_dict(record)
    assert restored.results["convnet3"].ci95 == pytest.approx((mean - half, 1.0), abs=1e-15)
    record["results"]["convnet3"]["ci95"] = [mean - half, mean + half + 0.01]
    with pytest.raises(RecordError, match="ci95"):
        ResultRecord.from_dict(record)


def test_summarize_single_value_and_empty() -> None:
    assert summarize_accuracies([0.8]) == {"mean": 0.8, "std": 0.0, "ci95": [0.8, 0.8]}
    with pytest.raises(ValueError, match="at least one"):
        summarize_accuracies([])


def test_round_trip_to_dict_from_dict() -> None:
    record = make_record("dc", {"convnet3": [0.91, 0.92, 0.90], "mlp": [0.8]}, family="distillation")
    data = record.to_dict()
    assert data["schema"] == "condense-bench/record"
    assert data["schema_version"] == 1
    assert list(data)[:3] == ["schema", "schema_version", "cell_key"]
    restored = ResultRecord.from_dict(json.loads(json.dumps(data)))
    assert restored == record
    assert restored.to_dict() == data
    assert restored.budget == "ipc=10"


def test_to_dict_is_a_copy() -> None:
    record = make_record("random", [0.5, 0.6])
    record.to_dict()["method_config"]["lr"] = 99
    assert record.method_config == {"lr": 0.01}


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (
            lambda d: d["results"]["convnet3"].update(accuracies=[91.0, 92.0], mean=91.5, std=0.7071067811865476),
            "not percent",
        ),
        (lambda d: d["results"]["convnet3"].update(mean=float("nan")), "finite"),
        (lambda d: d["costs"].update(eval_seconds=float("inf")), "costs.eval_seconds"),
        (lambda d: d.pop("seed"), "missing required key"),
        (lambda d: d["results"]["convnet3"].pop("std"), "missing required key"),
        (lambda d: d.update(extra=1), "unknown key"),
        (lambda d: d["results"]["convnet3"].update(mean=0.5), "mean = 0.5 does not match"),
        (lambda d: d["results"]["convnet3"].update(std=0.0), "std = 0.0 does not match"),
        (lambda d: d.update(seed="0"), "seed must be an integer"),
        (lambda d: d.update(ipc=True), "ipc must be an integer"),
        (lambda d: d.update(family="magic"), "family must be one of"),
        (lambda d: d.update(label_type="fuzzy"), "label_type must be one of"),
        (lambda d: d.update(ipc=None), "exactly one budget"),
        (lambda d: d.update(fraction=0.3), "exactly one budget"),
        (lambda d: d.update(fraction=1.5, ipc=None), "fraction must be in"),
        (lambda d: d.update(results={}), "results is empty"),
        (lambda d: d.update(cell_key="../../etc"), "cell_key"),
        (lambda d: d.update(method="../evil"), "folder name"),
        (lambda d: d.update(created="yesterday"), "ISO 8601"),
        (lambda d: d.update(schema_version=2), "unsupported schema_version"),
        (lambda d: d.pop("schema"), "not a condense-bench record"),
    ],
)
def test_from_dict_rejects_invalid_records(mutate: Any, message: str) -> None:
    data = make_record("dc", [0.91, 0.92], family="distillation").to_dict()
    mutate(data)
    with pytest.raises(RecordError, match=message):
        ResultRecord.from_dict(data)


def test_from_dict_names_the_evaluation_model() -> None:
    data = make_record("dc", [0.91, 0.92], family="distillation").to_dict()
    data["results"]["convnet3"]["accuracies"] = [0.91, 1.2]
    with pytest.raises(RecordError, match=r"results\.convnet3\.accuracies\[1\]"):
        ResultRecord.from_dict(data)


def test_record_error_is_a_value_error() -> None:
    assert issubclass(RecordError, ValueError)


def test_reference_record_has_no_budget() -> None:
    record = make_record("full", FULL, family="reference")
    assert record.ipc is None and record.fraction is None and record.budget == "full"
    data = record.to_dict()
    data["ipc"] = 10
    with pytest.raises(RecordError, match="reference"):
        ResultRecord.from_dict(data)


# ----------------------------------------------------------------------------------------------
# Files
# ----------------------------------------------------------------------------------------------


def test_write_record_path_and_atomic_replace(tmp_path: Path) -> None:
    first = make_record("random", [0.5, 0.6])
    path = write_record(first, tmp_path)
    assert path == tmp_path / "records" / "digits" / "random" / f"{first.cell_key}.json"
    assert path == record_path(tmp_path, "digits", "random", first.cell_key)
    # A second write of the same cell (a longer method_config) replaces the file whole.
    second_data = first.to_dict()
    second_data["method_config"] = {"lr": 0.02, "notes": "x" * 500}
    write_record(ResultRecord.from_dict(second_data), tmp_path)
    shorter = ResultRecord.from_dict(first.to_dict())
    write_record(shorter, tmp_path)
    assert json.loads(path.read_text(encoding="utf-8")) == first.to_dict()
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name], "a temp file was left behind"


def test_write_record_cleans_up_when_serialisation_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    record = make_record("random", [0.5, 0.6])
    path = write_record(record, tmp_path)
    original = path.read_text(encoding="utf-8")

    def broken_replace(source: str, target: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr("data.files.os.replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        write_record(record, tmp_path)
    assert path.read_text(encoding="utf-8") == original
    assert [p.name for p in path.parent.iterdir()] == [path.name]


def test_find_record(tmp_path: Path) -> None:
    record = make_record("dc", [0.7, 0.8], family="distillation")
    assert find_record(tmp_path, record.cell_key) is None
    write_record(record, tmp_path)
    assert find_record(tmp_path, record.cell_key) == record
    with pytest.raises(RecordError, match="hex"):
        find_record(tmp_path, "*")


def test_load_records_skips_and_reports_bad_files(tmp_path: Path) -> None:
    good = [make_record("random", RANDOM_10), make_record("dc", DC_1, family="distillation")]
    for record in good:
        write_record(record, tmp_path)
    folder = tmp_path / "records" / "digits" / "random"
    (folder / "broken.json").write_text('{"schema": "condense-bench/record", ', encoding="utf-8")
    (folder / "foreign.json").write_text('{"name": "some other tool"}', encoding="utf-8")
    (folder / "list.json").write_text("[1, 2]", encoding="utf-8")
    invalid = good[0].to_dict()
    invalid["cell_key"] = "abcdef"
    invalid["results"]["convnet3"]["accuracies"] = [50.0, 55.0, 60.0]
    (folder / "abcdef.json").write_text(json.dumps(invalid), encoding="utf-8")
    duplicate = folder / "zz-copy.json"
    duplicate.write_text(json.dumps(good[0].to_dict()), encoding="utf-8")

    loaded = load_records(tmp_path)
    assert sorted(r.cell_key for r in loaded.records) == sorted(r.cell_key for r in good)
    reasons = {path.name: message for path, message in loaded.problems}
    assert set(reasons) == {"broken.json", "foreign.json", "list.json", "abcdef.json", "zz-copy.json"}
    assert "not valid JSON" in reasons["broken.json"]
    assert "not a condense-bench record" in reasons["foreign.json"]
    assert "must be a JSON object" in reasons["list.json"]
    assert "not in [0, 1]" in reasons["abcdef.json"]
    assert "duplicate cell_key" in reasons["zz-copy.json"]


def test_load_records_on_empty_and_missing_folder(tmp_path: Path) -> None:
    loaded = load_records(tmp_path)
    assert loaded.records == [] and loaded.problems == []
    with pytest.raises(FileNotFoundError):
        load_records(tmp_path / "nope")


# ----------------------------------------------------------------------------------------------
# Table
# ----------------------------------------------------------------------------------------------


def test_table_statistics_match_independent_computation(benchmark_records: list[ResultRecord]) -> None:
    table = build_table(benchmark_records)
    assert list(table.columns) == list(leaderboard.TABLE_COLUMNS)

    dc = row_of(table, protocol="fast", budget="ipc=10", method="dc")
    pooled_dc = DC_10_SEED0 + DC_10_SEED1
    assert dc["n"] == 4 and dc["seeds"] == 2
    assert dc["mean"] == pytest.approx(np.mean(pooled_dc), abs=1e-12)
    assert dc["std"] == pytest.approx(np.std(pooled_dc, ddof=1), abs=1e-12)
    half = stats.t.ppf(0.975, 3) * np.std(pooled_dc, ddof=1) / 2
    assert dc["ci95_low"] == pytest.approx(np.mean(pooled_dc) - half, abs=1e-12)
    assert dc["ci95_high"] == pytest.approx(np.mean(pooled_dc) + half, abs=1e-12)
    assert dc["gain_vs_random"] == pytest.approx(np.mean(pooled_dc) - np.mean(RANDOM_10), abs=1e-12)
    assert dc["p_value"] == pytest.approx(independent_welch_p(pooled_dc, RANDOM_10), rel=1e-9)
    assert bool(dc["significant"]) == (independent_welch_p(pooled_dc, RANDOM_10) < 0.05)
    assert dc["ipc"] == 10 and math.isnan(dc["fraction"]) and dc["family"] == "distillation"

    herding = row_of(table, protocol="fast", budget="ipc=10", method="herding")
    assert herding["gain_vs_random"] == pytest.approx(np.mean(HERDING_10) - np.mean(RANDOM_10), abs=1e-12)
    assert herding["p_value"] == pytest.approx(independent_welch_p(HERDING_10, RANDOM_10), rel=1e-9)
    assert not herding["significant"]

    random_row = row_of(table, protocol="fast", budget="ipc=10", method="random")
    assert random_row["gain_vs_random"] == 0.0
    assert math.isnan(random_row["p_value"]) and not random_row["significant"]

    # Costs are means over the seeds (records) of the row.
    assert dc["distill_seconds"] == pytest.approx(1.5) and dc["set_bytes"] == pytest.approx(4096)


def test_table_rank_order_and_sorting(benchmark_records: list[ResultRecord]) -> None:
    table = build_table(benchmark_records)
    fast_10 = table[(table["protocol"] == "fast") & (table["budget"] == "ipc=10")]
    assert list(fast_10["method"]) == ["dc", "herding", "random", "full"]
    assert list(fast_10["rank"].iloc[:3]) == [1, 2, 3]
    assert pd.isna(fast_10["rank"].iloc[3])
    # Budgets sort numerically (ipc=1 before ipc=10), protocols alphabetically.
    keys = list(dict.fromkeys(zip(table["protocol"], table["budget"], strict=True)))
    assert keys == [("fast", "ipc=1"), ("fast", "ipc=10"), ("long", "ipc=10")]


def test_table_ties_share_a_rank() -> None:
    table = build_table(
        [
            make_record("a", [0.5, 0.7]),
            make_record("b", [0.6, 0.6]),
            make_record("random", [0.4, 0.5]),
        ]
    )
    assert dict(zip(table["method"], table["rank"], strict=True)) == {"a": 1, "b": 1, "random": 3}


def test_full_row_repeated_in_every_budget_group(benchmark_records: list[ResultRecord]) -> None:
    table = build_table(benchmark_records)
    full = table[table["method"] == "full"]
    assert list(full["budget"]) == ["ipc=1", "ipc=10"]
    assert full["is_reference"].all() and (full["protocol"] == "fast").all()
    assert list(full["ipc"]) == [1, 10]
    assert full["mean"].tolist() == pytest.approx([np.mean(FULL)] * 2)
    gains = dict(zip(full["budget"], full["gain_vs_random"], strict=True))
    assert gains["ipc=1"] == pytest.approx(np.mean(FULL) - np.mean(RANDOM_1))
    assert gains["ipc=10"] == pytest.approx(np.mean(FULL) - np.mean(RANDOM_10))
    assert not table.loc[table["method"] != "full", "is_reference"].any()


def test_full_alone_gets_its_own_group() -> None:
    table = build_table([make_record("full", FULL, family="reference")])
    assert list(table["budget"]) == ["full"] and math.isnan(table["gain_vs_random"].iloc[0])


def test_protocols_are_never_mixed(benchmark_records: list[ResultRecord]) -> None:
    table = build_table(benchmark_records)
    long_dc = row_of(table, protocol="long", method="dc")
    assert long_dc["n"] == 2 and long_dc["seeds"] == 1
    assert long_dc["gain_vs_random"] == pytest.approx(0.105 - 0.905)
    assert long_dc["p_value"] == pytest.approx(independent_welch_p([0.1, 0.11], [0.9, 0.91]), rel=1e-9)
    # The "fast" dc row at ipc=10 did not absorb the "long" record.
    assert row_of(table, protocol="fast", budget="ipc=10", method="dc")["seeds"] == 2
    # No "full" record was run under "long", so no reference row appears there.
    assert set(table.loc[table["protocol"] == "long", "method"]) == {"random", "dc"}


def test_each_evaluation_model_is_its_own_group() -> None:
    records = [
        make_record("random", {"convnet3": [0.5, 0.6], "mlp": [0.3, 0.35]}),
        make_record("dc", {"convnet3": [0.8, 0.82], "mlp": [0.4, 0.41]}, family="distillation"),
    ]
    table = build_table(records)
    assert row_of(table, model="mlp", method="dc")["gain_vs_random"] == pytest.approx(0.405 - 0.325)
    assert row_of(table, model="convnet3", method="dc")["gain_vs_random"] == pytest.approx(0.81 - 0.55)


@pytest.mark.filterwarnings("ignore:Precision loss occurred:RuntimeWarning")
def test_p_value_nan_for_too_few_values_or_no_spread() -> None:
    table = build_table(
        [
            make_record("random", [0.5]),
            make_record("one", [0.9]),
        ]
    )
    assert table["p_value"].isna().all() and not table["significant"].any()
    flat = build_table([make_record("random", [0.5, 0.5]), make_record("flat", [0.7, 0.7])])
    assert math.isnan(row_of(flat, method="flat")["p_value"])
    one_sided = build_table([make_record("random", [0.5, 0.5]), make_record("spread", [0.7, 0.8])])
    assert row_of(one_sided, method="spread")["p_value"] == pytest.approx(
        stats.ttest_ind([0.7, 0.8], [0.5, 0.5], equal_var=False).pvalue
    )


def test_no_random_row_gives_nan_gain() -> None:
    table = build_table([make_record("herding", [0.6, 0.62], ipc=None, fraction=0.3)])
    row = table.iloc[0]
    assert row["budget"] == "fraction=0.3" and row["fraction"] == 0.3 and pd.isna(row["ipc"])
    assert math.isnan(row["gain_vs_random"]) and math.isnan(row["p_value"])


def test_empty_table_has_the_columns() -> None:
    table = build_table([])
    assert table.empty and list(table.columns) == list(leaderboard.TABLE_COLUMNS)


def test_exports_keep_fractions_and_markdown_shows_percent(
    benchmark_records: list[ResultRecord], tmp_path: Path
) -> None:
    table = build_table(benchmark_records)
    csv_table = pd.read_csv(to_csv(table, tmp_path / "board.csv"))
    assert csv_table["mean"].max() <= 1.0
    assert csv_table["mean"].tolist() == pytest.approx(table["mean"].tolist(), abs=1e-12)
    rows = json.loads(to_json(table, tmp_path / "board.json").read_text(encoding="utf-8"))
    assert len(rows) == len(table) and all(0 <= row["mean"] <= 1 for row in rows)
    random_row = next(row for row in rows if row["method"] == "random" and row["budget"] == "ipc=10")
    assert random_row["p_value"] is None
    markdown = to_markdown(table)
    dc = row_of(table, protocol="fast", budget="ipc=10", method="dc")
    assert f"| {100 * dc['mean']:.1f} ± {100 * dc['std']:.1f} |" in markdown
    assert f"| {100 * dc['gain_vs_random']:+.1f} * |" in markdown  # significant gain is marked
    assert "*full*" in markdown and "*random*" in markdown
    # One table per (dataset, protocol, model); the "long" table has no full run and says so.
    sections = markdown.split("### ")[1:]
    assert [section.splitlines()[0] for section in sections] == ["digits · fast · convnet3", "digits · long · convnet3"]
    fast_rows = [line for line in sections[0].splitlines() if line.startswith("| ipc")]
    long_rows = [line for line in sections[1].splitlines() if line.startswith("| ipc")]
    assert len(fast_rows) == 7 and len(long_rows) == 3
    assert long_rows[-1].startswith("| ipc=10 | — | *full* | reference | hard | not run |")
    assert len(markdown.splitlines()[4].split("|")) - 2 == len(leaderboard.table.DISPLAY_COLUMNS)


# ----------------------------------------------------------------------------------------------
# Report and CLI
# ----------------------------------------------------------------------------------------------


def test_render_report_is_offline_and_complete(benchmark_records: list[ResultRecord]) -> None:
    problems = [(Path("records/x/y/bad.json"), "not valid JSON: <oops> & more")]
    html = render_report(benchmark_records, problems, generated_at=datetime(2026, 11, 28, 1, 0, tzinfo=timezone.utc))
    assert_offline(html)
    assert html.startswith("<!DOCTYPE html>")
    assert "<script>" in html and "addEventListener" in html
    for method in ("random", "dc", "herding", "full"):
        assert f">{method}<" in html
    assert html.count('<table class="leaderboard sortable detail">') == 2  # (digits, fast/long, convnet3)
    assert html.count('<table class="leaderboard sortable matrix">') == 1  # only "fast" has two budgets
    assert 'class="random' in html and 'class="reference' in html
    # The "long" table has no full run: a striped placeholder row and a line in the overview.
    assert html.count('<tr class="missing">') == 1 and "no <code>full</code> row" in html
    # fast: accuracy vs budget and vs cost; long has one budget, so only the cost plot.
    assert "Plots · digits · fast" in html and "Plots · digits · long" in html
    assert html.count("<figure>") == 3 and html.count('alt="accuracy against images per class') == 1
    assert "Synthetic sets" not in html and "Cross-architecture" not in html
    assert "bad.json" in html and "&lt;oops&gt; &amp; more" in html
    assert "2026-11-28T01:00:00+00:00" in html
    dc = row_of(build_table(benchmark_records), protocol="fast", budget="ipc=10", method="dc")
    assert f"{100 * dc['mean']:.1f} ± {100 * dc['std']:.1f}" in html


def test_render_report_without_records() -> None:
    html = render_report([], [])
    assert "<script>" in html
    assert_offline(html)
    assert to_markdown(build_table([])).endswith("No records.\n")


def test_cli_writes_all_outputs(
    benchmark_records: list[ResultRecord], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    results_dir = tmp_path / "results"
    for record in benchmark_records:
        write_record(record, results_dir)
    (results_dir / "records" / "digits" / "foreign.json").write_text("{}", encoding="utf-8")
    out_dir = tmp_path / "board"
    # A refused file: the leaderboard is written without it, and the exit says so.
    assert main([str(results_dir), "--out-dir", str(out_dir)]) == 1
    for name in ("leaderboard.csv", "leaderboard.md", "leaderboard.json"):
        assert (out_dir / name).is_file()
    assert (results_dir / "report.html").is_file()
    captured = capsys.readouterr()
    assert "foreign.json" in captured.err and "1 record file(s) refused" in captured.err
    assert "### digits · fast · convnet3" in captured.out and "| Budget |" in captured.out
    assert "report.html" in captured.out

    html_path = tmp_path / "elsewhere" / "page.html"
    written = write_outputs(results_dir, html_path=html_path)
    assert written["html"] == html_path and html_path.is_file()
    assert written["csv"] == results_dir / "leaderboard.csv"


def test_cli_exits_1_on_empty_or_missing_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(tmp_path)]) == 1
    assert "no valid record" in capsys.readouterr().err
    assert main([str(tmp_path / "missing")]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())
    with pytest.raises(leaderboard.NoRecordsError):
        write_outputs(tmp_path)


# ----------------------------------------------------------------------------------------------
# Baseline gaps and display formats
# ----------------------------------------------------------------------------------------------


def test_baseline_gaps_name_every_missing_random_and_full(benchmark_records: list[ResultRecord]) -> None:
    table = build_table(benchmark_records)
    assert baseline_gaps(table) == [BaselineGap("digits", "long", "convnet3", "ipc=10", "full")]
    # A budget without random, under a protocol without full: both are reported, per budget.
    extra = build_table([*benchmark_records, make_record("dc", [0.8, 0.81], ipc=50, family="distillation")])
    fast_gaps = [gap for gap in baseline_gaps(extra) if gap.protocol == "fast"]
    assert fast_gaps == [BaselineGap("digits", "fast", "convnet3", "ipc=50", "random")]
    assert "gains and p-values" in fast_gaps[0].message
    # The full row alone needs no random; an empty table has no gaps.
    assert baseline_gaps(build_table([make_record("full", FULL, family="reference")])) == []
    assert baseline_gaps(build_table([])) == []


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(math.nan, "—"), (0.0, "<1 ms"), (0.25, "250 ms"), (12.34, "12.3 s"), (252, "4.2 min"), (5400, "1.5 h")],
)
def test_format_seconds(seconds: float, text: str) -> None:
    assert leaderboard.table.format_seconds(seconds) == text


# ----------------------------------------------------------------------------------------------
# Plot data (pure functions of the table) and drawing
# ----------------------------------------------------------------------------------------------


def test_budget_curves_and_reference_levels(benchmark_records: list[ResultRecord]) -> None:
    table = build_table(benchmark_records)
    fast = table[table["protocol"] == "fast"]
    curves = plots.budget_curves(fast, "ipc")
    assert list(zip(curves["method"], curves["x"], strict=True)) == [
        ("dc", 1.0),
        ("dc", 10.0),
        ("herding", 10.0),
        ("random", 1.0),
        ("random", 10.0),
    ]
    dc = curves[curves["method"] == "dc"]
    assert dc["mean"].tolist() == pytest.approx([np.mean(DC_1), np.mean(DC_10_SEED0 + DC_10_SEED1)])
    assert dc["std"].tolist() == pytest.approx([np.std(DC_1, ddof=1), np.std(DC_10_SEED0 + DC_10_SEED1, ddof=1)])
    assert plots.budget_curves(fast, "fraction").empty
    levels = plots.reference_levels(fast)
    assert levels["method"].tolist() == ["full"] and levels["mean"].tolist() == pytest.approx([np.mean(FULL)])
    with pytest.raises(ValueError, match="kind"):
        plots.budget_curves(fast, "epochs")


def test_pareto_front() -> None:
    costs = [1.0, 2.0, 3.0, 4.0, 0.5, math.nan, 2.0]
    accuracies = [0.5, 0.7, 0.6, 0.9, 0.4, 0.99, 0.7]
    # 3 (cost 3, 0.6) is beaten by 1 (cost 2, 0.7); 6 ties 1 and comes later; 5 has no cost.
    assert plots.pareto_front(costs, accuracies) == [4, 0, 1, 3]
    assert plots.pareto_front([], []) == []


def test_cost_points_clip_free_methods_and_mark_the_front() -> None:
    costs = {"random": RecordCosts(0.0, 0, 1.0, 10, 10), "cheap": RecordCosts(2.0, 0, 1.0, 10, 10)}
    records = [
        make_record("random", [0.50, 0.52], costs=costs["random"]),
        make_record("cheap", [0.60, 0.62], costs=costs["cheap"]),
        make_record("costly", [0.55, 0.57], costs=RecordCosts(100.0, 0, 1.0, 10, 10)),
        make_record("full", FULL, family="reference", costs=RecordCosts(None, None, 1.0, None, None)),
    ]
    points = plots.cost_points(build_table(records)).set_index("method")
    assert set(points.index) == {"random", "cheap", "costly"}  # the reference is a line, not a point
    assert points.loc["random", "seconds"] == plots.COST_FLOOR_SECONDS
    assert points.loc["costly", "seconds"] == 100.0
    assert points["on_front"].to_dict() == {"cheap": True, "costly": False, "random": True}


def test_heatmap_matrix_orders_methods_by_mean_over_models() -> None:
    records = [
        make_record("random", {"mlp": [0.40, 0.42], "lenet": [0.50, 0.52]}, protocol="cross_arch"),
        make_record("dc", {"mlp": [0.60, 0.62], "lenet": [0.70, 0.72]}, family="distillation", protocol="cross_arch"),
        make_record("mtt", {"mlp": [0.90, 0.92]}, family="distillation", protocol="cross_arch"),
        make_record("full", {"mlp": [0.95, 0.96], "lenet": [0.97, 0.98]}, family="reference", protocol="cross_arch"),
    ]
    table = build_table(records)
    matrix = plots.heatmap_matrix(table[table["budget"] == "ipc=10"])
    assert list(matrix.columns) == ["lenet", "mlp", "mean"]  # table order (alphabetical), then the mean
    assert list(matrix.index) == ["dc", "random", "mtt", "full"]  # mtt lacks lenet: no mean, after those with one
    assert matrix.loc["dc", "mean"] == pytest.approx((0.61 + 0.71) / 2)
    assert matrix.loc["mtt", "mlp"] == pytest.approx(0.91) and math.isnan(matrix.loc["mtt", "lenet"])
    assert math.isnan(matrix.loc["mtt", "mean"])
    png = plots.plot_heatmap(matrix, title="cross_arch")
    assert png.startswith(PNG_SIGNATURE)


def test_method_colors_are_stable_and_distinct() -> None:
    colors = plots.method_colors(["mtt", "random", "dc", "full", "dc"], reference_methods=["full"])
    assert colors == plots.method_colors(["full", "dc", "random", "mtt"], reference_methods=["full"])
    assert colors["random"] != colors["dc"] != colors["mtt"] != colors["full"]
    assert len(set(colors.values())) == 4


def test_plots_render_pngs_and_skip_what_they_cannot_show(benchmark_records: list[ResultRecord]) -> None:
    from PIL import Image

    table = build_table(benchmark_records)
    fast, long = table[table["protocol"] == "fast"], table[table["protocol"] == "long"]
    colors = plots.method_colors(table["method"], ["full"])
    png = plots.plot_accuracy_vs_budget(fast, colors)
    assert png is not None and png.startswith(PNG_SIGNATURE)
    assert Image.open(io.BytesIO(png)).size[0] > 300
    assert plots.plot_accuracy_vs_budget(long, colors) is None  # a single budget: no curve
    assert plots.plot_accuracy_vs_budget(fast, colors, "fraction") is None
    cost_png = plots.plot_accuracy_vs_cost(long, colors)
    assert cost_png is not None and cost_png.startswith(PNG_SIGNATURE)
    assert plots.png_data_uri(b"\x89PNG").startswith("data:image/png;base64,")


# ----------------------------------------------------------------------------------------------
# Image grids of saved sets
# ----------------------------------------------------------------------------------------------

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
DIGITS_MEAN, DIGITS_STD = (0.3,), (0.2,)


def save_set(
    results_dir: Path,
    name: str,
    pixels: torch.Tensor,
    labels: torch.Tensor,
    *,
    mean: tuple[float, ...] = DIGITS_MEAN,
    std: tuple[float, ...] = DIGITS_STD,
    num_classes: int = 10,
) -> str:
    """Save pixels (in [0, 1]) normalized, as the benchmark does; returns the path relative to results_dir."""
    images = (pixels - torch.tensor(mean).view(1, -1, 1, 1)) / torch.tensor(std).view(1, -1, 1, 1)
    synthetic = SyntheticSet(
        images=images.float(),
        labels=labels,
        num_classes=num_classes,
        mean=mean,
        std=std,
        budget=Budget(ipc=1),
        learned_lr=None,
        extras={},
        provenance={},
    )
    relative = f"sets/digits/{name}.safetensors"
    synthetic.save(results_dir / relative)
    return relative


def class_pixels(num_classes: int, per_class: int, size: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """One-channel images encoding (class, index): uniform grey ``(c + 1) / 20``, ``index / 100`` at (0, 0)."""
    labels = torch.arange(num_classes).repeat_interleave(per_class)
    pixels = ((labels.float() + 1) / 20).view(-1, 1, 1, 1).repeat(1, 1, size, size)
    pixels[:, 0, 0, 0] = torch.arange(per_class).repeat(num_classes).float() / 100
    return pixels, labels


def test_read_set_preview_denormalizes_and_caps_classes_and_images(tmp_path: Path) -> None:
    pixels, labels = class_pixels(12, 12)
    path = tmp_path / save_set(tmp_path, "big", pixels, labels, num_classes=12)
    preview = grids.read_set_preview(path)
    assert preview.classes == list(range(10)) and preview.num_classes == 12 and preview.num_images == 144
    assert [len(row) for row in preview.images] == [10] * 10 and not preview.soft_labels
    third = preview.images[3][7]
    assert third.shape == (8, 8, 1)
    assert third[4, 4, 0] == pytest.approx(4 / 20, abs=1e-6)  # class 3 -> grey (3 + 1) / 20, denormalized
    assert third[0, 0, 0] == pytest.approx(0.07, abs=1e-6)  # the 8th image of its class
    small = grids.read_set_preview(path, max_classes=2, max_per_class=3)
    assert small.classes == [0, 1] and [len(row) for row in small.images] == [3, 3]


def test_read_set_preview_soft_labels_and_rgb(tmp_path: Path) -> None:
    pixels = torch.rand(6, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    soft = torch.full((6, 4), 0.1)
    soft[torch.arange(6), torch.tensor([2, 2, 0, 3, 3, 3])] = 0.7
    mean, std = (0.5, 0.4, 0.3), (0.25, 0.2, 0.3)
    path = tmp_path / save_set(tmp_path, "soft", pixels, soft, mean=mean, std=std, num_classes=4)
    preview = grids.read_set_preview(path)
    assert preview.soft_labels and preview.classes == [0, 2, 3] and preview.num_classes == 4
    assert [len(row) for row in preview.images] == [1, 2, 3]
    assert preview.images[0][0] == pytest.approx(pixels[2].permute(1, 2, 0).numpy(), abs=1e-6)


def test_grid_png_layout_and_pixels(tmp_path: Path) -> None:
    from PIL import Image

    assert [grids.tile_size(side, side) for side in (8, 28, 32, 64, 128)] == [32, 56, 32, 64, 64]
    pixels, labels = class_pixels(3, 2)
    preview = grids.read_set_preview(tmp_path / save_set(tmp_path, "small", pixels, labels, num_classes=3))
    image = Image.open(io.BytesIO(grids.grid_png(preview))).convert("L")
    tile, gap, label = 32, 2, 22
    assert image.size == (label + 2 * (tile + gap), 3 * (tile + gap) + gap)
    for class_id in range(3):
        centre = (label + tile // 2, gap + class_id * (tile + gap) + tile // 2)
        assert abs(image.getpixel(centre) - 255 * (class_id + 1) / 20) <= 1  # float32 round trip
    with pytest.raises(ValueError, match="no images"):
        grids.grid_png(grids.SetPreview([], [], 0, 0, False))


def test_synthetic_set_grids_skip_bad_files_with_a_note(tmp_path: Path) -> None:
    from safetensors.numpy import save_file

    pixels, labels = class_pixels(10, 1)
    good = save_set(tmp_path, "good", pixels, labels)
    (tmp_path / "sets" / "digits" / "corrupt.safetensors").write_bytes(b"not a safetensors file")
    save_file({"images": np.zeros((1, 1, 8, 8), np.float32)}, str(tmp_path / "sets" / "digits" / "foreign.safetensors"))
    records = [
        make_record("dc", [0.8, 0.82], family="distillation", set_path=good),
        # seed 0 lost its file; seed 1 is shown instead, without a note
        make_record("herding", [0.6, 0.61], seed=0, set_path="sets/digits/gone.safetensors"),
        make_record("herding", [0.6, 0.62], seed=1, set_path=good),
        make_record("missing", [0.5, 0.51], set_path="sets/digits/gone.safetensors"),
        make_record("corrupt", [0.5, 0.51], set_path="sets/digits/corrupt.safetensors"),
        make_record("foreign", [0.5, 0.51], set_path="sets/digits/foreign.safetensors"),
        # A record cannot name a path outside (RecordError); a link inside may point outside.
        make_record("escape", [0.5, 0.51], set_path="sets/digits/link.safetensors"),
        make_record("unsaved", [0.5, 0.51]),
        make_record("full", FULL, family="reference"),
        make_record("mirage", [0.7, 0.71], dataset="mutag", fraction=0.05, ipc=None, set_path="sets/mutag/m.graphset"),
    ]
    (tmp_path.parent / "outside.safetensors").write_bytes(b"x")
    (tmp_path / "sets" / "digits" / "link.safetensors").symlink_to(tmp_path.parent / "outside.safetensors")
    with pytest.raises(RecordError, match="inside the results folder"):
        make_record("escape", [0.5, 0.51], set_path="../outside.safetensors")
    found, notes = grids.synthetic_set_grids(records, tmp_path)
    assert [(grid.method, grid.budget, grid.seed) for grid in found] == [("dc", "ipc=10", 0), ("herding", "ipc=10", 1)]
    assert found[0].png.startswith(PNG_SIGNATURE) and found[0].num_images == 10 and found[0].classes_shown == 10
    reasons = {note.method: note.message for note in notes}
    # full: no set; mirage: a graph set, no image: neither gets a note
    assert set(reasons) == {"missing", "corrupt", "foreign", "escape", "unsaved"}
    assert reasons["missing"] == "sets/digits/gone.safetensors: file missing"
    assert reasons["corrupt"].startswith("sets/digits/corrupt.safetensors: unreadable (")
    assert "condense_bench" in reasons["foreign"]
    assert "outside the results folder" in reasons["escape"]
    assert "no saved set" in reasons["unsaved"]


# ----------------------------------------------------------------------------------------------
# The report with plots, heatmaps and grids
# ----------------------------------------------------------------------------------------------


def test_render_report_with_results_dir_shows_grids_heatmaps_and_notes(tmp_path: Path) -> None:
    pixels, labels = class_pixels(10, 2)
    good = save_set(tmp_path, "good", pixels, labels)
    records = [
        make_record("random", [0.50, 0.55, 0.60], set_path=good),
        make_record("dc", [0.70, 0.72], family="distillation", ipc=1, set_path="sets/digits/gone.safetensors"),
        make_record("random", [0.30, 0.35], ipc=1, set_path=good),
        make_record("full", FULL, family="reference"),
        make_record(
            "dc",
            {"mlp": [0.6, 0.62], "lenet": [0.7, 0.71]},
            family="distillation",
            protocol="cross_arch",
        ),
        make_record("random", {"mlp": [0.4, 0.42], "lenet": [0.5, 0.52]}, protocol="cross_arch"),
    ]
    problems = [(Path("records/digits/x.json"), "not a condense-bench record: 'schema' is 'https://example.org'")]
    html = render_report(records, problems, results_dir=tmp_path)
    assert_offline(html)
    assert "https[:]//example.org" in html  # a URL from record text is shown defanged
    assert html.count('class="grid-card"') == 2  # random at ipc=1 and ipc=10; dc's file is gone
    assert "Sets not shown" in html and "sets/digits/gone.safetensors: file missing" in html
    assert "Cross-architecture · digits · cross_arch" in html and "Cross-architecture · digits · fast" not in html
    assert html.count('alt="accuracy per method and evaluation model') == 1
    # the old call (no results folder) still works and simply has no grids
    assert 'class="grid-card"' not in render_report(records, problems)


def test_write_outputs_report_has_grids(tmp_path: Path) -> None:
    pixels, labels = class_pixels(10, 1)
    record = make_record("random", [0.5, 0.55], ipc=1, set_path=save_set(tmp_path, "set", pixels, labels))
    write_record(record, tmp_path)
    html = write_outputs(tmp_path)["html"].read_text(encoding="utf-8")
    assert html.count('class="grid-card"') == 1 and f"condense-report {tmp_path}" in html
