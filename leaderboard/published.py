"""Published results of the suite's methods, shipped as data, and the reproduction view.

``published_results.csv`` (beside this module, inside the wheel) holds one row per number a paper,
README or re-reporting table gives for a method on a dataset at a budget, evaluated on a model:
accuracies as fractions in ``[0, 1]``, with the paper's evaluation particulars and the table it
comes from. :func:`published_results` reads and validates it; :func:`reproduction_table` sets every
published number beside the suite's measured cell and says whether the two agree within noise.

Budgets are ``ipc`` (images or graphs per class) or ``fraction`` (the kept share of the training
set: a pruning rate ``r`` is ``fraction = 1 - r``); both are empty for whole-dataset references and
for methods whose size is not stated as a budget (Mirage's support threshold).
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import pandas as pd

from data.files import StrPath
from data.untrusted import BadFileError, read_limited
from leaderboard.records import ResultRecord, budget_label, summarize_accuracies
from leaderboard.table import is_missing

PUBLISHED_RESULTS_NAME = "published_results.csv"
#: The columns of the published table, in file order.
PUBLISHED_COLUMNS = (
    "method",
    "dataset",
    "ipc",
    "fraction",
    "model",
    "metric",
    "accuracy",
    "std",
    "label_regime",
    "evaluation_notes",
    "source",
    "provenance",
)
#: What identifies a published number: the same cell may be reported by several sources.
PUBLISHED_KEY = ("method", "dataset", "ipc", "fraction", "model", "label_regime", "source")
#: ``accuracy`` holds test accuracy, or test ROC-AUC where the paper reports that (graph methods).
METRICS = ("accuracy", "roc_auc")
DEFAULT_METRIC = "accuracy"
LABEL_REGIMES = ("hard", "soft")
#: Methods whose rows are whole-dataset references (no budget).
REFERENCE_METHODS = ("full", "full_graphs")
#: ``primary``: read from the paper or its official repository; ``secondary``: from another paper's
#: table citing it; ``unverified``: quoted from memory or third-party summaries, to be checked.
PROVENANCES = ("primary", "secondary", "unverified")
#: The shipped table is a few hundred rows; a file far larger than that is not one.
MAX_PUBLISHED_BYTES = 4 * 2**20
_NAME = re.compile(r"^[a-z0-9][a-z0-9_]*$")

WITHIN_NOISE = "within noise"
BELOW = "below"
ABOVE = "above"
NOT_RUN = "not run"
#: The cell was run but its records lack the published metric (e.g. no ROC-AUC recorded).
NOT_MEASURED = "not measured"
VERDICTS = (WITHIN_NOISE, BELOW, ABOVE, NOT_RUN, NOT_MEASURED)
#: Tolerance of the noise comparison, so that a gap exactly at the threshold counts as within it.
_NOISE_TOLERANCE = 1e-9

#: Published model names of a suite model's network under other names it also goes by in records.
MODEL_ALIASES: dict[str, tuple[str, ...]] = {"convnet3": ("convnet", "convnetd3")}
#: Published model names that denote a suite model under the paper's own name; the comparison says so.
MODEL_EQUIVALENTS: dict[str, str] = {
    # torchvision ResNet-18 with a 3x3 stride-1 stem and no max-pool (SRe2L, RDED, INFER on CIFAR/Tiny)
    # and the CIFAR ResNet-18 of the pruning papers: the suite's BatchNorm small-image-stem ResNet-18.
    "resnet18_modified": "resnet18_bn",
    "resnet18_cifar": "resnet18_bn",
}

REPRODUCTION_COLUMNS = (
    "method",
    "dataset",
    "budget",
    "ipc",
    "fraction",
    "model",
    "metric",
    "label_regime",
    "published",
    "published_std",
    "source",
    "provenance",
    "evaluation_notes",
    "protocol",
    "measured_protocol",
    "measured_budget",
    "measured_model",
    "measured_label_regime",
    "measured",
    "measured_std",
    "seeds",
    "runs",
    "gap_points",
    "noise_points",
    "verdict",
    "differences",
)


class PublishedTableError(BadFileError):
    """The published-results table is malformed (a missing column, a value out of range, a repeated row)."""


# ----------------------------------------------------------------------------------------------
# The published table
# ----------------------------------------------------------------------------------------------


def published_results(path: StrPath | None = None) -> pd.DataFrame:
    """The published results as a frame, validated.

    Args:
        path: a CSV with :data:`PUBLISHED_COLUMNS`; defaults to the table shipped in the package.

    Returns:
        One row per published number, in file order: ``ipc`` as nullable integers, ``fraction``,
        ``accuracy`` and ``std`` as floats (fractions; ``std`` NaN where the source gives none), an
        empty ``metric`` read as ``"accuracy"``.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        PublishedTableError: the file is not UTF-8 CSV with exactly the published columns, a value
            is missing or out of range (accuracies are fractions, not percent), a name is not a
            lowercase registry name, a label regime, metric or provenance is unknown, a row has both
            an ipc and a fraction, or two rows share a :data:`PUBLISHED_KEY`.
    """
    if path is None:
        with resources.as_file(resources.files("leaderboard").joinpath(PUBLISHED_RESULTS_NAME)) as shipped:
            return _read_published(shipped)
    return _read_published(path)


def _read_published(path: StrPath) -> pd.DataFrame:
    raw = read_limited(path, max_bytes=MAX_PUBLISHED_BYTES, what="published-results table")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise PublishedTableError(path, f"not UTF-8 text ({error.reason} at byte {error.start})") from None
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""), strict=True)
        header = list(reader.fieldnames or [])
        rows = list(reader)
    except csv.Error as error:
        raise PublishedTableError(path, f"not valid CSV ({error})") from None
    missing = [column for column in PUBLISHED_COLUMNS if column not in header]
    unknown = [column for column in header if column not in PUBLISHED_COLUMNS]
    if missing or unknown or len(header) != len(set(header)):
        raise PublishedTableError(
            path,
            f"the header must be exactly {list(PUBLISHED_COLUMNS)}; missing {missing}, unknown {unknown}, got {header}",
        )
    if not rows:
        raise PublishedTableError(path, "no published result (the table has only a header)")
    parsed = []
    seen: dict[tuple[Any, ...], int] = {}
    for line, row in enumerate(rows, start=2):
        entry = _parse_row(row, path, line)
        key = tuple(entry[column] for column in PUBLISHED_KEY)
        if key in seen:
            raise PublishedTableError(
                path, f"line {line} repeats line {seen[key]}: both are {dict(zip(PUBLISHED_KEY, key, strict=True))}"
            )
        seen[key] = line
        parsed.append(entry)
    frame = pd.DataFrame(parsed, columns=list(PUBLISHED_COLUMNS))
    return frame.astype({"ipc": "Int64", "fraction": "float64", "accuracy": "float64", "std": "float64"})


def _parse_row(row: Mapping[str, Any], path: StrPath, line: int) -> dict[str, Any]:
    """One CSV row as typed values, or a :class:`PublishedTableError` naming the line and column."""

    def fail(column: str, reason: str) -> PublishedTableError:
        return PublishedTableError(path, f"line {line}, column '{column}': {reason}")

    if None in row or any(value is None for value in row.values()):
        raise PublishedTableError(path, f"line {line} does not have the {len(PUBLISHED_COLUMNS)} fields of the header")
    cells = {column: str(row[column]).strip() for column in PUBLISHED_COLUMNS}
    for column in ("method", "dataset", "model"):
        if not _NAME.match(cells[column]):
            raise fail(column, f"{cells[column]!r} is not a lowercase registry name (letters, digits, _)")
    for column in ("evaluation_notes", "source"):
        if not cells[column]:
            raise fail(column, "is empty; every published number states its evaluation and its source")
    metric = cells["metric"] or DEFAULT_METRIC
    for column, value, choices in (
        ("metric", metric, METRICS),
        ("label_regime", cells["label_regime"], LABEL_REGIMES),
        ("provenance", cells["provenance"], PROVENANCES),
    ):
        if value not in choices:
            raise fail(column, f"{value!r} is not one of {list(choices)}")
    ipc: int | None = None
    if cells["ipc"]:
        if not re.fullmatch(r"[0-9]+", cells["ipc"]) or int(cells["ipc"]) < 1:
            raise fail("ipc", f"{cells['ipc']!r} is not a positive integer")
        ipc = int(cells["ipc"])
    fraction = _fraction(cells["fraction"], "fraction", fail, allow_empty=True)
    if fraction is not None and not fraction > 0.0:
        raise fail("fraction", f"{fraction} is not a kept share in (0, 1]")
    if ipc is not None and fraction is not None:
        raise fail("fraction", f"a row has one budget, ipc or fraction; got ipc={ipc} and fraction={fraction}")
    accuracy = _fraction(cells["accuracy"], "accuracy", fail, allow_empty=False)
    std = _fraction(cells["std"], "std", fail, allow_empty=True)
    return {
        "method": cells["method"],
        "dataset": cells["dataset"],
        "ipc": ipc,
        "fraction": fraction,
        "model": cells["model"],
        "metric": metric,
        "accuracy": accuracy,
        "std": math.nan if std is None else std,
        "label_regime": cells["label_regime"],
        "evaluation_notes": cells["evaluation_notes"],
        "source": cells["source"],
        "provenance": cells["provenance"],
    }


def _fraction(text: str, column: str, fail: Any, *, allow_empty: bool) -> float | None:
    """A finite number in ``[0, 1]`` (``None`` for an empty cell where allowed)."""
    if not text:
        if allow_empty:
            return None
        raise fail(column, "is empty")
    try:
        value = float(text)
    except ValueError:
        raise fail(column, f"{text!r} is not a number") from None
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        hint = " (values are fractions, not percent)" if math.isfinite(value) and 1.0 < value <= 100.0 else ""
        raise fail(column, f"{text} is not in [0, 1]{hint}")
    return value


# ----------------------------------------------------------------------------------------------
# Measured cells
# ----------------------------------------------------------------------------------------------


@dataclass
class _MeasuredCell:
    """The records of one (method, dataset, budget, protocol): accuracies and ROC-AUCs per model."""

    records: list[ResultRecord] = field(default_factory=list)
    accuracies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    roc_aucs: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    roc_auc_missing: set[str] = field(default_factory=set)

    def add(self, record: ResultRecord) -> None:
        self.records.append(record)
        for model, result in record.results.items():
            self.accuracies[model].extend(result.accuracies)
            if result.roc_auc is None:
                self.roc_auc_missing.add(model)
            else:
                self.roc_aucs[model].extend(result.roc_auc)

    def values(self, model: str, metric: str) -> list[float] | None:
        """The pooled runs of ``model`` for ``metric``; ``None`` when some record lacks the metric."""
        if metric == "roc_auc":
            return None if model in self.roc_auc_missing else list(self.roc_aucs[model])
        return list(self.accuracies[model])

    def models(self) -> list[str]:
        return sorted(self.accuracies)

    @property
    def first(self) -> ResultRecord:
        return self.records[0]


def _pool_records(records: Iterable[ResultRecord]) -> dict[tuple[str, str], list[_MeasuredCell]]:
    """Records grouped into measured cells, listed per (method, dataset) in protocol then budget order."""
    cells: dict[tuple[str, str, str, str], _MeasuredCell] = {}
    for record in records:
        key = (record.method, record.dataset, record.protocol, record.budget)
        cells.setdefault(key, _MeasuredCell()).add(record)
    by_method: dict[tuple[str, str], list[_MeasuredCell]] = defaultdict(list)
    for (method, dataset, _, _), cell in sorted(cells.items(), key=lambda item: item[0]):
        by_method[(method, dataset)].append(cell)
    return by_method


def _budget_matches(row: Mapping[str, Any], record: ResultRecord) -> bool:
    """Whether a record is at a published row's budget; a row without a budget matches any."""
    ipc, fraction = row["ipc"], row["fraction"]
    if not is_missing(ipc):
        return record.ipc == int(ipc)
    if not is_missing(fraction):
        return record.fraction is not None and math.isclose(record.fraction, float(fraction), abs_tol=1e-9)
    return True


