"""The leaderboard table: a pure function of the records, plus CSV/JSON/Markdown exports.

One row per (dataset, protocol, evaluation model, budget, method). Accuracies stay fractions in
the frame, the CSV and the JSON; only the Markdown (and the HTML report) show percent.
"""

from __future__ import annotations

import math
import warnings
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from data.files import StrPath, write_text_atomic
from leaderboard.records import ResultRecord, budget_label, summarize_accuracies

RANDOM_METHOD = "random"
#: The random floor of a table group, per modality (images: ``random``; graphs: ``random_graphs``).
RANDOM_METHODS = (RANDOM_METHOD, "random_graphs")
REFERENCE_METHOD = "full"
REFERENCE_FAMILY = "reference"
SIGNIFICANCE_LEVEL = 0.05
COST_COLUMNS = ("distill_seconds", "distill_peak_memory_bytes", "set_bytes", "eval_seconds", "num_images")
GROUP_COLUMNS = ("dataset", "protocol", "model", "budget")
TABLE_COLUMNS = (
    *GROUP_COLUMNS,
    "ipc",
    "fraction",
    "method",
    "family",
    "label_type",
    "is_reference",
    "mean",
    "std",
    "ci95_low",
    "ci95_high",
    "n",
    "seeds",
    "gain_vs_random",
    "p_value",
    "significant",
    "rank",
    "selected_on_test",
    *COST_COLUMNS,
    "roc_auc_mean",
    "roc_auc_std",
)
_MISSING = "—"
SIGNIFICANCE_MARKER = "*"
NOT_RUN = "not run"


@dataclass(frozen=True, order=True)
class BudgetKey:
    """A budget group that sorts ipc budgets (by ipc), then fractions, then ``full``."""

    kind_order: int
    value: float
    ipc: int | None = field(compare=False)
    fraction: float | None = field(compare=False)

    @classmethod
    def of(cls, ipc: int | None, fraction: float | None) -> BudgetKey:
        if ipc is not None:
            return cls(0, float(ipc), ipc, None)
        if fraction is not None:
            return cls(1, fraction, None, fraction)
        return cls(2, 0.0, None, None)

    @property
    def label(self) -> str:
        return budget_label(self.ipc, self.fraction)


def selects_on_test(record: ResultRecord) -> bool:
    """Whether ``record``'s protocol reported the best test checkpoint (``report: best_test``):
    such rows replay a paper's number and are never ranked."""
    return record.protocol_config.get("report") == "best_test"


@dataclass
class _RowPool:
    """Everything pooled into one table row: the records and their accuracies for one model."""

    records: list[ResultRecord] = field(default_factory=list)
    accuracies: list[float] = field(default_factory=list)
    roc_aucs: list[float] = field(default_factory=list)
    roc_auc_missing: bool = False

    def add(self, record: ResultRecord, accuracies: Sequence[float], roc_auc: Sequence[float] | None = None) -> None:
        self.records.append(record)
        self.accuracies.extend(accuracies)
        if roc_auc is None:
            self.roc_auc_missing = True
        else:
            self.roc_aucs.extend(roc_auc)

    def roc_auc_summary(self) -> tuple[float, float]:
        """Mean and sample std of the pooled ROC-AUCs (NaN unless every record has them)."""
        if self.roc_auc_missing or not self.roc_aucs:
            return math.nan, math.nan
        summary = summarize_accuracies(self.roc_aucs)
        return summary["mean"], summary["std"]

    def selects_on_test(self) -> bool:
        """Whether any pooled record reports a checkpoint chosen on test (a paper protocol)."""
        return any(selects_on_test(record) for record in self.records)

    def joined(self, attribute: str) -> str:
        """The distinct values of a record attribute, comma-joined (normally exactly one)."""
        return ",".join(sorted({str(getattr(record, attribute)) for record in self.records}))

    def mean_cost(self, name: str) -> float:
        values = [getattr(record.costs, name) for record in self.records]
        measured = [float(value) for value in values if value is not None]
        return math.fsum(measured) / len(measured) if measured else math.nan


