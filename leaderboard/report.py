"""The HTML report: one self-contained offline page (inline CSS, JS and images, no external resource).

The page is a list of sections. Each section builder is a function of a :class:`ReportContext`
(records, leaderboard table, skipped files, results folder) that returns zero or more
:class:`ReportSection`; :data:`~leaderboard.sections.DEFAULT_SECTION_BUILDERS` lists them in page
order. Plots are matplotlib PNGs and grids PIL PNGs, both embedded as ``data:`` URIs, and the
templates, CSS and sort script under ``leaderboard/templates/`` are inlined, so the file works offline.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from pathlib import Path

from data.files import StrPath
from leaderboard._context import ReportContext, ReportSection, SectionBuilder
from leaderboard._templates import ENVIRONMENT
from leaderboard.records import ResultRecord
from leaderboard.sections import DEFAULT_SECTION_BUILDERS
from leaderboard.table import SIGNIFICANCE_MARKER, build_table

__all__ = [
    "DEFAULT_SECTION_BUILDERS",
    "DEFAULT_TITLE",
    "ReportContext",
    "ReportSection",
    "SectionBuilder",
    "render_report",
]

DEFAULT_TITLE = "Condense-bench leaderboard"

# The page never links anywhere: a URL that reaches it from record text is shown defanged.
_URL_SCHEME = re.compile(r"(?i)\b(https?)://")


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
    page = ENVIRONMENT.get_template("page.html.j2").render(
        title=title,
        sections=sections,
        record_count=len(record_list),
        table_count=table_count,
        problem_count=len(context.problems),
        generated_at=timestamp,
        marker=SIGNIFICANCE_MARKER,
        results_label=str(context.results_dir) if context.results_dir is not None else "RESULTS_DIR",
    )
    return _URL_SCHEME.sub(r"\1[:]//", page)