def _model_family(name: str) -> str:
    """The architecture family of a model name (``convnetd4`` -> ``convnet``, ``resnet18_bn`` -> ``resnet``)."""
    match = re.match(r"[a-z]+", name)
    return match.group(0) if match else name


def _choose_model(published_model: str, measured_models: Sequence[str]) -> tuple[str, str | None]:
    """The measured model to compare against, and what differs (``None`` when it is the same model).

    The same name or a :data:`MODEL_ALIASES` or :data:`MODEL_EQUIVALENTS` name first, then a model of
    the same family, then the record's first model: a comparison across models is still shown, with
    the difference.
    """
    for alias in (published_model, *MODEL_ALIASES.get(published_model, ())):
        if alias in measured_models:
            return alias, None
    equivalent = MODEL_EQUIVALENTS.get(published_model)
    if equivalent in measured_models:
        return equivalent, f"model: published {published_model} is the suite's {equivalent}"
    family = [model for model in measured_models if _model_family(model) == _model_family(published_model)]
    chosen = family[0] if family else measured_models[0]
    return chosen, f"model: published {published_model}, measured {chosen}"


def _evaluation_label_regime(record: ResultRecord) -> str:
    """``soft`` when the set has soft labels or the protocol trains on teacher labels, else ``hard``."""
    soft = record.protocol_config.get("soft")
    if isinstance(soft, Mapping) and soft.get("label_source", "hard") != "hard":
        return "soft"
    return record.label_type


