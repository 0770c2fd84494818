"""Valid hand-made result records for the leaderboard's tests."""

from __future__ import annotations

import dataclasses
from typing import Any

import pandas as pd

from leaderboard import ModelResult, RecordCosts, ResultRecord

_KEY_COUNTER = iter(range(1, 10**6))


def make_record(
    method: str,
    accuracies: dict[str, list[float]] | list[float],
    *,
    family: str = "selection",
    ipc: int | None = 10,
    fraction: float | None = None,
    dataset: str = "digits",
    protocol: str = "fast",
    protocol_config: dict[str, Any] | None = None,
    seed: int = 0,
    label_type: str = "hard",
    costs: RecordCosts | None = None,
    set_path: str | None = None,
    roc_auc: dict[str, list[float]] | None = None,
) -> ResultRecord:
    """A valid record with a fresh cell key; a plain list of accuracies goes to ``convnet3``."""
    per_model = accuracies if isinstance(accuracies, dict) else {"convnet3": accuracies}
    results = {model: ModelResult.from_accuracies(values) for model, values in per_model.items()}
    for model, values in (roc_auc or {}).items():
        results[model] = dataclasses.replace(results[model], roc_auc=tuple(values))
    if family == "reference":
        ipc, fraction = None, None
    return ResultRecord(
        cell_key=f"{next(_KEY_COUNTER):016x}",
        method=method,
        family=family,
        label_type=label_type,
        method_config={"lr": 0.01},
        dataset=dataset,
        dataset_fingerprint="0856650b1ee8e27c",
        ipc=ipc,
        fraction=fraction,
        protocol=protocol,
        protocol_config={"epochs": 5} if protocol_config is None else protocol_config,
        seed=seed,
        results=results,
        costs=costs or RecordCosts(1.5, 2048, 3.0, 4096, 100),
        versions={"python": "3.11.7", "torch": "2.14.1", "suite": "0.1.0"},
        git_revision=None,
        device="cpu",
        created="2026-11-28T01:00:00+00:00",
        set_path=set_path,
    )


def row_of(table: pd.DataFrame, **where: Any) -> pd.Series:
    """The one row of ``table`` whose columns equal ``where``."""
    mask = pd.Series(True, index=table.index)
    for column, value in where.items():
        mask &= table[column] == value
    matched = table[mask]
    assert len(matched) == 1, f"expected one row for {where}, got {len(matched)}"
    return matched.iloc[0]