def welch_p_value(sample: Sequence[float], baseline: Sequence[float]) -> float:
    """Two-sided Welch's t-test p-value of ``sample`` against ``baseline``.

    Returns NaN when either side has fewer than two values or both sides have zero variance.
    """
    if len(sample) < 2 or len(baseline) < 2:
        return math.nan
    if np.var(sample, ddof=1) == 0.0 and np.var(baseline, ddof=1) == 0.0:
        return math.nan
    with warnings.catch_warnings():
        # One constant side is fine for Welch's test; scipy still warns about precision loss.
        warnings.filterwarnings("ignore", message="Precision loss occurred", category=RuntimeWarning)
        return float(stats.ttest_ind(sample, baseline, equal_var=False).pvalue)


def _empty_table() -> pd.DataFrame:
    return pd.DataFrame({column: pd.Series(dtype=_dtype(column)) for column in TABLE_COLUMNS})


def _dtype(column: str) -> str:
    if column in ("ipc", "n", "seeds", "rank"):
        return "Int64"
    if column in ("is_reference", "significant", "selected_on_test"):
        return "bool"
    if column in GROUP_COLUMNS or column in ("method", "family", "label_type"):
        return "str"
    return "float64"


def build_table(records: Iterable[ResultRecord]) -> pd.DataFrame:
    """Build the leaderboard frame from records; a pure function, no I/O.

    Rows are keyed by (dataset, protocol, model, budget, method); the accuracies of every record
    of a row (all its evaluation runs from all seeds) are pooled. Rows of the ``reference`` family
    (``full``) are repeated in every budget group of their (dataset, protocol, model), with
    ``is_reference`` set and ``ipc``/``fraction`` taken from the group; they get a gain and a
    p-value against ``random`` but no rank. The ``random`` row has gain 0 and p-value NaN.

    Args:
        records: validated result records, in any order.

    Returns:
        A frame with :data:`TABLE_COLUMNS`, sorted by dataset, protocol, model, budget (ipc
        ascending, then fraction ascending) and rank (reference rows last).
    """
    budgeted_pools: dict[tuple[str, str, str, BudgetKey, str], _RowPool] = defaultdict(_RowPool)
    reference_pools: dict[tuple[str, str, str, str], _RowPool] = defaultdict(_RowPool)
    for record in records:
        for model, result in record.results.items():
            if record.family == REFERENCE_FAMILY:
                reference_pools[(record.dataset, record.protocol, model, record.method)].add(
                    record, result.accuracies, result.roc_auc
                )
            else:
                budget = BudgetKey.of(record.ipc, record.fraction)
                key = (record.dataset, record.protocol, model, budget, record.method)
                budgeted_pools[key].add(record, result.accuracies, result.roc_auc)

    groups: dict[tuple[str, str, str, BudgetKey], list[tuple[str, _RowPool, bool]]] = defaultdict(list)
    for (dataset, protocol, model, budget, method), pool in budgeted_pools.items():
        groups[(dataset, protocol, model, budget)].append((method, pool, False))
    budgets_by_model: dict[tuple[str, str, str], set[BudgetKey]] = defaultdict(set)
    for dataset, protocol, model, budget in groups:
        budgets_by_model[(dataset, protocol, model)].add(budget)
    for (dataset, protocol, model, method), pool in reference_pools.items():
        budgets = budgets_by_model.get((dataset, protocol, model)) or {BudgetKey.of(None, None)}
        for budget in budgets:
            groups[(dataset, protocol, model, budget)].append((method, pool, True))

    rows: list[dict[str, Any]] = []
    for (dataset, protocol, model, budget), entries in groups.items():
        rows.extend(_group_rows(dataset, protocol, model, budget, entries))
    if not rows:
        return _empty_table()

    frame = pd.DataFrame(rows)
    frame = frame.sort_values(
        ["dataset", "protocol", "model", "_budget", "is_reference", "rank", "method"],
        na_position="last",
        kind="stable",
    )
    frame = frame.drop(columns="_budget").reset_index(drop=True)
    return frame.astype({column: _dtype(column) for column in TABLE_COLUMNS})[list(TABLE_COLUMNS)]


