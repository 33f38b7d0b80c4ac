"""Model inputs: intervention sequences from an HDF5 file, or image files forming one sequence."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from epg_core import InterventionSequence, UsageError, iter_intervention_images, read_interventions

from .._images import load_image
from ._spec import Preprocessing

__all__ = ["InputSource", "collect_inputs"]

_HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf")


@dataclass(frozen=True)
class InputSource:
    """Images to run: intervention sequences from an HDF5 file or one sequence of image files.

    ``sequences`` holds values and provenance (images not loaded); pixels are read, streamed in
    batches from HDF5, by :meth:`preprocessed`.
    """

    sequences: dict[str, InterventionSequence]
    h5_path: Path | None = None
    files: tuple[Path, ...] = ()

    def preprocessed(self, name: str, preprocessing: Preprocessing, batch_size: int = 64) -> np.ndarray:
        """All images of ``name`` as model input ``float32 [N, 3, h, w]`` (HDF5 pixels streamed in batches).

        Image files are preprocessed one by one, so files of different sizes are each resized once.
        """
        if name not in self.sequences:
            raise UsageError(f"no input sequence {name!r} (have {list(self.sequences)})")
        if self.h5_path is not None:
            parts = [preprocessing.apply(b) for b in iter_intervention_images(self.h5_path, name, batch_size)]
        else:
            parts = [preprocessing.apply(load_image(p)[None]) for p in self.files]
        h, w = preprocessing.size
        return np.concatenate(parts) if parts else np.zeros((0, 3, h, w), np.float32)


def _is_hdf5(path: Path) -> bool:
    if path.suffix.lower() in _HDF5_SUFFIXES:
        return True
    try:
        return path.is_file() and h5py.is_hdf5(path)
    except OSError:
        return False


def collect_inputs(
    inputs: Sequence[str | os.PathLike[str]],
    *,
    sequences: Sequence[str] | None = None,
    sequence_name: str = "images",
) -> InputSource:
    """One interventions file (all sequences, or ``sequences``), or image files forming one sequence.

    Image files keep the given order; their values are 0..N-1 and provenance ``source="frames"``.
    Every image file is opened and verified here, so a non-image fails before any work is done.
    """
    paths = [Path(p) for p in inputs]
    if not paths:
        raise UsageError("no inputs given: pass an interventions .h5 file or image files")
    h5 = [p for p in paths if _is_hdf5(p)]
    if h5:
        if len(paths) != 1:
            raise UsageError(f"give either one interventions file or image files, not both/several: {h5[0]}")
        seqs = read_interventions(paths[0], sequences, images=False)
        return InputSource(sequences=seqs, h5_path=paths[0])
    if sequences:
        raise UsageError("sequence names select sequences of an interventions file; none was given")
    first = load_image(paths[0])
    for path in paths[1:]:
        load_image(path)
    attrs = {"source": "frames", "property": "index", "unit": "", "includes_original": False,
             "files": [str(p) for p in paths]}
    seq = InterventionSequence(images=np.zeros((0, *first.shape), np.uint8),
                               values=np.arange(len(paths), dtype=np.float64), attrs=attrs)
    return InputSource(sequences={sequence_name: seq}, files=tuple(paths))
