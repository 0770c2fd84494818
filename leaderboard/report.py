"""The HTML report: one self-contained offline page (inline CSS, JS and images, no external resource).

The page is a list of sections. Each section builder is a function of a :class:`ReportContext`
(records, leaderboard table, skipped files, results folder) that returns zero or more
:class:`ReportSection`; :data:`DEFAULT_SECTION_BUILDERS` lists them in page order: overview,
plots, tables, cross-architecture heatmaps, synthetic-set image grids, skipped files. Plots are
matplotlib PNGs and grids PIL PNGs, both embedded as ``data:`` URIs, so the file works offline.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import jinja2
import numpy as np
import pandas as pd
from markupsafe import Markup

from leaderboard import grids, plots
from leaderboard.records import ResultRecord, StrPath
from leaderboard.table import (
    DISPLAY_COLUMNS,
    NOT_RUN,
    RANDOM_METHOD,
    SIGNIFICANCE_MARKER,
    BaselineGap,
    baseline_gaps,
    build_table,
    format_accuracy,
    format_gain,
    format_interval,
    format_missing_row,
    format_row,
)

DEFAULT_TITLE = "Condense-bench leaderboard"

_ENVIRONMENT = jinja2.Environment(
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
# The page never links anywhere: a URL that reaches it from record text is shown defanged.
_URL_SCHEME = re.compile(r"(?i)\b(https?)://")

_PAGE_TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }}</title>
<style>
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; color: #1f2328;
       margin: 0 auto; padding: 1.5rem 1.2rem 3rem; max-width: 1600px; background: #fff; }
h1 { font-size: 1.6rem; margin: 0 0 .25rem; }
h2 { font-size: 1.25rem; margin: 2.2rem 0 .6rem; padding-bottom: .25rem; border-bottom: 1px solid #d0d7de; }
h3 { font-size: 1rem; margin: 1.2rem 0 .4rem; }
.meta, .note, figcaption { color: #59636e; }
nav { background: #f6f8fa; border: 1px solid #d0d7de; border-radius: 6px; padding: .4rem 1rem; margin-top: 1rem; }
nav ul { columns: 3 18rem; padding-left: 1.2rem; margin: .3rem 0; }
.table-wrap { overflow-x: auto; margin-bottom: .6rem; }
table.leaderboard { border-collapse: collapse; font-variant-numeric: tabular-nums; white-space: nowrap; }
table.leaderboard { font-size: 13px; }
table.leaderboard th, table.leaderboard td { padding: .28rem .4rem; border-bottom: 1px solid #e6e9ec; }
table.leaderboard th { background: #f6f8fa; text-align: left; border-bottom: 2px solid #d0d7de; }
table.sortable th { cursor: pointer; user-select: none; }
table.sortable th:hover, table.sortable th:focus { background: #eaeef2; outline: none; }
table.leaderboard th[aria-sort="ascending"]::after { content: " \\25B2"; font-size: .7em; }
table.leaderboard th[aria-sort="descending"]::after { content: " \\25BC"; font-size: .7em; }
table.leaderboard td.number { text-align: right; }
table.leaderboard tbody tr:hover { background: #f6f8fa; }
tr.budget-start td { border-top: 2px solid #d0d7de; }
table.sorted tr.budget-start td { border-top: 0; }
tr.random { background: #fff8c5; }
tr.reference { background: #ddf4ff; color: #3d4a57; font-style: italic; }
tr.missing { background: repeating-linear-gradient(135deg, #fff, #fff 6px, #f6f8fa 6px, #f6f8fa 12px);
             color: #8c959f; font-style: italic; }
tr.random:hover, tr.reference:hover { filter: brightness(.97); }
.badge { display: inline-block; margin-left: .35rem; padding: 0 .3rem; border-radius: .6rem; font-size: .75em;
         font-style: normal; background: #d0d7de; color: #1f2328; }
tr.random .badge { background: #eac54f; }
tr.reference .badge { background: #54aeff; color: #fff; }
tr.missing .badge { background: #cf222e; color: #fff; }
.best td.accuracy, td.best { font-weight: 650; }
td.gain-vs-random.up { color: #1a7f37; }
td.gain-vs-random.down { color: #cf222e; }
.callout { border-left: 4px solid #bf8700; background: #fff8c5; padding: .5rem 1rem; border-radius: 0 6px 6px 0;
           margin: .8rem 0; }
.callout.ok { border-color: #1a7f37; background: #dafbe1; }
.callout ul { margin: .3rem 0; padding-left: 1.2rem; }
.figures { display: flex; flex-wrap: wrap; gap: 1.2rem; align-items: flex-start; }
figure { margin: .4rem 0 1rem; display: table; }
figure img { display: block; max-width: 100%; height: auto; border: 1px solid #e6e9ec; border-radius: 6px; }
figcaption { display: table-caption; caption-side: bottom; font-size: .9em; margin-top: .3rem; }
.grid-row { display: flex; flex-wrap: wrap; gap: 1rem; margin-bottom: .8rem; }
.grid-card { border: 1px solid #d0d7de; border-radius: 6px; padding: .5rem .6rem; background: #fff; }
.grid-card h4 { margin: 0 0 .3rem; font-size: .95rem; }
.grid-card img { image-rendering: pixelated; display: block; }
.grid-card p { margin: .3rem 0 0; font-size: .8em; color: #59636e; max-width: 16rem; }
ul.problems li { margin: .2rem 0; }
code { font-size: .9em; background: #f6f8fa; padding: 0 .2rem; border-radius: .2rem; }
footer { margin-top: 3rem; padding-top: .8rem; border-top: 1px solid #d0d7de; color: #59636e; font-size: .9em; }
</style>
</head>
<body>
<header>
<h1>{{ title }}</h1>
<p class="meta">{{ record_count }} records &middot; {{ table_count }} tables &middot;
{{ problem_count }} skipped files &middot; generated {{ generated_at }}</p>
</header>
{% if sections %}
<nav>
<ul>
{% for section in sections %}
<li><a href="#{{ section.anchor }}">{{ section.title }}</a></li>
{% endfor %}
</ul>
</nav>
{% endif %}
<main>
{% for section in sections %}
<section id="{{ section.anchor }}">
<h2>{{ section.title }}</h2>
{{ section.body }}
</section>
{% endfor %}
</main>
<footer>
<p>Generated {{ generated_at }}. Accuracies in percent (mean &plusmn; sample std over all evaluation
runs of all seeds; 95% CI of the mean); &Delta; random in percentage points against <em>random</em> at the
same budget, {{ marker }} where Welch's t-test gives p &lt; 0.05. Costs are means over seeds. Protocols are
never mixed in a table. Click a column header to sort; clicks compose (sort by accuracy, then by budget).</p>
<p>Regenerate this page and the CSV, Markdown and JSON tables from the records:
<code>condense-report {{ results_label }}</code> (add <code>-o PATH</code> for another file name).</p>
</footer>
<script>
{{ sort_script }}
</script>
</body>
</html>
"""

