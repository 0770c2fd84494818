"""The reproduction view of the report and of the Markdown leaderboard.

Both show :func:`~leaderboard.published.reproduction_table` restricted to the datasets the records
cover, one table per dataset followed by the numbered published evaluations and the protocols the
cells were measured under, and count the published cells on other datasets (all still to run)
instead of listing them; the library call with ``all_datasets=True`` gives the whole to-do list.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
from markupsafe import Markup

from leaderboard._context import ReportContext, ReportSection
from leaderboard._templates import render_table, render_template, table_cell
from leaderboard.published import (
    ABOVE,
    BELOW,
    NOT_MEASURED,
    NOT_RUN,
    VERDICTS,
    WITHIN_NOISE,
    published_cells_elsewhere,
    published_results,
    reproduction_table,
)
from leaderboard.records import ResultRecord
from leaderboard.table import format_accuracy, is_missing

NOISE_RULE = (
    "within noise when |gap| ≤ 2·√(std_published² + std_measured²), stds in points over all runs "
    "(a std the source does not give counts as 0)."
)
_COLUMNS = {
    "method": "Method",
    "budget": "Budget",
    "model": "Model",
    "label_regime": "Labels",
    "published": "Published (%)",
    "evaluation": "Evaluation",
    "measured": "Measured (%)",
    "gap": "Gap (pp)",
    "noise": "Noise (pp)",
    "verdict": "Verdict",
    "protocol": "Protocol",
    "differences": "Differences",
    "source": "Source",
}
_HEADER_HELP = {
    "Published (%)": "The source's number (mean ± std where given); hover for its evaluation",
    "Evaluation": "The source's evaluation, numbered in the list under the table",
    "Measured (%)": "Mean ± sample std over all evaluation runs of all seeds of the matching model",
    "Gap (pp)": "Measured minus published, percentage points",
    "Noise (pp)": "2·√(std_published² + std_measured²): a gap within it is within noise",
    "Verdict": "within noise, below or above the published number; not run: no record yet",
    "Protocol": "The suite protocol of the measured cell; hover for its recipe",
    "Differences": "Model, label and budget differences beyond the protocol",
    "Source": "Paper and table; hover for how the number was verified",
}
_TEXT_COLUMNS = frozenset(
    {"method", "budget", "model", "label_regime", "evaluation", "verdict", "protocol", "differences", "source"}
)
_MISSING_TEXT = "—"


# ----------------------------------------------------------------------------------------------
# Shared by both views
# ----------------------------------------------------------------------------------------------


def _percent(value: float, std: float) -> str:
    """A fraction and its std as percent: ``"50.0 ± 1.0"``, or ``"50.0"`` without a std."""
    if is_missing(value):
        return _MISSING_TEXT
    return f"{100 * value:.1f}" if is_missing(std) else format_accuracy(value, std)


def _points(value: float, *, signed: bool) -> str:
    if is_missing(value):
        return _MISSING_TEXT
    return f"{value:+.1f}" if signed else f"{value:.1f}"


def _model_text(row: pd.Series) -> str:
    """The published model, the measured one where it differs, and the metric where it is not accuracy."""
    text = str(row["model"])
    if not is_missing(row["measured_model"]) and row["measured_model"] != row["model"]:
        text += f" → {row['measured_model']}"
    return text if row["metric"] == "accuracy" else f"{text} · ROC-AUC"


@dataclass(frozen=True)
class _DatasetView:
    """One dataset's rows, its published evaluations (numbered in order) and its measured protocols."""

    dataset: str
    rows: pd.DataFrame
    notes: tuple[str, ...]
    protocols: tuple[str, ...]

    @classmethod
    def of(cls, dataset: str, rows: pd.DataFrame) -> _DatasetView:
        notes = tuple(dict.fromkeys(rows["evaluation_notes"]))
        protocols = tuple(dict.fromkeys(rows["measured_protocol"].dropna()))
        return cls(dataset, rows, notes, protocols)

    def note_number(self, row: pd.Series) -> int:
        return self.notes.index(row["evaluation_notes"]) + 1

    def cells(self, row: pd.Series) -> dict[str, str]:
        """The display text of one row, keyed like :data:`_COLUMNS`."""
        return {
            "method": str(row["method"]),
            "budget": str(row["budget"]),
            "model": _model_text(row),
            "label_regime": str(row["label_regime"]),
            "published": _percent(row["published"], row["published_std"]),
            "evaluation": f"[{self.note_number(row)}]",
            "measured": NOT_RUN if row["verdict"] == NOT_RUN else _percent(row["measured"], row["measured_std"]),
            "gap": _points(row["gap_points"], signed=True),
            "noise": _points(row["noise_points"], signed=False),
            "verdict": str(row["verdict"]),
            "protocol": _MISSING_TEXT if is_missing(row["protocol"]) else str(row["protocol"]),
            "differences": str(row["differences"]) or _MISSING_TEXT,
            "source": str(row["source"]),
        }


def _dataset_views(table: pd.DataFrame) -> list[_DatasetView]:
    return [_DatasetView.of(str(dataset), rows) for dataset, rows in table.groupby("dataset", sort=False)]


def _verdict_counts(table: pd.DataFrame) -> list[tuple[str, int]]:
    counts = table["verdict"].value_counts()
    return [(verdict, int(counts[verdict])) for verdict in VERDICTS if verdict in counts]


def _in_scope(records: Sequence[ResultRecord]) -> tuple[pd.DataFrame, pd.Series]:
    """The reproduction rows on the records' datasets, and the published cells elsewhere per dataset."""
    published = published_results()
    return reproduction_table(records, published), published_cells_elsewhere(records, published)


