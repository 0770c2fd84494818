"""Result records, the leaderboard table and the offline HTML report.

This package owns the record schema (:mod:`leaderboard.records`) and its files on disk
(:mod:`leaderboard.store`), and imports nothing from the rest of the suite.
"""

from leaderboard.cli import NoRecordsError, write_outputs
from leaderboard.published import published_results, reproduction_table
from leaderboard.records import (
    SCHEMA_NAME,
    SCHEMA_VERSION,
    ModelResult,
    RecordCosts,
    RecordError,
    ResultRecord,
    budget_label,
    summarize_accuracies,
)
from leaderboard.report import ReportContext, ReportSection, render_report
from leaderboard.store import (
    LoadedRecords,
    RecordFileError,
    find_record,
    load_records,
    read_record,
    record_path,
    write_record,
)
from leaderboard.table import TABLE_COLUMNS, build_table, to_csv, to_json, to_markdown, welch_p_value

__all__ = [
    "SCHEMA_NAME",
    "SCHEMA_VERSION",
    "TABLE_COLUMNS",
    "LoadedRecords",
    "RecordFileError",
    "ModelResult",
    "NoRecordsError",
    "RecordCosts",
    "RecordError",
    "ReportContext",
    "ReportSection",
    "ResultRecord",
    "budget_label",
    "build_table",
    "find_record",
    "load_records",
    "published_results",
    "read_record",
    "record_path",
    "render_report",
    "reproduction_table",
    "summarize_accuracies",
    "to_csv",
    "to_json",
    "to_markdown",
    "welch_p_value",
    "write_outputs",
    "write_record",
]