_SORT_SCRIPT = Markup("""(function () {
  "use strict";
  function sortKey(row, column) {
    var cell = row.cells[column];
    if (!cell) { return null; }
    var raw = cell.hasAttribute("data-sort") ? cell.getAttribute("data-sort") : cell.textContent.trim();
    if (raw === "") { return null; }
    var number = Number(raw);
    return isNaN(number) ? raw.toLowerCase() : number;
  }
  function compare(a, b) {
    if (typeof a !== typeof b) { return typeof a === "number" ? -1 : 1; }
    return a < b ? -1 : a > b ? 1 : 0;
  }
  document.querySelectorAll("table.sortable").forEach(function (table) {
    var headers = Array.from(table.tHead.rows[0].cells);
    headers.forEach(function (header, column) {
      header.tabIndex = 0;
      header.addEventListener("keydown", function (event) {
        if (event.key === "Enter" || event.key === " ") { event.preventDefault(); header.click(); }
      });
      header.addEventListener("click", function () {
        var direction = header.getAttribute("aria-sort") === "ascending" ? -1 : 1;
        headers.forEach(function (other) { other.removeAttribute("aria-sort"); });
        header.setAttribute("aria-sort", direction === 1 ? "ascending" : "descending");
        table.classList.add("sorted");
        var body = table.tBodies[0];
        var items = Array.from(body.rows).map(function (row, index) {
          return { row: row, key: sortKey(row, column), index: index };
        });
        items.sort(function (a, b) {
          if (a.key === null || b.key === null) {  // empty cells last in both directions
            return (a.key === null) - (b.key === null) || a.index - b.index;
          }
          return direction * compare(a.key, b.key) || a.index - b.index;
        });
        items.forEach(function (item) { body.appendChild(item.row); });
      });
    });
  });
})();""")

