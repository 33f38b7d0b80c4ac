# pyright: reportOptionalMemberAccess=false, reportOptionalSubscript=false, reportOptionalOperand=false
# pyright: reportArgumentType=false, reportCallIssue=false
"""Vector EPG through matrix products (issue 20): the distance tables equal direct distances, the shuffle test
equals full enumeration in numpy, and exact moments refuse curves whose N^2 table would not fit."""

from __future__ import annotations

import itertools
import time

import numpy as np
import pytest

import epg_core as E
from epg_core._permutation._engine import normalise
from epg_core._permutation._kernels import MAX_TABLE_STEPS, host_pair_table, relabel_table


def _smooth_vectors(b: int, n: int, c: int, seed: int = 0) -> np.ndarray:
    """Output vectors that drift slowly around a large common offset: adjacent steps are very close, the
    case where ``|a|^2 + |b|^2 - 2 a.b`` cancels."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 1, n)[None, :, None]
    base = rng.random((b, 1, c))
    return (0.5 + 0.4 * base + 0.01 * t * rng.normal(size=(b, 1, c)) + 1e-5 * rng.random((b, n, c))).astype(
        np.float32)


def _direct(z: np.ndarray) -> np.ndarray:
    n = z.shape[1]
    hi, lo = np.tril_indices(n)
    return np.sqrt(np.sum((z[:, hi] - z[:, lo]) ** 2, axis=-1))


@pytest.mark.parametrize("classes", [10, 1000])
def test_distance_tables_equal_direct_distances(classes: int) -> None:
    y = _smooth_vectors(6, 40, classes)
    z = normalise(y)[0]  # what the engine passes: every output centred on its midrange, float64
    ref = _direct(z)
    off = np.tril_indices(40)[0] != np.tril_indices(40)[1]
    table32 = host_pair_table(z)[0].astype(np.float32)  # what the kernel reads in float32
    rel = np.abs(table32[:, off] - ref[:, off]) / ref[:, off]
    assert rel.max() <= 1e-5, rel.max()
    if classes == 1000:  # the trap the table avoids: the same identity in float32 loses far more
        y32 = z.astype(np.float32)
        sq = np.einsum("bnc,bnc->bn", y32, y32)
        gram = np.matmul(y32, np.swapaxes(y32, 1, 2))
        hi, lo = np.tril_indices(40)
        naive = np.sqrt(np.maximum(sq[:, hi] + sq[:, lo] - 2 * gram[:, hi, lo], 0))
        assert np.max(np.abs(naive[:, off] - ref[:, off]) / ref[:, off]) > 1e-4
    perm = np.stack([np.random.default_rng(i).permutation(40) for i in range(6)])
    relabelled = _direct(np.take_along_axis(z, perm[:, :, None], axis=1))
    np.testing.assert_allclose(relabel_table(host_pair_table(z)[0], perm), relabelled, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(host_pair_table(z, perm)[1], relabelled, rtol=1e-9, atol=1e-12)


def test_vector_shuffle_test_equals_full_enumeration() -> None:
    y = _smooth_vectors(3, 6, 50, seed=2)
    y[1] = np.random.default_rng(3).random((6, 50))
    res = E.permutation_test(y, class_axis=-1, exact=True, return_null=True, precision="float64")
    perms = np.array(list(itertools.permutations(range(6))))
    z = y.astype(np.float64)
    for i in range(3):
        grads = np.gradient(z[i][perms], axis=1)  # [720, 6, 50]
        null = np.mean(np.linalg.norm(grads, axis=-1), axis=1)
        assert res.null is not None
        np.testing.assert_allclose(np.sort(res.null[i]), np.sort(null), rtol=1e-9)
        obs = np.mean(np.linalg.norm(np.gradient(z[i], axis=0), axis=-1))
        assert float(res.statistic[i]) == pytest.approx(obs, rel=1e-9)
    # float32 (the default): the same statistic to 1e-5 relative on the cancellation-prone curves
    res32 = E.permutation_test(y, class_axis=-1, n_permutations=500)
    np.testing.assert_allclose(res32.statistic, res.statistic, rtol=1e-5)


def test_moments_refuse_three_million_steps_before_allocating() -> None:
    y = np.random.default_rng(0).random(3_000_000, dtype=np.float32)
    t0 = time.perf_counter()
    with pytest.raises(E.DataError, match=f"{MAX_TABLE_STEPS:,}"):
        E.permutation_moments(y)
    with pytest.raises(E.DataError, match="steps"):
        E.permutation_moments(np.zeros((2, MAX_TABLE_STEPS + 1, 3), np.float32), class_axis=-1)
    assert time.perf_counter() - t0 < 5


def test_shuffle_test_refuses_millions_of_steps_before_allocating() -> None:
    y = np.zeros(3_000_000, np.float32)
    t0 = time.perf_counter()
    with pytest.raises(E.DataError, match="3,000,000 steps"):
        E.permutation_test(y)
    with pytest.raises(E.DataError, match="shuffles"):
        E.permutation_test(y, method="sequential")
    assert time.perf_counter() - t0 < 5


def _adversarial_vectors(n: int, c: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Curves of output vectors where ``|a|^2 + |b|^2 - 2 a.b`` cancels: [B, N, C] float32 each."""
    rng = np.random.default_rng(seed)
    t = np.arange(n, dtype=np.float64)[None, :, None]
    u = rng.normal(size=(3, 1, c))
    smooth = 0.5 + 1e-4 * t * u / np.abs(u).max()  # adjacent steps differ by 1e-4 of the spread ...
    smooth[:, -1] += 1.0  # ... which the last step's jump sets
    return {
        "random": rng.random((3, n, c)),
        "offset": 1e4 + rng.random((3, n, c)),  # a large common offset
        "near-constant": 0.25 + 1e-6 * rng.random((3, n, c)),
        "smooth": smooth,
    }


