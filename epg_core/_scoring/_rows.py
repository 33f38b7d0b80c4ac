"""Rows of the scores table: per-curve rows from the shuffle test, and the mean-EPG aggregate of a group."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from epg_core._numerics._stats import epg, flips, pearson
from epg_core._permutation._engine import permutation_test, use_precision
from epg_core._scoring._options import ScoreOptions

# The ``output`` of a row that scores whole output vectors (``all_classes``).
ALL_CLASSES = "all classes"
SCORE_COLUMNS = (
    "model", "checkpoint", "checkpoint_index", "sequence", "property", "image", "label", "aggregate", "n_curves",
    "n_significant", "output", "epg", "epg_sd", "effect", "statistic", "value", "pvalue", "qvalue", "significant",
    "negligible", "verdict", "flips", "pearson", "zscore", "ratio", "n_steps", "n_permutations", "n_used",
    "alternative", "seed", "spacing", "min_effect", "correction", "note",
)
#: Default ``min_effect`` per output kind: an effect below it is negligible (logits have no common scale: off).
DEFAULT_MIN_EFFECT = {"probabilities": 0.01, "cosine": 0.01, "logits": 0.0}
VERDICTS = ("significant", "negligible", "not significant", "not tested")


def effect_size(y: np.ndarray) -> np.ndarray:
    """The effect of each curve ``[..., N]`` (or output vector curve ``[..., N, C]``): max - min of the output
    along the steps (for vectors, the largest over the outputs), in the output's own unit."""
    span = np.max(y, axis=-2 if y.ndim >= 3 else -1) - np.min(y, axis=-2 if y.ndim >= 3 else -1)
    return span.max(axis=-1) if y.ndim >= 3 else span


def verdict_of(significant: bool, negligible: bool, tested: bool) -> str:
    """One word for a row: not tested (an aggregate without a test of its own), not significant, negligible
    (significant, but the output moves less than ``min_effect``) or significant."""
    if not tested:
        return "not tested"
    if not significant:
        return "not significant"
    return "negligible" if negligible else "significant"


@dataclass
class Curve:
    """One curve waiting to be tested, with the row it will become."""

    y: np.ndarray
    grid: np.ndarray | None
    row: dict[str, Any]


def base_row(model: str, checkpoint: str, index: int, sequence: str, prop: str, image: str, aggregate: str,
             n_curves: int, output: str, outputs: np.ndarray, note: str, group: tuple[Any, ...]) -> dict[str, Any]:
    """The columns known before testing; ``flips`` counts argmax changes of the outputs ``[N, C]`` (a single
    output: crossings of 0.5)."""
    n_flips = int(flips(outputs)) if outputs.shape[-1] > 1 else int(flips(outputs[:, 0], threshold=0.5))
    return {"model": model, "checkpoint": checkpoint, "checkpoint_index": int(index), "sequence": sequence,
            "property": prop, "image": image, "aggregate": aggregate, "n_curves": int(n_curves), "output": output,
            "flips": n_flips, "n_steps": int(outputs.shape[0]), "note": note, "_group": group}


def score_batch(batch: list[Curve], opts: ScoreOptions) -> list[dict[str, Any]]:
    """Test one batch of curves that share their shape and grid (whole output vectors with ``all_classes``)."""
    y = np.stack([c.y for c in batch])
    grid = batch[0].grid
    vector = y.ndim == 3
    res = permutation_test(y, grid, n_permutations=opts.n_permutations, alternative=opts.alternative,
                           seed=opts.seed, alpha=opts.alpha, class_axis=-1 if vector else None,
                           precision=opts.precision, method=opts.method, risk=opts.risk,
                           statistic=opts.statistic, **dict(opts.statistic_options))
    with use_precision(opts.precision):
        rho = np.full(len(batch), np.nan) if vector else np.asarray(pearson(y, grid), np.float64)
        # the epg column is always EPG: the tested value itself when EPG is the statistic
        epgs = res.statistic if opts.statistic == "epg" else np.asarray(epg(y, grid), np.float64)
    assert res.zscore is not None and res.ratio is not None
    effect = effect_size(y)
    return [{**c.row, "epg": float(epgs[i]), "epg_sd": float("nan"), "effect": float(effect[i]),
             "statistic": opts.statistic, "value": float(res.statistic[i]), "pvalue": float(res.pvalue[i]),
             "pearson": float(rho[i]), "zscore": float(res.zscore[i]), "ratio": float(res.ratio[i]),
             "n_permutations": int(res.n_permutations), "n_significant": 0,
             "n_used": int(res.n_used[i]) if res.n_used is not None else int(res.n_permutations)}
            for i, c in enumerate(batch)]


def aggregate_rows(rows: list[dict[str, Any]], opts: ScoreOptions) -> list[dict[str, Any]]:
    """``mean_epg`` rows (paper Table 4): mean and SD of the per-curve EPGs of each model x checkpoint x group,
    total flips, mean ratio; not a test of its own (p-value NaN)."""
    if opts.group_by == "none":
        return []
    by_group: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    means: dict[tuple[Any, ...], dict[str, Any]] = {}
    for r in rows:
        if r["aggregate"] == "none":
            by_group.setdefault(r["_group"], []).append(r)
        elif r["aggregate"] == "mean_curve":
            means[r["_group"]] = r
    out = []
    for key, members in by_group.items():
        if key not in means:  # a checkpoint not finished in every sequence of the group
            continue
        epgs = np.array([r["epg"] for r in members])
        ref = means[key]
        out.append({**ref, "aggregate": "mean_epg", "n_curves": len(members), "epg": float(epgs.mean()),
                    "epg_sd": float(epgs.std(ddof=1)) if len(epgs) > 1 else 0.0,
                    "effect": float(np.mean([r["effect"] for r in members])), "statistic": "epg",
                    "value": float(epgs.mean()), "pvalue": float("nan"),
                    "flips": int(sum(r["flips"] for r in members)), "pearson": float("nan"),
                    "zscore": float("nan"), "ratio": _nanmean([r["ratio"] for r in members]),
                    "n_permutations": 0, "n_used": 0})
    return out


def _nanmean(values: list[float]) -> float:
    finite = [v for v in values if np.isfinite(v)]
    return float(np.mean(finite)) if finite else float("nan")


def count_significant(rows: list[dict[str, Any]]) -> None:
    """Fill ``n_significant`` of grouped rows: how many of the group's per-curve tests are significant."""
    counts: dict[tuple[Any, ...], int] = {}
    for r in rows:
        if r["aggregate"] == "none":
            counts[r["_group"]] = counts.get(r["_group"], 0) + int(r["significant"])
    for r in rows:
        r["n_significant"] = counts.get(r["_group"], 0) if r["aggregate"] != "none" else int(r["significant"])


def verdict_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows that answer a study: per model x property (x sequence when ungrouped) the group's ``mean_curve``
    row (else the per-curve row) at the model's last scored checkpoint, ordered by property, model, sequence."""
    last: dict[tuple[str, str, str], dict[str, Any]] = {}
    for r in rows:
        if r["aggregate"] not in ("mean_curve", "none"):
            continue
        key = (r["model"], r["property"], r["sequence"])
        if key not in last or r["checkpoint_index"] > last[key]["checkpoint_index"]:
            last[key] = r
    shown = [r for r in last.values() if r["aggregate"] == "mean_curve"] or list(last.values())
    return sorted(shown, key=lambda r: (r["property"], r["model"], r["sequence"]))
