"""Removing outputs blocks (a study whose interventions changed must not keep outputs of the old images)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from epg_core._formats._atomic import file_lock
from epg_core._formats._common import as_path
from epg_core._formats._outputs import _rebuilt_outputs, list_outputs
from epg_core._formats._store import fold_locked, require_writable


def remove_outputs(path: str | os.PathLike[str], sequences: Iterable[str], model: str | None = None) -> list[str]:
    """Remove the blocks of ``sequences`` (of every model, or of ``model``) from an outputs file, atomically.

    Returns the removed ``model/sequence`` names; a file without any of them is left untouched.
    """
    path = as_path(path)
    drop = set(sequences)
    if not Path(path).exists():
        return []
    hits = [(m, s) for m, s in list_outputs(path) if s in drop and (model is None or m == model)]
    if not hits:
        return []
    with file_lock(path):
        require_writable(path)
        fold_locked(path)
        with _rebuilt_outputs(path, skip=lambda m, s: (m, s) in set(hits)):
            pass
    return [f"{m}/{s}" for m, s in hits]