def _oracle_tables(y: np.ndarray) -> np.ndarray:
    """Direct float64 distances of the engine's normalised curves (numpy, no matrix identity)."""
    z = normalise(y.astype(np.float32))[0]
    return _direct(z)


@pytest.mark.parametrize("case", ["random", "offset", "near-constant", "smooth"])
def test_tables_equal_direct_float64_distances_on_adversarial_curves(case: str) -> None:
    """C = 1,000 outputs: the float32 tables the kernel reads equal direct float64 distances to 1e-5 relative."""
    n = 30
    y = _adversarial_vectors(n, 1000)[case].astype(np.float32)
    ref = _oracle_tables(y)
    z = normalise(y)[0]
    table = host_pair_table(z, None, np.float32)[0]
    assert table.dtype == np.float32
    off = ref > 0
    rel = np.abs(table[off] - ref[off]) / ref[off]
    assert rel.max() <= 1e-5, (case, rel.max())
    np.testing.assert_array_equal(table[~off], 0.0)


def test_float32_products_cannot_hold_1e5_even_on_mean_centred_outputs() -> None:
    """Why the products stay in float64: the float32 identity on outputs centred on each curve's mean vector still
    loses far more than 1e-5 relative where adjacent steps differ by 1e-4 of the spread."""
    y = _adversarial_vectors(30, 1000)["smooth"].astype(np.float32)
    ref = _oracle_tables(y)
    z = normalise(y)[0]
    zc = (z - z.mean(axis=1, keepdims=True)).astype(np.float32)
    sq = np.einsum("bnc,bnc->bn", zc, zc)
    gram = np.matmul(zc, np.swapaxes(zc, 1, 2))
    hi, lo = np.tril_indices(30)
    f32 = np.sqrt(np.maximum(sq[:, hi] + sq[:, lo] - 2 * gram[:, hi, lo], 0))
    off = ref > 0
    assert np.max(np.abs(f32[off] - ref[off]) / ref[off]) > 1e-3


@pytest.mark.parametrize("case", ["random", "offset", "near-constant", "smooth"])
def test_pvalues_equal_the_direct_computation_on_adversarial_curves(case: str) -> None:
    """All 720 orderings of 6 steps x 1,000 outputs: the float32 test's statistic equals np.gradient + norm to
    1e-5 relative and its exact p-values (both tails, ties within the engine's tolerance) equal those of the
    numpy float64 null of direct distances."""
    n = 6
    y = _adversarial_vectors(n, 1000, seed=1)[case].astype(np.float32)
    perms = np.array(list(itertools.permutations(range(n))))
    res = {alt: E.permutation_test(y, class_axis=-1, exact=True, alternative=alt) for alt in ("less", "greater")}
    z = normalise(y)[0]
    s = normalise(y)[1]
    tol = 2 * n * float(np.finfo(np.float32).eps)  # TIE_ULPS * N ulps, relative to the observed statistic
    for i in range(len(y)):
        null = np.mean(np.linalg.norm(np.gradient(z[i][perms], axis=1), axis=-1), axis=1)
        obs = float(np.mean(np.linalg.norm(np.gradient(z[i], axis=0), axis=-1)))
        assert float(res["less"].statistic[i]) == pytest.approx(obs * s[i], rel=1e-5)
        tie = np.abs(null - obs) <= tol * obs
        assert float(res["less"].pvalue[i]) == pytest.approx(np.mean((null <= obs) | tie), abs=1e-12), case
        assert float(res["greater"].pvalue[i]) == pytest.approx(np.mean((null >= obs) | tie), abs=1e-12), case