def _group_rows(
    dataset: str, protocol: str, model: str, budget: BudgetKey, entries: list[tuple[str, _RowPool, bool]]
) -> list[dict[str, Any]]:
    """Rows of one (dataset, protocol, model, budget) group with gain, p-value and rank."""
    random_pool = next((pool for method, pool, is_ref in entries if method in RANDOM_METHODS and not is_ref), None)
    random_mean = math.fsum(random_pool.accuracies) / len(random_pool.accuracies) if random_pool else math.nan
    competitor_means = [math.fsum(pool.accuracies) / len(pool.accuracies) for _, pool, is_ref in entries if not is_ref]
    ranked = not any(pool.selects_on_test() for _, pool, _ in entries)  # best-on-test rows are never ranked
    rows = []
    for method, pool, is_reference in entries:
        summary = summarize_accuracies(pool.accuracies)
        mean = summary["mean"]
        is_random = method in RANDOM_METHODS and not is_reference
        if random_pool is None or is_random:
            p_value = math.nan
        else:
            p_value = welch_p_value(pool.accuracies, random_pool.accuracies)
        row: dict[str, Any] = {
            "dataset": dataset,
            "protocol": protocol,
            "model": model,
            "budget": budget.label,
            "ipc": budget.ipc,
            "fraction": budget.fraction,
            "method": method,
            "family": pool.joined("family"),
            "label_type": pool.joined("label_type"),
            "is_reference": is_reference,
            "mean": mean,
            "std": summary["std"],
            "ci95_low": summary["ci95"][0],
            "ci95_high": summary["ci95"][1],
            "n": len(pool.accuracies),
            "seeds": len(pool.records),
            "gain_vs_random": mean - random_mean,
            "p_value": p_value,
            "significant": bool(p_value < SIGNIFICANCE_LEVEL),
            "rank": None if is_reference or not ranked else 1 + sum(other > mean for other in competitor_means),
            "selected_on_test": pool.selects_on_test(),
            "_budget": budget,
        }
        row.update({name: pool.mean_cost(name) for name in COST_COLUMNS})
        row["roc_auc_mean"], row["roc_auc_std"] = pool.roc_auc_summary()
        rows.append(row)
    return rows


@dataclass(frozen=True)
class BaselineGap:
    """A baseline row a table should have but does not: ``random`` at a budget, or ``full``."""

    dataset: str
    protocol: str
    model: str
    budget: str
    method: str

    @property
    def message(self) -> str:
        """What is missing and what it costs the reader, in one sentence."""
        if self.method == RANDOM_METHOD:
            return (
                f"no {RANDOM_METHOD} baseline at {self.budget}: gains and p-values against random "
                "cannot be computed for this budget"
            )
        return (
            f"no full-dataset reference ({REFERENCE_METHOD}) under protocol {self.protocol} and model "
            f"{self.model}: the upper bound is unknown"
        )


def baseline_gaps(table: pd.DataFrame) -> list[BaselineGap]:
    """The ``random`` and ``full`` rows missing from a leaderboard frame; a pure function.

    Every budget group of a (dataset, protocol, model) should hold a ``random`` row and a
    reference row. A missing reference is reported once per budget group (the reference row is
    repeated per budget when present). A group holding only the reference needs no ``random``.

    Args:
        table: a frame from :func:`build_table`.

    Returns:
        The gaps in table order: per budget group, ``random`` first, then ``full``.
    """
    gaps: list[BaselineGap] = []
    for (dataset, protocol, model), group in table.groupby(["dataset", "protocol", "model"], sort=False):
        has_reference = bool(group["is_reference"].any())
        budgeted = group[~group["is_reference"]]
        for budget in dict.fromkeys(budgeted["budget"]):
            rows = budgeted[budgeted["budget"] == budget]
            if not rows["method"].isin(RANDOM_METHODS).any():
                gaps.append(BaselineGap(dataset, protocol, model, budget, RANDOM_METHOD))
            if not has_reference:
                gaps.append(BaselineGap(dataset, protocol, model, budget, REFERENCE_METHOD))
    return gaps


