"""Interventions files: one group per sequence (``images`` uint8 ``[N, H, W, 3]``, ``values`` float64 ``[N]``).

Writers are atomic (temporary file renamed into place) and hold the file's lock; ``append_interventions``
adds sequences and never replaces one. Readers check every field (dtype, shape, at least 2 steps, finite
values) and refuse arrays larger than the read budget before allocating them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from epg_core._errors import DataError, UsageError
from epg_core._formats._atomic import atomic_path, file_lock
from epg_core._formats._common import (
    INTERVENTIONS_FORMAT,
    as_path,
    check_budget,
    check_finite_values,
    check_name,
    check_steps,
    dataset,
    open_checked,
    read_attrs,
    read_values,
    reading,
    write_attrs,
)
from epg_core._formats._h5_write import h5_write


@dataclass(frozen=True)
class InterventionSequence:
    """One ordered intervention sequence: images ``uint8 [N, H, W, 3]`` and property values ``float64 [N]``.

    ``images`` may have zero rows (shape ``(0, H, W, 3)``) to mean "images not loaded" — that is what
    ``read_interventions(..., images=False)`` returns; such a sequence cannot be written back.
    ``attrs`` holds the provenance (``source``, ``property``, ``image``, ``unit``, ``includes_original``, ...).
    """

    images: np.ndarray
    values: np.ndarray
    attrs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        images = np.asarray(self.images)
        values = np.asarray(self.values)
        if images.dtype != np.uint8:
            raise UsageError(f"InterventionSequence images must be uint8, got {images.dtype}")
        if images.ndim != 4 or images.shape[-1] != 3:
            raise UsageError(f"InterventionSequence images must be [N, H, W, 3], got shape {images.shape}")
        if values.ndim != 1:
            raise UsageError(f"InterventionSequence values must be 1-D [N], got shape {values.shape}")
        if not np.issubdtype(values.dtype, np.number) or np.issubdtype(values.dtype, np.complexfloating):
            raise UsageError(f"InterventionSequence values must be real numbers, got {values.dtype}")
        if images.shape[0] not in (0, values.shape[0]):
            raise UsageError(f"InterventionSequence has {images.shape[0]} images but {values.shape[0]} values")
        if not isinstance(self.attrs, Mapping):
            raise UsageError(f"InterventionSequence attrs must be a mapping, got {type(self.attrs).__name__}")
        object.__setattr__(self, "images", images)
        object.__setattr__(self, "values", values.astype(np.float64, copy=False))
        object.__setattr__(self, "attrs", dict(self.attrs))

    @property
    def n_steps(self) -> int:
        """Number of steps N (also when the images were not loaded)."""
        return int(self.values.shape[0])

    @property
    def images_loaded(self) -> bool:
        """False for a sequence read with ``images=False``."""
        return self.images.shape[0] == self.values.shape[0]


def _checked_sequences(path: Path, sequences: Mapping[str, InterventionSequence]) -> None:
    """Everything a sequence must satisfy before it is written (checked before any byte is written)."""
    if not isinstance(sequences, Mapping) or not sequences:
        raise UsageError(f"{path}: no sequences to write")
    for name, seq in sequences.items():
        check_name(name, "sequence")
        if not isinstance(seq, InterventionSequence):
            raise UsageError(f"sequence {name!r} is a {type(seq).__name__}, expected InterventionSequence")
        if not seq.images_loaded:
            raise UsageError(f"sequence {name!r} has no images loaded (read with images=False); cannot write it")
        check_steps(f"sequence {name!r}", "values", seq.n_steps)
        check_finite_values(f"sequence {name!r}", "values", seq.values)


def _write_sequence(handle: h5py.File, name: str, seq: InterventionSequence) -> None:
    group = handle.create_group(name)
    _, h, w, _ = seq.images.shape
    group.create_dataset("images", data=seq.images, chunks=(1, h, w, 3), compression="gzip", compression_opts=4)
    group.create_dataset("values", data=seq.values)
    attrs = dict(seq.attrs)
    attrs.setdefault("property", "value")  # every sequence records its property
    attrs.setdefault("image", name)  # ... and the image it was made from
    write_attrs(group, attrs)


def write_interventions(
    path: str | os.PathLike[str],
    sequences: Mapping[str, InterventionSequence],
    *,
    attrs: Mapping[str, Any] | None = None,
    before_commit: Callable[[], object] | None = None,
) -> Path:
    """Write (replace) an interventions file with one group per sequence, atomically; return its path.

    ``images`` are stored chunked per image with gzip compression, ``values`` as float64, the sequence
    ``attrs`` as group attributes (non-scalars JSON-encoded; ``property`` and ``image`` always present);
    ``attrs`` goes on the root. ``before_commit`` runs once the new file is complete, before it replaces
    ``path`` (side files written there appear before the file; if it raises, the file is not written).
    """
    path = as_path(path)
    _checked_sequences(path, sequences)
    with atomic_path(path, copy_existing=False) as tmp:
        with h5_write(tmp, "w", kind=INTERVENTIONS_FORMAT, name=path) as handle:
            write_attrs(handle, dict(attrs or {}))
            for name, seq in sequences.items():
                _write_sequence(handle, name, seq)
        if before_commit is not None:
            before_commit()
    return path


def append_interventions(
    path: str | os.PathLike[str], sequences: Mapping[str, InterventionSequence], *,
    before_commit: Callable[[], object] | None = None,
) -> Path:
    """Add sequences to an existing interventions file, atomically; a name that exists is refused.

    The file is copied beside itself, extended and renamed into place, so a kill or a full disk leaves
    the old file; nothing already in the file is ever replaced. ``before_commit``: as in
    :func:`write_interventions`.
    """
    path = as_path(path)
    _checked_sequences(path, sequences)
    with file_lock(path):
        with open_checked(path, INTERVENTIONS_FORMAT) as handle:
            clash = [name for name in sequences if name in handle]
        if clash:
            raise DataError(f"{path}: already holds sequence {clash[0]!r}; choose another name "
                            "(appending never replaces a sequence)")
        with atomic_path(path, copy_existing=True) as tmp:
            with h5_write(tmp, "r+", name=path) as handle:
                for name, seq in sequences.items():
                    _write_sequence(handle, name, seq)
            if before_commit is not None:
                before_commit()
    return path


def _names(handle: h5py.File) -> list[str]:
    return [k for k, v in handle.items() if isinstance(v, h5py.Group)]


def list_sequences(path: str | os.PathLike[str]) -> list[str]:
    """Names of the sequences in an interventions file, in the order they were written."""
    path = as_path(path)
    with reading(path, INTERVENTIONS_FORMAT) as handle:
        return _names(handle)


def _sequence_group(handle: h5py.File, path: Path, name: str) -> h5py.Group:
    group = handle.get(name) if isinstance(name, str) and name else None
    if not isinstance(group, h5py.Group):  # a name the caller asked for (e.g. --sequence): a usage error
        have = ", ".join(sorted(_names(handle))[:10]) or "none"
        raise UsageError(f"{path}: no intervention sequence {name!r} (it holds: {have})")
    return group


def _images_dataset(group: h5py.Group, path: Path, n: int) -> h5py.Dataset:
    """The checked ``images`` dataset of a sequence with ``n`` values."""
    dset = dataset(group, path, "images")
    if dset.dtype != np.uint8 or dset.ndim != 4 or dset.shape[-1] != 3:
        raise DataError(f"{path}: {group.name}/images must be uint8 [N, H, W, 3], got {dset.dtype} shape {dset.shape}")
    if dset.shape[0] != n:
        raise DataError(f"{path}: {group.name}/images has {dset.shape[0]} images but values has {n} steps")
    if min(dset.shape[1:3]) < 1:
        raise DataError(f"{path}: {group.name}/images has empty images (shape {dset.shape})")
    return dset


def read_interventions(
    path: str | os.PathLike[str],
    names: Iterable[str] | None = None,
    *,
    images: bool = True,
) -> dict[str, InterventionSequence]:
    """Read sequences (all, or ``names``) into memory, checking every field.

    With ``images=False`` only values and provenance are read: each sequence's ``images`` is then an
    empty ``uint8 (0, H, W, 3)`` array that still tells the image size (see
    :attr:`InterventionSequence.images_loaded`); stream the pixels with :func:`iter_intervention_images`.
    """
    path = as_path(path)
    with reading(path, INTERVENTIONS_FORMAT) as handle:
        wanted = list(names) if names is not None else _names(handle)
        if not wanted and names is None:
            raise DataError(f"{path}: holds no intervention sequences")
        out: dict[str, InterventionSequence] = {}
        for name in wanted:
            group = _sequence_group(handle, path, name)
            values = read_values(group, path)
            dset = _images_dataset(group, path, len(values))
            if images:
                check_budget(path, f"{group.name}/images", dset.shape, 1)
                pixels = dset[()]
            else:
                pixels = np.zeros((0, *dset.shape[1:]), dtype=np.uint8)
            out[name] = InterventionSequence(images=pixels, values=values, attrs=read_attrs(group, path))
        return out


def iter_intervention_images(path: str | os.PathLike[str], name: str, batch_size: int) -> Iterator[np.ndarray]:
    """Yield the images of sequence ``name`` in order, as ``uint8 [<=batch_size, H, W, 3]`` batches."""
    if batch_size < 1:
        raise UsageError(f"batch_size must be >= 1, got {batch_size}")
    path = as_path(path)
    with open_checked(path, INTERVENTIONS_FORMAT) as handle:
        group = _sequence_group(handle, path, name)
        dset = _images_dataset(group, path, len(read_values(group, path)))
        check_budget(path, f"{group.name}/images", (min(batch_size, dset.shape[0]), *dset.shape[1:]), 1)
        for start in range(0, dset.shape[0], batch_size):
            yield dset[start:start + batch_size]
