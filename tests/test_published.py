"""Tests of the published-results table and the reproduction view (table, report section, Markdown)."""

from __future__ import annotations

import csv
import math
import re
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import leaderboard
from leaderboard import ResultRecord, render_report, write_outputs, write_record
from leaderboard.published import (
    LABEL_REGIMES,
    METRICS,
    PUBLISHED_COLUMNS,
    PUBLISHED_KEY,
    PublishedTableError,
    published_cells_elsewhere,
    published_results,
    reproduction_table,
)
from leaderboard.reproduction import reproduction_markdown
from tests.record_factory import make_record as make_any_record
from tests.record_factory import row_of as only_row

REQUIRED_METHODS = (
    "dc",
    "dsa",
    "dm",
    "idm",
    "datadam",
    "mtt",
    "ftd",
    "datm",
    "sre2l",
    "cda",
    "rded",
    "infer",
    "mirage",
)
SOFT_LABEL_METHODS = ("datm", "sre2l", "cda", "rded", "infer")


def make_record(
    method: str,
    accuracies: dict[str, list[float]] | list[float],
    *,
    dataset: str = "cifar10",
    family: str = "distillation",
    protocol: str = "classic",
    protocol_config: dict[str, Any] | None = None,
    **options: Any,
) -> ResultRecord:
    """A valid CIFAR-10 distillation record under ``classic`` (see :func:`tests.record_factory.make_record`)."""
    return make_any_record(
        method,
        accuracies,
        dataset=dataset,
        family=family,
        protocol=protocol,
        protocol_config=protocol_config or {"description": f"the {protocol} recipe"},
        **options,
    )


def published_row(**values: Any) -> dict[str, str]:
    """A valid CSV row (strings) of the published table; ``values`` override the defaults."""
    row = {
        "method": "dm",
        "dataset": "cifar10",
        "ipc": "10",
        "fraction": "",
        "model": "convnet3",
        "metric": "accuracy",
        "accuracy": "0.5",
        "std": "0.01",
        "label_regime": "hard",
        "evaluation_notes": "ConvNet-3, DSA, 1000 epochs",
        "source": "Test paper Table 1",
        "provenance": "primary",
    }
    row.update({key: str(value) for key, value in values.items()})
    return row


def write_published(path: Path, rows: list[dict[str, str]], columns: tuple[str, ...] = PUBLISHED_COLUMNS) -> Path:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(columns), lineterminator="\n", extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return path


# ----------------------------------------------------------------------------------------------
# The shipped table
# ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shipped() -> pd.DataFrame:
    return published_results()


def test_shipped_table_covers_the_methods(shipped: pd.DataFrame) -> None:
    assert len(shipped) >= 60
    assert list(shipped.columns) == list(PUBLISHED_COLUMNS)
    assert set(REQUIRED_METHODS) <= set(shipped["method"])
    assert {"random", "full", "herding", "kcenter", "forgetting"} <= set(shipped["method"])
    # Every method is reported on the datasets its paper covers.
    datasets_of = shipped.groupby("method")["dataset"].agg(set)
    assert {"mnist", "fashion_mnist", "svhn", "cifar10", "cifar100"} <= datasets_of["dc"]
    assert {"mnist", "fashion_mnist", "svhn", "cifar10", "cifar100"} <= datasets_of["dsa"]
    assert {"cifar10", "cifar100", "tiny_imagenet"} <= datasets_of["mtt"] & datasets_of["datm"] & datasets_of["idm"]
    assert {"tiny_imagenet", "imagenet1k"} <= datasets_of["sre2l"] & datasets_of["cda"] & datasets_of["rded"]