def _protocol_text(record: ResultRecord) -> str:
    description = record.protocol_config.get("description")
    return f"{record.protocol}: {description}" if isinstance(description, str) and description else record.protocol


# ----------------------------------------------------------------------------------------------
# The reproduction view
# ----------------------------------------------------------------------------------------------


def reproduction_table(
    records: Iterable[ResultRecord], published: pd.DataFrame | None = None, *, all_datasets: bool = False
) -> pd.DataFrame:
    """Every published number in scope beside the suite's measured cell; a pure function.

    A published row is in scope when its dataset appears in ``records`` (every row with
    ``all_datasets``). It is matched to the records of the same method and dataset at the same
    budget (``ipc`` or ``fraction``; a row without a budget matches any budget). Each protocol (and,
    for budget-free rows, each budget) the cell was measured under gives one output row; a row with
    no record gives one ``not run`` row: the to-do list of cells to run.

    The measured value is the mean over all evaluation runs of all seeds (the leaderboard's
    convention; it equals the mean over seeds when every seed has as many runs) of the matching
    evaluation model: the same model or its suite name (:data:`MODEL_ALIASES`,
    :data:`MODEL_EQUIVALENTS`), else one of the same family, else the record's first model
    (alphabetically), the difference then stated in ``differences``.
    ``measured_std`` is the sample std over those runs. Graph rows whose metric is ``roc_auc``
    compare the recorded ROC-AUC (``not measured`` when a record has none).

    Verdict: ``gap_points = 100 * (measured - published)``, in percentage points. The noise
    threshold is ``noise_points = 2 * sqrt(std_published**2 + std_measured**2)`` in points, where a
    missing std counts as 0, so the threshold uses whichever std is available (with neither, only an
    exact match is within noise). ``within noise`` when ``|gap| <= noise``, else ``below`` or
    ``above``; ``not run`` without a record.

    Args:
        records: validated result records.
        published: a frame from :func:`published_results`; defaults to the shipped table.
        all_datasets: include published rows on datasets no record covers (all ``not run``).

    Returns:
        A frame with :data:`REPRODUCTION_COLUMNS` in published order: ``published``,
        ``published_std``, ``measured`` and ``measured_std`` are fractions; ``evaluation_notes`` is
        the published evaluation, ``measured_protocol`` the record's protocol and its description,
        ``differences`` the model, label-regime and budget differences beyond the protocol.
    """
    record_list = list(records)
    table = published_results() if published is None else published
    datasets = {record.dataset for record in record_list}
    cells = _pool_records(record_list)
    rows: list[dict[str, Any]] = []
    for _, published_row in table.iterrows():
        if not all_datasets and published_row["dataset"] not in datasets:
            continue
        candidates = [
            cell
            for cell in cells.get((published_row["method"], published_row["dataset"]), [])
            if _budget_matches(published_row, cell.first)
        ]
        if not candidates:
            rows.append(_not_run_row(published_row))
        rows.extend(_measured_row(published_row, cell) for cell in candidates)
    frame = pd.DataFrame(rows, columns=list(REPRODUCTION_COLUMNS))
    return frame.astype({"ipc": "Int64", "seeds": "Int64", "runs": "Int64"})


