"""The flip-prediction task: how well a score predicts whether an intervention changes a model's output.

The project page's downstream task (inspired by insertion/deletion tests): each unit (model x checkpoint x
sequence) has a score (EPG of its curve, or a local explanation's mean squared change) and a label (the
prediction flips along the sequence). A higher score predicts a flip. Per score: the accuracy at the optimal
threshold (the threshold maximising accuracy, found by exhaustive search over the scores, for every method
alike), that threshold, and the AUROC (Mann-Whitney; ties count one half) with a seeded percentile-bootstrap
95% interval. NumPy only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TypeAlias

import numpy as np
from jaxtyping import ArrayLike, Float

from epg_core._errors import DataError, UsageError

__all__ = ["FlipTaskResult", "flip_task", "auroc", "roc_curve"]

#: Scores or labels of the units: an array ``[n]`` or a list.
Units: TypeAlias = ArrayLike | Sequence[Any]


@dataclass(frozen=True)
class FlipTaskResult:
    """One score's result on the flip task.

    ``accuracy`` is reached by predicting a flip where ``score >= threshold`` (``threshold`` = +inf: predict no
    flip anywhere). ``auroc`` is NaN (and so is its interval) when only one label is present; the interval is
    the 2.5/97.5 percentiles of ``n_bootstrap`` resamples of the units (resamples with one label only are
    skipped). ``fpr``/``tpr``: the ROC curve's points, from (0, 0) to (1, 1).
    """

    n: int
    positives: int
    accuracy: float
    threshold: float
    auroc: float
    auroc_low: float
    auroc_high: float
    n_bootstrap: int
    seed: int
    fpr: np.ndarray = field(repr=False, compare=False)
    tpr: np.ndarray = field(repr=False, compare=False)


def _checked(scores: Units, labels: Units) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64).ravel()
    raw = np.asarray(labels)
    if raw.dtype != bool and not np.all(np.isin(raw, (0, 1))):
        raise DataError("flip-task labels must be booleans or 0/1")
    y = raw.astype(bool).ravel()
    if s.shape != y.shape:
        raise UsageError(f"scores and labels differ in size ({s.size} vs {y.size})")
    if s.size == 0:
        raise DataError("the flip task needs at least one unit")
    if not np.all(np.isfinite(s)):
        raise DataError(f"flip-task scores must be finite; {int(np.sum(~np.isfinite(s)))} are not")
    return s, y


def _ranks(s: np.ndarray) -> np.ndarray:
    """Ranks 1..n with ties given their average rank."""
    _, inverse, counts = np.unique(s, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    average = ends - (counts - 1) / 2.0
    return average[inverse]


def auroc(scores: Units, labels: Units) -> float:
    """Area under the ROC curve = P(score of a flip > score of a non-flip) + P(tie) / 2; NaN with one label."""
    s, y = _checked(scores, labels)
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    r = _ranks(s)
    return float((r[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def roc_curve(
    scores: Units, labels: Units
) -> tuple[Float[np.ndarray, " m"], Float[np.ndarray, " m"], Float[np.ndarray, " m"]]:
    """(false positive rates, true positive rates, thresholds): predicting a flip where ``score >= t``.

    Thresholds run from +inf (nothing predicted) down through every distinct score; NaN rates for an absent label.
    """
    s, y = _checked(scores, labels)
    thresholds = np.concatenate([[np.inf], np.unique(s)[::-1]])
    pred = s[None, :] >= thresholds[:, None]
    n_pos = y.sum()
    n_neg = y.size - n_pos
    with np.errstate(invalid="ignore", divide="ignore"):
        tpr = (pred & y).sum(axis=1) / n_pos
        fpr = (pred & ~y).sum(axis=1) / n_neg
    return fpr.astype(np.float64), tpr.astype(np.float64), thresholds


def _best_threshold(s: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(accuracy, threshold) of the rule ``score >= threshold`` that is right most often (lowest threshold wins ties).

    Every distinct score and +inf are tried: any other threshold classifies the units like one of them.
    """
    order = np.argsort(-s, kind="stable")
    ss, yy = s[order], y[order]
    # predicting the first k units (largest scores) as flips, for k = 0..n; only k at the end of a tie run is valid
    true_pos = np.concatenate([[0], np.cumsum(yy)])
    k = np.arange(s.size + 1)
    correct = true_pos + (np.sum(~y) - (k - true_pos))
    valid = np.ones(s.size + 1, bool)
    valid[1:-1] = ss[:-1] != ss[1:]
    correct = np.where(valid, correct, -1)
    best = int(np.max(correct))
    k_best = int(np.flatnonzero(correct == best)[-1])  # the largest k = the lowest threshold among the best
    threshold = float("inf") if k_best == 0 else float(ss[k_best - 1])
    return best / s.size, threshold


def flip_task(
    scores: Units,
    labels: Units,
    *,
    n_bootstrap: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
) -> FlipTaskResult:
    """Score the prediction of ``labels`` (``[n]`` bool or 0/1: a flip happened) by ``scores`` (``[n]``; higher =
    a flip is more likely).

    See the module doc. ``n_bootstrap`` resamples of the units (seeded with ``seed``) give the AUROC interval
    at ``confidence``; ``n_bootstrap=0`` skips it (NaN bounds).
    """
    if n_bootstrap < 0:
        raise UsageError(f"n_bootstrap must be >= 0, got {n_bootstrap}")
    if not 0 < confidence < 1:
        raise UsageError(f"confidence must be in (0, 1), got {confidence}")
    s, y = _checked(scores, labels)
    accuracy, threshold = _best_threshold(s, y)
    area = auroc(s, y)
    low = high = float("nan")
    if n_bootstrap and np.isfinite(area):
        rng = np.random.default_rng(seed)
        areas = []
        for _ in range(n_bootstrap):
            idx = rng.integers(0, s.size, s.size)
            yb = y[idx]
            if yb.all() or not yb.any():
                continue
            areas.append(auroc(s[idx], yb))
        if areas:
            tail = (1 - confidence) / 2 * 100
            low, high = (float(v) for v in np.percentile(areas, [tail, 100 - tail]))
    fpr, tpr, _ = roc_curve(s, y)
    return FlipTaskResult(n=int(s.size), positives=int(y.sum()), accuracy=float(accuracy), threshold=threshold,
                          auroc=area, auroc_low=low, auroc_high=high, n_bootstrap=int(n_bootstrap), seed=int(seed),
                          fpr=fpr, tpr=tpr)
