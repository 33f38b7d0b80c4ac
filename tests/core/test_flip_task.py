"""epg_core.flip_task against oracles written here: brute-force threshold search and scipy's Mann-Whitney U."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import mannwhitneyu

import epg_core as E
from epg_core._scoring._flip_task import roc_curve


def _brute_force_accuracy(scores: np.ndarray, labels: np.ndarray) -> float:
    """Best accuracy of 'flip where score >= t' over every t in the scores, below them and above them."""
    candidates = np.concatenate([np.unique(scores), [scores.min() - 1.0, scores.max() + 1.0]])
    return max(float(np.mean((scores >= t) == labels)) for t in candidates)


def _mann_whitney_auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    pos, neg = scores[labels], scores[~labels]
    u = mannwhitneyu(pos, neg, alternative="two-sided", method="asymptotic").statistic
    return float(u) / (len(pos) * len(neg))


CASES = [(n, seed, ties) for n in (2, 5, 17, 60) for seed in range(6) for ties in (False, True)]


@pytest.mark.parametrize("n, seed, ties", CASES)
def test_accuracy_and_auroc_equal_the_oracles(n: int, seed: int, ties: bool) -> None:
    rng = np.random.default_rng(seed)
    labels = rng.random(n) < 0.4
    labels[0], labels[-1] = True, False  # both labels present
    scores = rng.normal(size=n) + labels * rng.uniform(0, 2)
    if ties:
        scores = np.round(scores * 2) / 2  # many tied scores, also across labels
    result = E.flip_task(scores, labels, n_bootstrap=200, seed=seed)
    assert result.n == n and result.positives == int(labels.sum())
    assert result.accuracy == pytest.approx(_brute_force_accuracy(scores, labels), abs=1e-12)
    # the reported threshold really reaches the reported accuracy
    assert np.mean((scores >= result.threshold) == labels) == pytest.approx(result.accuracy, abs=1e-12)
    assert result.auroc == pytest.approx(_mann_whitney_auroc(scores, labels), abs=1e-12)
    assert result.auroc_low <= result.auroc_high
    assert 0.0 <= result.auroc_low and result.auroc_high <= 1.0


@pytest.mark.slow
def test_bootstrap_is_seeded_and_brackets_the_estimate() -> None:
    rng = np.random.default_rng(3)
    labels = rng.random(200) < 0.3
    scores = rng.normal(size=200) + labels
    a = E.flip_task(scores, labels, seed=7)
    b = E.flip_task(scores, labels, seed=7)
    c = E.flip_task(scores, labels, seed=8)
    assert (a.auroc_low, a.auroc_high) == (b.auroc_low, b.auroc_high)
    assert (a.auroc_low, a.auroc_high) != (c.auroc_low, c.auroc_high)
    assert a.auroc_low < a.auroc < a.auroc_high
    # percentile bootstrap of the AUROC, written independently with scipy as the statistic
    rng2 = np.random.default_rng(7)
    boots = []
    for _ in range(2000):
        idx = rng2.integers(0, 200, 200)
        y = labels[idx]
        if y.all() or not y.any():
            continue
        boots.append(_mann_whitney_auroc(scores[idx], y))
    low, high = np.percentile(boots, [2.5, 97.5])
    assert a.auroc_low == pytest.approx(low, abs=1e-12) and a.auroc_high == pytest.approx(high, abs=1e-12)


def test_perfect_separation_and_one_label() -> None:
    result = E.flip_task([0.1, 0.2, 0.9, 1.0], [0, 0, 1, 1], n_bootstrap=0)
    assert result.accuracy == 1.0 and result.auroc == 1.0 and result.threshold == 0.9
    assert np.isnan(result.auroc_low)
    only = E.flip_task([0.1, 0.5, 0.3], [False, False, False])
    assert only.accuracy == 1.0 and only.threshold == np.inf and np.isnan(only.auroc)
    reversed_ = E.flip_task([0.9, 1.0, 0.1, 0.2], [0, 0, 1, 1], n_bootstrap=0)
    assert reversed_.auroc == 0.0


def test_roc_curve_ends_and_area() -> None:
    rng = np.random.default_rng(1)
    labels = rng.random(40) < 0.5
    scores = rng.normal(size=40) + labels
    fpr, tpr, thresholds = roc_curve(scores, labels)
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0.0, 0.0, 1.0, 1.0)
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0) and thresholds[0] == np.inf
    assert np.trapezoid(tpr, fpr) == pytest.approx(_mann_whitney_auroc(scores, labels), abs=1e-12)


def test_bad_input_is_one_clear_error() -> None:
    with pytest.raises(E.UsageError, match="differ in size"):
        E.flip_task([1.0, 2.0], [True])
    with pytest.raises(E.DataError, match="finite"):
        E.flip_task([1.0, np.nan], [True, False])
    with pytest.raises(E.DataError, match="at least one unit"):
        E.flip_task([], [])
    with pytest.raises(E.DataError, match="0/1"):
        E.flip_task([1.0, 2.0], [0, 2])