def published_cells_elsewhere(records: Iterable[ResultRecord], published: pd.DataFrame | None = None) -> pd.Series:
    """How many published numbers lie on datasets that no record covers (none of them run), per dataset."""
    table = published_results() if published is None else published
    datasets = {record.dataset for record in records}
    elsewhere = table[~table["dataset"].isin(datasets)]
    return elsewhere.groupby("dataset", sort=True).size()


def _published_fields(row: pd.Series) -> dict[str, Any]:
    ipc = None if is_missing(row["ipc"]) else int(row["ipc"])
    fraction = None if is_missing(row["fraction"]) else float(row["fraction"])
    return {
        "method": row["method"],
        "dataset": row["dataset"],
        "budget": budget_label(ipc, fraction)
        if ipc is not None or fraction is not None or row["method"] in REFERENCE_METHODS
        else "unstated",
        "ipc": ipc,
        "fraction": fraction,
        "model": row["model"],
        "metric": row["metric"],
        "label_regime": row["label_regime"],
        "published": float(row["accuracy"]),
        "published_std": float(row["std"]),
        "source": row["source"],
        "provenance": row["provenance"],
        "evaluation_notes": row["evaluation_notes"],
    }


def _not_run_row(row: pd.Series) -> dict[str, Any]:
    return {
        **_published_fields(row),
        "protocol": None,
        "measured_protocol": None,
        "measured_budget": None,
        "measured_model": None,
        "measured_label_regime": None,
        "measured": math.nan,
        "measured_std": math.nan,
        "seeds": None,
        "runs": None,
        "gap_points": math.nan,
        "noise_points": math.nan,
        "verdict": NOT_RUN,
        "differences": "",
    }


