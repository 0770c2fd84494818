"""Caches shared by concurrent jobs: build once under a file lock, publish atomically.

Expert trajectories, teachers, proxy models and fitted whitening are shared by many benchmark
cells, and on a cluster those cells run at the same time, on several machines, over a shared
filesystem. :func:`build_once` makes one of them build a cache entry while the others wait and
then read it:

* an exclusive lock on a sibling lock file (``<name>.lock``) serializes the builders; the
  operating system drops the lock when its process dies (``kill -9``, a preempted SLURM job),
  so a killed builder never leaves a stale lock behind;
* the entry is built under a temporary name in the same folder and moved onto its final name
  with ``os.replace``, so a path under its final name is always complete;
* an existing entry is checked with ``is_valid`` before it counts as a hit; an invalid one (a
  truncated file, a foreign format) is logged, removed and rebuilt, never read;
* temporary files that a killed builder left behind are removed by the next builder.

Locks are POSIX ``flock`` locks (``fcntl``). On NFS, Linux implements them with NFS byte-range
locks, so they hold across machines when the filesystem is mounted with locking (the default;
not with ``nolock``). Lock files are small and kept: deleting a lock file while another process
waits on it would let two processes hold "the" lock at once.

Example::

    def build(tmp: Path) -> None:
        save_file(train_teacher(...), str(tmp))

    hit = build_once(cache / "teacher.safetensors", build, is_valid=lambda p: p.stat().st_size > 0)
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from data.files import glob_escape, remove_path, remove_temporaries_of, writing

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX (Windows): fall back to the filelock package
    fcntl = None  # type: ignore[assignment]

logger = logging.getLogger(__name__)

#: Seconds between two tries while another process holds a lock (waits with a timeout).
POLL_SECONDS = 0.2
#: Environment variable naming the cache root (the benchmark sets it to ``<results_dir>/cache``).
CACHE_ENV_VAR = "CONDENSE_CACHE"


def cache_root() -> Path:
    """The root of every cache: ``$CONDENSE_CACHE``, else ``$XDG_CACHE_HOME/condense`` or ``~/.cache/condense``."""
    root = os.environ.get(CACHE_ENV_VAR)
    if root:
        return Path(root).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "condense"


def cache_dir(product: str) -> Path:
    """The folder of one kind of cached product (``teachers``, ``experts``, ``proxy_cache``)."""
    return cache_root() / product


class LockTimeout(TimeoutError):
    """A lock was not acquired within the requested time.

    Attributes:
        lock_path: the lock file that was held by another process.
    """

    def __init__(self, message: str, lock_path: Path) -> None:
        super().__init__(message)
        self.lock_path = lock_path


def lock_path_for(path: str | os.PathLike[str]) -> Path:
    """The lock file that guards ``path``: ``<name>.lock`` beside it."""
    path = Path(path)
    return path.with_name(f"{path.name}.lock")


@contextlib.contextmanager
def file_lock(lock_path: str | os.PathLike[str], *, timeout: float | None = None) -> Iterator[Path]:
    """Hold an exclusive lock on ``lock_path`` (created if missing) for the ``with`` block.

    Waits for other holders (any process, any machine sharing the filesystem); logs once when
    it has to wait, with the holder's host and pid.

    Args:
        lock_path: the lock file; its folder is created.
        timeout: seconds to wait at most (``None``: wait for ever).

    Raises:
        LockTimeout: the lock was still held by another process after ``timeout`` seconds.
    """
    lock_path = Path(lock_path)
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    if fcntl is None:  # pragma: no cover - Windows
        from filelock import FileLock, Timeout

        try:
            with FileLock(str(lock_path), timeout=-1 if timeout is None else timeout):
                yield lock_path
        except Timeout as error:
            raise LockTimeout(f"could not lock {lock_path} within {timeout}s", lock_path) from error
        return
    descriptor = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        _acquire(descriptor, lock_path, timeout)
        try:
            # Who holds the lock, for the message of whoever waits on it.
            os.ftruncate(descriptor, 0)
            os.pwrite(descriptor, f"{socket.gethostname()} pid {os.getpid()}\n".encode(), 0)
            yield lock_path
        finally:
            fcntl.flock(descriptor, fcntl.LOCK_UN)
    finally:
        os.close(descriptor)


def _acquire(descriptor: int, lock_path: Path, timeout: float | None) -> None:
    started = time.monotonic()
    waiting_logged = False
    while True:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if waiting_logged:
                logger.info("acquired %s after %.1fs", lock_path, time.monotonic() - started)
            return
        except BlockingIOError:
            pass
        waited = time.monotonic() - started
        if timeout is not None and waited >= timeout:
            raise LockTimeout(f"could not lock {lock_path} within {timeout}s (held by {_holder(lock_path)})", lock_path)
        if not waiting_logged:
            logger.info("waiting for %s (held by %s)", lock_path, _holder(lock_path))
            waiting_logged = True
        if timeout is None:  # block in the kernel instead of polling (kind to a shared filesystem)
            fcntl.flock(descriptor, fcntl.LOCK_EX)
            logger.info("acquired %s after %.1fs", lock_path, time.monotonic() - started)
            return
        time.sleep(POLL_SECONDS)


def _holder(lock_path: Path) -> str:
    try:
        return lock_path.read_text().strip() or "unknown"
    except OSError:
        return "unknown"


def build_once(
    path: str | os.PathLike[str],
    build: Callable[[Path], None],
    is_valid: Callable[[Path], bool],
    *,
    timeout: float | None = None,
) -> bool:
    """Make sure the cache entry ``path`` exists and is valid, building it at most once.

    A valid existing entry is a hit at once (no lock: entries are only ever published whole).
    Otherwise, under an exclusive lock on ``<path>.lock``: when ``path`` exists (another process
    built it meanwhile) and ``is_valid(path)``, it is a cache hit; when it exists but is invalid,
    it is removed (with a warning); otherwise ``build(tmp)`` writes the entry (a file or a
    folder) to ``tmp``, a fresh name in the same folder, and ``tmp`` is moved onto ``path`` with
    ``os.replace``. A failed build removes ``tmp`` and re-raises; ``path`` is then left absent.

    Args:
        path: the cache entry (a file or a folder); its folder is created.
        build: writes the entry to the path it is given (which does not exist yet).
        is_valid: whether an existing entry is complete and readable; it should not raise
            (an exception counts as invalid).
        timeout: seconds to wait for the lock at most (``None``: for ever).

    Returns:
        ``True`` on a cache hit, ``False`` when this call built the entry.

    Raises:
        LockTimeout: another process held the lock longer than ``timeout``.
        RuntimeError: ``build`` returned without writing anything at its path.
    """
    path = Path(path)
    # A hit needs no lock: only complete entries ever appear under the final name.
    if path.exists() and _check(is_valid, path, quiet=True):
        return True
    path.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(lock_path_for(path), timeout=timeout):
        if path.exists():
            if _check(is_valid, path):
                return True
            logger.warning("cache entry %s is incomplete or unreadable (a killed job?); rebuilding it", path)
            remove_path(path)
        _remove_stale_temporaries(path)
        with writing(path, tag="build-") as temporary:
            build(temporary)
        return False


#: One entry of :func:`build_each_once`: ``(path, build, is_valid)``.
CacheEntry = tuple[str | os.PathLike[str], Callable[[Path], None], Callable[[Path], bool]]


def build_each_once(entries: Sequence[CacheEntry]) -> list[bool]:
    """:func:`build_once` for several independent entries that concurrent jobs all need.

    An entry that another process is building now is put off rather than waited for, so jobs
    that need the same entries (the experts of one buffer) build different ones at the same
    time; the put-off entries are then waited for, and read (or built, if their builder died).

    Args:
        entries: ``(path, build, is_valid)`` of each entry, as :func:`build_once` takes them.

    Returns:
        For each entry in order, ``True`` on a cache hit, ``False`` when this call built it.
    """
    hits: dict[int, bool] = {}
    put_off: list[int] = []
    for index, (path, build, is_valid) in enumerate(entries):
        try:
            hits[index] = build_once(path, build, is_valid, timeout=0)
        except LockTimeout as error:
            if error.lock_path != lock_path_for(path):  # a lock taken inside ``build``
                raise
            put_off.append(index)
    for index in put_off:
        hits[index] = build_once(*entries[index])
    return [hits[index] for index in range(len(entries))]


def _check(is_valid: Callable[[Path], bool], path: Path, *, quiet: bool = False) -> bool:
    try:
        return bool(is_valid(path))
    except Exception as error:  # noqa: BLE001 - any failure to read the entry makes it invalid
        if not quiet:
            logger.warning("checking cache entry %s failed: %s", path, error)
        return False


def _remove_stale_temporaries(path: Path) -> None:
    """Temporaries of ``path`` that a killed builder left (safe: the caller holds the lock), and
    the temporaries of a writer that ``build`` itself wrote through (``.<temporary name>.*``)."""
    for nested in path.parent.glob(f"..{glob_escape(path.name)}.*"):
        logger.info("removing %s, left by an interrupted build", nested)
        remove_path(nested)
    remove_temporaries_of(path)
