"""``condense-report RESULTS_DIR``: write the leaderboard (CSV, Markdown, JSON) and the HTML report."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from data.files import StrPath, remove_temporaries_of, write_text_atomic
from leaderboard.ddranking import ddranking_scores
from leaderboard.report import render_report
from leaderboard.reproduction import reproduction_markdown
from leaderboard.store import LoadedRecords, load_records
from leaderboard.table import build_table, to_csv, to_json, to_markdown

logger = logging.getLogger(__name__)

CSV_NAME = "leaderboard.csv"
MARKDOWN_NAME = "leaderboard.md"
JSON_NAME = "leaderboard.json"
HTML_NAME = "report.html"
DDRANKING_NAME = "ddranking.json"


class NoRecordsError(ValueError):
    """The results folder holds no valid record, so there is nothing to report."""


def write_outputs(
    results_dir: StrPath, out_dir: StrPath | None = None, html_path: StrPath | None = None
) -> dict[str, Path]:
    """Load the records under ``results_dir`` and write the leaderboard files and the report.

    Skipped files are logged as warnings and listed in the report.

    Args:
        results_dir: the folder holding ``records/``.
        out_dir: where ``leaderboard.csv``, ``.md`` and ``.json`` go; defaults to ``results_dir``.
        html_path: the HTML report path; defaults to ``results_dir/report.html``.

    Returns:
        The written paths under the keys ``"csv"``, ``"markdown"``, ``"json"`` and ``"html"``.

    Raises:
        FileNotFoundError: when ``results_dir`` does not exist.
        NoRecordsError: when it holds no valid record.
    """
    loaded = load_records(results_dir)
    for path, message in loaded.problems:
        logger.warning("skipped %s: %s", path, message)
    return _write_loaded(loaded, results_dir, out_dir, html_path)


def _write_loaded(
    loaded: LoadedRecords, results_dir: StrPath, out_dir: StrPath | None, html_path: StrPath | None
) -> dict[str, Path]:
    if not loaded.records:
        raise NoRecordsError(
            f"no valid record under {Path(results_dir) / 'records'} ({len(loaded.problems)} file(s) skipped)"
        )
    out_folder = Path(out_dir) if out_dir is not None else Path(results_dir)
    html_target = Path(html_path) if html_path is not None else Path(results_dir) / HTML_NAME
    for name in (CSV_NAME, MARKDOWN_NAME, JSON_NAME, DDRANKING_NAME):
        remove_temporaries_of(out_folder / name, only_dead=True)
    remove_temporaries_of(html_target, only_dead=True)
    table = build_table(loaded.records)
    paths = {
        "csv": to_csv(table, out_folder / CSV_NAME),
        # The Markdown leaderboard ends with the reproduction view (published against measured).
        "markdown": write_text_atomic(
            out_folder / MARKDOWN_NAME, to_markdown(table) + "\n" + reproduction_markdown(loaded.records)
        ),
        "json": to_json(table, out_folder / JSON_NAME),
        "html": write_text_atomic(html_target, render_report(loaded.records, loaded.problems, results_dir=results_dir)),
    }
    # DD-Ranking's scores, for every method with a soft-label (`soft` protocol) record.
    scores = ddranking_scores(loaded.records)
    if scores:
        text = json.dumps([row.to_dict() for row in scores], indent=2, sort_keys=True)
        paths["ddranking"] = write_text_atomic(out_folder / DDRANKING_NAME, text + "\n")
    return paths


def publish_report(
    results_dir: StrPath, *, program: str, out_dir: StrPath | None = None, html_path: StrPath | None = None
) -> tuple[int, dict[str, Path]]:
    """Write the leaderboard and the report of ``results_dir``, saying on stderr what failed.

    Every refused record file gets a line ``<program>: skipped <file>: <reason>``; a failure gets
    one line ``<program>: error: ...``.

    Returns:
        The exit code and the written paths: 0 when all is written from every record file; 1 when
        the folder is missing or holds no valid record, a file could not be written, or some
        record files were refused (the report is then written without them and lists them).
    """
    root = Path(results_dir)
    if not root.is_dir():
        print(f"{program}: error: results folder {root} does not exist", file=sys.stderr, flush=True)
        return 1, {}
    loaded = load_records(root)
    for path, message in loaded.problems:
        print(f"{program}: skipped {path}: {message}", file=sys.stderr, flush=True)
    try:
        written = _write_loaded(loaded, root, out_dir, html_path)
    except NoRecordsError as error:
        print(f"{program}: error: {error}", file=sys.stderr, flush=True)
        return 1, {}
    except OSError as error:
        target = f" {error.filename}" if error.filename else ""
        print(f"{program}: error: the report could not be written{target}: {error.strerror or error}", file=sys.stderr)
        return 1, {}
    if loaded.problems:
        print(
            f"{program}: error: {len(loaded.problems)} record file(s) refused (listed above and in the report); "
            "the leaderboard was written without them",
            file=sys.stderr,
            flush=True,
        )
        return 1, written
    return 0, written


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="condense-report",
        description="Build the leaderboard (CSV, Markdown, JSON) and the offline HTML report "
        "from the result records under RESULTS_DIR/records.",
    )
    parser.add_argument("results_dir", type=Path, metavar="RESULTS_DIR", help="folder holding records/")
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        default=None,
        metavar="REPORT_HTML",
        help="HTML report path (default: RESULTS_DIR/report.html)",
    )
    parser.add_argument(
        "--out-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="folder for leaderboard.csv/.md/.json (default: RESULTS_DIR)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``condense-report`` command; returns the exit code (see :func:`publish_report`)."""
    args = _parse_args(argv)
    code, written = publish_report(
        args.results_dir, program="condense-report", out_dir=args.out_dir, html_path=args.output
    )
    if written:
        print(Path(written["markdown"]).read_text(encoding="utf-8"))
        for kind, path in written.items():
            print(f"wrote {kind}: {path}")
    return code


if __name__ == "__main__":
    sys.exit(main())
