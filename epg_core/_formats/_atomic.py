"""Atomic file writes and per-file locks.

Every file epg writes goes through :func:`atomic_path`: a temporary file beside the target, fsynced and
renamed into place, so an interrupted run leaves the old file or the new one, never a half-written one.
Writers of one path are serialised by :func:`file_lock` (``fcntl.flock`` on ``path + ".lock"``; the lock
file is removed again when the last holder leaves). The first writer to take the lock removes temporary
files that killed runs left behind. New files get the mode the umask gives; a replaced file keeps its mode;
a read-only file is refused, never replaced.
"""

from __future__ import annotations

import errno
import fcntl
import os
import secrets
import shutil
import stat
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from epg_core._errors import StoreError

__all__ = ["atomic_path", "write_bytes_atomic", "file_lock", "shard_dir", "LOCK_TIMEOUT", "write_failure",
           "is_write_failure"]

LOCK_TIMEOUT = float(os.environ.get("EPG_LOCK_TIMEOUT", "300"))  # seconds a writer waits for another
TMP_TAG = ".tmp-"  # temporary files are named <target name>.tmp-<pid>-<random>
SHARDS_SUFFIX = ".shards"
# errno values that mean "this write cannot be done" rather than "the caller passed something wrong".
_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO, errno.EROFS, errno.EACCES, errno.EPERM}

_held: dict[tuple[str, int], list[int]] = {}  # (lock path, thread id) -> [fd, exclusive, depth]
_held_guard = threading.Lock()


def shard_dir(path: str | os.PathLike[str]) -> Path:
    """The folder of pending shards of an outputs file: ``<path>.shards`` beside it."""
    path = Path(path)
    return path.with_name(path.name + SHARDS_SUFFIX)


def _umask() -> int:
    """The process umask, read without changing it where /proc allows."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _fsync_dir(directory: Path) -> None:
    """Persist a rename (best effort: not every platform can open a directory)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _is_read_only(path: Path) -> bool:
    """True for an existing file without any write permission bit (root included) or not writable to us."""
    mode = path.stat().st_mode
    return not mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH) or not os.access(path, os.W_OK)


def _remove_stale_temps(path: Path) -> None:
    """Remove temporary files of ``path`` (and of its shards) that killed writers left behind."""
    prefix = path.name + TMP_TAG
    for folder, match in ((path.parent, lambda n: n.startswith(prefix)), (shard_dir(path), lambda n: TMP_TAG in n)):
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            if match(entry.name) and entry.is_file(follow_symlinks=False):
                try:
                    os.unlink(entry.path)
                except OSError:
                    pass


def _open_lock_fd(lock: Path, exclusive: bool) -> int | None:
    """Open (create) the lock file; None for a reader in a folder it cannot write (no writer can be there)."""
    try:
        if exclusive:  # a writer may create the folder of its output
            lock.parent.mkdir(parents=True, exist_ok=True)
        return os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as exc:
        if not exclusive:
            try:
                return os.open(lock, os.O_RDONLY)
            except OSError:
                return None
        raise StoreError(f"{lock.with_suffix('')}: cannot create the lock file {lock.name} "
                         f"({exc.strerror or exc})") from None


def _acquire(path: Path, exclusive: bool, timeout: float) -> int | None:
    """Take the flock on ``path.lock``, waiting up to ``timeout`` seconds; return the fd."""
    lock = path.with_name(path.name + ".lock")
    deadline = time.monotonic() + timeout
    op = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
    delay = 0.005
    while True:
        fd = _open_lock_fd(lock, exclusive)
        if fd is None:
            return None
        while True:
            try:
                fcntl.flock(fd, op | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    raise StoreError(f"{path}: another process is using this file (waited {timeout:g} s for "
                                     f"{lock.name}); try again when it has finished") from None
                time.sleep(delay)
                delay = min(delay * 2, 0.1)
        try:  # the holder before us may have removed the lock file: then lock the new one
            same = os.stat(lock).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)


