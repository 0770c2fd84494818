"""Report plots: pure data preparation from the leaderboard frame, then matplotlib PNGs.

Every plot is built in two steps: a pure function turns the leaderboard frame into the numbers
the plot shows (tested on hand-made records), and a drawing function turns them into PNG bytes.
Figures are built with :class:`matplotlib.figure.Figure` and rendered by the Agg canvas, so the
process-wide pyplot state and backend are never touched. Accuracies are drawn in percent.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import LogLocator, NullFormatter, NullLocator

from leaderboard.table import RANDOM_METHOD

#: Distillation times at or below this (seconds) sit on this floor of the log axis.
COST_FLOOR_SECONDS = 1e-4
DPI = 100
#: Relative x offset between neighbouring methods in the accuracy-vs-budget plot.
DODGE = 0.03
_RANDOM_COLOR = "#6e7781"
_REFERENCE_COLOR = "#1f2328"
# tab10 without its grey (kept for random).
_PALETTE = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#bcbd22",
    "#17becf",
)
_MAX_COLUMNS = 3


# ----------------------------------------------------------------------------------------------
# Data preparation (pure functions of the leaderboard frame)
# ----------------------------------------------------------------------------------------------


def method_colors(methods: Iterable[str], reference_methods: Iterable[str] = ()) -> dict[str, str]:
    """One stable colour per method: ``random`` grey, references near-black, others a palette.

    Args:
        methods: every method name on the page (the order does not matter: names are sorted).
        reference_methods: names drawn as references (the full dataset).

    Returns:
        ``{method: "#rrggbb"}``, the same for a method in every plot of the page.
    """
    references = set(reference_methods)
    colors: dict[str, str] = {}
    others = 0
    for method in sorted(set(methods)):
        if method == RANDOM_METHOD:
            colors[method] = _RANDOM_COLOR
        elif method in references:
            colors[method] = _REFERENCE_COLOR
        else:
            colors[method] = _PALETTE[others % len(_PALETTE)]
            others += 1
    return colors


def budget_curves(group: pd.DataFrame, kind: str = "ipc") -> pd.DataFrame:
    """Accuracy against budget per (model, method) of one (dataset, protocol) slice.

    Args:
        group: leaderboard rows of one dataset and protocol.
        kind: ``"ipc"`` (x is images per class) or ``"fraction"`` (x is the kept fraction).

    Returns:
        Columns ``model, method, x, mean, std`` (fractions), non-reference rows of that budget
        kind only, sorted by model (table order), method and x.
    """
    if kind not in ("ipc", "fraction"):
        raise ValueError(f"kind must be 'ipc' or 'fraction', got {kind!r}")
    rows = group[~group["is_reference"] & group[kind].notna()]
    curves = pd.DataFrame(
        {
            "model": rows["model"].astype(str),
            "method": rows["method"].astype(str),
            "x": rows[kind].astype(float),
            "mean": rows["mean"].astype(float),
            "std": rows["std"].astype(float),
        }
    )
    model_order = {model: index for index, model in enumerate(dict.fromkeys(group["model"]))}
    curves["_model"] = curves["model"].map(model_order)
    return curves.sort_values(["_model", "method", "x"]).drop(columns="_model").reset_index(drop=True)


def reference_levels(group: pd.DataFrame) -> pd.DataFrame:
    """The reference (full dataset) accuracy per (model, method): columns ``model, method, mean, std``."""
    rows = group[group["is_reference"]]
    levels = rows[["model", "method", "mean", "std"]].drop_duplicates(subset=["model", "method"])
    return levels.reset_index(drop=True)


def pareto_front(costs: Sequence[float], accuracies: Sequence[float]) -> list[int]:
    """Indices of the points no other point beats on both cost (lower) and accuracy (higher).

    Points with a non-finite cost or accuracy are ignored. Of points with equal cost and
    accuracy only the first is kept.

    Returns:
        The front, ordered by increasing cost (and so increasing accuracy).
    """
    candidates = [
        index
        for index, (cost, accuracy) in enumerate(zip(costs, accuracies, strict=True))
        if math.isfinite(cost) and math.isfinite(accuracy)
    ]
    candidates.sort(key=lambda index: (costs[index], -accuracies[index], index))
    front: list[int] = []
    best = -math.inf
    for index in candidates:
        if accuracies[index] > best:
            front.append(index)
            best = accuracies[index]
    return front


def cost_points(group: pd.DataFrame) -> pd.DataFrame:
    """Accuracy against distillation cost per (model, method, budget) of one slice.

    Returns:
        Columns ``model, method, budget, seconds, mean, std, on_front``: non-reference rows with
        a measured distillation time; ``seconds`` is clipped below at
        :data:`COST_FLOOR_SECONDS` (for the log axis); ``on_front`` marks each model's Pareto
        front (cheaper and more accurate than every point it excludes).
    """
    rows = group[~group["is_reference"] & group["distill_seconds"].notna()]
    points = pd.DataFrame(
        {
            "model": rows["model"].astype(str),
            "method": rows["method"].astype(str),
            "budget": rows["budget"].astype(str),
            "seconds": rows["distill_seconds"].astype(float).clip(lower=COST_FLOOR_SECONDS),
            "mean": rows["mean"].astype(float),
            "std": rows["std"].astype(float),
        }
    ).reset_index(drop=True)
    points["on_front"] = False
    for _, model_points in points.groupby("model", sort=False):
        front = pareto_front(model_points["seconds"].tolist(), model_points["mean"].tolist())
        points.loc[model_points.index[front], "on_front"] = True
    return points


def heatmap_matrix(group: pd.DataFrame) -> pd.DataFrame:
    """Mean accuracy per method (rows) and evaluation model (columns) at one budget.

    Args:
        group: leaderboard rows of one dataset, protocol and budget.

    Returns:
        A method x model frame of fractions (NaN where a method lacks a model), columns in table
        order plus ``"mean"`` (the mean over models, NaN unless every model is present); rows
        sorted by that mean, best first, reference methods last.
    """
    matrix = group.pivot_table(index="method", columns="model", values="mean", aggfunc="first", sort=False)
    models = list(dict.fromkeys(group["model"]))
    matrix = matrix.reindex(columns=models)
    matrix["mean"] = matrix[models].mean(axis=1, skipna=False)
    references = set(group.loc[group["is_reference"], "method"])
    order = sorted(
        matrix.index,
        key=lambda method: (
            method in references,
            -matrix.loc[method, "mean"] if not math.isnan(matrix.loc[method, "mean"]) else math.inf,
            method,
        ),
    )
    matrix = matrix.loc[order]
    matrix.columns.name = None
    matrix.index.name = "method"
    return matrix


# ----------------------------------------------------------------------------------------------
# Drawing
# ----------------------------------------------------------------------------------------------


def figure_png(figure: Figure) -> bytes:
    """Render a figure to PNG bytes with the Agg canvas (no pyplot, no metadata)."""
    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    return buffer.getvalue()


def png_data_uri(png: bytes) -> str:
    """A ``data:image/png;base64,...`` URI for embedding in the page."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _subplots(count: int, *, width: float = 5.2, height: float = 3.6) -> tuple[Figure, list[Axes]]:
    columns = min(count, _MAX_COLUMNS)
    rows = math.ceil(count / columns)
    figure = Figure(figsize=(width * columns, height * rows), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False).ravel().tolist()
    for extra in axes[count:]:
        extra.set_visible(False)
    return figure, axes[:count]


