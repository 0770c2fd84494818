"""The result record: one self-describing JSON file per benchmark cell (schema version 1).

This module owns the record schema. A record is written by the benchmark once a cell has been
distilled and evaluated, and read back by the leaderboard. Accuracies are fractions in ``[0, 1]``.
Writing, finding and loading the files is :mod:`leaderboard.store`.
"""

from __future__ import annotations

import copy
import json
import math
import numbers
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from scipy import stats

from data.untrusted import InputError, is_integer

SCHEMA_NAME = "condense-bench/record"
SCHEMA_VERSION = 1
FAMILIES = ("distillation", "selection", "reference")
LABEL_TYPES = ("hard", "soft")
CONSISTENCY_TOLERANCE = 1e-9


_HEX_RE = re.compile(r"^[0-9a-f]+$")
_PATH_SEGMENT_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+\-]*$")
_RECORD_KEYS = (
    "schema",
    "schema_version",
    "cell_key",
    "method",
    "family",
    "label_type",
    "method_config",
    "dataset",
    "dataset_fingerprint",
    "ipc",
    "fraction",
    "protocol",
    "protocol_config",
    "seed",
    "results",
    "costs",
    "versions",
    "git_revision",
    "device",
    "created",
    "set_path",
)
#: Optional: the per-class counts kept where an ipc budget was capped at a class's size.
_OPTIONAL_RECORD_KEYS = ("capped_class_counts",)
_MODEL_RESULT_KEYS = ("accuracies", "mean", "std", "ci95")
#: Optional per-run metrics beside accuracy (fractions in [0, 1], one per accuracy): the graph
#: protocol records the test ROC-AUC of every run.
_OPTIONAL_MODEL_RESULT_KEYS = ("roc_auc",)
_COST_KEYS = ("distill_seconds", "distill_peak_memory_bytes", "eval_seconds", "set_bytes", "num_images")
#: Optional: seconds of cached intermediate products a cell used (proxy models, expert
#: trajectories, teachers), charged to every cell that uses them, and whether the cache had them.
_OPTIONAL_COST_KEYS = ("precompute_seconds", "precompute_cache_hit")


class RecordError(InputError):
    """A record (or a JSON file claiming to be one) does not follow the schema."""


# ----------------------------------------------------------------------------------------------
# Statistics shared by the producer (benchmark) and the reader (leaderboard)
# ----------------------------------------------------------------------------------------------


def summarize_accuracies(values: Iterable[float]) -> dict[str, Any]:
    """Summarize repeated accuracies of one evaluation model.

    Args:
        values: accuracies as fractions in ``[0, 1]``; at least one.

    Returns:
        ``{"mean": float, "std": float, "ci95": [low, high]}``: ``std`` is the sample standard
        deviation (ddof=1, ``0.0`` for a single value) and ``ci95`` the Student-t 95% interval of
        the mean (``[mean, mean]`` for a single value or zero spread), clipped to ``[0, 1]``: an
        accuracy cannot leave it, and a few runs near 100% would otherwise report an upper end
        above it.

    Raises:
        ValueError: when ``values`` is empty or holds a non-finite number.
    """
    accuracies = [float(value) for value in values]
    if not accuracies:
        raise ValueError("summarize_accuracies needs at least one accuracy, got none")
    if not all(math.isfinite(value) for value in accuracies):
        raise ValueError(f"summarize_accuracies got a non-finite accuracy: {accuracies}")
    count = len(accuracies)
    mean = math.fsum(accuracies) / count
    if count < 2:
        return {"mean": mean, "std": 0.0, "ci95": [mean, mean]}
    std = math.sqrt(math.fsum((value - mean) ** 2 for value in accuracies) / (count - 1))
    half_width = _t_half_width(std, count)
    return {"mean": mean, "std": std, "ci95": [max(0.0, mean - half_width), min(1.0, mean + half_width)]}


def _t_half_width(std: float, count: int) -> float:
    """Half the width of the Student-t 95% interval of a mean of ``count`` values (``count >= 2``)."""
    return float(stats.t.ppf(0.975, df=count - 1)) * std / math.sqrt(count)


def _unclipped_interval(accuracies: Sequence[float], summary: Mapping[str, Any]) -> tuple[float, float]:
    """The t-interval before clipping: records written before intervals were clipped hold it."""
    if len(accuracies) < 2:
        return summary["mean"], summary["mean"]
    half_width = _t_half_width(summary["std"], len(accuracies))
    return summary["mean"] - half_width, summary["mean"] + half_width


