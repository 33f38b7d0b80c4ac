# pyright: reportOptionalMemberAccess=false, reportOptionalSubscript=false, reportOptionalOperand=false
# pyright: reportArgumentType=false, reportCallIssue=false, reportAttributeAccessIssue=false
"""Exact null moments vs full enumeration and 10^6 shuffles; vector EPG, KSG mutual information, mean gradient."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import scipy.spatial
import scipy.special

import epg_core as E

STENCILS = [
    ({}, None),  # np.gradient, unit spacing
    ({}, "uniform"),  # np.gradient on a uniform grid of spacing 0.37
    ({"scheme": "forward", "accuracy": 1}, None),
    ({"scheme": "backward", "accuracy": 1}, "uniform"),
    ({"weighting": "trapezoid"}, "uniform"),
]


def _grid(kind: str | None, n: int) -> np.ndarray | None:
    return None if kind is None else 1.5 + 0.37 * np.arange(n)


def _np_epg(y: np.ndarray, x: np.ndarray | None, options: dict) -> np.ndarray:
    """Reference EPG of curves [..., N] (np.gradient or one-sided differences, plain or trapezoid mean)."""
    n = y.shape[-1]
    xs = np.arange(n, dtype=float) if x is None else x
    if options.get("scheme") == "forward":
        d = np.diff(y, axis=-1) / np.diff(xs)
        d = np.concatenate([d, d[..., -1:]], axis=-1)
    elif options.get("scheme") == "backward":
        d = np.diff(y, axis=-1) / np.diff(xs)
        d = np.concatenate([d[..., :1], d], axis=-1)
    else:
        d = np.gradient(y, xs, axis=-1)
    if options.get("weighting") == "trapezoid":
        dx = np.diff(xs)
        w = 0.5 * (np.concatenate([[0], dx]) + np.concatenate([dx, [0]]))
        return np.sum(np.abs(d) * w / w.sum(), axis=-1)
    return np.mean(np.abs(d), axis=-1)


@pytest.mark.parametrize("n", [2, 3, 4, 5, 6, 7, 8])
@pytest.mark.parametrize("case", range(len(STENCILS)))
def test_moments_equal_full_enumeration(n: int, case: int) -> None:
    options, grid_kind = STENCILS[case]
    x = _grid(grid_kind, n)
    y = np.random.default_rng(n * 10 + case).normal(size=(2, n))
    y[1] = np.round(y[1])  # ties between outputs
    perms = np.array(list(itertools.permutations(range(n))))
    for row in y:
        t = _np_epg(row[perms], x, options)
        m = E.permutation_moments(row, x, precision="float64", **options)
        assert float(m.mean) == pytest.approx(t.mean(), abs=1e-10, rel=1e-10)
        assert float(m.std) == pytest.approx(t.std(), abs=1e-10, rel=1e-10)


def test_vector_moments_equal_full_enumeration() -> None:
    rng = np.random.default_rng(4)
    y = rng.normal(size=(6, 3))
    perms = np.array(list(itertools.permutations(range(6))))
    for norm in ("l2", "l1"):
        d = np.gradient(y[perms], axis=1)
        mag = np.linalg.norm(d, axis=-1) if norm == "l2" else np.abs(d).sum(-1)
        t = mag.mean(axis=1)
        m = E.permutation_moments(y, class_axis=-1, norm=norm, precision="float64")
        assert float(m.mean) == pytest.approx(t.mean(), rel=1e-10)
        assert float(m.std) == pytest.approx(t.std(), rel=1e-10)


def test_moments_agree_with_a_million_random_shuffles() -> None:
    rng = np.random.default_rng(8)
    n, k = 30, 1_000_000
    y = np.cumsum(rng.normal(size=n))
    t = np.empty(k)
    for start in range(0, k, 100_000):
        idx = np.argsort(rng.random((100_000, n)), axis=1)
        t[start:start + 100_000] = _np_epg(y[idx], None, {})
    m = E.permutation_moments(y, precision="float64")
    assert abs(float(m.mean) - t.mean()) <= 4 * t.std() / math.sqrt(k)
    kurt = np.mean((t - t.mean()) ** 4) / t.var() ** 2
    assert abs(float(m.std) - t.std()) <= 4 * t.std() * math.sqrt((kurt - 1) / (4 * k))


def test_moments_refuse_wider_stencils_and_match_the_test() -> None:
    y = np.random.default_rng(1).normal(size=12)
    with pytest.raises(ValueError, match="two-tap"):
        E.permutation_moments(y, np.cumsum(np.linspace(0.5, 1.5, 12)))
    with pytest.raises(ValueError, match="two-tap"):
        E.permutation_moments(y, accuracy=4)
    res = E.permutation_test(y, return_null=True, n_permutations=20_000, precision="float64")
    m = E.permutation_moments(y, precision="float64")
    assert res.null is not None
    assert float(res.zscore) == pytest.approx((float(res.statistic) - float(m.mean)) / float(m.std), rel=1e-9)
    assert float(res.ratio) == pytest.approx(float(res.statistic) / float(m.mean), rel=1e-9)
    assert abs(res.null.mean() - float(m.mean)) < 5 * float(m.std) / math.sqrt(20_000)
    wide = E.permutation_test(y, np.cumsum(np.linspace(0.5, 1.5, 12)), n_permutations=200)
    assert np.isnan(wide.zscore) and np.isnan(wide.ratio)


@pytest.mark.parametrize("norm", ["l2", "l1"])
def test_vector_epg_equals_numpy(norm: str) -> None:
    y = np.random.default_rng(2).random((3, 4, 25, 7))
    d = np.gradient(y, axis=-2)
    ref = np.mean(np.linalg.norm(d, axis=-1) if norm == "l2" else np.abs(d).sum(-1), axis=-1)
    got = E.epg(y, class_axis=-1, norm=norm)
    np.testing.assert_allclose(np.asarray(got), ref, rtol=1e-6)
    moved = np.moveaxis(y, -1, 0)  # class axis first, steps still the last of the other axes
    np.testing.assert_allclose(np.asarray(E.epg(moved, class_axis=0, norm=norm)), ref, rtol=1e-6)
    res = E.permutation_test(y, class_axis=-1, norm=norm, n_permutations=100, precision="float64")
    np.testing.assert_allclose(res.statistic, ref, rtol=1e-9)


def test_vector_pvalues_agree_with_a_numpy_shuffle_test() -> None:
    rng = np.random.default_rng(6)
    t = np.linspace(0, 1, 40)
    curves = [rng.random((40, 6)), np.stack([np.sin(3 * t + i) for i in range(6)], -1) + rng.normal(0, 0.5, (40, 6))]
    k = 5_000
    for y in curves:
        obs = np.mean(np.linalg.norm(np.gradient(y, axis=0), axis=-1))
        idx = np.argsort(rng.random((k, 40)), axis=1)
        null = np.mean(np.linalg.norm(np.gradient(y[idx], axis=1), axis=-1), axis=1)
        p_ref = (np.sum(null <= obs) + 1) / (k + 1)
        p = float(E.permutation_test(y, class_axis=-1, alternative="less", n_permutations=k).pvalue)
        se = math.sqrt(max(p_ref, 1 / k) * (1 - p_ref) / k)
        assert abs(p - p_ref) <= 4 * math.sqrt(2) * se + 1e-12, (p, p_ref)


@pytest.mark.slow
def test_vector_memory_does_not_grow_with_classes() -> None:
    import subprocess
    import sys

    code = (
        "import re, numpy as np, epg_core as E; "
        "hwm = lambda: int(re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1)); "
        "y = np.random.default_rng(0).random((40, 51, 2000), dtype=np.float32); base = hwm(); "
        "r = E.permutation_test(y, class_axis=-1, n_permutations=300); print(base, hwm())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    base, peak = map(int, out.stdout.split())
    assert peak - base < 400_000, f"extra peak {(peak - base) / 1e3:.0f} MB"


def _ksg_reference(y: np.ndarray, x: np.ndarray, k: int = 5) -> float:
    """KSG (algorithm 1) with scipy's k-d tree in the max-norm."""
    xs = x  # distances need no centring; y is brought to the grid's spread
    ys = (y - y.mean()) * (x.std() / y.std())
    pts = np.stack([xs, ys], axis=1)
    tree = scipy.spatial.cKDTree(pts)
    eps = tree.query(pts, k=k + 1, p=np.inf)[0][:, -1]
    tx, ty = scipy.spatial.cKDTree(xs[:, None]), scipy.spatial.cKDTree(ys[:, None])
    pairs = list(zip(xs, ys, eps, strict=True))
    nx = np.array([len(tx.query_ball_point([v], np.nextafter(e, 0), p=np.inf)) - 1 for v, _, e in pairs])
    ny = np.array([len(ty.query_ball_point([v], np.nextafter(e, 0), p=np.inf)) - 1 for _, v, e in pairs])
    n = len(y)
    return float(scipy.special.digamma(n) + scipy.special.digamma(k)
                 - np.mean(scipy.special.digamma(nx + 1) + scipy.special.digamma(ny + 1)))


