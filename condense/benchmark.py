"""One benchmark cell, end to end: dataset -> method -> set -> protocol -> record.

A cell is (method and its config, dataset, budget, protocol, seed). Its key is a hash of that
resolved configuration; a cell whose record exists is skipped, so a killed sweep re-runs only
what is missing. This module is library code: the Hydra app in :mod:`condense.cli` calls it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from condense import create_method
from condense.graph_benchmark import check_modality, graph_cell_identity, run_graph_cell
from data import load_dataset
from data.cache import LockTimeout, file_lock
from data.graphs import is_graph_dataset
from data.methods import Method
from data.provenance import describe_device, git_revision, versions
from data.synthetic import Budget
from evaluation.parallel import DataParallel, single_or
from evaluation.protocols import evaluate_set, get_protocol
from leaderboard.records import RecordError, ResultRecord, find_record, record_path, summarize_accuracies, write_record

logger = logging.getLogger(__name__)

#: Dataset options that say where files are, not what the data is: kept out of the cell key.
LOCATION_OPTIONS = frozenset({"root", "download"})


@dataclass(frozen=True)
class CellSpec:
    """Everything that defines one benchmark cell."""

    method: str
    dataset: str
    protocol: str
    seed: int
    ipc: int | None = None
    fraction: float | None = None
    method_options: dict[str, Any] = field(default_factory=dict)
    dataset_options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CellOutcome:
    """The record of a cell and whether it was already there."""

    key: str
    record_path: Path
    record: ResultRecord
    skipped: bool


def resolve_device(device: str | torch.device) -> torch.device:
    """``auto`` picks CUDA when present, else CPU."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def cell_identity(spec: CellSpec) -> dict[str, Any]:
    """The resolved configuration that the cell key hashes (validates names and options)."""
    if is_graph_dataset(spec.dataset):
        return graph_cell_identity(spec)
    method = create_method(spec.method, **spec.method_options)
    check_modality(method, spec.dataset)  # a graph method on an image dataset
    return identity_of(spec, method, get_protocol(spec.protocol))


def identity_of(spec: CellSpec, method: Method, protocol: Any, *, budget_hint: str = "") -> dict[str, Any]:
    """The identity dict of ``spec`` run by ``method`` under ``protocol`` (image or graph)."""
    budget = Budget(ipc=spec.ipc, fraction=spec.fraction) if method.uses_budget else Budget()
    if method.uses_budget and budget.is_full:
        raise ValueError(f"method {spec.method!r} needs a budget: set ipc=N or fraction=F{budget_hint}")
    return {
        "method": spec.method,
        "method_config": method.config_dict(),
        "dataset": spec.dataset,
        "dataset_options": {k: v for k, v in sorted(spec.dataset_options.items()) if k not in LOCATION_OPTIONS},
        "ipc": budget.ipc,
        "fraction": budget.fraction,
        "protocol": protocol.name,
        "protocol_version": protocol.version,
        "seed": spec.seed,
    }