# ----------------------------------------------------------------------------------------------
# Display formatting (percent) shared by the Markdown export and the HTML report
# ----------------------------------------------------------------------------------------------


def is_missing(value: Any) -> bool:
    """Whether a table value is absent: ``None``, ``pd.NA`` or NaN."""
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def format_accuracy(mean: float, std: float) -> str:
    """Format a fraction mean and std as percent, e.g. ``"91.2 ± 1.0"``."""
    return f"{100 * mean:.1f} ± {100 * std:.1f}"


def format_interval(low: float, high: float) -> str:
    """Format a fraction interval as percent, e.g. ``"[88.5, 93.5]"``."""
    return f"[{100 * low:.1f}, {100 * high:.1f}]"


def format_gain(gain: float) -> str:
    """Format a fraction difference as signed percentage points, e.g. ``"+1.2"``."""
    return _MISSING if is_missing(gain) else f"{100 * gain:+.1f}"


def format_p_value(p_value: float) -> str:
    """Format a p-value with two significant digits, ``"<0.001"`` below 0.001."""
    if is_missing(p_value):
        return _MISSING
    return "<0.001" if p_value < 0.001 else f"{p_value:.2g}"


def format_seconds(seconds: float) -> str:
    """Format a duration, e.g. ``"<1 ms"``, ``"250 ms"``, ``"12.3 s"``, ``"4.2 min"``, ``"1.5 h"``."""
    if is_missing(seconds):
        return _MISSING
    if seconds < 0.001:
        return "<1 ms"
    if seconds < 1:
        return f"{1000 * seconds:.0f} ms"
    if seconds < 60:
        return f"{seconds:.3g} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def format_bytes(size: float) -> str:
    """Format a byte count with binary units, e.g. ``"4.5 KiB"``."""
    if is_missing(size):
        return _MISSING
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def format_rank(rank: Any) -> str:
    """Format a rank; reference rows have none."""
    return _MISSING if is_missing(rank) else str(int(rank))


def format_count(value: Any) -> str:
    """Format a mean count (e.g. images per set) without decimals."""
    return _MISSING if is_missing(value) else f"{value:.0f}"


DISPLAY_COLUMNS: dict[str, str] = {
    "budget": "Budget",
    "rank": "Rank",
    "method": "Method",
    "family": "Family",
    "label_type": "Labels",
    "accuracy": "Accuracy (%)",
    "ci95": "95% CI (%)",
    "gain_vs_random": "Δ random (pp)",
    "p_value": "p (Welch)",
    "seeds": "Seeds",
    "n": "n",
    "distill_seconds": "Distill time",
    "distill_peak_memory_bytes": "Peak memory",
    "set_bytes": "Set size",
    "num_images": "Images",
    "eval_seconds": "Eval time",
}
#: Display columns shown only for tables whose rows have them (ROC-AUC: graph protocols).
OPTIONAL_DISPLAY_COLUMNS: dict[str, str] = {"roc_auc": "ROC-AUC (%)"}


def format_row(row: pd.Series | dict[str, Any]) -> dict[str, str]:
    """Format one table row for display: keys of :data:`DISPLAY_COLUMNS`, percent strings.

    A gain significantly different from ``random`` (Welch p < 0.05) carries a ``*``.
    """
    significance = f" {SIGNIFICANCE_MARKER}" if row["significant"] else ""
    return {
        "budget": str(row["budget"]),
        "rank": format_rank(row["rank"]),
        "method": str(row["method"]),
        "family": str(row["family"]),
        "label_type": str(row["label_type"]),
        "accuracy": format_accuracy(row["mean"], row["std"]),
        "ci95": format_interval(row["ci95_low"], row["ci95_high"]),
        "gain_vs_random": format_gain(row["gain_vs_random"]) + significance,
        "p_value": format_p_value(row["p_value"]),
        "seeds": str(int(row["seeds"])),
        "n": str(int(row["n"])),
        "distill_seconds": format_seconds(row["distill_seconds"]),
        "distill_peak_memory_bytes": format_bytes(row["distill_peak_memory_bytes"]),
        "set_bytes": format_bytes(row["set_bytes"]),
        "num_images": format_count(row["num_images"]),
        "eval_seconds": format_seconds(row["eval_seconds"]),
        "roc_auc": _MISSING
        if is_missing(row.get("roc_auc_mean"))
        else format_accuracy(row["roc_auc_mean"], row["roc_auc_std"]),
    }


