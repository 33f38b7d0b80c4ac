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
from pathlib import Path
from typing import Any

import numpy as np

from epg_core._errors import DataError
from epg_core._formats._atomic import atomic_path
from epg_core._numerics._fdr import fdr
from epg_core._scoring._groups import Group, model_groups, resolve_target
from epg_core._scoring._options import ScoreOptions as ScoreOptions
from epg_core._scoring._rows import ALL_CLASSES as ALL_CLASSES
from epg_core._scoring._rows import (
    DEFAULT_MIN_EFFECT,
    Curve,
    aggregate_rows,
    count_significant,
    score_batch,
    verdict_of,
)
from epg_core._scoring._rows import SCORE_COLUMNS as SCORE_COLUMNS
from epg_core._scoring._selection import Selection

__all__ = ["ALL_CLASSES", "SCORE_COLUMNS", "ScoreOptions", "Selection", "score_outputs", "write_scores_csv",
           "resolve_target"]

# Curves gathered before one permutation_test call (bounded memory, few compilations).
CURVES_PER_CALL = 2048
BYTES_PER_CALL = 64 << 20


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


def count_curves(path: str | os.PathLike[str], options: ScoreOptions = ScoreOptions(),
                 select: Selection | None = None) -> int:
    """How many curves ``score_outputs`` will test (for progress bars)."""
    opts = options.checked()
    return sum(g.n_tests(opts) for g in model_groups(Path(path), opts, select))


def score_outputs(
    path: str | os.PathLike[str],
    options: ScoreOptions = ScoreOptions(),
    *,
    select: Selection | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[dict[str, Any]]:
    """Score every curve of an outputs file (and its groups); returns the tidy table (``SCORE_COLUMNS``).

    ``select`` restricts the models, checkpoints and sequences scored (a study's current contents); the rest
    of the file is never read into a row.
    """
    path = Path(path)
    opts = options.checked()
    batcher = _Batcher(opts, progress)
    groups: list[Group] = []
    for group in model_groups(path, opts, select):
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
                             r["label"], r["image"], r["sequence"], r["aggregate"]))
    q = np.full(len(rows), np.nan)
    if opts.use_fdr:
        for family in ("none", "mean_curve"):
            idx = [i for i, r in enumerate(rows) if r["aggregate"] == family and np.isfinite(r["pvalue"])]
            if idx:
                q[idx] = fdr(np.array([rows[i]["pvalue"] for i in idx]), opts.alpha).qvalues
    for r, qi in zip(rows, q, strict=True):
        tested = bool(np.isfinite(r["pvalue"]))
        significant = bool(tested and (qi <= opts.alpha if opts.use_fdr else r["pvalue"] < opts.alpha))
        floor = DEFAULT_MIN_EFFECT.get(r["_kind"], 0.0) if opts.min_effect is None else opts.min_effect
        negligible = bool(r["effect"] < floor)
        r.update(qvalue=float(qi), significant=significant, negligible=negligible, min_effect=float(floor),
                 verdict=verdict_of(significant, negligible, tested), alternative=opts.alternative,
                 seed=int(opts.seed), spacing=opts.spacing, correction="bh" if opts.use_fdr else "none")
    count_significant(rows)
    return [{c: r[c] for c in SCORE_COLUMNS} for r in rows]


def write_scores_csv(path: str | os.PathLike[str], rows: list[dict[str, Any]]) -> Path:
    """Write the scores table as CSV, atomically (temporary file renamed into place)."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]) if rows else list(SCORE_COLUMNS))
        writer.writeheader()
        writer.writerows(rows)
    return Path(path)
