"""The records on disk: one JSON file per cell, written atomically, found by cell key, loaded in bulk.

Layout: ``<results_dir>/records/<dataset>/<method>/<cell_key>.json``. The schema is :mod:`leaderboard.records`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from data.files import StrPath, write_text_atomic
from data.untrusted import BadFileError, parse_json, read_limited, refusing
from leaderboard.records import _HEX_RE, RecordError, ResultRecord, _check_path_segment

#: Largest record file read (a record is a few KiB).
MAX_RECORD_BYTES = 4 * 2**20


class RecordFileError(BadFileError, RecordError):
    """A record file that is not a valid record: the suite's file error, and a :class:`RecordError`."""


RECORDS_DIRNAME = "records"


@dataclass(frozen=True)
class LoadedRecords:
    """What :func:`load_records` found: valid records and the files it skipped, with the reason."""

    records: list[ResultRecord]
    problems: list[tuple[Path, str]]


def record_path(results_dir: StrPath, dataset: str, method: str, cell_key: str) -> Path:
    """Return ``<results_dir>/records/<dataset>/<method>/<cell_key>.json``.

    Raises:
        RecordError: when a part is not a safe folder or file name.
    """
    _check_path_segment("dataset", dataset)
    _check_path_segment("method", method)
    if not isinstance(cell_key, str) or not _HEX_RE.match(cell_key):
        raise RecordError(f"cell_key must be a lowercase hex string, got {cell_key!r}")
    return Path(results_dir) / RECORDS_DIRNAME / dataset / method / f"{cell_key}.json"


def write_record(record: ResultRecord, results_dir: StrPath) -> Path:
    """Write ``record`` atomically to its :func:`record_path`, replacing any older version whole.

    Returns:
        The path written.
    """
    text = json.dumps(record.to_dict(), indent=2, allow_nan=False) + "\n"
    return write_text_atomic(record_path(results_dir, record.dataset, record.method, record.cell_key), text)


def read_record(path: StrPath) -> ResultRecord:
    """Read and validate one record file.

    Raises:
        FileNotFoundError: there is no file at ``path``.
        RecordFileError: the file is too large, unreadable, not JSON (or nested too deeply), or
            not a valid record; its message names the file and the reason.
    """
    try:
        data = parse_json(read_limited(path, max_bytes=MAX_RECORD_BYTES, what="record"), path)
        with refusing(path, "record"):
            try:
                return ResultRecord.from_dict(data)
            except RecordError as error:
                raise BadFileError(path, str(error)) from None
    except BadFileError as error:
        raise RecordFileError(error.path, error.reason) from None


def find_record(results_dir: StrPath, cell_key: str) -> ResultRecord | None:
    """Return the record with ``cell_key`` under ``results_dir``, or ``None`` when there is none.

    Raises:
        RecordError: when the file exists but is not a valid record, holds another cell key, or
            the key appears in more than one file.
    """
    if not isinstance(cell_key, str) or not _HEX_RE.match(cell_key):
        raise RecordError(f"cell_key must be a lowercase hex string, got {cell_key!r}")
    matches = sorted((Path(results_dir) / RECORDS_DIRNAME).glob(f"*/*/{cell_key}.json"))
    if not matches:
        return None
    if len(matches) > 1:
        raise RecordError(f"cell_key {cell_key} appears in several files: {[str(path) for path in matches]}")
    record = read_record(matches[0])
    if record.cell_key != cell_key:
        raise RecordError(f"{matches[0]} holds cell_key {record.cell_key!r}, not {cell_key!r}")
    return record


def load_records(results_dir: StrPath) -> LoadedRecords:
    """Load every record under ``<results_dir>/records``, skipping and reporting bad files.

    Malformed JSON, foreign JSON (no condense-bench ``schema``), invalid records, unreadable files
    and a second file with an already-seen ``cell_key`` are skipped and listed in ``problems``;
    this function does not raise for them. Files are read in sorted path order.

    Raises:
        FileNotFoundError: when ``results_dir`` does not exist.
    """
    root = Path(results_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"results folder {root} does not exist")
    records: list[ResultRecord] = []
    problems: list[tuple[Path, str]] = []
    seen: dict[str, Path] = {}
    for path in sorted((root / RECORDS_DIRNAME).glob("**/*.json")):
        if not path.is_file():
            continue
        try:
            record = read_record(path)
        except (RecordError, FileNotFoundError) as error:  # a file removed meanwhile is skipped too
            problems.append((path, getattr(error, "reason", str(error))))
            continue
        if record.cell_key in seen:
            problems.append(
                (path, f"duplicate cell_key {record.cell_key}, already loaded from {seen[record.cell_key]}")
            )
            continue
        seen[record.cell_key] = path
        records.append(record)
    return LoadedRecords(records=records, problems=problems)