def format_missing_row(gap: BaselineGap) -> dict[str, str]:
    """Display cells of the placeholder row of a missing baseline: ``not run`` under accuracy."""
    cells = dict.fromkeys([*DISPLAY_COLUMNS, *OPTIONAL_DISPLAY_COLUMNS], _MISSING)
    cells.update(
        budget=gap.budget,
        method=gap.method,
        family=REFERENCE_FAMILY if gap.method == REFERENCE_METHOD else "selection",
        label_type="hard",
        accuracy=NOT_RUN,
    )
    return cells


# ----------------------------------------------------------------------------------------------
# Exports
# ----------------------------------------------------------------------------------------------

MARKDOWN_LEGEND = (
    "Accuracy in percent: mean ± sample std over all evaluation runs of all seeds; 95% CI of the mean. "
    "Δ random in percentage points against `random` at the same budget; "
    f"`{SIGNIFICANCE_MARKER}` marks Welch's t-test p < {SIGNIFICANCE_LEVEL:g}. "
    "Costs are means over seeds. Baselines in italics; a baseline that was not run says so."
)


def to_markdown(table: pd.DataFrame) -> str:
    """Render the table as GitHub Markdown: one table per (dataset, protocol, evaluation model).

    Rows keep the frame's order; a missing ``random`` or ``full`` row of a budget group gets a
    ``not run`` placeholder line at the end of its group. ``random`` and reference rows are in
    italics. Accuracies are in percent.
    """
    lines = [MARKDOWN_LEGEND, ""]
    if table.empty:
        return "\n".join([*lines, "No records."]) + "\n"
    missing: dict[tuple[str, str, str, str], list[BaselineGap]] = defaultdict(list)
    for gap in baseline_gaps(table):
        missing[(gap.dataset, gap.protocol, gap.model, gap.budget)].append(gap)
    names = {**DISPLAY_COLUMNS, **OPTIONAL_DISPLAY_COLUMNS}
    for (dataset, protocol, model), group in table.groupby(["dataset", "protocol", "model"], sort=False):
        # ROC-AUC is shown where a protocol records it (the graph protocols).
        columns = list(DISPLAY_COLUMNS) + (["roc_auc"] if group["roc_auc_mean"].notna().any() else [])
        lines += [
            f"### {dataset} · {protocol} · {model}",
            "",
            _markdown_line([names[column] for column in columns]),
            _markdown_line(["---:" if _is_numeric(column) else "---" for column in columns]),
        ]
        budgets = list(dict.fromkeys(group["budget"]))
        for budget in budgets:
            for _, row in group[group["budget"] == budget].iterrows():
                cells = format_row(row)
                if row["is_reference"] or row["method"] in RANDOM_METHODS:
                    cells["method"] = f"*{cells['method']}*"
                lines.append(_markdown_line([cells[column] for column in columns]))
            for gap in missing.get((dataset, protocol, model, budget), []):
                cells = format_missing_row(gap)
                cells["method"] = f"*{cells['method']}*"
                lines.append(_markdown_line([cells[column] for column in columns]))
        lines.append("")
    return "\n".join(lines)


def _is_numeric(column: str) -> bool:
    return column not in ("budget", "method", "family", "label_type")


def _markdown_line(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"


def to_csv(table: pd.DataFrame, path: StrPath) -> Path:
    """Write the table as CSV (fractions, not percent), atomically; returns the path."""
    return write_text_atomic(path, table.to_csv(index=False))


def to_json(table: pd.DataFrame, path: StrPath) -> Path:
    """Write the table as a JSON list of row objects (fractions; NaN as null), atomically."""
    return write_text_atomic(path, table.to_json(orient="records", indent=2, double_precision=15) + "\n")
