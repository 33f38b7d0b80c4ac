"""The library's own error types: one-line messages naming the file (or option) and the problem.

The CLI catches :class:`EpgError` (and ``OSError``) only, so a programming error still surfaces as a
traceback. ``kind`` tells the CLI which exit code to use: ``"usage"`` (a bad argument, exit 2), ``"data"``
(a bad input file, exit 1) or ``"io"`` (a write that failed: full disk, lock timeout, read-only file; exit 1).
:class:`UsageError` and :class:`DataError` are also ``ValueError`` and :class:`StoreError` is also
``OSError``, so callers written against the v1 exceptions keep working.
"""

from __future__ import annotations

from typing import ClassVar, Literal

__all__ = ["EpgError", "UsageError", "DataError", "MissingFileError", "StoreError"]

ErrorKind = Literal["usage", "data", "io"]


class EpgError(Exception):
    """Base class of every error epg raises on purpose; ``str(err)`` is one line."""

    kind: ClassVar[ErrorKind] = "data"


class UsageError(EpgError, ValueError):
    """A bad argument or option value (exit 2)."""

    kind: ClassVar[ErrorKind] = "usage"


class DataError(EpgError, ValueError):
    """An input file that is missing, of the wrong kind, or holds a bad field (exit 1)."""

    kind: ClassVar[ErrorKind] = "data"


class MissingFileError(DataError):
    """An input path that does not exist: the argument names nothing, so exit 2 like any usage error (it stays a
    :class:`DataError` for callers that catch the v2 type)."""

    kind: ClassVar[ErrorKind] = "usage"


class StoreError(EpgError, OSError):
    """A write that could not be done (full disk, read-only file, lock timeout); the old file is intact."""

    kind: ClassVar[ErrorKind] = "io"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason  # the system's words for a refused write ("No space left on device"), if any

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""