def cell_key(spec: CellSpec) -> str:
    """16 hex characters of the SHA-256 of the canonical cell identity."""
    canonical = json.dumps(cell_identity(spec), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


#: Folder under the results folder that holds one lock file per cell key.
CELL_LOCKS_DIRNAME = "locks"


def run_cell(
    spec: CellSpec,
    *,
    results_dir: str | Path,
    device: str | torch.device = "auto",
    progress: bool = False,
    save_set: bool = True,
    parallel: DataParallel | None = None,
    wait: bool = True,
) -> CellOutcome | None:
    """Run one cell unless its record exists; returns the record either way.

    Safe to call for the same cell from several processes or machines at once (a shared results
    folder): an exclusive lock on ``<results_dir>/locks/<cell key>.lock`` lets one of them run
    the cell while the others wait, then find its record and skip. The lock dies with its
    process, so a killed run leaves no record and the cell runs again next time.

    With ``wait=False`` a cell that another process is running now is left to it and the call
    returns ``None`` at once: for the reference rows that many cells of a sweep share (``random``
    at a budget), so that on a cluster one job runs it while the others go on with their own
    cells instead of idling on its lock (if that job dies, the row is missing until the sweep is
    run again, like any killed cell). With ``wait=True`` the result is never ``None``.

    Under ``parallel`` (every rank of a ``torchrun`` group calls this for the same cell) the
    ranks run the cell as one: rank 0 takes the lock, decides whether to skip, condenses the set
    and writes the record and the saved set; every rank trains the evaluation models together.
    """
    key = cell_key(spec)
    group = single_or(parallel)
    with contextlib.ExitStack() as held:
        running_elsewhere = False
        if group.is_main:
            try:
                held.enter_context(
                    file_lock(Path(results_dir) / CELL_LOCKS_DIRNAME / f"{key}.lock", timeout=None if wait else 0)
                )
            except LockTimeout:
                running_elsewhere = True
        if group.broadcast_object(running_elsewhere):
            logger.info("cell %s (%s) is running in another process; not waiting for it", key, _describe(spec))
            return None
        return _run_cell_unlocked(
            spec, results_dir=results_dir, device=device, progress=progress, save_set=save_set, parallel=parallel
        )


def _run_cell_unlocked(
    spec: CellSpec,
    *,
    results_dir: str | Path,
    device: str | torch.device,
    progress: bool,
    save_set: bool,
    parallel: DataParallel | None = None,
) -> CellOutcome:
    results_dir = Path(results_dir)
    key = cell_key(spec)
    path = record_path(results_dir, spec.dataset, spec.method, key)
    group = single_or(parallel)
    existing = group.broadcast_object(_existing_record(results_dir, key) if group.is_main else None)
    if existing is not None:
        logger.info("cell %s (%s) already has a record, skipping: %s", key, _describe(spec), path)
        return CellOutcome(key, path, existing, True)
    if is_graph_dataset(spec.dataset) and parallel is not None:
        raise ValueError(
            f"data-parallel cells (torchrun) are image cells; {spec.dataset!r} is a graph dataset: "
            "run condense-bench as one process"
        )
    if is_graph_dataset(spec.dataset):
        return run_graph_cell(
            spec, results_dir=results_dir, device=resolve_device(device), progress=progress, save_set=save_set
        )
    identity = cell_identity(spec)

    started = time.perf_counter()
    torch_device = resolve_device(device)
    method = create_method(spec.method, **spec.method_options)
    protocol = get_protocol(spec.protocol)
    budget = Budget(ipc=identity["ipc"], fraction=identity["fraction"])
    logger.info("cell %s: %s on %s", key, _describe(spec), describe_device(torch_device))
    train, val, test = load_dataset(spec.dataset, seed=spec.seed, **spec.dataset_options)

    # Data-parallel cells: rank 0 condenses (not data-parallel) and hands the set to the others.
    synthetic = None
    if group.is_main:
        synthetic = method.condense(train, budget, seed=spec.seed, device=torch_device, progress=progress)
    synthetic = group.broadcast_object(synthetic)
    assert synthetic is not None
    synthetic.validate(image_shape=train.image_shape, check_budget=False)
    set_bytes = synthetic.num_bytes()
    set_path = None
    # The whole-data reference and pool samplers (RS2) hold the training set itself: not saved.
    if group.is_main and save_set and method.family != "reference" and synthetic.sampler is None:
        set_path = synthetic.save(results_dir / "sets" / spec.dataset / spec.method / f"{key}.safetensors")

    evaluation = evaluate_set(
        synthetic,
        test,
        protocol,
        seed=spec.seed,
        device=torch_device,
        progress=progress,
        train=train,
        val=val,
        parallel=parallel,
    )
    # Soft-label protocols: the labels' bytes count in the set's size, the teacher's cost is charged.
    soft_details = {k: v for k, v in evaluation.details.items() if k != "provenance"}
    set_bytes += int(soft_details.get("label_bytes", 0))
    provenance = merge_precompute_provenance(synthetic.provenance, evaluation.details.get("provenance", {}))
    record = ResultRecord.from_dict(
        {
            "schema": "condense-bench/record",
            "schema_version": 1,
            "cell_key": key,
            "method": spec.method,
            "family": method.family,
            "label_type": "soft" if synthetic.has_soft_labels else "hard",
            "method_config": identity["method_config"],
            "dataset": spec.dataset,
            "dataset_fingerprint": train.fingerprint(),
            "ipc": identity["ipc"],
            "fraction": identity["fraction"],
            "protocol": protocol.name,
            "protocol_config": {
                **protocol.config_dict(),
                "epochs_run": evaluation.epochs,
                "used_learned_lr": any(r.used_learned_lr for r in evaluation.per_model.values()),
                "sampler": synthetic.sampler,
                **({"soft_run": soft_details} if soft_details else {}),
            },
            "seed": spec.seed,
            "results": {
                name: {"accuracies": list(result.accuracies), **summarize_accuracies(result.accuracies)}
                for name, result in evaluation.per_model.items()
            },
            "costs": record_costs(
                provenance, eval_seconds=evaluation.seconds, set_bytes=set_bytes, num_items=len(synthetic)
            ),
            **record_stamp(torch_device, results_dir, set_path, parallel=parallel),
        }
    )
    return group.broadcast_object(publish_record(record, results_dir, key, path, started) if group.is_main else None)


def record_costs(provenance: dict[str, Any], *, eval_seconds: float, set_bytes: int, num_items: int) -> dict[str, Any]:
    """The ``costs`` of a record: distillation time and memory, evaluation time, size, cached products."""
    return {
        "distill_seconds": float(provenance.get("distill_seconds", 0.0)),
        "distill_peak_memory_bytes": int(provenance.get("peak_memory_bytes", 0)),
        "eval_seconds": eval_seconds,
        "set_bytes": set_bytes,
        "num_images": num_items,
        **precompute_costs(provenance),
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


def publish_record(record: ResultRecord, results_dir: Path, key: str, path: Path, started: float) -> CellOutcome:
    """Write ``record`` unless a concurrent run of the cell finished first (its record is kept)."""
    existing = _existing_record(results_dir, key)
    if existing is not None:
        logger.info("cell %s finished concurrently elsewhere; keeping %s", key, path)
        return CellOutcome(key, path, existing, True)
    path = write_record(record, results_dir)
    means = ", ".join(f"{m}: {r['mean']:.4f}" for m, r in record.to_dict()["results"].items())
    logger.info("cell %s done in %.1fs (%s); record %s", key, time.perf_counter() - started, means, path)
    return CellOutcome(key, path, record, False)


#: Provenance prefixes of cached intermediate products (``<prefix>_seconds``, ``<prefix>_cache_hit``).
PRECOMPUTED_PRODUCTS = ("proxy", "experts", "teacher")


def precompute_costs(provenance: dict[str, Any]) -> dict[str, Any]:
    """The cost of cached products a method used, charged to the cell whether built or loaded."""
    seconds = [float(provenance[f"{p}_seconds"]) for p in PRECOMPUTED_PRODUCTS if f"{p}_seconds" in provenance]
    hits = [bool(provenance[f"{p}_cache_hit"]) for p in PRECOMPUTED_PRODUCTS if f"{p}_cache_hit" in provenance]
    costs: dict[str, Any] = {}
    if seconds:
        costs["precompute_seconds"] = sum(seconds)
    if hits:
        costs["precompute_cache_hit"] = all(hits)
    return costs


def merge_precompute_provenance(first: dict[str, Any], second: dict[str, Any]) -> dict[str, Any]:
    """``first`` updated by ``second``, adding ``<product>_seconds`` and and-ing ``_cache_hit``."""
    merged = {**first, **second}
    for product in PRECOMPUTED_PRODUCTS:
        seconds, hit = f"{product}_seconds", f"{product}_cache_hit"
        if seconds in first and seconds in second:
            merged[seconds] = float(first[seconds]) + float(second[seconds])
        if hit in first and hit in second:
            merged[hit] = bool(first[hit]) and bool(second[hit])
    return merged


def _existing_record(results_dir: Path, key: str) -> ResultRecord | None:
    """The valid record of cell ``key``; an unreadable one is reported and the cell runs again."""
    try:
        return find_record(results_dir, key)
    except RecordError as error:
        logger.warning("cell %s has an invalid record (%s); running it again", key, error)
        return None


def _describe(spec: CellSpec) -> str:
    budget = f"ipc={spec.ipc}" if spec.fraction is None else f"fraction={spec.fraction}"
    return f"method={spec.method} dataset={spec.dataset} {budget} protocol={spec.protocol} seed={spec.seed}"
