"""The one record builder: a cell, its compressed set and its evaluation become a :class:`ResultRecord`."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from bench.cell import Cell
from data.devices import describe_device
from data.provenance import git_revision, merge_provenance, precomputed_costs, versions
from evaluation.parallel import DataParallel
from evaluation.protocols import EvaluationResult
from leaderboard import SCHEMA_NAME, SCHEMA_VERSION, ResultRecord, summarize_accuracies


def build_record(
    cell: Cell,
    *,
    fingerprint: str,
    compressed: Any,
    evaluation: EvaluationResult,
    device: torch.device,
    results_dir: Path,
    set_path: Path | None,
    parallel: DataParallel | None = None,
    capped_class_counts: list[int] | None = None,
    dataset_settings: dict[str, Any] | None = None,
) -> ResultRecord:
    """The record of ``cell``: what ran, what it scored, what it cost, and where.

    Args:
        cell: the resolved cell.
        fingerprint: the training split's fingerprint.
        compressed: the compressed set the method made.
        evaluation: the protocol's evaluation of it.
        device: where it ran.
        results_dir: the results folder (``set_path`` is stored relative to it).
        set_path: the saved set, or ``None``.
        parallel: the torchrun group that evaluated it, if any.
        capped_class_counts: the per-class counts kept where the ipc was capped at the class sizes.
        dataset_settings: the data settings the evaluation depends on (``split_seed``, ``flip``),
            recorded in the protocol config.
    """
    # Soft-label protocols: the labels' bytes count in the set's size, the teacher's cost is charged.
    set_bytes = compressed.num_bytes() + int(evaluation.details.get("label_bytes", 0))
    provenance = merge_provenance(compressed.provenance, evaluation.details.get("provenance", {}))
    return ResultRecord.from_dict(
        {
            "schema": SCHEMA_NAME,
            "schema_version": SCHEMA_VERSION,
            "cell_key": cell.key,
            "method": cell.spec.method,
            "family": cell.method.family,
            "label_type": cell.modality.label_type(compressed),
            "method_config": cell.identity["method_config"],
            "dataset": cell.spec.dataset,
            "dataset_fingerprint": fingerprint,
            "ipc": cell.budget.ipc,
            "fraction": cell.budget.fraction,
            "protocol": cell.protocol.name,
            "protocol_config": {
                **cell.protocol.config_dict(),
                "epochs_run": evaluation.epochs,
                **cell.modality.record_fields(compressed, evaluation),
                **(dataset_settings or {}),
            },
            "seed": cell.spec.seed,
            "results": {name: result_entry(result) for name, result in evaluation.per_model.items()},
            "costs": record_costs(
                provenance, eval_seconds=evaluation.seconds, set_bytes=set_bytes, num_items=len(compressed)
            ),
            **record_stamp(device, results_dir, set_path, parallel=parallel),
            **({"capped_class_counts": capped_class_counts} if capped_class_counts is not None else {}),
        }
    )


def result_entry(result: Any) -> dict[str, Any]:
    """One evaluation model's accuracies, their summary, and its further per-run metrics."""
    entry: dict[str, Any] = {"accuracies": list(result.accuracies), **summarize_accuracies(result.accuracies)}
    entry.update({name: list(values) for name, values in result.metrics().items()})
    return entry


def record_costs(provenance: dict[str, Any], *, eval_seconds: float, set_bytes: int, num_items: int) -> dict[str, Any]:
    """The ``costs`` of a record: distillation time and memory, evaluation time, size, cached products."""
    return {
        "distill_seconds": float(provenance.get("distill_seconds", 0.0)),
        "distill_peak_memory_bytes": int(provenance.get("peak_memory_bytes", 0)),
        "eval_seconds": eval_seconds,
        "set_bytes": set_bytes,
        "num_images": num_items,
        **precomputed_costs(provenance),
    }


def record_stamp(
    device: torch.device, results_dir: Path, set_path: Path | None, *, parallel: DataParallel | None = None
) -> dict[str, Any]:
    """Where and with what a record was made: versions, git revision, device, time, saved set.

    A data-parallel evaluation reads ``<ranks> x <device> (torchrun)``.
    """
    device_text = describe_device(device)
    if parallel is not None and parallel.world_size > 1:
        device_text = f"{parallel.world_size} x {device_text} (torchrun)"
    return {
        "versions": versions(),
        "git_revision": git_revision(),
        "device": device_text,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "set_path": str(set_path.relative_to(results_dir)) if set_path is not None else None,
    }