# ----------------------------------------------------------------------------------------------
# Markdown
# ----------------------------------------------------------------------------------------------


def reproduction_markdown(records: Iterable[ResultRecord]) -> str:
    """The ``## Reproduction`` part of the Markdown leaderboard.

    One table per dataset the records cover (every published number there, measured or ``not
    run``) with its numbered published evaluations and measured protocols, then how many
    published cells lie on other datasets. Accuracies in percent.
    """
    table, elsewhere = _in_scope(list(records))
    lines = [
        "## Reproduction",
        "",
        "Published numbers beside the measured cells on the datasets of these records. Gap = measured − "
        f"published, in percentage points; {NOISE_RULE} Each source's evaluation differs from the suite's "
        "protocols: see the numbered evaluations under each table.",
        "",
    ]
    if table.empty:
        lines += ["No published result on the datasets of these records.", ""]
    else:
        lines += [", ".join(f"{count} {verdict}" for verdict, count in _verdict_counts(table)) + ".", ""]
    for view in _dataset_views(table):
        lines += [f"### {view.dataset}", "", _markdown_line(list(_COLUMNS.values()))]
        lines.append(_markdown_line(["---" if key in _TEXT_COLUMNS else "---:" for key in _COLUMNS]))
        for _, row in view.rows.iterrows():
            cells = view.cells(row)
            if row["verdict"] == NOT_RUN:
                cells["measured"] = f"*{NOT_RUN}*"
            lines.append(_markdown_line([cells[key] for key in _COLUMNS]))
        lines += ["", "Published evaluations:", ""]
        lines += [f"- [{number}] {note}" for number, note in enumerate(view.notes, start=1)]
        if view.protocols:
            lines += ["", "Measured under:", ""]
            lines += [f"- {protocol}" for protocol in view.protocols]
        lines.append("")
    if len(elsewhere):
        listing = ", ".join(f"{dataset} ({count})" for dataset, count in elsewhere.items())
        lines += [
            f"{int(elsewhere.sum())} published cell(s) on other datasets, not run: {listing}. "
            "`leaderboard.reproduction_table(records, all_datasets=True)` lists them all.",
            "",
        ]
    return "\n".join(lines)


def _markdown_line(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"


# ----------------------------------------------------------------------------------------------
# HTML
# ----------------------------------------------------------------------------------------------


def reproduction_section(context: ReportContext) -> list[ReportSection]:
    """The "Reproduction" section: published against measured, per dataset; not-run cells striped."""
    if not context.records:
        return []
    table, elsewhere = _in_scope(context.records)
    datasets = [
        {
            "name": view.dataset,
            "table": _html_table(view),
            "notes": list(enumerate(view.notes, start=1)),
            "protocols": list(view.protocols),
        }
        for view in _dataset_views(table)
    ]
    body = render_template(
        "reproduction.html.j2",
        counts=_verdict_counts(table) if len(table) else [],
        not_run=int((table["verdict"] == NOT_RUN).sum()),
        datasets=datasets,
        elsewhere=[(str(dataset), int(count)) for dataset, count in elsewhere.items()],
        elsewhere_total=int(elsewhere.sum()),
        rule=NOISE_RULE,
    )
    return [ReportSection(anchor="reproduction", title="Reproduction", body=body)]


def _html_table(view: _DatasetView) -> Markup:
    """A sortable table of one dataset's rows; not-run and not-measured rows are striped."""
    rows = []
    for _, row in view.rows.iterrows():
        cells = view.cells(row)
        verdict = row["verdict"]
        direction = {BELOW: " down", ABOVE: " up"}.get(verdict, "")
        notes = str(row["evaluation_notes"])
        measured_protocol = "" if is_missing(row["measured_protocol"]) else str(row["measured_protocol"])
        html_cells = [
            table_cell(cells["method"], sort_value=cells["method"], css_class="method"),
            table_cell(cells["budget"], sort_value=_sort_number(row["ipc"]) or _sort_number(row["fraction"])),
            table_cell(cells["model"], sort_value=cells["model"]),
            table_cell(cells["label_regime"]),
            table_cell(cells["published"], sort_value=_sort_number(row["published"]), css_class="number", title=notes),
            table_cell(cells["evaluation"], sort_value=str(view.note_number(row)), title=notes),
            table_cell(
                cells["measured"], sort_value=_sort_number(row["measured"]), css_class="number", title=_runs(row)
            ),
            table_cell(
                cells["gap"], sort_value=_sort_number(row["gap_points"]), css_class=f"number gain-vs-random{direction}"
            ),
            table_cell(cells["noise"], sort_value=_sort_number(row["noise_points"]), css_class="number"),
            table_cell(
                cells["verdict"],
                sort_value=str(VERDICTS.index(verdict)),
                css_class="best" if verdict == WITHIN_NOISE else "",
            ),
            table_cell(cells["protocol"], title=measured_protocol),
            table_cell(cells["differences"]),
            table_cell(cells["source"], title=f"provenance: {row['provenance']}"),
        ]
        rows.append({"cells": html_cells, "classes": "missing" if verdict in (NOT_RUN, NOT_MEASURED) else ""})
    return render_table(list(_COLUMNS.values()), rows, "leaderboard sortable reproduction", _HEADER_HELP)


def _sort_number(value: Any) -> str:
    return "" if is_missing(value) else repr(float(value))


def _runs(row: pd.Series) -> str:
    """The measured cell's tooltip: how many runs and seeds, under which protocol and budget."""
    if is_missing(row["runs"]):
        return ""
    runs, seeds = int(row["runs"]), int(row["seeds"])
    return f"{runs} run(s) from {seeds} seed(s) under {row['protocol']} at {row['measured_budget']}"
