"""Files written whole: a temporary sibling, flushed to disk, then renamed onto the final name.

Every writer of the suite (records, leaderboards, saved sets, graph sets, cache entries) goes
through :func:`writing`, so a reader sees either the old file or the complete new one, a failed
write leaves nothing behind (the temporary is removed and the error re-raised), and new files get
the usual permissions of the user's umask (readable by colleagues on a shared results folder,
unlike ``tempfile.mkstemp``'s private 0600).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

StrPath = str | os.PathLike[str]

#: Marks a temporary sibling: ``.<name>.<tag><pid>-<random>.tmp``.
TEMPORARY_SUFFIX = ".tmp"


def temporary_sibling(path: StrPath, tag: str = "") -> Path:
    """A fresh hidden name beside ``path`` for a temporary (nothing is created)."""
    target = Path(path)
    return target.with_name(f".{target.name}.{tag}{os.getpid()}-{uuid.uuid4().hex[:8]}{TEMPORARY_SUFFIX}")


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
