"""The HTML report: one self-contained offline page (inline CSS and JS, no external resource).

The page is a list of sections. Each section builder is a function of a :class:`ReportContext`
(records, leaderboard table, skipped files) that returns zero or more :class:`ReportSection`;
:data:`DEFAULT_SECTION_BUILDERS` lists them in page order. New sections (plots, heatmaps, image
grids) are added by writing a builder and appending it there, or by passing ``section_builders``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import jinja2
import pandas as pd
from markupsafe import Markup

from leaderboard.records import ResultRecord
from leaderboard.table import DISPLAY_COLUMNS, RANDOM_METHOD, build_table, format_row

DEFAULT_TITLE = "Condense-bench leaderboard"

_ENVIRONMENT = jinja2.Environment(
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)

_PAGE_TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }}</title>
<style>
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1f2328;
       margin: 0 auto; padding: 1.5rem 2rem 3rem; max-width: 1600px; }
h1 { font-size: 1.6rem; margin: 0 0 .25rem; }
h2 { font-size: 1.2rem; margin: 2rem 0 .5rem; padding-bottom: .2rem; border-bottom: 1px solid #d0d7de; }
.meta, .note { color: #59636e; }
nav ul { columns: 3 16rem; padding-left: 1.2rem; }
.table-wrap { overflow-x: auto; }
table.leaderboard { border-collapse: collapse; font-variant-numeric: tabular-nums; white-space: nowrap; }
table.leaderboard th, table.leaderboard td { padding: .3rem .6rem; border-bottom: 1px solid #e6e9ec; }
table.leaderboard th { position: sticky; top: 0; background: #f6f8fa; text-align: left; cursor: pointer;
                       user-select: none; border-bottom: 2px solid #d0d7de; }
table.leaderboard th:hover { background: #eaeef2; }
table.leaderboard th[aria-sort="ascending"]::after { content: " \\25B2"; font-size: .7em; }
table.leaderboard th[aria-sort="descending"]::after { content: " \\25BC"; font-size: .7em; }
table.leaderboard td.number { text-align: right; }
table.leaderboard tbody tr:hover { background: #f6f8fa; }
tr.budget-start td { border-top: 2px solid #d0d7de; }
tr.random { background: #fff8c5; }
tr.reference { background: #ddf4ff; color: #3d4a57; font-style: italic; }
.badge { display: inline-block; margin-left: .4rem; padding: 0 .35rem; border-radius: .6rem; font-size: .75em;
         font-style: normal; background: #d0d7de; color: #1f2328; }
tr.random .badge { background: #eac54f; }
tr.reference .badge { background: #54aeff; color: #fff; }
.best td.accuracy { font-weight: 600; }
ul.problems li { margin: .2rem 0; }
code { font-size: .9em; background: #f6f8fa; padding: 0 .2rem; border-radius: .2rem; }
footer { margin-top: 3rem; color: #59636e; font-size: .9em; }
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
<footer>Generated {{ generated_at }}. Accuracies in percent (mean &plusmn; sample std over all evaluation
runs of all seeds); &Delta; random in percentage points; p from Welch's t-test against <em>random</em>
at the same budget (* p &lt; 0.05). Click a column header to sort.</footer>
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
      header.addEventListener("click", function () {
        var direction = header.getAttribute("aria-sort") === "ascending" ? -1 : 1;
        headers.forEach(function (other) { other.removeAttribute("aria-sort"); });
        header.setAttribute("aria-sort", direction === 1 ? "ascending" : "descending");
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

_LEADERBOARD_TEMPLATE = """<p class="note">Dataset <code>{{ dataset }}</code>,
protocol <code>{{ protocol }}</code>, evaluation model <code>{{ model }}</code>.</p>
<div class="table-wrap">
<table class="leaderboard sortable">
<thead><tr>
{% for column in columns %}
<th scope="col" title="Click to sort">{{ column.title }}</th>
{% endfor %}
</tr></thead>
<tbody>
{% for row in rows %}
<tr{% if row.classes %} class="{{ row.classes }}"{% endif %}>
{% for cell in row.cells %}
<td class="{{ cell.css_class }}" data-sort="{{ cell.sort_value }}">{{ cell.text }}
{%- if cell.badge %}<span class="badge">{{ cell.badge }}</span>{% endif %}</td>
{% endfor %}
</tr>
{% endfor %}
</tbody>
</table>
</div>
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

