# pyright: reportOptionalMemberAccess=false, reportOptionalSubscript=false, reportOptionalOperand=false
# pyright: reportArgumentType=false, reportCallIssue=false
"""The Cantelli screen of the sequential test (issue 20): a curve whose bound on its exact permutation p-value
is below alpha is settled with no shuffle. Oracles: full enumeration of all 5,040 / 40,320 orderings (numpy
``np.gradient`` in float64, and the engine's own exact mode with the fixed test's tie rule), the fixed test
with K = 10,000 shuffles."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import epg_core as E
from epg_core._permutation._sequential import cantelli_bound


def _enumerated(y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact one-sided p-values (ties within 1e-9 relative count on both sides) and the two-sided one, over all
    N! orderings, numpy float64."""
    n = y.shape[1]
    perms = np.array(list(itertools.permutations(range(n))))
    less, greater = np.empty(len(y)), np.empty(len(y))
    for i, row in enumerate(y.astype(np.float64)):
        null = np.mean(np.abs(np.gradient(row[perms], axis=1)), axis=1)
        obs = np.mean(np.abs(np.gradient(row)))
        tie = np.abs(null - obs) <= 1e-9 * max(abs(obs), 1e-300)
        less[i] = np.mean((null <= obs) | tie)
        greater[i] = np.mean((null >= obs) | tie)
    return less, greater, np.minimum(1.0, 2.0 * np.minimum(less, greater))