def _style_axes(axes: Axes) -> None:
    axes.grid(True, which="major", color="#d0d7de", linewidth=0.6)
    axes.set_axisbelow(True)
    for side in ("top", "right"):
        axes.spines[side].set_visible(False)


def _draw_reference_lines(axes: Axes, levels: pd.DataFrame, colors: Mapping[str, str]) -> None:
    for _, level in levels.iterrows():
        mean, std = 100 * level["mean"], 100 * level["std"]
        color = colors.get(level["method"], _REFERENCE_COLOR)
        axes.axhline(mean, color=color, linestyle=":", linewidth=1.4, label=f"{level['method']} (all data)")
        if std > 0:
            axes.axhspan(mean - std, mean + std, color=color, alpha=0.08, linewidth=0)


def plot_accuracy_vs_budget(group: pd.DataFrame, colors: Mapping[str, str], kind: str = "ipc") -> bytes | None:
    """Accuracy (mean ± std error bars) against budget, one line per method, one panel per model.

    Args:
        group: leaderboard rows of one dataset and protocol.
        colors: from :func:`method_colors`.
        kind: ``"ipc"`` or ``"fraction"`` budgets.

    Returns:
        PNG bytes, or ``None`` when the slice has fewer than two budgets of that kind (a single
        budget is better read in the table or the cross-architecture heatmap).
    """
    curves = budget_curves(group, kind)
    if curves["x"].nunique() < 2:
        return None
    levels = reference_levels(group)
    models = list(dict.fromkeys(curves["model"]))
    figure, panels = _subplots(len(models))
    budgets = sorted(curves["x"].unique())
    log_x = len(budgets) > 1 and budgets[-1] / budgets[0] >= 4
    for axes, model in zip(panels, models, strict=True):
        model_curves = curves[curves["model"] == model]
        methods = sorted(model_curves["method"].unique())
        for method, points in model_curves.groupby("method", sort=True):
            is_random = method == RANDOM_METHOD
            # Methods side by side (a few percent of x apart) so error bars at one budget do not hide each other.
            offset = DODGE * (methods.index(method) - (len(methods) - 1) / 2)
            x = points["x"] * (100 if kind == "fraction" else 1) * (1 + offset)
            axes.errorbar(
                x,
                100 * points["mean"],
                yerr=100 * points["std"],
                color=colors.get(str(method), _RANDOM_COLOR),
                marker="o",
                markersize=4,
                linestyle="--" if is_random else "-",
                linewidth=1.4,
                capsize=3,
                label=str(method),
                zorder=2 if is_random else 3,
            )
        _draw_reference_lines(axes, levels[levels["model"] == model], colors)
        if log_x:
            axes.set_xscale("log")
        ticks = [value * (100 if kind == "fraction" else 1) for value in budgets]
        axes.set_xticks(ticks, [f"{tick:g}" for tick in ticks])
        axes.minorticks_off()
        axes.set_xlabel("images per class" if kind == "ipc" else "kept fraction (%)")
        axes.set_ylabel("test accuracy (%)")
        axes.set_title(model, fontsize=11)
        _style_axes(axes)
        axes.legend(fontsize=8, frameon=False, loc="best")
    return figure_png(figure)