def _measured_row(row: pd.Series, cell: _MeasuredCell) -> dict[str, Any]:
    fields = _published_fields(row)
    record = cell.first
    model, model_difference = _choose_model(fields["model"], cell.models())
    regimes = sorted({_evaluation_label_regime(member) for member in cell.records})
    measured_regime = ",".join(regimes)
    differences = [model_difference] if model_difference else []
    if regimes != [fields["label_regime"]]:
        differences.append(f"labels: published {fields['label_regime']}, measured {measured_regime}")
    if fields["ipc"] is None and fields["fraction"] is None and record.family != "reference":
        differences.append(f"budget: unstated in the source, measured at {record.budget}")
    elif record.capped_class_counts is not None:
        differences.append(f"budget: measured at {record.budget}, some classes hold fewer items")
    values = cell.values(model, fields["metric"])
    base = {
        **fields,
        "protocol": record.protocol,
        "measured_protocol": _protocol_text(record),
        "measured_budget": record.budget,
        "measured_model": model,
        "measured_label_regime": measured_regime,
        "seeds": len(cell.records),
    }
    if not values:
        differences.append(f"metric: the records hold no {fields['metric']}")
        return {
            **base,
            "measured": math.nan,
            "measured_std": math.nan,
            "runs": 0,
            "gap_points": math.nan,
            "noise_points": math.nan,
            "verdict": NOT_MEASURED,
            "differences": "; ".join(differences),
        }
    summary = summarize_accuracies(values)  # mean and sample std (0 for one run)
    measured, measured_std = summary["mean"], summary["std"]
    published_std = 0.0 if math.isnan(fields["published_std"]) else fields["published_std"]
    gap_points = 100.0 * (measured - fields["published"])
    noise_points = 2.0 * 100.0 * math.hypot(published_std, measured_std)
    if abs(gap_points) <= noise_points + _NOISE_TOLERANCE:
        verdict = WITHIN_NOISE
    else:
        verdict = BELOW if gap_points < 0 else ABOVE
    return {
        **base,
        "measured": measured,
        "measured_std": measured_std,
        "runs": len(values),
        "gap_points": gap_points,
        "noise_points": noise_points,
        "verdict": verdict,
        "differences": "; ".join(differences),
    }