def test_shipped_table_values_are_fractions_with_known_vocabularies(shipped: pd.DataFrame) -> None:
    assert shipped["accuracy"].between(0.0, 1.0).all()
    assert (shipped["std"].isna() | shipped["std"].between(0.0, 1.0)).all()
    assert set(shipped["label_regime"]) <= set(LABEL_REGIMES)
    assert set(shipped["metric"]) <= set(METRICS)
    assert not shipped.duplicated(list(PUBLISHED_KEY)).any()
    assert str(shipped["ipc"].dtype) == "Int64" and (shipped["ipc"].dropna() >= 1).all()
    assert not (shipped["ipc"].notna() & shipped["fraction"].notna()).any()
    assert (shipped["evaluation_notes"].str.len() > 0).all() and (shipped["source"].str.len() > 0).all()
    # Soft-label methods are recorded as such; ROC-AUC only where graph papers report it.
    assert (shipped.loc[shipped["method"].isin(SOFT_LABEL_METHODS), "label_regime"] == "soft").all()
    assert set(shipped.loc[shipped["metric"] == "roc_auc", "method"]) <= {"mirage", "random_graphs", "full_graphs"}


@pytest.mark.parametrize(
    ("where", "accuracy", "std"),
    [
        (
            {
                "method": "dc",
                "dataset": "cifar10",
                "ipc": 10,
                "source": "DC (ICLR 2021): VICO-UoE/DatasetCondensation README Table 1 (means), KIP Table 1 (stds)",
            },
            0.449,
            0.005,
        ),
        ({"method": "dm", "dataset": "tiny_imagenet", "ipc": 50, "model": "convnetd4"}, 0.241, 0.003),
        ({"method": "datm", "dataset": "cifar100", "ipc": 100}, 0.575, 0.002),
        (
            {
                "method": "infer",
                "dataset": "cifar100",
                "ipc": 10,
                "model": "resnet18_modified",
                "source": "INFER (ICLR 2025) Table 1 (zhangxin-xd/UFC imgs/results1.png)",
            },
            0.452,
            0.0004,
        ),
        ({"method": "mirage", "dataset": "dd", "model": "gat"}, 0.7608, 0.0063),
        ({"method": "cda", "dataset": "imagenet1k", "ipc": 200, "model": "resnet101"}, 0.684, math.nan),
    ],
)
def test_shipped_table_golden_values(shipped: pd.DataFrame, where: dict[str, Any], accuracy: float, std: float) -> None:
    row = only_row(shipped, **where)
    assert row["accuracy"] == pytest.approx(accuracy, abs=1e-12)
    assert (math.isnan(std) and math.isnan(row["std"])) or row["std"] == pytest.approx(std, abs=1e-12)


def test_loader_reads_a_table_from_a_path(tmp_path: Path) -> None:
    path = write_published(tmp_path / "table.csv", [published_row(), published_row(ipc="", fraction="0.3", std="")])
    table = published_results(path)
    assert len(table) == 2 and table.loc[0, "ipc"] == 10 and pd.isna(table.loc[1, "ipc"])
    assert table.loc[1, "fraction"] == 0.3 and math.isnan(table.loc[1, "std"])
    # An empty metric is accuracy.
    assert published_results(write_published(tmp_path / "m.csv", [published_row(metric="")]))["metric"][0] == "accuracy"