_TABLE_TEMPLATE = """<div class="table-wrap">
<table class="{{ table_class }}">
<thead><tr>
{% for column in columns %}
<th scope="col" title="{{ header_help[column] ~ ' · ' if column in header_help }}Click to sort">
{{- column }}</th>
{% endfor %}
</tr></thead>
<tbody>
{% for row in rows %}
<tr{% if row.classes %} class="{{ row.classes }}"{% endif %}>
{% for cell in row.cells %}
<td class="{{ cell.css_class }}" data-sort="{{ cell.sort_value }}"
{%- if cell.title %} title="{{ cell.title }}"{% endif %}>{{ cell.text }}
{%- if cell.badge %}<span class="badge">{{ cell.badge }}</span>{% endif %}</td>
{% endfor %}
</tr>
{% endfor %}
</tbody>
</table>
</div>
"""

_LEADERBOARD_TEMPLATE = """<p class="note">Dataset <code>{{ dataset }}</code>,
protocol <code>{{ protocol }}</code>, evaluation model <code>{{ model }}</code>.
{% if gaps %}<strong>{{ gaps | length }} baseline row(s) not run</strong> (striped below).{% endif %}</p>
{% if matrix %}
<h3>Accuracy by budget (%)</h3>
{{ matrix }}
<h3>All columns</h3>
{% endif %}
{{ table }}
"""

_OVERVIEW_TEMPLATE = """{% if gaps %}
<div class="callout"><strong>Missing baselines.</strong> Every budget should have a <code>random</code> row
and every table a <code>full</code> row; these were not run, so the affected gains or upper bounds are unknown.
<ul>
{% for item in gaps %}
<li><code>{{ item.dataset }}</code> &middot; <code>{{ item.protocol }}</code>{% if item.budgets %} at
{{ item.budgets }}{% endif %}: no <code>{{ item.method }}</code> row ({{ item.effect }}); evaluation
model(s) {{ item.models }}.</li>
{% endfor %}
</ul>
{% if more_gaps %}<p>&hellip; and {{ more_gaps }} more (marked in the tables).</p>{% endif %}
</div>
{% else %}
<div class="callout ok">Every budget has its <code>random</code> baseline and every table its <code>full</code>
reference.</div>
{% endif %}
{% if problem_count %}
<div class="callout"><strong>{{ problem_count }} file(s) skipped</strong> under the results folder:
see <a href="#skipped-files">Skipped files</a>.</div>
{% endif %}
<p class="note">The best method of each budget group, against <code>random</code> at the same budget and the
full-data reference.</p>
{{ table }}
"""

_FIGURES_TEMPLATE = """<div class="figures">
{% for figure in figures %}
<figure>
<img src="{{ figure.uri }}" alt="{{ figure.alt }}">
<figcaption>{{ figure.caption }}</figcaption>
</figure>
{% endfor %}
</div>
"""