def plot_accuracy_vs_cost(group: pd.DataFrame, colors: Mapping[str, str]) -> bytes | None:
    """Accuracy against distillation time (log x), one panel per model, the Pareto front joined.

    Returns:
        PNG bytes, or ``None`` when no row of the slice has a measured distillation time.
    """
    points = cost_points(group)
    if points.empty:
        return None
    levels = reference_levels(group)
    models = list(dict.fromkeys(points["model"]))
    figure, panels = _subplots(len(models))
    for axes, model in zip(panels, models, strict=True):
        model_points = points[points["model"] == model]
        front = model_points[model_points["on_front"]].sort_values("seconds")
        axes.step(
            front["seconds"],
            100 * front["mean"],
            where="post",
            color="#afb8c1",
            linewidth=2.5,
            alpha=0.8,
            zorder=1,
            label="Pareto front",
        )
        for method, method_points in model_points.groupby("method", sort=True):
            axes.errorbar(
                method_points["seconds"],
                100 * method_points["mean"],
                yerr=100 * method_points["std"],
                color=colors.get(str(method), _RANDOM_COLOR),
                marker="o",
                markersize=5,
                linestyle="none",
                capsize=2,
                label=str(method),
                zorder=3,
            )
            for _, point in method_points.iterrows():
                axes.annotate(
                    point["budget"],
                    (point["seconds"], 100 * point["mean"]),
                    textcoords="offset points",
                    xytext=(5, 4),
                    fontsize=7,
                    color="#59636e",
                )
        _draw_reference_lines(axes, levels[levels["model"] == model], colors)
        axes.set_xscale("log")
        low, high = model_points["seconds"].min(), model_points["seconds"].max()
        axes.set_xlim(low / 3, high * 3)
        # Over less than two decades, ticks at 1 and 3 of each decade so the axis has a scale.
        subs = (1.0,) if math.log10(high / low) + math.log10(9) >= 2 else (1.0, 3.0)
        axes.xaxis.set_major_locator(LogLocator(base=10, subs=subs, numticks=8))
        axes.xaxis.set_minor_locator(NullLocator())
        axes.xaxis.set_minor_formatter(NullFormatter())
        axes.set_xlabel("distillation time (s, log scale)")
        axes.set_ylabel("test accuracy (%)")
        axes.set_title(model, fontsize=11)
        _style_axes(axes)
        axes.legend(fontsize=8, frameon=False, loc="best")
    return figure_png(figure)


def plot_heatmap(matrix: pd.DataFrame, *, title: str) -> bytes:
    """A method x model heatmap of accuracies (fractions in, percent annotated in each cell)."""
    values = 100 * matrix.to_numpy(dtype=float)
    rows, columns = values.shape
    figure = Figure(figsize=(1.2 + 1.0 * columns, 1.0 + 0.45 * rows), layout="constrained")
    axes = figure.subplots()
    finite = values[np.isfinite(values)]
    low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 100.0)
    cmap = colormaps["viridis"].with_extremes(bad="#eaeef2")
    image = axes.imshow(np.ma.masked_invalid(values), cmap=cmap, vmin=low, vmax=max(high, low + 1e-6))
    axes.set_xticks(range(columns), list(matrix.columns), rotation=30, ha="right")
    axes.set_yticks(range(rows), list(matrix.index))
    if "mean" in matrix.columns and columns > 1:
        axes.axvline(columns - 1.5, color="white", linewidth=3)
    middle = (low + high) / 2
    for row in range(rows):
        for column in range(columns):
            value = values[row, column]
            text = "—" if not math.isfinite(value) else f"{value:.1f}"
            color = "#1f2328" if not math.isfinite(value) or value > middle else "white"
            axes.text(column, row, text, ha="center", va="center", fontsize=8, color=color)
    axes.set_title(title, fontsize=10)
    figure.colorbar(image, ax=axes, shrink=0.8, label="accuracy (%)")
    return figure_png(figure)