def _adversarial(n: int, m: int, seed: int) -> np.ndarray:
    """Random curves of every kind: drifts of all strengths, monotone ones, ties (few levels), constant
    curves, a single spike, huge offsets."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 1, n)
    out = [rng.normal(size=n) + a * t for a in rng.uniform(0, 12, m)]
    out += [np.sort(rng.normal(size=n)) for _ in range(m // 8)]  # monotone: the smallest EPG there is
    out += [np.round(rng.normal(size=n) + a * t) for a in rng.uniform(0, 6, m // 4)]  # few levels: ties
    out += [np.full(n, 3.0), np.zeros(n), np.eye(n)[n // 2], np.arange(n, dtype=float)]
    out += [1e4 + 0.01 * (rng.normal(size=n) + a * t) for a in rng.uniform(0, 12, m // 8)]
    return np.array(out)


@pytest.mark.parametrize(("n", "m", "precision"), [(7, 320, "float64"), (7, 320, "float32"), (8, 48, "float64")])
def test_bound_is_above_the_exact_pvalue_from_full_enumeration(n: int, m: int, precision: str) -> None:
    """With alpha just below 1 every curve with a bound < 1 is settled by it: each such p-value must be at least
    the exact p-value over all N! orderings (two oracles), for every alternative."""
    y = _adversarial(n, m, seed=n)
    less, greater, two = _enumerated(y)
    oracle = {"less": less, "greater": greater, "two-sided": two}
    settled_any = 0
    for alternative in ("less", "greater", "two-sided"):
        seq = E.permutation_test(y, method="sequential", alpha=0.999, exact=False, n_permutations=2_000,
                                 alternative=alternative, precision=precision, seed=3)
        exact = E.permutation_test(y, exact=True, alternative=alternative, precision=precision)
        settled = seq.n_used == 0
        settled_any += int(settled.sum())
        assert np.all(seq.pvalue[settled] >= oracle[alternative][settled]), alternative
        assert np.all(seq.pvalue[settled] >= exact.pvalue[settled]), alternative
        assert np.all(seq.pvalue[settled] > 0)
        for i in range(len(y) - 4 - m // 8, len(y) - m // 8 - 2):  # constant curves: no bound, shuffles drawn
            assert seq.n_used[i] > 0 and seq.pvalue[i] == 1.0
    assert settled_any > len(y)  # the screen is not vacuous here


def test_bound_formula_and_its_refusals() -> None:
    """Cantelli: var / (var + gap^2) on the side of the observed value, 1 on the other side, for no spread,
    and where the observed value lies within the rounding allowance of the mean."""
    obs, mean, sd, tol = np.array([1.0, 5.0, 2.0, 2.0, 2.0]), np.full(5, 2.0), np.array([0.5, 0.5, 0.0, 0.5, 0.5]), \
        np.zeros(5)
    less = cantelli_bound(obs, mean, sd, tol, "less", 0.0)
    np.testing.assert_allclose(less, [0.25 / 1.25, 1.0, 1.0, 1.0, 1.0])
    greater = cantelli_bound(obs, mean, sd, tol, "greater", 0.0)
    np.testing.assert_allclose(greater, [1.0, 0.25 / 9.25, 1.0, 1.0, 1.0])
    two = cantelli_bound(obs, mean, sd, tol, "two-sided", 0.0)
    np.testing.assert_allclose(two, [0.4, 0.5 / 9.25, 1.0, 1.0, 1.0])
    # ties and rounding move the threshold toward the mean: a smaller gap, a larger bound
    assert cantelli_bound(obs[:1], mean[:1], sd[:1], np.array([0.1]), "less", 0.01)[0] > less[0]
    np.testing.assert_array_equal(cantelli_bound(np.array([np.nan]), mean[:1], sd[:1], tol[:1], "less", 0.0), [1.0])


def _steep(b: int, n: int = 101, seed: int = 0) -> np.ndarray:
    """Nearly monotone drifts (settled by the screen at N = 101) mixed with noise (not settled)."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 1, n)
    amp = np.concatenate([rng.uniform(5, 40, b // 2), np.zeros(b - b // 2)])
    y = amp[:, None] * t[None, :] + 0.1 * rng.normal(size=(b, n))
    lo, hi = y.min(axis=1, keepdims=True), y.max(axis=1, keepdims=True)
    return (0.75 + 0.2 * (y - lo) / (hi - lo)).astype(np.float32)  # in [0.75, 0.95]: 1 - y, 3 - 4y are exact


def test_settled_curves_agree_with_fixed_k_and_invariances_hold() -> None:
    y = _steep(120)
    seq = E.permutation_test(y, method="sequential", seed=5)
    fixed = E.permutation_test(y, n_permutations=10_000, seed=5)
    settled = seq.n_used == 0
    assert settled.sum() >= 30 and not np.any(settled[60:])  # drifts are settled, noise is not
    assert np.all(seq.significant[settled]) and np.all(fixed.significant[settled])
    assert np.all(seq.pvalue[settled] < 0.01) and np.all(seq.pvalue[settled] >= fixed.pvalue[settled] / 1e6)
    np.testing.assert_array_equal(seq.significant, fixed.significant)
    np.testing.assert_array_equal(seq.statistic, fixed.statistic)
    one = np.float32(1.0)
    for name, v in {"1-y": one - y, "4y": np.float32(4) * y, "3-4y": np.float32(3) - np.float32(4) * y}.items():
        got = E.permutation_test(v, method="sequential", seed=5)
        np.testing.assert_array_equal(got.pvalue, seq.pvalue, err_msg=name)
        np.testing.assert_array_equal(got.n_used, seq.n_used, err_msg=name)
    for i in (0, 7, 59, 60, 119):  # alone, as part of a batch
        alone = E.permutation_test(y[i], method="sequential", seed=5)
        assert float(alone.pvalue) == float(seq.pvalue[i]) and int(alone.n_used) == int(seq.n_used[i])
    for alternative in ("less", "greater"):  # one-sided: only the matching tail settles
        res = E.permutation_test(y[:60], method="sequential", alternative=alternative, seed=5)
        assert (alternative == "less") == bool(np.any(res.n_used == 0))


@pytest.mark.parametrize("norm", ["l2", "l1"])
def test_vector_bound_is_above_the_exact_pvalue_from_full_enumeration(norm: str) -> None:
    """Whole output vectors (host tables for L2, tables built in the kernel for L1): the settled p-value is at
    least the exact one over all 5,040 orderings (numpy np.gradient + vector norm, float64)."""
    rng = np.random.default_rng(11)
    n, c = 7, 4
    t = np.linspace(0, 1, n)[None, :, None]
    y = rng.normal(size=(160, n, c)) + rng.uniform(0, 15, (160, 1, 1)) * t * rng.normal(size=(160, 1, c))
    y[:20] = np.sort(y[:20], axis=1)  # monotone in every output
    perms = np.array(list(itertools.permutations(range(n))))
    ordn = 2 if norm == "l2" else 1
    less = np.empty(len(y))
    for i, row in enumerate(y):
        null = np.mean(np.linalg.norm(np.gradient(row[perms], axis=1), ord=ordn, axis=-1), axis=1)
        obs = np.mean(np.linalg.norm(np.gradient(row, axis=0), ord=ordn, axis=-1))
        less[i] = np.mean(null <= obs * (1 + 1e-9))
    seq = E.permutation_test(y, class_axis=-1, norm=norm, method="sequential", alpha=0.999, exact=False,
                             n_permutations=2_000, alternative="less", precision="float64", seed=2)
    exact = E.permutation_test(y, class_axis=-1, norm=norm, exact=True, alternative="less", precision="float64")
    settled = seq.n_used == 0
    assert settled.sum() > 40
    assert np.all(seq.pvalue[settled] >= less[settled])
    assert np.all(seq.pvalue[settled] >= exact.pvalue[settled])
