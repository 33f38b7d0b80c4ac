"""Rebuilding an outputs file: a fresh temporary copy of the old content, renamed onto the file on success."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import h5py

from epg_core._formats._atomic import atomic_path
from epg_core._formats._common import MODELS, OUTPUTS_FORMAT, SCORES, open_checked
from epg_core._formats._h5_write import h5_write


@contextmanager
def rebuilt_outputs(
    path: Path, *, skip: Callable[[str, str], bool], keep_scores: bool = True
) -> Iterator[h5py.File]:
    """Yield a fresh outputs file (temporary, renamed onto ``path`` on success) holding the old content.

    The old file's root attributes, ``/scores`` (if ``keep_scores``) and every block for which
    ``skip(model, sequence)`` is false are copied; rebuilding instead of deleting in place keeps
    the file from growing with dead space when blocks are replaced. The caller holds the lock.
    """
    old = open_checked(path, OUTPUTS_FORMAT) if path.exists() else None
    try:
        with atomic_path(path) as tmp, h5_write(tmp, "w", kind=OUTPUTS_FORMAT, name=path) as handle:
            models = handle.create_group(MODELS, track_order=True)
            if old is not None:
                _copy_outputs_content(old, handle, models, skip, keep_scores)
            yield handle
    finally:
        if old is not None:
            old.close()


def _copy_outputs_content(
    old: h5py.File, new: h5py.File, models: h5py.Group, skip: Callable[[str, str], bool], keep_scores: bool
) -> None:
    for key, value in old.attrs.items():
        if key not in ("format", "format_version"):
            new.attrs[key] = value
    if keep_scores and SCORES in old:
        old.copy(old[SCORES], new, name=SCORES)
    old_models = old.get(MODELS)
    if not isinstance(old_models, h5py.Group):
        return
    for model_name, model_group in old_models.items():
        target = models.create_group(model_name, track_order=True)
        for key, value in model_group.attrs.items():
            target.attrs[key] = value
        for seq_name, group in model_group.items():
            if not skip(model_name, seq_name):
                old.copy(group, target, name=seq_name)