# ----------------------------------------------------------------------------------------------
# Value checks (all raise RecordError naming the offending field)
# ----------------------------------------------------------------------------------------------


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _check_str(name: str, value: Any, *, allow_none: bool = False) -> str | None:
    if value is None and allow_none:
        return None
    if not isinstance(value, str) or not value:
        kind = "a non-empty string or null" if allow_none else "a non-empty string"
        raise RecordError(f"{name} must be {kind}, got {value!r}")
    return value


def _check_choice(name: str, value: Any, choices: Sequence[str]) -> str:
    if value not in choices:
        raise RecordError(f"{name} must be one of {list(choices)}, got {value!r}")
    return str(value)


def _check_path_segment(name: str, value: Any) -> str:
    text = _check_str(name, value)
    assert text is not None
    if not _PATH_SEGMENT_RE.match(text):
        raise RecordError(f"{name} {text!r} cannot be used as a folder name: use letters, digits and _ . + - only")
    return text


def _check_int(name: str, value: Any, *, minimum: int | None = None, allow_none: bool = False) -> int | None:
    if value is None and allow_none:
        return None
    if not is_integer(value):
        kind = "an integer or null" if allow_none else "an integer"
        raise RecordError(f"{name} must be {kind}, got {value!r}")
    number = int(value)
    if minimum is not None and number < minimum:
        raise RecordError(f"{name} must be >= {minimum}, got {number}")
    return number