_GRIDS_TEMPLATE = """<p class="note">One set per method and budget (the lowest seed), denormalized. Rows are
classes (at most {{ max_classes }}), columns the first images of each class (at most {{ max_per_class }}).</p>
{% for method, cards in methods %}
<h3>{{ method }}</h3>
<div class="grid-row">
{% for card in cards %}
<div class="grid-card">
<h4>{{ card.budget }}</h4>
<img src="{{ card.uri }}" alt="{{ card.alt }}" width="{{ card.width }}" height="{{ card.height }}">
<p>{{ card.caption }}</p>
</div>
{% endfor %}
</div>
{% endfor %}
{% if notes %}
<div class="callout"><strong>Sets not shown.</strong>
<ul>
{% for note in notes %}
<li><code>{{ note.method }}</code> &middot; {{ note.budget }}: {{ note.message }}</li>
{% endfor %}
</ul>
</div>
{% endif %}
"""

_PROBLEMS_TEMPLATE = """{% if problems %}
<p class="note">These files under the results folder were skipped.</p>
<ul class="problems">
{% for path, message in problems %}
<li><code>{{ path }}</code>: {{ message }}</li>
{% endfor %}
</ul>
{% else %}
<p class="note">None: every JSON file under the results folder is a valid record.</p>
{% endif %}
"""

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


@dataclass(frozen=True)
class ReportSection:
    """One section of the page: an anchor id, a heading and already-rendered HTML."""

    anchor: str
    title: str
    body: Markup


@dataclass(frozen=True)
class ReportContext:
    """What section builders get: the records, their leaderboard table, the skipped files and
    the results folder (``None`` when unknown: no image grids then)."""

    records: Sequence[ResultRecord]
    table: pd.DataFrame
    problems: Sequence[tuple[Path, str]]
    results_dir: Path | None = None
    colors: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.colors and len(self.table):
            references = self.table.loc[self.table["is_reference"], "method"]
            object.__setattr__(self, "colors", plots.method_colors(self.table["method"], references))


SectionBuilder = Callable[[ReportContext], list[ReportSection]]


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


def _cell(text: str, *, sort_value: str = "", css_class: str = "", badge: str = "", title: str = "") -> dict[str, str]:
    return {"text": text, "sort_value": sort_value, "css_class": css_class, "badge": badge, "title": title}


def _render_table(
    columns: Sequence[str],
    rows: Sequence[dict[str, Any]],
    table_class: str,
    header_help: dict[str, str] | None = None,
) -> Markup:
    """A table of ``rows`` (``{"cells": [...], "classes": str}``); ``header_help`` maps a header to a tooltip."""
    return Markup(
        _ENVIRONMENT.from_string(_TABLE_TEMPLATE).render(
            columns=columns, rows=rows, table_class=table_class, header_help=header_help or {}
        )
    )


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
    columns = ["Dataset", "Protocol", "Model", "Budget", "Best method", "Accuracy (%)", "Δ random (pp)",
               "random (%)", "full (%)"]
    rows = []
    for (dataset, protocol, model, budget), group in _slices(
        context.table, ["dataset", "protocol", "model", "budget"]
    ):
        competitors = group[~group["is_reference"]]
        best = competitors.sort_values("mean", ascending=False, kind="stable").iloc[0] if len(competitors) else None
        random_rows = competitors[competitors["method"] == RANDOM_METHOD]
        references = group[group["is_reference"]]
        cells = [
            _cell(str(dataset), sort_value=str(dataset)),
            _cell(str(protocol), sort_value=str(protocol)),
            _cell(str(model), sort_value=str(model)),
            _cell(str(budget), sort_value=str(len(rows))),
        ]
        if best is not None:
            marker = f" {SIGNIFICANCE_MARKER}" if best["significant"] else ""
            cells += [
                _cell(str(best["method"]), sort_value=str(best["method"]), css_class="method"),
                _cell(format_accuracy(best["mean"], best["std"]), sort_value=_sort_value(best["mean"]),
                      css_class="number accuracy best"),
                _gain_cell(best["gain_vs_random"], marker),
            ]
        else:
            cells += [_cell(_MISSING_TEXT), _cell(_MISSING_TEXT, css_class="number"),
                      _cell(_MISSING_TEXT, css_class="number")]
        cells.append(_level_cell(random_rows))
        cells.append(_level_cell(references))
        rows.append({"cells": cells, "classes": ""})
    body = _ENVIRONMENT.from_string(_OVERVIEW_TEMPLATE).render(
        gaps=gaps[:_MAX_OVERVIEW_GAPS],
        more_gaps=max(0, len(gaps) - _MAX_OVERVIEW_GAPS),
        problem_count=len(context.problems),
        table=_render_table(columns, rows, "leaderboard sortable overview"),
    )
    return [ReportSection(anchor="overview", title="Overview", body=Markup(body))]


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
    return _cell(format_gain(gain) + marker, sort_value=_sort_value(gain),
                 css_class=f"number gain-vs-random {direction}".strip())


