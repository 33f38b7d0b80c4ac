# pyright: reportOptionalMemberAccess=false, reportOptionalSubscript=false, reportOptionalOperand=false
# pyright: reportArgumentType=false, reportCallIssue=false, reportAttributeAccessIssue=false
"""epg_core numerics against oracles nobody here wrote: SymPy, np.gradient, SciPy."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats
import sympy
from hypothesis import given, settings
from hypothesis import strategies as st

import epg_core as E

pytestmark = pytest.mark.usefixtures("x64")  # float64 oracles: a float64 scope per test


# ----------------------------------------------------------------------------- Fornberg vs SymPy
@pytest.mark.parametrize("n_nodes", [2, 3, 4, 5, 6, 7])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fornberg_equals_sympy(n_nodes: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    nodes = np.sort(rng.uniform(-2.0, 3.0, n_nodes))
    x0 = float(rng.uniform(-1, 1))
    exact = sympy.finite_diff_weights(3, [sympy.Rational(v) for v in nodes], sympy.Rational(x0))
    for order in range(0, min(3, n_nodes - 1) + 1):
        ours = np.asarray(E.fornberg_weights(nodes, x0, order))
        ref = np.array([float(v) for v in exact[order][-1]])
        np.testing.assert_allclose(ours, ref, rtol=1e-10, atol=1e-10 * np.max(np.abs(ref)))


def test_fornberg_is_differentiable_and_jittable() -> None:
    nodes = jnp.array([0.0, 0.7, 1.9])
    w = jax.jit(lambda n: E.fornberg_weights(n, 0.7, 1))(nodes)
    np.testing.assert_allclose(w @ nodes**2, 2 * 0.7, rtol=1e-12)  # exact for quadratics
    g = jax.grad(lambda n: E.fornberg_weights(n, 0.7, 1)[0])(nodes)
    assert np.all(np.isfinite(np.asarray(g))) and np.any(np.asarray(g) != 0)


# ----------------------------------------------------------------------------- derivative vs np.gradient
@pytest.mark.slow
@pytest.mark.parametrize("n", [2, 3, 5, 92])
@pytest.mark.parametrize("grid", ["unit", "uniform", "random"])
def test_derivative_equals_np_gradient(n: int, grid: str) -> None:
    rng = np.random.default_rng(n)
    y = rng.normal(size=(3, n))
    x = {"unit": None, "uniform": np.linspace(1.0, 15.0, n),
         "random": np.cumsum(rng.uniform(0.05, 2.0, n))}[grid]
    ref = np.gradient(y, axis=-1) if x is None else np.gradient(y, x, axis=-1)
    np.testing.assert_allclose(np.asarray(E.derivative(y, x)), ref, rtol=1e-12, atol=1e-12)
    if n >= 3:
        ref2 = (np.gradient(y, axis=-1, edge_order=2) if x is None
                else np.gradient(y, x, axis=-1, edge_order=2))
        np.testing.assert_allclose(np.asarray(E.derivative(y, x, edge_accuracy=2)), ref2, rtol=1e-12, atol=1e-12)


def test_derivative_other_axis_and_decreasing_grid() -> None:
    rng = np.random.default_rng(3)
    y = rng.normal(size=(7, 4))
    x = -np.cumsum(rng.uniform(0.1, 1.0, 7))  # strictly decreasing is a valid grid
    np.testing.assert_allclose(np.asarray(E.derivative(y, x, axis=0)), np.gradient(y, x, axis=0),
                               rtol=1e-12, atol=1e-12)


@pytest.mark.slow
def test_higher_accuracy_and_orders_are_exact_on_polynomials() -> None:
    x = np.cumsum(np.random.default_rng(4).uniform(0.2, 1.0, 12))
    y = 0.3 * x**3 - x**2 + 2 * x
    d1 = np.asarray(E.derivative(y, x, accuracy=4, edge_accuracy=3))
    np.testing.assert_allclose(d1, 0.9 * x**2 - 2 * x + 2, rtol=1e-9, atol=1e-9)
    d2 = np.asarray(E.derivative(y, x, order=2, accuracy=4, edge_accuracy=2))  # 5-point: exact for cubics
    np.testing.assert_allclose(d2, 1.8 * x - 2, rtol=1e-8, atol=1e-8)
    q = np.asarray(E.derivative(0.5 * x**2 - x, x, order=2))  # 3-point on a non-uniform grid: exact for quadratics
    np.testing.assert_allclose(q, np.ones_like(x), rtol=1e-9)
    fwd = np.asarray(E.derivative(np.arange(6.0) ** 2, scheme="forward", accuracy=1))
    np.testing.assert_allclose(fwd, [1, 3, 5, 7, 9, 9])  # last step flips to a backward difference
    bwd = np.asarray(E.derivative(np.arange(6.0) ** 2, scheme="backward", accuracy=1))
    np.testing.assert_allclose(bwd, [1, 1, 3, 5, 7, 9])


def test_epg_is_the_papers_reference_definition() -> None:
    rng = np.random.default_rng(5)
    p = scipy.special.softmax(rng.normal(size=(4, 101, 2)), axis=-1)[..., 0]
    np.testing.assert_allclose(np.asarray(E.epg(p)), np.mean(np.abs(np.gradient(p, axis=-1)), axis=-1), rtol=1e-12)
    y2 = rng.normal(size=(10, 2))
    np.testing.assert_allclose(np.asarray(E.epg(y2)), np.abs(y2[:, 1] - y2[:, 0]), rtol=1e-12)  # causal concept effect


def test_epg_trapezoid_weighting() -> None:
    x = np.array([0.0, 1.0, 3.0, 6.0])
    y = np.array([0.0, 2.0, 2.0, 5.0])
    d = np.abs(np.gradient(y, x))
    cells = np.array([0.5, 1.5, 2.5, 1.5]) / 6.0
    np.testing.assert_allclose(float(E.epg(y, x, weighting="trapezoid")), float(d @ cells), rtol=1e-12)


@pytest.mark.slow
def test_float32_by_default_dtype_follows_input() -> None:
    y = np.random.default_rng(6).normal(size=20).astype(np.float32)
    assert E.epg(y).dtype == jnp.float32
    assert E.epg(y.astype(np.float64)).dtype == jnp.float64  # the x64 fixture is on in this module


@pytest.mark.slow
def test_jit_and_vmap_of_epg() -> None:
    y = np.random.default_rng(7).normal(size=(6, 30))
    ref = np.mean(np.abs(np.gradient(y, axis=-1)), axis=-1)
    np.testing.assert_allclose(np.asarray(jax.jit(E.epg)(y)), ref, rtol=1e-12)
    np.testing.assert_allclose(np.asarray(jax.vmap(E.epg)(y)), ref, rtol=1e-12)
    x = jnp.linspace(0.0, 2.0, 30)
    ref_x = np.mean(np.abs(np.gradient(y, np.asarray(x), axis=-1)), -1)
    np.testing.assert_allclose(np.asarray(jax.jit(E.epg)(y, x)), ref_x, rtol=1e-12)


@pytest.mark.slow
@settings(max_examples=40, deadline=None)
@given(
    shape=st.lists(st.integers(1, 3), min_size=0, max_size=2),
    n=st.integers(2, 25),
    seed=st.integers(0, 10_000),
    nonuniform=st.booleans(),
)
def test_property_random_shapes_and_grids(shape: list[int], n: int, seed: int, nonuniform: bool) -> None:
    rng = np.random.default_rng(seed)
    y = rng.normal(size=(*shape, n))
    x = np.cumsum(rng.uniform(0.01, 3.0, n)) if nonuniform else None
    ref_d = np.gradient(y, axis=-1) if x is None else np.gradient(y, x, axis=-1)
    d = np.asarray(E.derivative(y, x))
    assert d.shape == y.shape
    np.testing.assert_allclose(d, ref_d, rtol=1e-10, atol=1e-10 * max(1.0, np.max(np.abs(ref_d))))
    np.testing.assert_allclose(np.asarray(E.epg(y, x)), np.mean(np.abs(ref_d), axis=-1), rtol=1e-10, atol=1e-12)


# ----------------------------------------------------------------------------- Pearson, flips, FDR
def test_pearson_equals_scipy_and_nan_for_constant() -> None:
    rng = np.random.default_rng(8)
    y = rng.normal(size=(5, 40))
    x = np.cumsum(rng.uniform(0.1, 1.0, 40))
    ref = [scipy.stats.pearsonr(x, row).statistic for row in y]
    np.testing.assert_allclose(np.asarray(E.pearson(y, x)), ref, rtol=1e-10)
    assert np.isnan(float(E.pearson(np.full(10, 0.3))))


def test_flips_counts_argmax_changes_and_threshold_crossings() -> None:
    probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.4, 0.6], [0.45, 0.55], [0.7, 0.3]])  # [N, C]
    assert int(E.flips(probs)) == 2
    np.testing.assert_array_equal(np.asarray(E.flip_points(probs)), [False, True, False, True])
    assert int(E.flips(probs[:, 0], threshold=0.5)) == 2
    batch = np.stack([probs, probs[::-1], np.tile(probs[:1], (5, 1))])  # [3, N, C]
    np.testing.assert_array_equal(np.asarray(E.flips(batch)), [2, 2, 0])
    np.testing.assert_array_equal(np.asarray(E.flips(np.moveaxis(batch, -1, 0), class_axis=0, step_axis=-1)), [2, 2, 0])


def test_fdr_equals_scipy_false_discovery_control() -> None:
    p = np.random.default_rng(9).uniform(size=(4, 50)) ** 3
    res = E.fdr(p, alpha=0.05)
    ref = scipy.stats.false_discovery_control(p.ravel(), method="bh").reshape(p.shape)
    np.testing.assert_allclose(res.qvalues, ref, rtol=1e-12)
    np.testing.assert_array_equal(res.significant, ref <= 0.05)
    assert res.significant.sum() > 0


# ----------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    "call, fragment",
    [
        (lambda: E.epg(np.array([1.0])), "at least 2 steps"),
        (lambda: E.epg(np.array([1.0, np.nan, 2.0])), "NaN or infinite"),
        (lambda: E.epg(np.array([1.0, np.inf, 2.0])), "NaN or infinite"),
        (lambda: E.epg(np.ones(4), np.array([0.0, 1.0, 1.0, 2.0])), "duplicate points"),
        (lambda: E.epg(np.ones(4), np.array([0.0, 2.0, 1.0, 3.0])), "not strictly monotonic"),
        (lambda: E.epg(np.ones(4), np.array([0.0, 1.0, 2.0])), "shape"),
        (lambda: E.derivative(np.ones(4), accuracy=6), "stencil needs 7 points"),
        (lambda: E.derivative(np.ones(3), scheme="sideways"), "unknown scheme"),
        (lambda: E.fornberg_weights(np.array([0.0, 1.0]), 0.0, 2), "at least 3 nodes"),
        (lambda: E.permutation_test(np.ones(5), n_permutations=0), "n_permutations must be >= 1, got 0"),
        (lambda: E.permutation_test(np.ones(5), alternative="bigger"), "unknown alternative 'bigger'"),
        (lambda: E.permutation_test(np.array([1.0, np.nan, 0.0])), "NaN or infinite"),
        (lambda: E.permutation_test(np.array([1.0])), "at least 2 steps"),
        (lambda: E.permutation_test(np.ones(5), statistic="median"), "unknown statistic"),
    ],
)
def test_errors_name_the_problem(call, fragment: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=fragment):
        call()