def _check_float(name: str, value: Any, *, allow_none: bool = False) -> float | None:
    if value is None and allow_none:
        return None
    if not _is_real(value):
        kind = "a number or null" if allow_none else "a number"
        raise RecordError(f"{name} must be {kind}, got {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise RecordError(f"{name} must be a finite number, got {number!r}")
    return number


def _check_json_object(name: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, Mapping) or not all(isinstance(key, str) for key in value):
        raise RecordError(f"{name} must be a JSON object with string keys, got {type(value).__name__}")
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise RecordError(f"{name} is not plain JSON (finite numbers, strings, lists, objects): {error}") from None
    return copy.deepcopy(dict(value))


def _check_keys(name: str, mapping: Mapping[str, Any], expected: Sequence[str]) -> None:
    missing = [key for key in expected if key not in mapping]
    unknown = sorted(str(key) for key in mapping if key not in expected)
    if missing:
        raise RecordError(f"{name} is missing required key(s) {missing}")
    if unknown:
        raise RecordError(
            f"{name} has unknown key(s) {unknown}; schema version {SCHEMA_VERSION} allows {list(expected)}"
        )


def _require_mapping(name: str, value: Any) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise RecordError(f"{name} must be a JSON object, got {type(value).__name__}")
    return value


# ----------------------------------------------------------------------------------------------
# Record dataclasses
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelResult:
    """Accuracies of one evaluation model (one per evaluation training) and their summary.

    Construction validates: accuracies are finite fractions in ``[0, 1]`` and ``mean``, ``std``
    and ``ci95`` agree with :func:`summarize_accuracies` to ``1e-9``. Build one from raw
    accuracies with :meth:`from_accuracies`. ``roc_auc`` (optional, graph protocols) holds one
    test ROC-AUC per accuracy.
    """

    accuracies: tuple[float, ...]
    mean: float
    std: float
    ci95: tuple[float, float]
    roc_auc: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        name = "result"
        if self.roc_auc is not None:
            if isinstance(self.roc_auc, (str, bytes)) or not isinstance(self.roc_auc, Iterable):
                raise RecordError(f"{name}.roc_auc must be a list of numbers, got {self.roc_auc!r}")
            roc_auc = tuple(_check_float(f"{name}.roc_auc[{i}]", v) for i, v in enumerate(self.roc_auc))
            if len(roc_auc) != len(tuple(self.accuracies)) or not all(0.0 <= v <= 1.0 for v in roc_auc):  # type: ignore[operator]
                raise RecordError(f"{name}.roc_auc needs one value in [0, 1] per accuracy, got {list(roc_auc)}")
            object.__setattr__(self, "roc_auc", roc_auc)
        if isinstance(self.accuracies, (str, bytes)) or not isinstance(self.accuracies, Iterable):
            raise RecordError(f"{name}.accuracies must be a list of numbers, got {self.accuracies!r}")
        accuracies = tuple(
            _check_float(f"{name}.accuracies[{index}]", value) for index, value in enumerate(self.accuracies)
        )
        if not accuracies:
            raise RecordError(f"{name}.accuracies is empty; a result needs at least one accuracy")
        for index, value in enumerate(accuracies):
            assert value is not None
            if not 0.0 <= value <= 1.0:
                hint = " (accuracies are fractions, not percent)" if 1.0 < value <= 100.0 else ""
                raise RecordError(f"{name}.accuracies[{index}] = {value!r} is not in [0, 1]{hint}")
        mean = _check_float(f"{name}.mean", self.mean)
        std = _check_float(f"{name}.std", self.std)
        if isinstance(self.ci95, (str, bytes)) or not isinstance(self.ci95, Sequence) or len(self.ci95) != 2:
            raise RecordError(f"{name}.ci95 must be a [low, high] pair, got {self.ci95!r}")
        ci95 = (_check_float(f"{name}.ci95[0]", self.ci95[0]), _check_float(f"{name}.ci95[1]", self.ci95[1]))
        expected = summarize_accuracies(accuracies)  # type: ignore[arg-type]
        legacy = _unclipped_interval(accuracies, expected)  # type: ignore[arg-type]
        if all(abs(s - c) <= CONSISTENCY_TOLERANCE for s, c in zip(ci95, legacy, strict=True)):
            ci95 = tuple(expected["ci95"])  # an older record's interval, read back clipped
        for label, stored, computed in (
            ("mean", mean, expected["mean"]),
            ("std", std, expected["std"]),
            ("ci95[0]", ci95[0], expected["ci95"][0]),
            ("ci95[1]", ci95[1], expected["ci95"][1]),
        ):
            assert stored is not None
            if abs(stored - computed) > CONSISTENCY_TOLERANCE:
                raise RecordError(
                    f"{name}.{label} = {stored!r} does not match the accuracies (expected {computed!r}; "
                    "std is ddof=1, ci95 the t-interval; use summarize_accuracies)"
                )
        object.__setattr__(self, "accuracies", accuracies)
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "std", std)
        object.__setattr__(self, "ci95", ci95)

    @classmethod
    def from_accuracies(cls, accuracies: Iterable[float]) -> ModelResult:
        """Build a result from raw accuracies (fractions), computing mean, std and ci95."""
        values = tuple(float(value) for value in accuracies)
        summary = summarize_accuracies(values)
        return cls(values, summary["mean"], summary["std"], tuple(summary["ci95"]))

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON form ``{"accuracies", "mean", "std", "ci95"}`` (+ ``"roc_auc"`` when recorded)."""
        data: dict[str, Any] = {
            "accuracies": list(self.accuracies),
            "mean": self.mean,
            "std": self.std,
            "ci95": list(self.ci95),
        }
        if self.roc_auc is not None:
            data["roc_auc"] = list(self.roc_auc)
        return data

    @classmethod
    def from_dict(cls, data: Any) -> ModelResult:
        """Parse and validate the JSON form."""
        mapping = _require_mapping("result", data)
        required = {k: v for k, v in mapping.items() if k not in _OPTIONAL_MODEL_RESULT_KEYS}
        _check_keys("result", required, _MODEL_RESULT_KEYS)
        return cls(mapping["accuracies"], mapping["mean"], mapping["std"], mapping["ci95"], mapping.get("roc_auc"))


@dataclass(frozen=True)
class RecordCosts:
    """What a cell cost. ``None`` means "not measured" (e.g. no distillation for ``full``)."""

    distill_seconds: float | None
    distill_peak_memory_bytes: int | None
    eval_seconds: float | None
    set_bytes: int | None
    num_images: int | None
    precompute_seconds: float | None = None
    precompute_cache_hit: bool | None = None

    def __post_init__(self) -> None:
        if self.precompute_cache_hit is not None and not isinstance(self.precompute_cache_hit, bool):
            raise RecordError(f"costs.precompute_cache_hit must be a boolean, got {self.precompute_cache_hit!r}")
        for key in ("distill_seconds", "eval_seconds", "precompute_seconds"):
            value = _check_float(f"costs.{key}", getattr(self, key), allow_none=True)
            if value is not None and value < 0:
                raise RecordError(f"costs.{key} must be >= 0, got {value}")
            object.__setattr__(self, key, value)
        for key in ("distill_peak_memory_bytes", "set_bytes", "num_images"):
            object.__setattr__(self, key, _check_int(f"costs.{key}", getattr(self, key), minimum=0, allow_none=True))

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON form."""
        data = {key: getattr(self, key) for key in _COST_KEYS}
        data.update({key: getattr(self, key) for key in _OPTIONAL_COST_KEYS if getattr(self, key) is not None})
        return data

    @classmethod
    def from_dict(cls, data: Any) -> RecordCosts:
        """Parse and validate the JSON form."""
        mapping = _require_mapping("costs", data)
        _check_keys("costs", {k: v for k, v in mapping.items() if k not in _OPTIONAL_COST_KEYS}, _COST_KEYS)
        return cls(**{key: mapping[key] for key in (*_COST_KEYS, *_OPTIONAL_COST_KEYS) if key in mapping})


