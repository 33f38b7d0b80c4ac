"""Score an outputs file: EPG, shuffle test, flips and Pearson for every model x checkpoint x sequence.

Streams the file in chunks of checkpoints and batches curves of the same length and grid across blocks,
so a sweep larger than memory scores in few large ``permutation_test`` calls.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from epg_core._atomic import atomic_path
from epg_core._fdr import fdr
from epg_core._io import OutputsBlock, list_outputs, read_outputs
from epg_core._permutation import permutation_test
from epg_core._stats import flips, pearson

Spacing = Literal["step", "values"]
SCORE_COLUMNS = (
    "model", "checkpoint", "sequence", "output", "epg", "pvalue", "qvalue", "significant", "flips",
    "pearson", "n_steps", "n_permutations", "alternative", "seed", "spacing", "correction",
)
# Curves gathered before one permutation_test call (bounded memory, few compilations).
CURVES_PER_CALL = 2048


@dataclass(frozen=True)
class ScoreOptions:
    """What to score and how (the CLI's ``epg score`` options)."""

    target: str | int | None = None
    spacing: Spacing = "step"
    mean_over_sequences: bool = False
    n_permutations: int = 10_000
    alternative: str = "two-sided"
    seed: int = 0
    alpha: float = 0.01
    use_fdr: bool = False
    checkpoint_chunk: int = 64


@dataclass
class _Curve:
    """One curve waiting in the batch, with the row it will become."""

    y: np.ndarray
    grid: np.ndarray | None
    row: dict[str, Any]


def resolve_target(target: str | int | None, classes: list[str], first_step: np.ndarray) -> int:
    """Output index to explain: a class name, an index, or (None) the class predicted on the original."""
    if target is None:
        return int(np.argmax(first_step))
    if isinstance(target, str) and not target.lstrip("-").isdigit():
        if target not in classes:
            shown = ", ".join(classes[:10]) + (", ..." if len(classes) > 10 else "")
            raise ValueError(f"unknown class {target!r}; the outputs have: {shown}")
        return classes.index(target)
    idx = int(target)
    if not 0 <= idx < len(classes):
        raise ValueError(f"output index {idx} is out of range: the outputs have {len(classes)} columns (0..{len(classes) - 1})")
    return idx


def _iter_blocks(path: Path, chunk: int) -> Iterator[OutputsBlock]:
    """Every (model, sequence) block in chunks of ``chunk`` checkpoints (a sweep need not fit in memory)."""
    for model, sequence in list_outputs(path):
        start = 0
        while True:
            (block,) = read_outputs(path, model, sequence, checkpoints=slice(start, start + chunk))
            if not block.checkpoints:
                break
            yield block
            start += chunk


def _grid(block: OutputsBlock, spacing: Spacing) -> np.ndarray | None:
    if spacing == "step":
        return None
    if spacing == "values":
        return np.asarray(block.values, np.float64)
    raise ValueError(f"unknown spacing {spacing!r}; use 'step' or 'values'")


def _curves_of_block(block: OutputsBlock, opts: ScoreOptions) -> Iterator[_Curve]:
    """Curves of one block (each done checkpoint), for the chosen output."""
    grid = _grid(block, opts.spacing)
    for i, name in enumerate(block.checkpoints):
        if not block.done[i]:
            continue
        out = np.asarray(block.outputs[i], np.float64)  # [N, C]
        target = resolve_target(opts.target, block.classes, out[0])
        yield _Curve(out[:, target], grid, _row(block.model, name, block.sequence, block.classes[target], out))


def _mean_curves(path: Path, opts: ScoreOptions) -> Iterator[_Curve]:
    """The paper's mean behaviour over sequences: average each model x checkpoint's outputs, then score."""
    by_model: dict[str, list[OutputsBlock]] = {}
    for model, sequence in list_outputs(path):
        by_model.setdefault(model, []).extend(read_outputs(path, model, sequence))
    for model, blocks in by_model.items():
        shapes = {b.outputs.shape[1:] for b in blocks}
        if len(shapes) != 1:
            raise ValueError(f"model {model!r}: sequences have different steps/outputs {sorted(shapes)}; cannot average")
        first = blocks[0]
        grid = _grid(first, opts.spacing)
        for i, name in enumerate(first.checkpoints):
            done = [b for b in blocks if b.done[i]]
            if len(done) != len(blocks):
                continue
            stack = np.stack([np.asarray(b.outputs[i], np.float64) for b in blocks])  # [S, N, C]
            mean = stack.mean(axis=0)
            if opts.target is None:  # the class predicted most often on the originals
                votes = np.bincount(np.argmax(stack[:, 0, :], axis=-1), minlength=stack.shape[-1])
                target = int(np.argmax(votes))
            else:
                target = resolve_target(opts.target, first.classes, mean[0])
            label = f"mean of {len(blocks)}"
            yield _Curve(mean[:, target], grid, _row(model, name, label, first.classes[target], mean))


def _row(model: str, checkpoint: str, sequence: str, output: str, outputs: np.ndarray) -> dict[str, Any]:
    n_flips = int(flips(outputs)) if outputs.shape[-1] > 1 else int(flips(outputs[:, 0], threshold=0.5))
    return {"model": model, "checkpoint": checkpoint, "sequence": sequence, "output": output,
            "flips": n_flips, "n_steps": int(outputs.shape[0])}


def _flush(batch: list[_Curve], opts: ScoreOptions) -> list[dict[str, Any]]:
    """Test one batch of curves that share their length and grid."""
    y = np.stack([c.y for c in batch])
    grid = batch[0].grid
    res = permutation_test(y, grid, n_permutations=opts.n_permutations, alternative=opts.alternative,
                           seed=opts.seed, alpha=opts.alpha)
    rho = np.asarray(pearson(y, grid))
    rows = []
    for i, c in enumerate(batch):
        rows.append({**c.row, "epg": float(res.statistic[i]), "pvalue": float(res.pvalue[i]),
                     "pearson": float(rho[i]), "n_permutations": int(res.n_permutations)})
    return rows


def score_outputs(
    path: str | os.PathLike[str],
    options: ScoreOptions = ScoreOptions(),
    *,
    progress: Callable[[int], None] | None = None,
) -> list[dict[str, Any]]:
    """Score every curve of an outputs file; returns the tidy table (rows in ``SCORE_COLUMNS`` order)."""
    path = Path(path)
    curves = _mean_curves(path, options) if options.mean_over_sequences else (
        c for block in _iter_blocks(path, options.checkpoint_chunk) for c in _curves_of_block(block, options))
    pending: dict[tuple[int, bytes], list[_Curve]] = {}
    rows: list[dict[str, Any]] = []
    for curve in curves:
        key = (curve.y.shape[0], b"" if curve.grid is None else curve.grid.tobytes())
        pending.setdefault(key, []).append(curve)
        if len(pending[key]) >= CURVES_PER_CALL:
            rows += _flush(pending.pop(key), options)
            if progress:
                progress(CURVES_PER_CALL)
    for key in list(pending):
        batch = pending.pop(key)
        rows += _flush(batch, options)
        if progress:
            progress(len(batch))
    if not rows:
        raise ValueError(f"{path}: no finished checkpoints to score")
    return _finish(rows, options)


def _finish(rows: list[dict[str, Any]], opts: ScoreOptions) -> list[dict[str, Any]]:
    """Add q-values (Benjamini-Hochberg over the whole sweep when asked) and the run's settings."""
    p = np.array([r["pvalue"] for r in rows])
    q = fdr(p, opts.alpha).qvalues if opts.use_fdr else np.full(p.shape, np.nan)
    out = []
    for r, qi in zip(rows, q):
        sig = bool(qi <= opts.alpha) if opts.use_fdr else bool(r["pvalue"] < opts.alpha)
        full = {**r, "qvalue": float(qi), "significant": sig, "alternative": opts.alternative,
                "seed": int(opts.seed), "spacing": opts.spacing, "correction": "bh" if opts.use_fdr else "none"}
        out.append({c: full[c] for c in SCORE_COLUMNS})
    return out


def write_scores_csv(path: str | os.PathLike[str], rows: list[dict[str, Any]]) -> Path:
    """Write the scores table as CSV, atomically (temporary file renamed into place)."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]) if rows else list(SCORE_COLUMNS))
        writer.writeheader()
        writer.writerows(rows)
    return Path(path)