@pytest.mark.parametrize(
    ("rows", "columns", "message"),
    [
        ([published_row(accuracy="91.7")], PUBLISHED_COLUMNS, r"accuracy.*not in \[0, 1\].*fractions, not percent"),
        ([published_row(std="-0.1")], PUBLISHED_COLUMNS, r"'std'.*not in \[0, 1\]"),
        ([published_row(accuracy="")], PUBLISHED_COLUMNS, r"'accuracy': is empty"),
        ([published_row(accuracy="high")], PUBLISHED_COLUMNS, r"'high' is not a number"),
        ([published_row(accuracy="nan")], PUBLISHED_COLUMNS, r"not in \[0, 1\]"),
        ([published_row(label_regime="soft-ish")], PUBLISHED_COLUMNS, r"label_regime.*'soft-ish' is not one of"),
        ([published_row(metric="f1")], PUBLISHED_COLUMNS, r"metric.*'f1' is not one of"),
        ([published_row(provenance="")], PUBLISHED_COLUMNS, r"provenance.*not one of"),
        ([published_row(ipc="1.5")], PUBLISHED_COLUMNS, r"'ipc'.*not a positive integer"),
        ([published_row(ipc="0")], PUBLISHED_COLUMNS, r"'ipc'.*not a positive integer"),
        ([published_row(fraction="0.3")], PUBLISHED_COLUMNS, r"one budget, ipc or fraction"),
        ([published_row(ipc="", fraction="0")], PUBLISHED_COLUMNS, r"not a kept share"),
        ([published_row(method="DM")], PUBLISHED_COLUMNS, r"'method'.*not a lowercase registry name"),
        ([published_row(source="")], PUBLISHED_COLUMNS, r"'source': is empty"),
        ([published_row(), published_row(std="0.02")], PUBLISHED_COLUMNS, r"line 3 repeats line 2"),
        ([published_row()], tuple(c for c in PUBLISHED_COLUMNS if c != "model"), r"missing \['model'\]"),
        ([published_row()], (*PUBLISHED_COLUMNS, "comment"), r"unknown \['comment'\]"),
        ([], PUBLISHED_COLUMNS, r"only a header"),
    ],
)
def test_malformed_table_is_refused(
    tmp_path: Path, rows: list[dict[str, str]], columns: tuple[str, ...], message: str
) -> None:
    path = write_published(tmp_path / "bad.csv", rows, columns)
    with pytest.raises(PublishedTableError, match=message) as raised:
        published_results(path)
    assert str(raised.value).startswith(str(path))


def test_ragged_binary_and_missing_files_are_refused(tmp_path: Path) -> None:
    good = write_published(tmp_path / "good.csv", [published_row()]).read_text(encoding="utf-8")
    ragged = tmp_path / "ragged.csv"
    ragged.write_text(good.rstrip("\n") + ",extra\n", encoding="utf-8")
    with pytest.raises(PublishedTableError, match="does not have the 12 fields"):
        published_results(ragged)
    binary = tmp_path / "binary.csv"
    binary.write_bytes(b"\xff\xfe" + good.encode("utf-16-le"))
    with pytest.raises(PublishedTableError, match="not UTF-8"):
        published_results(binary)
    with pytest.raises(FileNotFoundError):
        published_results(tmp_path / "absent.csv")


# ----------------------------------------------------------------------------------------------
# The reproduction table
# ----------------------------------------------------------------------------------------------


@pytest.fixture
def published(tmp_path: Path) -> pd.DataFrame:
    rows = [
        published_row(method="dm", accuracy="0.50", std="0.01"),  # below
        published_row(method="dsa", accuracy="0.50", std="0.01"),  # within noise (two seeds)
        published_row(method="mtt", accuracy="0.65", std="0.007"),  # not run
        published_row(method="idm", accuracy="0.60", std=""),  # no published std: within noise
        published_row(method="datadam", accuracy="0.30", std=""),  # no std at all: above
        published_row(method="sre2l", model="resnet18_modified", accuracy="0.30", std="0.005", label_regime="soft"),
        published_row(method="rded", model="resnet101", accuracy="0.20", std="", label_regime="soft"),
        published_row(method="dm", dataset="cifar100", accuracy="0.29", std="0.003"),  # another dataset
        published_row(method="full", ipc="", model="convnet3", accuracy="0.848", std="0.001"),
    ]
    return published_results(write_published(tmp_path / "published.csv", rows))


@pytest.fixture
def records() -> list[ResultRecord]:
    soft = {"description": "teacher labels", "soft": {"label_source": "online"}}
    return [
        make_record("dm", [0.44, 0.46]),
        make_record("dsa", [0.49], seed=0),
        make_record("dsa", [0.51], seed=1),
        make_record("idm", [0.61, 0.63]),
        make_record("datadam", [0.35]),
        make_record("sre2l", {"resnet18_bn": [0.31, 0.29]}, protocol="soft", protocol_config=soft),
        make_record("rded", {"convnet3": [0.2]}, protocol="soft_hard", label_type="hard"),
        make_record("full", [0.85, 0.84], family="reference"),
        # Another budget of a published method: not the published cell.
        make_record("mtt", [0.4], ipc=1),
    ]