def _level_cell(rows: pd.DataFrame) -> dict[str, str]:
    if rows.empty:
        return _cell(NOT_RUN, css_class="number missing-level")
    row = rows.iloc[0]
    return _cell(format_accuracy(row["mean"], row["std"]), sort_value=_sort_value(row["mean"]), css_class="number")


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
            body = _ENVIRONMENT.from_string(_FIGURES_TEMPLATE).render(figures=figures)
            sections.append(
                ReportSection(
                    anchor=_anchor("plots", dataset, protocol), title=f"Plots · {dataset} · {protocol}",
                    body=Markup(body),
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
    template = _ENVIRONMENT.from_string(_LEADERBOARD_TEMPLATE)
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
        body = template.render(
            dataset=dataset,
            protocol=protocol,
            model=model,
            gaps=gaps,
            matrix=matrix,
            table=_render_table(columns, rows, "leaderboard sortable detail", _HEADER_HELP),
        )
        sections.append(
            ReportSection(
                anchor=_anchor("table", dataset, protocol, model),
                title=f"{dataset} · {protocol} · {model}",
                body=Markup(body),
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
            _cell(texts[key], sort_value=sort_value, css_class=" ".join(filter(None, css)), badge=badge, title=title)
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
            _cell(texts[key], sort_value=sort_value, css_class=css, badge="not run" if key == "method" else "",
                  title=gap.message if key == "method" else "")
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
            _cell(method, sort_value=method, css_class="method", badge=badge),
            _cell(str(first["family"]) if first is not None else _MISSING_TEXT, sort_value=method),
            _cell(str(first["label_type"]) if first is not None else _MISSING_TEXT),
        ]
        for budget in budgets:
            match = method_rows[method_rows["budget"] == budget]
            if match.empty:
                text = NOT_RUN if any(g.method == method and g.budget == budget for g in gaps) else _MISSING_TEXT
                cells.append(_cell(text, css_class="number"))
                continue
            row = match.iloc[0]
            marker = f" {SIGNIFICANCE_MARKER}" if row["significant"] else ""
            is_best = not row["is_reference"] and row["mean"] == best_by_budget.get(budget)
            cells.append(
                _cell(
                    format_accuracy(row["mean"], row["std"]) + marker,
                    sort_value=_sort_value(row["mean"]),
                    css_class="number" + (" best" if is_best else ""),
                    title=f"95% CI {format_interval(row['ci95_low'], row['ci95_high'])}, Δ random "
                    f"{format_gain(row['gain_vs_random'])} pp, {int(row['seeds'])} seed(s)",
                )
            )
        rows.append({"cells": cells, "classes": classes})
    columns = ["Method", "Family", "Labels", *budgets]
    return _render_table(columns, rows, "leaderboard sortable matrix")


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
        body = _ENVIRONMENT.from_string(_FIGURES_TEMPLATE).render(figures=figures)
        sections.append(
            ReportSection(
                anchor=_anchor("cross-arch", dataset, protocol),
                title=f"Cross-architecture · {dataset} · {protocol}",
                body=Markup(body),
            )
        )
    return sections


def synthetic_set_sections(context: ReportContext) -> list[ReportSection]:
    """Per dataset: an image grid of each saved set (one per method and budget), and notes."""
    if context.results_dir is None or not context.records:
        return []
    found, notes = grids.synthetic_set_grids(context.records, context.results_dir)
    datasets = list(dict.fromkeys([grid.dataset for grid in found] + [note.dataset for note in notes]))
    template = _ENVIRONMENT.from_string(_GRIDS_TEMPLATE)
    sections = []
    for dataset in datasets:
        methods: dict[str, list[dict[str, Any]]] = {}
        for grid in (grid for grid in found if grid.dataset == dataset):
            methods.setdefault(grid.method, []).append(_grid_card(grid))
        body = template.render(
            methods=list(methods.items()),
            notes=[note for note in notes if note.dataset == dataset],
            max_classes=grids.MAX_CLASSES,
            max_per_class=grids.MAX_PER_CLASS,
        )
        sections.append(
            ReportSection(anchor=_anchor("sets", dataset), title=f"Synthetic sets · {dataset}", body=Markup(body))
        )
    return sections


def _grid_card(grid: grids.ImageGrid) -> dict[str, Any]:
    width, height = int.from_bytes(grid.png[16:20], "big"), int.from_bytes(grid.png[20:24], "big")
    shown = f"{grid.classes_shown} of {grid.num_classes} classes" if grid.classes_shown < grid.num_classes else (
        f"{grid.num_classes} classes"
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
    body = _ENVIRONMENT.from_string(_PROBLEMS_TEMPLATE).render(
        problems=[(str(path), message) for path, message in context.problems]
    )
    return [
        ReportSection(
            anchor="skipped-files", title=f"Skipped files ({len(context.problems)})", body=Markup(body)
        )
    ]


DEFAULT_SECTION_BUILDERS: tuple[SectionBuilder, ...] = (
    overview_section,
    plot_sections,
    leaderboard_sections,
    cross_architecture_sections,
    synthetic_set_sections,
    problems_section,
)


def render_report(
    records: Iterable[ResultRecord],
    problems: Iterable[tuple[Path, str]] = (),
    *,
    results_dir: StrPath | None = None,
    title: str = DEFAULT_TITLE,
    generated_at: datetime | None = None,
    section_builders: Sequence[SectionBuilder] = DEFAULT_SECTION_BUILDERS,
) -> str:
    """Render the records as one self-contained offline HTML page.

    Args:
        records: validated result records.
        problems: ``(path, reason)`` of files skipped while loading, listed on the page.
        results_dir: the folder the records came from; the saved sets are read from it for the
            image grids (``None``: no grids).
        title: page title and heading.
        generated_at: timestamp shown on the page; defaults to now (UTC).
        section_builders: functions building the page sections, in order.

    Returns:
        The HTML document as a string (inline CSS, JavaScript and images; no external resource,
        and no ``http(s)://`` anywhere: one reaching the page from record text is defanged).
    """
    record_list = list(records)
    context = ReportContext(
        records=record_list,
        table=build_table(record_list),
        problems=list(problems),
        results_dir=Path(results_dir) if results_dir is not None else None,
    )
    sections = [section for builder in section_builders for section in builder(context)]
    timestamp = (generated_at or datetime.now(timezone.utc)).isoformat(timespec="seconds")
    table_count = len(context.table.groupby(["dataset", "protocol", "model"])) if len(context.table) else 0
    page = _ENVIRONMENT.from_string(_PAGE_TEMPLATE).render(
        title=title,
        sections=sections,
        record_count=len(record_list),
        table_count=table_count,
        problem_count=len(context.problems),
        generated_at=timestamp,
        marker=SIGNIFICANCE_MARKER,
        results_label=str(context.results_dir) if context.results_dir is not None else "RESULTS_DIR",
        sort_script=_SORT_SCRIPT,
    )
    return _URL_SCHEME.sub(r"\1[:]//", page)