def _release(path: Path, fd: int, exclusive: bool) -> None:
    """Drop the lock; the last holder removes the lock file (waiters notice and retry on a new one)."""
    lock = path.with_name(path.name + ".lock")
    try:
        if not exclusive:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                exclusive = os.stat(lock).st_ino == os.fstat(fd).st_ino
            except OSError:
                exclusive = False
        if exclusive:
            try:
                os.unlink(lock)
            except OSError:
                pass
    finally:
        os.close(fd)


@contextmanager
def file_lock(
    path: str | os.PathLike[str], *, exclusive: bool = True, timeout: float | None = None
) -> Iterator[None]:
    """Hold the lock of ``path`` (exclusive for writers, shared for readers); re-entrant per thread.

    A writer taking the lock first removes stale temporary files of ``path``. Waiting longer than
    ``timeout`` (default :data:`LOCK_TIMEOUT`) raises :class:`StoreError`.
    """
    path = Path(os.path.abspath(path))
    key = (str(path), threading.get_ident())
    with _held_guard:
        entry = _held.get(key)
    if entry is not None:
        if exclusive and not entry[1]:
            raise RuntimeError(f"{path}: cannot upgrade a shared lock to an exclusive one")
        entry[2] += 1
        try:
            yield
        finally:
            entry[2] -= 1
        return
    fd = _acquire(path, exclusive, LOCK_TIMEOUT if timeout is None else timeout)
    if fd is None:
        yield
        return
    with _held_guard:
        _held[key] = [fd, int(exclusive), 1]
    try:
        if exclusive:
            _remove_stale_temps(path)
        yield
    finally:
        with _held_guard:
            del _held[key]
        _release(path, fd, exclusive)


def write_failure(path: Path, exc: OSError) -> StoreError:
    """The one-line error for a write of ``path`` that failed with ``exc``."""
    lines = str(exc).splitlines()
    reason = exc.strerror or (lines[0] if lines else type(exc).__name__)
    return StoreError(f"{path}: cannot write ({reason}); the previous file is intact", reason=reason)


def is_write_failure(exc: BaseException) -> bool:
    """True for an OSError that means the disk refused a write (full, read-only, too big, I/O error)."""
    if not isinstance(exc, OSError) or isinstance(exc, StoreError):
        return False
    if exc.errno in _WRITE_ERRNOS:
        return True
    text = str(exc).lower()
    return "no space" in text or "write failed" in text or "file write failed" in text


def _check_writable_target(path: Path) -> None:
    if path.is_dir():
        raise StoreError(f"{path}: is a folder; refusing to replace it")
    if path.exists() and _is_read_only(path):
        raise StoreError(f"{path}: file is read-only; refusing to replace it")


@contextmanager
def atomic_path(
    path: str | os.PathLike[str], *, copy_existing: bool = False, lock: bool = True
) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` for the caller to write; on success it replaces ``path``.

    The temporary path does not exist yet (writers such as h5py create it afresh), unless
    ``copy_existing``, where it starts as a copy of ``path``. On any exception it is removed and ``path``
    is untouched; a full disk (or another write failure) becomes one :class:`StoreError`. With ``lock``
    the write holds the exclusive lock of ``path`` (see :func:`file_lock`).
    """
    path = Path(path)
    with (file_lock(path) if lock else _nothing()):
        _check_writable_target(path)
        mode = stat.S_IMODE(path.stat().st_mode) if path.exists() else 0o666 & ~_umask()
        tmp = path.with_name(f"{path.name}{TMP_TAG}{os.getpid()}-{secrets.token_hex(4)}")
        try:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                if copy_existing:
                    shutil.copyfile(path, tmp)
            except OSError as exc:
                raise write_failure(path, exc) from None
            try:
                yield tmp
            except OSError as exc:
                if is_write_failure(exc):
                    raise write_failure(path, exc) from None
                raise
            try:
                with open(tmp, "rb+") as handle:
                    os.fsync(handle.fileno())
                os.chmod(tmp, mode)
                os.replace(tmp, path)
            except OSError as exc:
                raise write_failure(path, exc) from None
            _fsync_dir(path.parent)
        finally:
            try:
                tmp.unlink(missing_ok=True)
            except OSError:
                pass


@contextmanager
def _nothing() -> Iterator[None]:
    yield


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; return the path."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)