def test_reproduction_gaps_and_verdicts_are_exact(published: pd.DataFrame, records: list[ResultRecord]) -> None:
    table = reproduction_table(records, published)
    dm = only_row(table, method="dm")
    assert dm["measured"] == pytest.approx(0.45, abs=1e-12)
    assert dm["gap_points"] == pytest.approx(-5.0, abs=1e-9)
    assert dm["noise_points"] == pytest.approx(2 * math.sqrt(1.0**2 + (100 * math.sqrt(2e-4)) ** 2), abs=1e-9)
    assert dm["verdict"] == "below" and dm["runs"] == 2 and dm["seeds"] == 1

    dsa = only_row(table, method="dsa")
    assert dsa["measured"] == pytest.approx(0.50, abs=1e-12) and dsa["gap_points"] == pytest.approx(0.0, abs=1e-9)
    assert dsa["verdict"] == "within noise" and dsa["seeds"] == 2 and dsa["runs"] == 2

    mtt = only_row(table, method="mtt")
    assert mtt["verdict"] == "not run" and math.isnan(mtt["measured"]) and pd.isna(mtt["protocol"])

    # Only the measured std: 2 * 1.414 = 2.83 points against a +2.0 gap.
    idm = only_row(table, method="idm")
    assert idm["gap_points"] == pytest.approx(2.0, abs=1e-9)
    assert idm["noise_points"] == pytest.approx(2 * 100 * math.sqrt(2e-4), abs=1e-9)
    assert idm["verdict"] == "within noise"
    # Neither std: any gap is outside the noise.
    datadam = only_row(table, method="datadam")
    assert datadam["noise_points"] == 0.0 and datadam["gap_points"] == pytest.approx(5.0, abs=1e-9)
    assert datadam["verdict"] == "above"

    full = only_row(table, method="full")
    assert full["budget"] == "full" and full["measured_budget"] == "full"
    assert full["gap_points"] == pytest.approx(-0.3, abs=1e-9) and full["verdict"] == "within noise"


def test_reproduction_states_model_label_and_protocol_differences(
    published: pd.DataFrame, records: list[ResultRecord]
) -> None:
    table = reproduction_table(records, published)
    sre2l = only_row(table, method="sre2l")
    assert sre2l["measured_model"] == "resnet18_bn" and sre2l["measured_label_regime"] == "soft"
    assert sre2l["differences"] == "model: published resnet18_modified is the suite's resnet18_bn"
    assert sre2l["verdict"] == "within noise"
    rded = only_row(table, method="rded")
    assert rded["measured_model"] == "convnet3"
    assert "model: published resnet101, measured convnet3" in rded["differences"]
    assert "labels: published soft, measured hard" in rded["differences"]
    dm = only_row(table, method="dm")
    assert dm["differences"] == "" and dm["measured_protocol"] == "classic: the classic recipe"
    assert dm["evaluation_notes"] == "ConvNet-3, DSA, 1000 epochs"


def test_reproduction_scope_and_protocols(published: pd.DataFrame, records: list[ResultRecord]) -> None:
    in_scope = reproduction_table(records, published)
    assert set(in_scope["dataset"]) == {"cifar10"} and len(in_scope) == 8
    everything = reproduction_table(records, published, all_datasets=True)
    assert only_row(everything, dataset="cifar100")["verdict"] == "not run"
    assert published_cells_elsewhere(records, published).to_dict() == {"cifar100": 1}
    # A cell measured under two protocols is compared once per protocol.
    twice = reproduction_table([*records, make_record("dm", [0.50], protocol="fast")], published)
    assert list(twice.loc[twice["method"] == "dm", "protocol"]) == ["classic", "fast"]
    assert reproduction_table([], published).empty


