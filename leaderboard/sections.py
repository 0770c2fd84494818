"""The sections of the HTML report, each a function of a :class:`~leaderboard.report.ReportContext`.

:data:`DEFAULT_SECTION_BUILDERS` lists them in page order: overview, plots, leaderboard tables,
cross-architecture heatmaps, synthetic-set image grids, the reproduction view
(:mod:`leaderboard.reproduction`), skipped files. Each returns zero or more
:class:`~leaderboard.report.ReportSection` whose body is rendered from ``leaderboard/templates/``.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd
from markupsafe import Markup

from leaderboard import grids, plots
from leaderboard._context import ReportContext, ReportSection, SectionBuilder
from leaderboard._templates import render_table, render_template, table_cell
from leaderboard.reproduction import reproduction_section
from leaderboard.table import (
    DISPLAY_COLUMNS,
    NOT_RUN,
    RANDOM_METHOD,
    SIGNIFICANCE_MARKER,
    BaselineGap,
    baseline_gaps,
    format_accuracy,
    format_gain,
    format_interval,
    format_missing_row,
    format_row,
)

# Display columns of a leaderboard table, in order; numeric ones are right-aligned. The number of
# evaluation runs and of images are in the tooltips of "Seeds" and "Set size" (the CSV, JSON and
# Markdown exports keep them as columns).
_TABLE_COLUMNS = (
    "budget",
    "rank",
    "method",
    "family",
    "label_type",
    "accuracy",
    "ci95",
    "gain_vs_random",
    "p_value",
    "seeds",
    "distill_seconds",
    "distill_peak_memory_bytes",
    "set_bytes",
    "eval_seconds",
)
_COLUMN_HELP = {
    "budget": "Images per class (ipc), kept fraction, or full",
    "rank": "Rank by mean accuracy within the budget (ties share a rank; the full dataset is not ranked)",
    "family": "distillation (learned images), selection (a real subset) or reference (all data)",
    "label_type": "hard (class ids) or soft (learned label distributions)",
    "accuracy": "Mean ± sample std over all evaluation runs of all seeds",
    "ci95": "Student-t 95% confidence interval of the mean",
    "gain_vs_random": "Accuracy minus random at the same budget, percentage points; * Welch p < 0.05",
    "p_value": "Two-sided Welch's t-test against random at the same budget",
    "seeds": "Seeds (records) pooled into the row",
    "distill_seconds": "Time to produce the set (mean over seeds)",
    "distill_peak_memory_bytes": "Peak memory while producing the set (mean over seeds)",
    "set_bytes": "Size of the saved set, soft labels and learned extras included",
    "eval_seconds": "Time of the whole evaluation (all models and runs, mean over seeds)",
}
_HEADER_HELP = {DISPLAY_COLUMNS[key]: text for key, text in _COLUMN_HELP.items()}
_TEXT_COLUMNS = frozenset({"budget", "method", "family", "label_type"})
# The raw value each display column sorts by (fractions, counts, bytes, seconds).
_SORT_SOURCES = {"accuracy": "mean", "ci95": "ci95_low"}
_MAX_OVERVIEW_GAPS = 12
_MISSING_TEXT = "—"


# ----------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------


def _sort_value(value: Any) -> str:
    """The ``data-sort`` text of a raw value: exact numbers, empty for missing."""
    if value is None or value is pd.NA:
        return ""
    if isinstance(value, (float, np.floating)):
        return "" if math.isnan(value) else repr(float(value))
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return str(int(value))
    return str(value)


def _anchor(*parts: str) -> str:
    text = "-".join(parts).lower()
    return "".join(character if character.isalnum() or character in "-_" else "-" for character in text)


def _slices(table: pd.DataFrame, keys: Sequence[str]) -> Iterable[tuple[tuple[str, ...], pd.DataFrame]]:
    if table.empty:
        return []
    return table.groupby(list(keys), sort=False)


def _is_random(row: pd.Series) -> bool:
    return row["method"] == RANDOM_METHOD and not row["is_reference"]


# ----------------------------------------------------------------------------------------------
# Section builders
# ----------------------------------------------------------------------------------------------


def overview_section(context: ReportContext) -> list[ReportSection]:
    """The best method per budget group against random and full, and every missing baseline."""
    if context.table.empty:
        return []
    gaps = _summarize_gaps(baseline_gaps(context.table))
    columns = [
        "Dataset",
        "Protocol",
        "Model",
        "Budget",
        "Best method",
        "Accuracy (%)",
        "Δ random (pp)",
        "random (%)",
        "full (%)",
    ]
    rows = []
    for (dataset, protocol, model, budget), group in _slices(context.table, ["dataset", "protocol", "model", "budget"]):
        competitors = group[~group["is_reference"]]
        best = competitors.sort_values("mean", ascending=False, kind="stable").iloc[0] if len(competitors) else None
        random_rows = competitors[competitors["method"] == RANDOM_METHOD]
        references = group[group["is_reference"]]
        cells = [
            table_cell(str(dataset), sort_value=str(dataset)),
            table_cell(str(protocol), sort_value=str(protocol)),
            table_cell(str(model), sort_value=str(model)),
            table_cell(str(budget), sort_value=str(len(rows))),
        ]
        if best is not None:
            marker = f" {SIGNIFICANCE_MARKER}" if best["significant"] else ""
            cells += [
                table_cell(str(best["method"]), sort_value=str(best["method"]), css_class="method"),
                table_cell(
                    format_accuracy(best["mean"], best["std"]),
                    sort_value=_sort_value(best["mean"]),
                    css_class="number accuracy best",
                ),
                _gain_cell(best["gain_vs_random"], marker),
            ]
        else:
            cells += [
                table_cell(_MISSING_TEXT),
                table_cell(_MISSING_TEXT, css_class="number"),
                table_cell(_MISSING_TEXT, css_class="number"),
            ]
        cells.append(_level_cell(random_rows))
        cells.append(_level_cell(references))
        rows.append({"cells": cells, "classes": ""})
    body = render_template(
        "overview.html.j2",
        gaps=gaps[:_MAX_OVERVIEW_GAPS],
        more_gaps=max(0, len(gaps) - _MAX_OVERVIEW_GAPS),
        problem_count=len(context.problems),
        table=render_table(columns, rows, "leaderboard sortable overview"),
    )
    return [ReportSection(anchor="overview", title="Overview", body=body)]


def _summarize_gaps(gaps: Sequence[BaselineGap]) -> list[dict[str, str]]:
    """Gaps merged for the overview: ``random`` per (dataset, protocol, budget), ``full`` per (dataset, protocol)."""
    merged: dict[tuple[str, str, str, str], list[str]] = defaultdict(list)
    for gap in gaps:
        budget = gap.budget if gap.method == RANDOM_METHOD else ""
        merged[(gap.dataset, gap.protocol, gap.method, budget)].append(gap.model)
    items = []
    for (dataset, protocol, method, budget), models in merged.items():
        is_random = method == RANDOM_METHOD
        items.append(
            {
                "dataset": dataset,
                "protocol": protocol,
                "method": method,
                "budgets": budget,
                "models": ", ".join(dict.fromkeys(models)),
                "effect": "gains and p-values against random unknown" if is_random else "upper bound unknown",
            }
        )
    return items


def _gain_cell(gain: float, marker: str) -> dict[str, str]:
    direction = "" if _sort_value(gain) == "" or gain == 0 else ("up" if gain > 0 else "down")
    return table_cell(
        format_gain(gain) + marker, sort_value=_sort_value(gain), css_class=f"number gain-vs-random {direction}".strip()
    )


def _level_cell(rows: pd.DataFrame) -> dict[str, str]:
    if rows.empty:
        return table_cell(NOT_RUN, css_class="number missing-level")
    row = rows.iloc[0]
    return table_cell(format_accuracy(row["mean"], row["std"]), sort_value=_sort_value(row["mean"]), css_class="number")


def plot_sections(context: ReportContext) -> list[ReportSection]:
    """Per (dataset, protocol): accuracy against budget (error bars) and against distillation cost."""
    sections = []
    for (dataset, protocol), group in _slices(context.table, ["dataset", "protocol"]):
        figures = []
        for kind, axis in (("ipc", "images per class"), ("fraction", "kept fraction")):
            png = plots.plot_accuracy_vs_budget(group, context.colors, kind)
            if png is not None:
                figures.append(
                    {
                        "uri": plots.png_data_uri(png),
                        "alt": f"accuracy against {axis} on {dataset} under {protocol}",
                        "caption": f"Test accuracy against {axis}, one panel per evaluation model. Error bars: "
                        "±1 std over all evaluation runs of all seeds. Dotted line and band: the full "
                        "dataset (mean ± std). Dashed grey: random.",
                    }
                )
        png = plots.plot_accuracy_vs_cost(group, context.colors)
        if png is not None:
            figures.append(
                {
                    "uri": plots.png_data_uri(png),
                    "alt": f"accuracy against distillation time on {dataset} under {protocol}",
                    "caption": "Accuracy against distillation time (log scale; times under "
                    f"{plots.COST_FLOOR_SECONDS:g} s drawn at {plots.COST_FLOOR_SECONDS:g} s), one point per "
                    "method and budget. The grey staircase joins the Pareto front: no other point is both "
                    "cheaper and more accurate.",
                }
            )
        if figures:
            sections.append(
                ReportSection(
                    anchor=_anchor("plots", dataset, protocol),
                    title=f"Plots · {dataset} · {protocol}",
                    body=render_template("figures.html.j2", figures=figures),
                )
            )
    return sections


def leaderboard_sections(context: ReportContext) -> list[ReportSection]:
    """One sortable table per (dataset, protocol, evaluation model), accuracies in percent.

    A budget group without ``random`` or a table without ``full`` gets a striped ``not run``
    row. With two or more budgets, a compact method x budget matrix comes first.
    """
    gaps_by_group: dict[tuple[str, str, str], list[BaselineGap]] = defaultdict(list)
    for gap in baseline_gaps(context.table):
        gaps_by_group[(gap.dataset, gap.protocol, gap.model)].append(gap)
    columns = [DISPLAY_COLUMNS[key] for key in _TABLE_COLUMNS]
    sections = []
    for (dataset, protocol, model), group in _slices(context.table, ["dataset", "protocol", "model"]):
        gaps = gaps_by_group.get((dataset, protocol, model), [])
        budgets = list(dict.fromkeys(group["budget"]))
        budget_order = {budget: index for index, budget in enumerate(budgets)}
        rows = []
        for budget in budgets:
            for position, (_, row) in enumerate(group[group["budget"] == budget].iterrows()):
                rows.append(_table_row(row, budget_order, starts_budget=position == 0))
            for gap in gaps:
                if gap.budget == budget:
                    rows.append(_missing_row(gap, budget_order))
        matrix = _budget_matrix(group, gaps) if len(budgets) > 1 else ""
        body = render_template(
            "leaderboard.html.j2",
            dataset=dataset,
            protocol=protocol,
            model=model,
            gaps=gaps,
            selected_on_test=bool(group["selected_on_test"].any()),
            matrix=matrix,
            table=render_table(columns, rows, "leaderboard sortable detail", _HEADER_HELP),
        )
        sections.append(
            ReportSection(
                anchor=_anchor("table", dataset, protocol, model),
                title=f"{dataset} · {protocol} · {model}",
                body=body,
            )
        )
    return sections


def _table_row(row: pd.Series, budget_order: dict[str, int], *, starts_budget: bool) -> dict[str, Any]:
    """Cells (display text, sort value, css class, badge) and row classes of one table row."""
    texts = format_row(row)
    is_random = _is_random(row)
    cells = []
    for key in _TABLE_COLUMNS:
        if key == "budget":
            sort_value = str(budget_order[row["budget"]])
        elif key in _TEXT_COLUMNS:
            sort_value = texts[key]
        else:
            sort_value = _sort_value(row[_SORT_SOURCES.get(key, key)])
        badge = ""
        if key == "method":
            badge = "full data" if row["is_reference"] else "baseline" if is_random else ""
        css = ["number" if key not in _TEXT_COLUMNS else "", key.replace("_", "-")]
        if key == "gain_vs_random" and row["significant"]:
            css.append("up" if row["gain_vs_random"] > 0 else "down")
        title = {
            "gain_vs_random": f"p = {texts['p_value']} (Welch, against random)",
            "seeds": f"{texts['n']} evaluation runs",
            "set_bytes": f"{texts['num_images']} images",
        }.get(key, "")
        cells.append(
            table_cell(
                texts[key], sort_value=sort_value, css_class=" ".join(filter(None, css)), badge=badge, title=title
            )
        )
    classes = [
        "reference" if row["is_reference"] else "random" if is_random else "",
        "budget-start" if starts_budget else "",
    ]
    if not pd.isna(row["rank"]) and row["rank"] == 1:
        classes.append("best")
    return {"cells": cells, "classes": " ".join(filter(None, classes))}


def _missing_row(gap: BaselineGap, budget_order: dict[str, int]) -> dict[str, Any]:
    """The striped placeholder row of a baseline that was not run."""
    texts = format_missing_row(gap)
    cells = []
    for key in _TABLE_COLUMNS:
        sort_value = str(budget_order[gap.budget]) if key == "budget" else texts[key] if key in _TEXT_COLUMNS else ""
        css = " ".join(filter(None, ["number" if key not in _TEXT_COLUMNS else "", key.replace("_", "-")]))
        cells.append(
            table_cell(
                texts[key],
                sort_value=sort_value,
                css_class=css,
                badge="not run" if key == "method" else "",
                title=gap.message if key == "method" else "",
            )
        )
    return {"cells": cells, "classes": "missing"}


def _budget_matrix(group: pd.DataFrame, gaps: Sequence[BaselineGap]) -> Markup:
    """Method rows x budget columns of ``mean ± std`` (the field's paper-table layout)."""
    budgets = [budget for budget in dict.fromkeys(group["budget"])]
    competitors = group[~group["is_reference"]]
    best_by_budget = competitors.groupby("budget")["mean"].max().to_dict()
    methods = list(dict.fromkeys(competitors.sort_values(["method"])["method"]))
    methods.sort(key=lambda method: (method != RANDOM_METHOD, method))
    references = list(dict.fromkeys(group.loc[group["is_reference"], "method"]))
    missing_methods = {gap.method for gap in gaps} - set(methods) - set(references)
    rows = []
    for method in [*methods, *references, *sorted(missing_methods)]:
        method_rows = group[group["method"] == method]
        first = method_rows.iloc[0] if len(method_rows) else None
        is_reference = bool(first is not None and first["is_reference"])
        badge = "full data" if is_reference else "baseline" if method == RANDOM_METHOD else ""
        classes = "reference" if is_reference else "random" if method == RANDOM_METHOD else ""
        if first is None:
            badge, classes = "not run", "missing"
        cells = [
            table_cell(method, sort_value=method, css_class="method", badge=badge),
            table_cell(str(first["family"]) if first is not None else _MISSING_TEXT, sort_value=method),
            table_cell(str(first["label_type"]) if first is not None else _MISSING_TEXT),
        ]
        for budget in budgets:
            match = method_rows[method_rows["budget"] == budget]
            if match.empty:
                text = NOT_RUN if any(g.method == method and g.budget == budget for g in gaps) else _MISSING_TEXT
                cells.append(table_cell(text, css_class="number"))
                continue
            row = match.iloc[0]
            marker = f" {SIGNIFICANCE_MARKER}" if row["significant"] else ""
            is_best = not row["is_reference"] and row["mean"] == best_by_budget.get(budget)
            cells.append(
                table_cell(
                    format_accuracy(row["mean"], row["std"]) + marker,
                    sort_value=_sort_value(row["mean"]),
                    css_class="number" + (" best" if is_best else ""),
                    title=f"95% CI {format_interval(row['ci95_low'], row['ci95_high'])}, Δ random "
                    f"{format_gain(row['gain_vs_random'])} pp, {int(row['seeds'])} seed(s)",
                )
            )
        rows.append({"cells": cells, "classes": classes})
    columns = ["Method", "Family", "Labels", *budgets]
    return render_table(columns, rows, "leaderboard sortable matrix")


def cross_architecture_sections(context: ReportContext) -> list[ReportSection]:
    """Per (dataset, protocol) with two or more evaluation models: method x model heatmaps."""
    sections = []
    for (dataset, protocol), group in _slices(context.table, ["dataset", "protocol"]):
        if group["model"].nunique() < 2:
            continue
        figures = []
        for budget, budget_rows in group.groupby("budget", sort=False):
            matrix = plots.heatmap_matrix(budget_rows)
            png = plots.plot_heatmap(matrix, title=f"{dataset} · {protocol} · {budget}")
            figures.append(
                {
                    "uri": plots.png_data_uri(png),
                    "alt": f"accuracy per method and evaluation model at {budget}",
                    "caption": f"{budget}: mean test accuracy (%) of each set (rows) trained on each evaluation "
                    "model (columns); the last column is the mean over models. Grey: not evaluated.",
                }
            )
        sections.append(
            ReportSection(
                anchor=_anchor("cross-arch", dataset, protocol),
                title=f"Cross-architecture · {dataset} · {protocol}",
                body=render_template("figures.html.j2", figures=figures),
            )
        )
    return sections


def synthetic_set_sections(context: ReportContext) -> list[ReportSection]:
    """Per dataset: an image grid of each saved set (one per method and budget), and notes."""
    if context.results_dir is None or not context.records:
        return []
    found, notes = grids.synthetic_set_grids(context.records, context.results_dir)
    datasets = list(dict.fromkeys([grid.dataset for grid in found] + [note.dataset for note in notes]))
    sections = []
    for dataset in datasets:
        methods: dict[str, list[dict[str, Any]]] = {}
        for grid in (grid for grid in found if grid.dataset == dataset):
            methods.setdefault(grid.method, []).append(_grid_card(grid))
        body = render_template(
            "grids.html.j2",
            methods=list(methods.items()),
            notes=[note for note in notes if note.dataset == dataset],
            max_classes=grids.MAX_CLASSES,
            max_per_class=grids.MAX_PER_CLASS,
        )
        sections.append(ReportSection(anchor=_anchor("sets", dataset), title=f"Synthetic sets · {dataset}", body=body))
    return sections


def _grid_card(grid: grids.ImageGrid) -> dict[str, Any]:
    width, height = int.from_bytes(grid.png[16:20], "big"), int.from_bytes(grid.png[20:24], "big")
    shown = (
        f"{grid.classes_shown} of {grid.num_classes} classes"
        if grid.classes_shown < grid.num_classes
        else (f"{grid.num_classes} classes")
    )
    labels = ", soft labels (arg-max class)" if grid.soft_labels else ""
    return {
        "budget": grid.budget,
        "uri": plots.png_data_uri(grid.png),
        "alt": f"{grid.method} {grid.budget} images",
        "width": width,
        "height": height,
        "caption": f"{grid.num_images} images, {shown}{labels}; seed {grid.seed}, cell {grid.cell_key}",
    }


def problems_section(context: ReportContext) -> list[ReportSection]:
    """The files that were skipped while loading, with the reason."""
    body = render_template("problems.html.j2", problems=[(str(path), message) for path, message in context.problems])
    return [ReportSection(anchor="skipped-files", title=f"Skipped files ({len(context.problems)})", body=body)]


DEFAULT_SECTION_BUILDERS: tuple[SectionBuilder, ...] = (
    overview_section,
    plot_sections,
    leaderboard_sections,
    cross_architecture_sections,
    synthetic_set_sections,
    reproduction_section,
    problems_section,
)
