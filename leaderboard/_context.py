"""What report sections are built from and what they return; shared by :mod:`leaderboard.sections` and
:mod:`leaderboard.report` so neither imports the other's internals."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from markupsafe import Markup

from leaderboard import plots
from leaderboard.records import ResultRecord


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