@pytest.mark.slow
@pytest.mark.usefixtures("x64")
def test_mi_equals_a_kd_tree_ksg() -> None:
    rng = np.random.default_rng(3)
    x = np.linspace(0, 4, 60)
    for y in (rng.normal(size=60), np.sin(x) + rng.normal(0, 0.2, 60), np.exp(x) + rng.normal(0, 1, 60)):
        ref = _ksg_reference(y, x)
        assert float(E.ksg_mi(y, x)) == pytest.approx(ref, abs=1e-9)
        res = E.permutation_test(y, x, statistic="mi", n_permutations=300, alternative="greater",
                                 precision="float64")
        assert float(res.statistic) == pytest.approx(ref, abs=1e-9)
    strong = E.permutation_test(np.sin(x), x, statistic="mi", n_permutations=300, alternative="greater")
    assert float(strong.pvalue) < 0.01


def test_mean_gradient_is_the_signed_mean_derivative() -> None:
    y = np.random.default_rng(0).normal(size=(3, 20))
    x = np.cumsum(np.random.default_rng(1).uniform(0.2, 1.0, 20))
    np.testing.assert_allclose(np.asarray(E.mean_gradient(y)), np.mean(np.gradient(y, axis=-1), -1), atol=1e-6)
    np.testing.assert_allclose(np.asarray(E.mean_gradient(y, x)), np.mean(np.gradient(y, x, axis=-1), -1), atol=1e-5)