# Display columns of a leaderboard table, in order; numeric ones are right-aligned.
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
    "n",
    "distill_seconds",
    "distill_peak_memory_bytes",
    "set_bytes",
    "num_images",
    "eval_seconds",
)
_TEXT_COLUMNS = frozenset({"budget", "method", "family", "label_type"})
# The raw value each display column sorts by (fractions, counts, bytes, seconds).
_SORT_SOURCES = {"accuracy": "mean", "ci95": "ci95_low"}


@dataclass(frozen=True)
class ReportSection:
    """One section of the page: an anchor id, a heading and already-rendered HTML."""

    anchor: str
    title: str
    body: Markup


@dataclass(frozen=True)
class ReportContext:
    """What section builders get: the records, their leaderboard table and the skipped files."""

    records: Sequence[ResultRecord]
    table: pd.DataFrame
    problems: Sequence[tuple[Path, str]]


SectionBuilder = Callable[[ReportContext], list[ReportSection]]


def _sort_value(value: Any) -> str:
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _anchor(*parts: str) -> str:
    text = "-".join(parts).lower()
    return "".join(character if character.isalnum() or character in "-_" else "-" for character in text)


def leaderboard_sections(context: ReportContext) -> list[ReportSection]:
    """One sortable table per (dataset, protocol, evaluation model), accuracies in percent."""
    template = _ENVIRONMENT.from_string(_LEADERBOARD_TEMPLATE)
    columns = [{"key": key, "title": DISPLAY_COLUMNS[key]} for key in _TABLE_COLUMNS]
    sections = []
    for (dataset, protocol, model), group in context.table.groupby(
        ["dataset", "protocol", "model"], sort=False
    ):
        rows = []
        budget_order = {budget: index for index, budget in enumerate(dict.fromkeys(group["budget"]))}
        previous_budget = None
        for _, row in group.iterrows():
            rows.append(_table_row(row, budget_order, starts_budget=row["budget"] != previous_budget))
            previous_budget = row["budget"]
        body = template.render(dataset=dataset, protocol=protocol, model=model, columns=columns, rows=rows)
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
    is_random = row["method"] == RANDOM_METHOD and not row["is_reference"]
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
        css_class = " ".join(
            filter(None, ["number" if key not in _TEXT_COLUMNS else "", key.replace("_", "-")])
        )
        cells.append({"text": texts[key], "sort_value": sort_value, "css_class": css_class, "badge": badge})
    classes = [
        "reference" if row["is_reference"] else "random" if is_random else "",
        "budget-start" if starts_budget else "",
    ]
    if not pd.isna(row["rank"]) and row["rank"] == 1:
        classes.append("best")
    return {"cells": cells, "classes": " ".join(filter(None, classes))}


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


DEFAULT_SECTION_BUILDERS: tuple[SectionBuilder, ...] = (leaderboard_sections, problems_section)


def render_report(
    records: Iterable[ResultRecord],
    problems: Iterable[tuple[Path, str]] = (),
    *,
    title: str = DEFAULT_TITLE,
    generated_at: datetime | None = None,
    section_builders: Sequence[SectionBuilder] = DEFAULT_SECTION_BUILDERS,
) -> str:
    """Render the records as one self-contained offline HTML page.

    Args:
        records: validated result records.
        problems: ``(path, reason)`` of files skipped while loading, listed on the page.
        title: page title and heading.
        generated_at: timestamp shown on the page; defaults to now (UTC).
        section_builders: functions building the page sections, in order.

    Returns:
        The HTML document as a string (inline CSS and JavaScript, no external resource).
    """
    record_list = list(records)
    context = ReportContext(records=record_list, table=build_table(record_list), problems=list(problems))
    sections = [section for builder in section_builders for section in builder(context)]
    timestamp = (generated_at or datetime.now(timezone.utc)).isoformat(timespec="seconds")
    table_count = len(context.table.groupby(["dataset", "protocol", "model"])) if len(context.table) else 0
    return _ENVIRONMENT.from_string(_PAGE_TEMPLATE).render(
        title=title,
        sections=sections,
        record_count=len(record_list),
        table_count=table_count,
        problem_count=len(context.problems),
        generated_at=timestamp,
        sort_script=_SORT_SCRIPT,
    )