@dataclass(frozen=True)
class ResultRecord:
    """One benchmark cell: a method at a budget on a dataset, evaluated under a protocol.

    Construction validates every field and raises :class:`RecordError` naming the problem, so an
    instance is always a valid schema-version-1 record. ``ipc`` and ``fraction`` are the budget:
    records of the ``reference`` family (the full dataset) have both ``None``, every other record
    exactly one of them.
    """

    cell_key: str
    method: str
    family: str
    label_type: str
    method_config: dict[str, Any]
    dataset: str
    dataset_fingerprint: str
    ipc: int | None
    fraction: float | None
    protocol: str
    protocol_config: dict[str, Any]
    seed: int
    results: dict[str, ModelResult]
    costs: RecordCosts
    versions: dict[str, str | None]
    git_revision: str | None
    device: str
    created: str
    set_path: str | None
    capped_class_counts: list[int] | None = None

    def __post_init__(self) -> None:
        cell_key = _check_str("cell_key", self.cell_key)
        if not _HEX_RE.match(cell_key or ""):
            raise RecordError(f"cell_key must be a lowercase hex string, got {self.cell_key!r}")
        _check_path_segment("method", self.method)
        _check_path_segment("dataset", self.dataset)
        _check_choice("family", self.family, FAMILIES)
        _check_choice("label_type", self.label_type, LABEL_TYPES)
        _check_str("dataset_fingerprint", self.dataset_fingerprint)
        _check_str("protocol", self.protocol)
        _check_str("device", self.device)
        _check_str("git_revision", self.git_revision, allow_none=True)
        set_path = _check_str("set_path", self.set_path, allow_none=True)
        if set_path is not None and (
            not set_path or set_path.startswith(("/", "\\")) or ".." in re.split(r"[/\\]", set_path) or ":" in set_path
        ):
            raise RecordError(f"set_path must be a path inside the results folder, got {set_path!r}")
        object.__setattr__(self, "seed", _check_int("seed", self.seed))
        object.__setattr__(self, "method_config", _check_json_object("method_config", self.method_config))
        object.__setattr__(self, "protocol_config", _check_json_object("protocol_config", self.protocol_config))
        self._check_budget()
        if self.capped_class_counts is not None:
            counts = self.capped_class_counts
            if self.ipc is None or not isinstance(counts, list) or not counts:
                raise RecordError("capped_class_counts needs an ipc budget and a non-empty list of per-class counts")
            checked = [_check_int(f"capped_class_counts[{i}]", c, minimum=0) for i, c in enumerate(counts)]
            if max(checked) > self.ipc:
                raise RecordError(f"capped_class_counts exceed ipc={self.ipc}: {checked}")
            object.__setattr__(self, "capped_class_counts", checked)
        self._check_results()
        if not isinstance(self.costs, RecordCosts):
            raise RecordError(f"costs must be a RecordCosts, got {type(self.costs).__name__}")
        versions = _require_mapping("versions", self.versions)
        for key, value in versions.items():
            _check_str(f"versions key {key!r}", key)
            _check_str(f"versions.{key}", value, allow_none=True)
        object.__setattr__(self, "versions", dict(versions))
        _check_str("created", self.created)
        try:
            datetime.fromisoformat(self.created)
        except ValueError:
            raise RecordError(f"created must be an ISO 8601 timestamp, got {self.created!r}") from None

    def _check_budget(self) -> None:
        ipc = _check_int("ipc", self.ipc, minimum=1, allow_none=True)
        fraction = _check_float("fraction", self.fraction, allow_none=True)
        if fraction is not None and not 0.0 < fraction <= 1.0:
            raise RecordError(f"fraction must be in (0, 1], got {fraction}")
        if self.family == "reference":
            if ipc is not None or fraction is not None:
                raise RecordError(
                    f"a reference (full dataset) record has no budget: ipc and fraction must be null, "
                    f"got ipc={ipc}, fraction={fraction}"
                )
        elif (ipc is None) == (fraction is None):
            raise RecordError(
                f"a {self.family} record needs exactly one budget, ipc or fraction; got ipc={ipc}, fraction={fraction}"
            )
        object.__setattr__(self, "ipc", ipc)
        object.__setattr__(self, "fraction", fraction)

    def _check_results(self) -> None:
        results = _require_mapping("results", self.results)
        if not results:
            raise RecordError("results is empty; a record needs at least one evaluation model")
        checked: dict[str, ModelResult] = {}
        for model, result in results.items():
            _check_str("results key (evaluation model name)", model)
            if not isinstance(result, ModelResult):
                raise RecordError(f"results.{model} must be a ModelResult, got {type(result).__name__}")
            checked[model] = result
        object.__setattr__(self, "results", checked)

    @property
    def budget(self) -> str:
        """The budget as a label: ``"ipc=10"``, ``"fraction=0.3"`` or ``"full"``; ``"ipc=500 (capped)"``
        when some class held fewer images than the ipc (``budget_policy=cap``)."""
        label = budget_label(self.ipc, self.fraction)
        return f"{label} (capped)" if self.capped_class_counts is not None else label

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON form (schema version 1), keys in schema order."""
        return {
            "schema": SCHEMA_NAME,
            "schema_version": SCHEMA_VERSION,
            "cell_key": self.cell_key,
            "method": self.method,
            "family": self.family,
            "label_type": self.label_type,
            "method_config": copy.deepcopy(self.method_config),
            "dataset": self.dataset,
            "dataset_fingerprint": self.dataset_fingerprint,
            "ipc": self.ipc,
            "fraction": self.fraction,
            "protocol": self.protocol,
            "protocol_config": copy.deepcopy(self.protocol_config),
            "seed": self.seed,
            "results": {model: result.to_dict() for model, result in self.results.items()},
            "costs": self.costs.to_dict(),
            "versions": dict(self.versions),
            "git_revision": self.git_revision,
            "device": self.device,
            "created": self.created,
            "set_path": self.set_path,
            **({"capped_class_counts": list(self.capped_class_counts)} if self.capped_class_counts is not None else {}),
        }

    @classmethod
    def from_dict(cls, data: Any) -> ResultRecord:
        """Parse and validate the JSON form.

        Raises:
            RecordError: when ``data`` is not a condense-bench record, has another schema version,
                misses or adds keys, or holds a value of the wrong type or range.
        """
        mapping = _require_mapping("record", data)
        if mapping.get("schema") != SCHEMA_NAME:
            raise RecordError(
                f"not a condense-bench record: 'schema' is {mapping.get('schema')!r}, not {SCHEMA_NAME!r}"
            )
        version = mapping.get("schema_version")
        if not is_integer(version) or version != SCHEMA_VERSION:
            raise RecordError(
                f"unsupported schema_version {mapping.get('schema_version')!r}; "
                f"this suite reads version {SCHEMA_VERSION}"
            )
        _check_keys("record", {k: v for k, v in mapping.items() if k not in _OPTIONAL_RECORD_KEYS}, _RECORD_KEYS)
        results = _require_mapping("results", mapping["results"])
        parsed_results: dict[str, ModelResult] = {}
        for model, result in results.items():
            try:
                parsed_results[str(model)] = ModelResult.from_dict(result)
            except RecordError as error:
                # ModelResult messages start with "result"; name the evaluation model instead.
                raise RecordError(f"results.{model}" + str(error).removeprefix("result")) from None
        return cls(
            cell_key=mapping["cell_key"],
            method=mapping["method"],
            family=mapping["family"],
            label_type=mapping["label_type"],
            method_config=mapping["method_config"],
            dataset=mapping["dataset"],
            dataset_fingerprint=mapping["dataset_fingerprint"],
            ipc=mapping["ipc"],
            fraction=mapping["fraction"],
            protocol=mapping["protocol"],
            protocol_config=mapping["protocol_config"],
            seed=mapping["seed"],
            results=parsed_results,
            costs=RecordCosts.from_dict(mapping["costs"]),
            versions=mapping["versions"],
            git_revision=mapping["git_revision"],
            device=mapping["device"],
            created=mapping["created"],
            set_path=mapping["set_path"],
            capped_class_counts=mapping.get("capped_class_counts"),
        )


def budget_label(ipc: int | None, fraction: float | None) -> str:
    """Name a budget: ``"ipc=10"``, ``"fraction=0.3"``, or ``"full"`` when both are ``None``."""
    if ipc is not None:
        return f"ipc={ipc}"
    if fraction is not None:
        return f"fraction={fraction:g}"
    return "full"
