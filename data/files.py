"""Files written whole: a temporary sibling, flushed to disk, then renamed onto the final name.

Every writer of the suite (records, leaderboards, saved sets, graph sets, cache entries) goes
through :func:`writing`, so a reader sees either the old file or the complete new one, a failed
write leaves nothing behind (the temporary is removed and the error re-raised), and new files get
the usual permissions of the user's umask (readable by colleagues on a shared results folder,
unlike ``tempfile.mkstemp``'s private 0600).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import socket
import time
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

from data.untrusted import InputError

logger = logging.getLogger(__name__)

StrPath = str | os.PathLike[str]

#: Marks a temporary sibling: ``.<name>.<tag><host>-<pid>-<random>.tmp``.
TEMPORARY_SUFFIX = ".tmp"
#: A temporary whose writer cannot be checked (another machine) is stale after this many seconds.
STALE_AFTER_SECONDS = 24 * 3600
_WRITER = re.compile(r"(?P<host>[A-Za-z0-9_]+)-(?P<pid>\d+)-[0-9a-f]{8}\.tmp$")


def host_tag() -> str:
    """This machine's short name as it appears in the names of temporaries and probes."""
    return re.sub(r"[^A-Za-z0-9_]", "_", socket.gethostname().split(".")[0]) or "host"


def temporary_sibling(path: StrPath, tag: str = "") -> Path:
    """A fresh hidden name beside ``path`` for a temporary, naming its writer (nothing is created)."""
    target = Path(path)
    writer = f"{host_tag()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    return target.with_name(f".{target.name}.{tag}{writer}{TEMPORARY_SUFFIX}")


def temporaries_of(path: StrPath) -> list[Path]:
    """The temporaries beside ``path`` that writers of ``path`` made (finished or not)."""
    target = Path(path)
    if not target.parent.is_dir():
        return []
    return sorted(target.parent.glob(f".{glob_escape(target.name)}.*{TEMPORARY_SUFFIX}"))


def glob_escape(name: str) -> str:
    """``name`` with the glob characters ``*?[`` taken literally."""
    return re.sub(r"([*?\[])", r"[\1]", name)


def remove_temporaries_of(path: StrPath, *, only_dead: bool = False) -> list[Path]:
    """Remove the temporaries a killed writer of ``path`` left behind; returns what was removed.

    Args:
        path: the final file or folder.
        only_dead: keep the temporaries of writers that may still run: those of a live process
            on this machine, and those of another machine younger than :data:`STALE_AFTER_SECONDS`.
            Without it every temporary goes (for a caller that holds the lock on ``path``).
    """
    removed = []
    for temporary in temporaries_of(path):
        if only_dead and _writer_may_run(temporary):
            continue
        logger.info("removing %s, left by an interrupted writer", temporary)
        remove_path(temporary)
        removed.append(temporary)
    return removed


def _writer_may_run(temporary: Path) -> bool:
    match = _WRITER.search(temporary.name)
    if match is not None and match["host"] == host_tag():
        return _process_alive(int(match["pid"]))
    return _younger_than_stale(temporary)


def _younger_than_stale(path: Path) -> bool:
    try:
        return time.time() - path.lstat().st_mtime < STALE_AFTER_SECONDS
    except OSError:
        return False


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


_PROBE_PREFIX = ".write-probe-"
_PROBE_WRITER = re.compile(re.escape(_PROBE_PREFIX) + r"(?P<host>[A-Za-z0-9_]+)-(?P<pid>\d+)")


def _remove_dead_probes(folder: Path) -> None:
    """Remove the probes (and their temporaries) that a writer killed mid-probe left in ``folder``."""
    if not folder.is_dir():
        return
    for leftover in folder.glob(f"*{_PROBE_PREFIX}*"):
        match = _PROBE_WRITER.search(leftover.name)
        if match is None:
            continue
        if match["host"] == host_tag():
            may_run = _process_alive(int(match["pid"]))
        else:
            may_run = _younger_than_stale(leftover)
        if not may_run:
            logger.info("removing %s, left by an interrupted writer", leftover)
            remove_path(leftover)


def check_writable(folders: Iterable[StrPath], *, what: str = "results folder") -> None:
    """Make sure new files can be written in each folder (created if missing), before any work.

    A probe file is written whole and removed in each.

    Raises:
        InputError: a folder cannot be created or written, naming it and the reason.
    """
    for folder in folders:
        target = Path(folder)
        try:
            _remove_dead_probes(target)
            # writing() creates the folder.
            probe = write_bytes_atomic(target / f"{_PROBE_PREFIX}{host_tag()}-{os.getpid()}", b"")
            probe.unlink()
        except OSError as error:
            reason = error.strerror or type(error).__name__
            raise InputError(f"the {what} {target} is not writable ({reason})") from None


@contextlib.contextmanager
def writing(path: StrPath, *, tag: str = "") -> Iterator[Path]:
    """Write ``path`` whole: the block writes a file (or a folder) at the yielded temporary path.

    On a clean exit the temporary is flushed to disk and moved onto ``path`` with ``os.replace``
    (replacing an older version whole); on an exception it is removed and the error re-raised,
    leaving ``path`` as it was. The parent folder is created.

    Args:
        path: the final file or folder.
        tag: marks the temporary's name (``build-`` for cache builds), so stale ones can be found.

    Raises:
        RuntimeError: the block wrote nothing at the temporary path.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = temporary_sibling(target, tag)
    try:
        yield temporary
        if not temporary.exists():
            raise RuntimeError(f"writing {target} produced nothing at {temporary}")
        fsync_tree(temporary)
        os.replace(temporary, target)
    finally:
        if temporary.exists() or temporary.is_symlink():
            remove_path(temporary)


def write_bytes_atomic(path: StrPath, payload: bytes) -> Path:
    """Write ``payload`` to ``path`` whole (see :func:`writing`); returns the path."""
    with writing(path) as temporary:
        with open(temporary, "xb") as handle:
            handle.write(payload)
    return Path(path)


def write_text_atomic(path: StrPath, text: str) -> Path:
    """Write ``text`` (UTF-8, ``\\n`` line ends) to ``path`` whole; returns the path."""
    return write_bytes_atomic(path, text.encode("utf-8"))


def fsync_tree(path: Path) -> None:
    """Flush a file, or every file of a folder, to disk."""
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    for file in files:
        descriptor = os.open(file, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


def remove_path(path: Path) -> None:
    """Remove a file, link or folder tree (missing is fine)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)