def test_reproduction_of_graph_rows_uses_roc_auc(tmp_path: Path) -> None:
    rows = [
        published_row(method="mirage", dataset="mutag", ipc="", model="gcn", metric="roc_auc", accuracy="0.8", std=""),
        published_row(method="mirage", dataset="mutag", ipc="", model="gin", metric="roc_auc", accuracy="0.8", std=""),
    ]
    published = published_results(write_published(tmp_path / "graphs.csv", rows))
    record = make_record(
        "mirage",
        {"gcn": [0.70, 0.72], "gin": [0.75]},
        dataset="mutag",
        ipc=None,
        fraction=0.05,
        protocol="graph",
        roc_auc={"gcn": [0.80, 0.84]},
    )
    table = reproduction_table([record], published)
    gcn = only_row(table, model="gcn")
    assert gcn["measured"] == pytest.approx(0.82, abs=1e-12) and gcn["gap_points"] == pytest.approx(2.0, abs=1e-9)
    assert "budget: unstated in the source, measured at fraction=0.05" in gcn["differences"]
    gin = only_row(table, model="gin")
    assert gin["verdict"] == "not measured" and "no roc_auc" in gin["differences"]


# ----------------------------------------------------------------------------------------------
# Report section and Markdown
# ----------------------------------------------------------------------------------------------


def shipped_records() -> list[ResultRecord]:
    """Records on cifar10 that meet shipped rows: DM ipc=10 is published at 48.9 ± 0.6 (FTD/DATM tables)."""
    return [
        make_record("dm", [0.44, 0.46]),
        make_record("random", [0.30, 0.32], family="selection"),
        make_record("full", [0.84], family="reference"),
    ]


def test_report_has_the_reproduction_section() -> None:
    html = render_report(shipped_records(), [])
    assert '<section id="reproduction">' in html and '<a href="#reproduction">Reproduction</a>' in html
    section = html[html.index('<section id="reproduction">') :]
    section = section[: section.index("</section>")]
    assert "<h3>cifar10</h3>" in section and "<h3>cifar100</h3>" not in section
    assert "48.9 ± 0.6" in section and "45.0 ± 1.4" in section and "-3.9" in section and ">below<" in section
    assert 'class="missing"' in section and ">not run<" in section
    elsewhere = published_cells_elsewhere(shipped_records())
    assert f"{int(elsewhere.sum())} published cell(s) on other datasets" in section
    assert not re.search(r"(?i)https?://", html)
    # Skipped files stay the last section.
    assert html.index('id="reproduction"') < html.index('id="skipped-files"')
    assert 'id="reproduction"' not in render_report([], [])


def test_markdown_leaderboard_ends_with_the_reproduction_table(tmp_path: Path) -> None:
    results_dir = tmp_path / "results"
    for record in shipped_records():
        write_record(record, results_dir)
    written = write_outputs(results_dir)
    markdown = Path(written["markdown"]).read_text(encoding="utf-8")
    assert markdown.index("### cifar10 · classic · convnet3") < markdown.index("## Reproduction")
    reproduction = markdown[markdown.index("## Reproduction") :]
    assert "| Method | Budget | Model | Labels | Published (%) | Evaluation | Measured (%) | Gap (pp) |" in reproduction
    dm_line = re.search(
        r"\| dm \| ipc=10 \| convnet3 \| hard \| 48\.9 ± 0\.6 \| \[(\d+)\] \| 45\.0 ± 1\.4 \| -3\.9 \| .* \| below \|",
        reproduction,
    )
    assert dm_line is not None
    # The DM row's numbered evaluation and the measured protocol are listed under the table.
    note = only_row(published_results(), method="dm", dataset="cifar10", ipc=10)["evaluation_notes"]
    assert f"- [{dm_line.group(1)}] {note}" in reproduction
    assert "- classic: the classic recipe" in reproduction
    assert "*not run*" in reproduction and "### cifar100" not in reproduction
    assert "published cell(s) on other datasets, not run" in reproduction
    assert "reproduction_table(records, all_datasets=True)" in reproduction


def test_markdown_of_records_without_published_numbers_is_short() -> None:
    text = reproduction_markdown([make_record("dm", [0.5], dataset="digits")])
    assert "No published result on the datasets of these records." in text
    assert text.count("\n|") == 0
    assert f"{len(published_results())} published cell(s) on other datasets" in text


def test_package_exports() -> None:
    assert leaderboard.published_results is published_results
    assert leaderboard.reproduction_table is reproduction_table
    assert {"published_results", "reproduction_table"} <= set(leaderboard.__all__)
