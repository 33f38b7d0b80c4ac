"""Score an outputs file: EPG, shuffle test, flips, Pearson and exact-null z-scores for every curve, and
grouped rows (the paper's mean behaviour over images) per model x checkpoint x group.

The file is streamed in chunks of checkpoints sized by bytes, so memory is bounded by the chunk size
whatever the number of checkpoints, classes or sequences; curves of the same shape and grid are batched
across blocks into few large ``permutation_test`` calls.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from epg_core._atomic import atomic_path
from epg_core._errors import DataError, UsageError
from epg_core._fdr import fdr
from epg_core._permutation import ALTERNATIVES, PRECISIONS
from epg_core._scoring_groups import GROUP_BYS, Curve, Group, model_groups, resolve_target
from epg_core._scoring_rows import ALL_CLASSES as ALL_CLASSES
from epg_core._scoring_rows import SCORE_COLUMNS as SCORE_COLUMNS
from epg_core._scoring_rows import aggregate_rows, count_significant, score_batch

__all__ = ["ALL_CLASSES", "SCORE_COLUMNS", "ScoreOptions", "score_outputs", "write_scores_csv", "resolve_target"]

# Curves gathered before one permutation_test call (bounded memory, few compilations).
CURVES_PER_CALL = 2048
BYTES_PER_CALL = 64 << 20


@dataclass(frozen=True)
class ScoreOptions:
    """What to score and how (the CLI's ``epg score`` options).

    ``target``: class name or index (None: the class predicted on the original image(s) by the model's last
    finished checkpoint; for a group, the majority over its originals). ``group_by``: "none", "property" or
    "image": grouped rows with both aggregates of the paper (``mean_curve``: EPG of the mean outputs;
    ``mean_epg``: mean and SD of the per-curve EPGs). ``all_classes``: one vector curve (all outputs) per
    row instead of one class. ``precision``: "float32" or "float64" for the shuffle test.
    """

    target: str | int | None = None
    spacing: str = "step"
    group_by: str = "none"
    n_permutations: int = 10_000
    alternative: str = "two-sided"
    seed: int = 0
    alpha: float = 0.01
    use_fdr: bool = False
    checkpoint_chunk: int = 64
    all_classes: bool = False
    precision: str = "float32"
    mean_over_sequences: bool = False  # v1 name of group_by="property"

    def checked(self) -> ScoreOptions:
        """The options with v1 aliases resolved; a UsageError naming the first bad value."""
        group_by = "property" if self.mean_over_sequences and self.group_by == "none" else self.group_by
        for name, value, allowed in (("group_by", group_by, GROUP_BYS), ("spacing", self.spacing, ("step", "values")),
                                     ("alternative", self.alternative, ALTERNATIVES),
                                     ("precision", self.precision, PRECISIONS)):
            if value not in allowed:
                raise UsageError(f"unknown {name} {value!r}; use one of {', '.join(allowed)}")
        if not 0 < self.alpha < 1:
            raise UsageError(f"alpha must be in (0, 1), got {self.alpha}")
        if self.n_permutations < 1 or self.checkpoint_chunk < 1:
            raise UsageError("n_permutations and checkpoint_chunk must be >= 1")
        return ScoreOptions(**{**self.__dict__, "group_by": group_by, "mean_over_sequences": False})


class _Batcher:
    """Collects curves by (shape, grid) and tests a batch when it is large enough (bounded memory)."""

    def __init__(self, opts: ScoreOptions, progress: Callable[[int], None] | None) -> None:
        self.opts, self.progress = opts, progress
        self.pending: dict[tuple[tuple[int, ...], bytes], list[Curve]] = {}
        self.rows: list[dict[str, Any]] = []

    def add(self, curve: Curve) -> None:
        key = (curve.y.shape, b"" if curve.grid is None else curve.grid.tobytes())
        batch = self.pending.setdefault(key, [])
        batch.append(curve)
        if len(batch) >= min(CURVES_PER_CALL, max(1, BYTES_PER_CALL // curve.y.nbytes)):
            self._flush(key)

    def _flush(self, key: tuple[tuple[int, ...], bytes]) -> None:
        batch = self.pending.pop(key)
        self.rows += score_batch(batch, self.opts)
        if self.progress:
            self.progress(len(batch))

    def finish(self) -> list[dict[str, Any]]:
        for key in list(self.pending):
            self._flush(key)
        return self.rows


def count_curves(path: str | os.PathLike[str], options: ScoreOptions = ScoreOptions()) -> int:
    """How many curves ``score_outputs`` will test (for progress bars)."""
    opts = options.checked()
    return sum(g.n_tests(opts) for g in model_groups(Path(path), opts))


def score_outputs(
    path: str | os.PathLike[str],
    options: ScoreOptions = ScoreOptions(),
    *,
    progress: Callable[[int], None] | None = None,
) -> list[dict[str, Any]]:
    """Score every curve of an outputs file (and its groups); returns the tidy table (``SCORE_COLUMNS``)."""
    path = Path(path)
    opts = options.checked()
    batcher = _Batcher(opts, progress)
    groups: list[Group] = []
    for group in model_groups(path, opts):
        groups.append(group)
        for curve in group.curves(path, opts):
            batcher.add(curve)
    rows = batcher.finish()
    if not rows:
        raise DataError(f"{path}: no finished checkpoints to score")
    rows += aggregate_rows(rows, opts)
    return _finish(rows, opts)


def _finish(rows: list[dict[str, Any]], opts: ScoreOptions) -> list[dict[str, Any]]:
    """q-values (Benjamini-Hochberg over the whole study, per-curve and mean-curve rows as two families when
    asked), decisions and the run's settings; rows in a stable order."""
    rows.sort(key=lambda r: (r["model"], r["checkpoint_index"], r["aggregate"] != "none", r["property"],
                             r["image"], r["sequence"], r["aggregate"]))
    q = np.full(len(rows), np.nan)
    if opts.use_fdr:
        for family in ("none", "mean_curve"):
            idx = [i for i, r in enumerate(rows) if r["aggregate"] == family and np.isfinite(r["pvalue"])]
            if idx:
                q[idx] = fdr(np.array([rows[i]["pvalue"] for i in idx]), opts.alpha).qvalues
    for r, qi in zip(rows, q, strict=True):
        tested = bool(np.isfinite(r["pvalue"]))
        r.update(qvalue=float(qi), significant=bool(tested and (qi <= opts.alpha if opts.use_fdr
                                                                 else r["pvalue"] < opts.alpha)),
                 alternative=opts.alternative, seed=int(opts.seed), spacing=opts.spacing,
                 correction="bh" if opts.use_fdr else "none")
    count_significant(rows)
    return [{c: r[c] for c in SCORE_COLUMNS} for r in rows]


def write_scores_csv(path: str | os.PathLike[str], rows: list[dict[str, Any]]) -> Path:
    """Write the scores table as CSV, atomically (temporary file renamed into place)."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]) if rows else list(SCORE_COLUMNS))
        writer.writeheader()
        writer.writerows(rows)
    return Path(path)
