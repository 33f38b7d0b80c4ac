"""Which part of an outputs file a score or report covers: models, their checkpoints, sequences.

An outputs file may hold more than a study asks for now (a model removed from the study file, checkpoints no
longer matched by its glob, sequences of images that were dropped): cached blocks may stay, but nothing outside
the selection may enter a score or a report. Checkpoints are renumbered by their position among the selected
ones, so a file that once held more gives the same table as a fresh run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["Selection"]


@dataclass(frozen=True)
class Selection:
    """Models (each with its checkpoint names, ``None`` = all) and sequences (``None`` = all) to cover.

    ``models=None`` covers every model of the file. Checkpoint names are compared with the names stored in the
    blocks; their order in the block is kept (the file's order, the same as a fresh run's).
    """

    models: Mapping[str, Sequence[str] | None] | None = None
    sequences: frozenset[str] | None = None

    def keeps(self, model: str, sequence: str) -> bool:
        """Whether the block ``model/sequence`` belongs to the selection."""
        if self.models is not None and model not in self.models:
            return False
        return self.sequences is None or sequence in self.sequences

    def checkpoint_mask(self, model: str, names: Sequence[str]) -> np.ndarray:
        """Boolean mask over a block's checkpoints ``names``: True where the checkpoint is selected."""
        wanted = None if self.models is None else self.models.get(model)
        if wanted is None:
            return np.ones(len(names), bool)
        chosen = set(wanted)
        return np.array([n in chosen for n in names], bool)

    def fingerprint(self) -> object:
        """A JSON-able identity (for a study's stage fingerprints)."""
        models = None if self.models is None else {m: None if c is None else list(c) for m, c in self.models.items()}
        return {"models": models, "sequences": None if self.sequences is None else sorted(self.sequences)}
