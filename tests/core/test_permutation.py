# pyright: reportOptionalMemberAccess=false, reportOptionalSubscript=false, reportOptionalOperand=false
# pyright: reportArgumentType=false, reportCallIssue=false, reportAttributeAccessIssue=false
"""The shuffle test against scipy.stats.permutation_test, calibration, and the paper's Fig. 9 claims."""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

import epg_core as E
from epg_core._permutation import _scan as _perm_scan

pytestmark = pytest.mark.usefixtures("x64")  # float64 oracles: a float64 scope per test


def _np_epg(y: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(np.abs(np.gradient(y, axis=axis)), axis=axis)


@pytest.mark.parametrize("n", [3, 4, 5, 6, 7])
@pytest.mark.parametrize("alternative", ["less", "greater", "two-sided"])
def test_exact_pvalues_equal_scipy(n: int, alternative: str) -> None:
    rng = np.random.default_rng(n)
    for curve in (rng.normal(size=n), np.sort(rng.normal(size=n)), np.sin(np.arange(n))):
        ref = scipy.stats.permutation_test(
            (curve,), _np_epg, permutation_type="pairings", n_resamples=np.inf,
            alternative=alternative, vectorized=True,
        )
        res = E.permutation_test(curve, alternative=alternative)
        assert res.exact and res.n_permutations == math.factorial(n)
        assert float(res.pvalue) == pytest.approx(ref.pvalue, abs=1e-12)
        assert float(res.statistic) == pytest.approx(ref.statistic, rel=1e-12)


def test_exact_pearson_equals_scipy() -> None:
    y = np.random.default_rng(11).normal(size=6)
    x = np.arange(6.0)
    ref = scipy.stats.permutation_test(
        (y,), lambda v, axis: scipy.stats.pearsonr(np.broadcast_to(x, v.shape), v, axis=axis).statistic,
        permutation_type="pairings", n_resamples=np.inf, vectorized=True,
    )
    res = E.permutation_test(y, statistic="pearson")
    assert float(res.pvalue) == pytest.approx(ref.pvalue, abs=1e-12)


def test_monte_carlo_pvalues_agree_with_scipy_within_3_se() -> None:
    rng = np.random.default_rng(12)
    t = np.linspace(0, 1, 92)
    curves = [rng.normal(size=92), 0.2 * np.sin(6 * t) + rng.normal(0, 0.3, 92), np.sin(9 * t) + rng.normal(0, 1.5, 92)]
    k = 10_000
    for i, curve in enumerate(curves):
        for alternative in ("less", "greater", "two-sided"):
            ref = scipy.stats.permutation_test(
                (curve,), _np_epg, permutation_type="pairings", n_resamples=k, alternative=alternative,
                vectorized=True, rng=np.random.default_rng(i),
            )
            ours = float(E.permutation_test(curve, n_permutations=k, alternative=alternative, seed=i).pvalue)
            p = max(ref.pvalue, 1 / k)
            se = math.sqrt(p * (1 - p) / k) * (2 if alternative == "two-sided" else 1)
            assert abs(ours - ref.pvalue) <= 3 * math.sqrt(2) * se + 1e-12, (i, alternative, ours, ref.pvalue)


@pytest.mark.slow
def test_calibration_on_white_noise() -> None:
    y = np.random.default_rng(13).normal(size=(10_000, 20))
    res = E.permutation_test(y, n_permutations=9_999, seed=13)
    frac = float(np.mean(res.pvalue < 0.01))
    assert 0.006 <= frac <= 0.014, frac
    ks = scipy.stats.kstest(res.pvalue, "uniform")
    assert ks.pvalue > 0.001, ks


def test_centered_alternative_is_the_authors_rule() -> None:
    y = np.random.default_rng(14).normal(size=30)
    res = E.permutation_test(y, alternative="centered", n_permutations=2_000, return_null=True)
    null = res.null
    m = null.mean()
    expected = np.mean(np.abs(null - m) >= np.abs(float(res.statistic) - m))
    assert float(res.pvalue) == pytest.approx(expected, abs=1e-3)


def test_return_null_matches_direct_computation() -> None:
    y = np.random.default_rng(15).normal(size=(2, 5))  # exact: all 120 orderings
    res = E.permutation_test(y, return_null=True)
    assert res.null.shape == (2, 120)
    import itertools
    for b in range(2):
        direct = sorted(_np_epg(y[b][list(p)]) for p in itertools.permutations(range(5)))
        np.testing.assert_allclose(np.sort(res.null[b]), direct, rtol=1e-12)
    mc = E.permutation_test(np.random.default_rng(1).normal(size=(3, 40)), n_permutations=500, return_null=True)
    assert mc.null.shape == (3, 500)
    # every null value is the EPG of some ordering of the curve: it cannot exceed the largest possible value
    assert np.all(mc.null >= 0)


# ----------------------------------------------------------------------------- the paper's Fig. 9 claims
N9 = 92
T9 = np.linspace(0.0, 1.0, N9)


def test_fig9_noise_sine_step_sigmoid_zigzag_constant() -> None:
    rng = np.random.default_rng(16)
    noise = 0.5 + 0.45 * rng.uniform(-1, 1, N9)
    sine = 0.5 + 0.4 * np.cos(2 * np.pi * 2 * T9)  # symmetric about the centre: no linear trend
    step = np.where(T9 < 0.5, 0.9, 0.1)
    sigmoid = 1 / (1 + np.exp((T9 - 0.6) * 25))
    zigzag = np.where(np.arange(N9) % 2 == 0, 0.2, 0.8)
    const = np.full(N9, 0.7)

    assert not E.permutation_test(noise).significant
    assert E.permutation_test(sine).significant
    assert not E.permutation_test(sine, statistic="pearson").significant
    assert abs(float(E.pearson(sine))) < 0.05
    assert E.permutation_test(step).significant
    assert E.permutation_test(sigmoid).significant
    assert float(E.permutation_test(sigmoid, alternative="less").pvalue) < 0.01  # smoother than its shuffles
    assert float(E.permutation_test(sigmoid, alternative="greater").pvalue) > 0.5  # upper tail finds nothing
    zz = E.permutation_test(zigzag, scheme="forward", accuracy=1)
    assert zz.significant
    for alternative in ("two-sided", "less", "greater", "centered"):
        for stat in ("epg", "pearson"):
            assert float(E.permutation_test(const, alternative=alternative, statistic=stat).pvalue) == 1.0


@pytest.mark.slow
def test_constant_curve_on_nonuniform_grid_is_a_tie() -> None:
    x = np.cumsum(np.random.default_rng(17).uniform(0.1, 2.0, 30))
    res = E.permutation_test(np.full(30, 0.123), x)
    assert float(res.pvalue) == 1.0


# ----------------------------------------------------------------------------- batches, seeds, memory
def test_batch_equals_each_curve_alone() -> None:
    y = np.random.default_rng(18).normal(size=(8, 5, 92))
    y[2, 3] = np.linspace(0, 1, 92)  # one real effect
    res = E.permutation_test(y, n_permutations=2_000, seed=3)
    assert res.pvalue.shape == (8, 5) and res.statistic.shape == (8, 5)
    for i, j in [(0, 0), (2, 3), (7, 4), (5, 1)]:
        alone = E.permutation_test(y[i, j], n_permutations=2_000, seed=3)
        assert float(alone.pvalue) == float(res.pvalue[i, j])
        assert float(alone.statistic) == pytest.approx(float(res.statistic[i, j]), rel=1e-12)
    assert res.significant[2, 3]


def test_same_seed_same_result_other_seed_differs() -> None:
    y = np.random.default_rng(19).normal(size=(20, 50))
    a = E.permutation_test(y, n_permutations=1_000, seed=5).pvalue
    b = E.permutation_test(y, n_permutations=1_000, seed=5).pvalue
    c = E.permutation_test(y, n_permutations=1_000, seed=6).pvalue
    np.testing.assert_array_equal(a, b)
    assert np.any(a != c)


def test_axis_argument_and_float32() -> None:
    y = np.random.default_rng(20).normal(size=(50, 4)).astype(np.float32)
    res = E.permutation_test(y, axis=0, n_permutations=300)
    ref = E.permutation_test(y.T, n_permutations=300)
    np.testing.assert_array_equal(res.pvalue, ref.pvalue)
    assert res.statistic.dtype == np.float32


@pytest.mark.slow
def test_callable_statistic_and_options() -> None:
    y = np.linspace(0, 1, 12) ** 2
    res = E.permutation_test(y, statistic=lambda v, x: jnp.abs(v[-1] - v[0]), n_permutations=500, alternative="greater")
    assert float(res.pvalue) < 0.05  # the ends of a monotone curve are its extremes
    x = np.cumsum(np.random.default_rng(21).uniform(0.1, 1.0, 12))
    r2 = E.permutation_test(y, x, weighting="trapezoid", n_permutations=500)
    assert float(r2.statistic) == pytest.approx(float(E.epg(y, x, weighting="trapezoid")), rel=1e-10)


@pytest.mark.slow
def test_memory_is_bounded_by_the_chunk_size() -> None:
    # 1,616 curves x 10,000 shuffles x 92 steps would be 5.9 GB in float32 if allocated at once.
    import subprocess
    import sys

    # VmHWM, not ru_maxrss: Linux carries ru_maxrss across exec, so a child of a large pytest process
    # would report its parent's peak.
    code = (
        "import re, numpy as np, epg_core as E; "
        "hwm = lambda: int(re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1)); "
        "y = np.random.default_rng(0).normal(size=(1616, 92)).astype(np.float32); "
        "before = hwm(); "
        "r = E.permutation_test(y); r = E.permutation_test(y, alternative='centered'); "
        "print(before, hwm(), float(r.pvalue.mean()))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    before_kb, peak_kb, mean_p = out.stdout.split()
    assert int(peak_kb) < 1_000_000, f"peak RSS {int(peak_kb) / 1e3:.0f} MB"
    assert 0.3 < float(mean_p) < 0.7  # white noise: p-values centred on 1/2
    assert _perm_scan.perm_chunk(92, 128, 4, 10_000) * 92 * 128 * 4 <= _perm_scan.CHUNK_BYTES


@pytest.mark.slow
def test_sharding_over_several_devices_gives_the_same_result() -> None:
    import os
    import subprocess
    import sys

    code = (
        "import jax, numpy as np, epg_core as E; "
        "y = np.random.default_rng(30).normal(size=(301, 40)); "
        "r = E.permutation_test(y, n_permutations=999, seed=4); "
        "print(len(jax.devices())); print(repr(r.pvalue.tolist())); print(repr(r.statistic.tolist()))"
    )

    def run(n_devices: int) -> list[str]:
        env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={n_devices}", "JAX_PLATFORMS": "cpu"}
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
        assert out.returncode == 0, out.stderr
        return out.stdout.splitlines()

    one, two = run(1), run(2)
    assert one[0] == "1" and two[0] == "2"
    assert one[1] == two[1]  # identical p-values
    np.testing.assert_allclose(eval(one[2]), eval(two[2]), rtol=1e-6)  # summation order may differ by ulps
