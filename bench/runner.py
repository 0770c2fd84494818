"""Running a cell: lock it, skip it when recorded, condense, evaluate, publish the record.

Images and graphs take the same path; what differs is asked of the cell's modality adapter
(:mod:`bench.modality`).
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from bench.cell import Cell, CellSpec, resolve_cell
from bench.record import build_record
from data import load_dataset
from data.cache import LockTimeout, file_lock
from data.datasets import DEFAULT_SPLIT_SEED
from data.devices import describe_device, resolve_device
from data.files import check_writable, remove_temporaries_of
from evaluation.parallel import DataParallel, single_or
from evaluation.protocols import Execution
from leaderboard import RecordError, ResultRecord, find_record, record_path, write_record
from leaderboard.store import RECORDS_DIRNAME

logger = logging.getLogger(__name__)

#: Folder under the results folder that holds one lock file per cell key.
CELL_LOCKS_DIRNAME = "locks"
#: Folder under the results folder that holds the saved sets.
SETS_DIRNAME = "sets"


@dataclass(frozen=True)
class CellOutcome:
    """The record of a cell and whether it was already there."""

    key: str
    record_path: Path
    record: ResultRecord
    skipped: bool


def run_cell(
    spec: CellSpec | Cell,
    *,
    results_dir: str | Path,
    device: str | torch.device = "auto",
    progress: bool = False,
    save_set: bool = True,
    parallel: DataParallel | None = None,
    wait: bool = True,
    execution: Execution | None = None,
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

    Raises:
        ValueError: the cell names an unknown method, dataset, protocol or option, mixes
            modalities, or asks for data-parallel evaluation where there is none; before any work.
    """
    cell = spec if isinstance(spec, Cell) else resolve_cell(spec)
    group = single_or(parallel)
    if group.world_size > 1 and not cell.modality.data_parallel:
        raise ValueError(
            f"data-parallel cells (torchrun) evaluate image sets; {cell.spec.dataset!r} is a "
            f"{cell.modality.name} dataset: run condense-bench as one process"
        )
    results_dir = Path(results_dir)
    if group.is_main:
        # A folder that cannot take the record is found now, not after the models have trained.
        check_writable(results_dir / name for name in (CELL_LOCKS_DIRNAME, RECORDS_DIRNAME, SETS_DIRNAME))
    with contextlib.ExitStack() as held:
        running_elsewhere = False
        if group.is_main:
            try:
                lock = results_dir / CELL_LOCKS_DIRNAME / f"{cell.key}.lock"
                held.enter_context(file_lock(lock, timeout=None if wait else 0))
            except LockTimeout:
                running_elsewhere = True
        if group.broadcast_object(running_elsewhere):
            logger.info(
                "cell %s (%s) is running in another process; not waiting for it", cell.key, cell.spec.describe()
            )
            return None
        path = record_path(results_dir, cell.spec.dataset, cell.spec.method, cell.key)
        if group.is_main:
            # Under the cell's lock any temporary of its files is a killed run's.
            remove_temporaries_of(path)
            remove_temporaries_of(set_path(results_dir, cell))
        existing = group.broadcast_object(_existing_record(results_dir, cell.key) if group.is_main else None)
        if existing is not None:
            logger.info("cell %s (%s) already has a record, skipping: %s", cell.key, cell.spec.describe(), path)
            return CellOutcome(cell.key, path, existing, True)
        record = _execute(
            cell,
            results_dir=results_dir,
            device=device,
            progress=progress,
            save_set=save_set,
            parallel=parallel,
            execution=execution,
        )
        return group.broadcast_object(_publish(record, results_dir, path) if group.is_main else None)


def _execute(
    cell: Cell,
    *,
    results_dir: Path,
    device: str | torch.device,
    progress: bool,
    save_set: bool,
    parallel: DataParallel | None,
    execution: Execution | None = None,
) -> ResultRecord:
    """Load the data, condense it, save the set, evaluate it, and build the record."""
    spec = cell.spec
    group = single_or(parallel)
    torch_device = resolve_device(device)
    logger.info("cell %s: %s on %s", cell.key, spec.describe(), describe_device(torch_device))
    # The split seed is a dataset option (dataset.split_seed), never the cell seed.
    train, val, test = load_dataset(spec.dataset, **spec.dataset_options)
    capped = cell.budget.capped_counts(
        train.class_counts(), policy=spec.budget_policy, class_names=tuple(train.class_names), unit=cell.modality.units
    )
    if capped is not None:
        logger.warning("cell %s: ipc=%d capped at the class sizes: %s", cell.key, cell.budget.ipc, capped)
    # Data-parallel cells: rank 0 condenses (not data-parallel) and hands the set to the others.
    compressed = None
    if group.is_main:
        compressed = cell.method.condense(train, cell.budget, seed=spec.seed, device=torch_device, progress=progress)
    compressed = group.broadcast_object(compressed)
    cell.modality.validate(compressed, train)
    if capped is not None:
        compressed.provenance["capped_class_counts"] = capped
    saved_path = None
    # The whole-data reference holds the training set itself: not saved.
    if group.is_main and save_set and cell.method.family != "reference" and cell.modality.saves(compressed):
        saved_path = compressed.save(set_path(results_dir, cell))
    evaluation = cell.protocol.evaluate(
        compressed,
        test,
        seed=spec.seed,
        device=torch_device,
        progress=progress,
        train=train,
        val=val,
        parallel=parallel,
        execution=execution,
    )
    return build_record(
        cell,
        fingerprint=train.fingerprint(),
        compressed=compressed,
        evaluation=evaluation,
        device=torch_device,
        results_dir=results_dir,
        set_path=saved_path,
        parallel=parallel,
        capped_class_counts=capped,
        dataset_settings=_dataset_settings(spec, train),
    )


def _dataset_settings(spec: CellSpec, train: Any) -> dict[str, Any]:
    """The split seed and (images) the flip policy the cell ran with, for its record."""
    settings: dict[str, Any] = {"split_seed": int(spec.dataset_options.get("split_seed", DEFAULT_SPLIT_SEED))}
    if isinstance(getattr(train, "flip", None), bool):
        settings["flip"] = train.flip
    return settings


def set_path(results_dir: Path, cell: Cell) -> Path:
    """Where the set of ``cell`` is saved: ``<results_dir>/sets/<dataset>/<method>/<key><suffix>``."""
    return results_dir / SETS_DIRNAME / cell.spec.dataset / cell.spec.method / f"{cell.key}{cell.modality.set_suffix}"


def _publish(record: ResultRecord, results_dir: Path, path: Path) -> CellOutcome:
    """Write ``record`` unless a concurrent run of the cell finished first (its record is kept)."""
    existing = _existing_record(results_dir, record.cell_key)
    if existing is not None:
        logger.info("cell %s finished concurrently elsewhere; keeping %s", record.cell_key, path)
        return CellOutcome(record.cell_key, path, existing, True)
    path = write_record(record, results_dir)
    means = ", ".join(f"{m}: {r.mean:.4f}" for m, r in record.results.items())
    logger.info("cell %s recorded (%s): %s", record.cell_key, means, path)
    return CellOutcome(record.cell_key, path, record, False)


def _existing_record(results_dir: Path, key: str) -> ResultRecord | None:
    """The valid record of cell ``key``; an unreadable one is reported and the cell runs again."""
    try:
        return find_record(results_dir, key)
    except RecordError as error:
        logger.warning("cell %s has an invalid record (%s); running it again", key, error)
        return None
