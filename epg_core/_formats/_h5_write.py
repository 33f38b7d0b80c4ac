"""Writing HDF5 files so that a refused write (full disk, size limit, I/O error) cannot crash h5py.

HDF5 (2.0) segfaults when a write fails while it closes objects. :func:`h5_write` gives h5py a file
object that never reports a failure: it keeps the first error, drops later writes, lets HDF5 close
cleanly, and then raises one :class:`StoreError`; the caller discards the (temporary) file.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import h5py

from epg_core._formats._atomic import write_failure
from epg_core._formats._common import FORMAT_VERSION


class GuardedFile(io.RawIOBase):
    """A file that never reports a failed write to HDF5, so a full disk cannot crash h5py.

    HDF5 (2.0) segfaults when a write fails while objects are closed. This file object keeps the first
    ``OSError`` in :attr:`error`, drops that write and every later one (reads of dropped bytes give zeros),
    and lets HDF5 finish; :func:`h5_write` then raises a :class:`StoreError` and the caller discards the file.
    """

    def __init__(self, path: Path, mode: str, *, durable: bool = False) -> None:
        super().__init__()
        self._raw = io.FileIO(path, mode)  # unbuffered: a refused write fails here, not at a later flush
        self._durable = durable
        self.error: OSError | None = None

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._raw.seek(offset, whence)

    def tell(self) -> int:
        return self._raw.tell()

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        n = self._raw.readinto(view) or 0
        view[n:] = bytes(len(view) - n)
        return len(view)

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        start, size = self._raw.tell(), len(view)
        if self.error is None:
            try:
                done = 0
                while done < size:
                    done += self._raw.write(view[done:]) or 0
                return size
            except OSError as exc:
                self.error = exc
        self._raw.seek(start + size)
        return size

    def truncate(self, size: int | None = None) -> int:
        if self.error is None:
            try:
                return self._raw.truncate(size)
            except OSError as exc:
                self.error = exc
        return self._raw.tell() if size is None else size

    def flush(self) -> None:
        if self.error is None and self._durable and not self._raw.closed:
            try:
                os.fsync(self._raw.fileno())
            except OSError as exc:
                self.error = exc

    def close(self) -> None:
        if not self._raw.closed:
            self._raw.close()
        super().close()


@contextmanager
def h5_write(path: Path, mode: str, *, kind: str | None = None, name: Path | None = None,
             durable: bool = False) -> Iterator[h5py.File]:
    """Open ``path`` for writing with h5py (``"w"``: a new file of ``kind``; ``"r+"``: in place).

    A write the disk refuses (full, too big, I/O error) becomes one :class:`StoreError` naming ``name``
    after h5py has closed cleanly; ``durable`` fsyncs at every HDF5 flush.
    """
    guard = GuardedFile(path, "w+" if mode == "w" else "r+", durable=durable)
    try:
        handle = h5py.File(guard, mode, track_order=True) if mode == "w" else h5py.File(guard, mode)
    except BaseException:
        guard.close()
        raise
    try:
        try:
            if kind is not None:
                handle.attrs["format"] = kind
                handle.attrs["format_version"] = FORMAT_VERSION
            yield handle
        finally:
            try:
                handle.close()
            finally:
                guard.close()
    except Exception:
        if guard.error is not None:
            raise write_failure(name or path, guard.error) from None
        raise
    if guard.error is not None:
        raise write_failure(name or path, guard.error)
