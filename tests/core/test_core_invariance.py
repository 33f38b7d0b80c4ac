"""The same data written differently gives the same answer: y, 1 - y, a*y + c; float32 and float64."""

from __future__ import annotations

import math

import numpy as np
import pytest

import epg_core as E

ALTS = ("two-sided", "less", "greater", "centered")


def _saturated(n: int = 50, seed: int = 0) -> np.ndarray:
    """The issue's smooth drift of a saturated probability, in float32."""
    t = np.linspace(0.0, 1.0, n)
    u = np.random.default_rng(seed).random(n)
    return (1 - 1e-5 * (1 + np.tanh(6 * (t - 0.5))) - 2e-6 * u).astype(np.float32)


def _batch(seed: int = 1) -> np.ndarray:
    """Saturated float32 curves: drifts, noise around 0.9999 and flat-with-a-step, all above 0.5."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0.0, 1.0, 40)
    rows = [1 - 1e-5 * (1 + np.tanh(6 * (t - 0.5))) - 2e-6 * rng.random(40) for _ in range(4)]
    rows += [1 - 1e-4 * rng.random(40) for _ in range(4)]
    rows += [np.where(t < 0.3 + 0.1 * i, 0.99999, 0.9999) + 1e-6 * rng.random(40) for i in range(4)]
    return np.array(rows, dtype=np.float32)


def _exact_maps(y: np.ndarray) -> dict[str, np.ndarray]:
    """Affine maps that are exact in float32 on values in [0.5, 1]: 1 - y, y - c, 4y, 3 - 4y, -2y + 2."""
    one, c = np.float32(1.0), np.float32(0.99)
    return {"1-y": one - y, "y-0.99": y - c, "4y": np.float32(4) * y, "3-4y": np.float32(3) - np.float32(4) * y,
            "2-2y": np.float32(2) - np.float32(2) * y}


@pytest.mark.parametrize("precision", ["float32", "float64"])
@pytest.mark.parametrize("alternative", ALTS)
def test_pvalues_identical_for_y_and_its_affine_copies(precision: str, alternative: str) -> None:
    y = _batch()
    ref = E.permutation_test(y, alternative=alternative, precision=precision, n_permutations=4_000, seed=3)
    for name, v in _exact_maps(y).items():
        scale = {"4y": 4.0, "3-4y": 4.0, "2-2y": 2.0}.get(name, 1.0)
        got = E.permutation_test(v, alternative=alternative, precision=precision, n_permutations=4_000, seed=3)
        np.testing.assert_array_equal(got.pvalue, ref.pvalue, err_msg=name)
        np.testing.assert_array_equal(got.significant, ref.significant, err_msg=name)
        np.testing.assert_array_equal(got.zscore, ref.zscore, err_msg=name)
        np.testing.assert_allclose(got.statistic, scale * ref.statistic, rtol=1e-6, err_msg=name)


def test_the_issues_saturated_drift_is_significant_in_float32() -> None:
    y = _saturated()
    res = E.permutation_test(y, return_null=True, precision="float32")
    assert res.null is not None
    assert int(np.sum(res.null <= res.statistic)) == 0  # no shuffle is as smooth
    assert float(res.pvalue) == pytest.approx(2 / 10_001)
    for v in _exact_maps(y).values():
        assert float(E.permutation_test(v, precision="float32").pvalue) == float(res.pvalue)


def test_general_affine_maps_in_float64_give_the_same_decisions() -> None:
    rng = np.random.default_rng(5)
    y = np.cumsum(rng.normal(size=(20, 30)), axis=1) + rng.normal(0, 3, size=(20, 30))
    ref = E.permutation_test(y, precision="float64", n_permutations=2_000)
    for a, c in ((-3.7, 12.25), (1e-6, 0.3), (250.0, -1e4)):
        got = E.permutation_test(a * y + c, precision="float64", n_permutations=2_000)
        np.testing.assert_array_equal(got.pvalue, ref.pvalue)
        np.testing.assert_allclose(got.statistic, abs(a) * ref.statistic, rtol=1e-9)


def test_pearson_sign_flips_and_its_two_sided_p_does_not_change() -> None:
    y = _batch()
    ref = E.permutation_test(y, statistic="pearson", n_permutations=2_000, precision="float32")
    neg = E.permutation_test(np.float32(1) - y, statistic="pearson", n_permutations=2_000, precision="float32")
    np.testing.assert_array_equal(neg.statistic, -ref.statistic)
    np.testing.assert_array_equal(neg.pvalue, ref.pvalue)
    less = E.permutation_test(y, statistic="pearson", alternative="less", n_permutations=2_000, precision="float32")
    greater = E.permutation_test(np.float32(1) - y, statistic="pearson", alternative="greater",
                                 n_permutations=2_000, precision="float32")
    np.testing.assert_array_equal(less.pvalue, greater.pvalue)
    np.testing.assert_allclose(np.asarray(E.pearson(np.float32(1) - y)), -np.asarray(E.pearson(y)), atol=1e-6)


@pytest.mark.parametrize("precision", ["float32", "float64"])
def test_centered_is_the_authors_rule_on_the_returned_null(precision: str) -> None:
    y = np.concatenate([_batch(), np.random.default_rng(2).normal(size=(8, 40)).astype(np.float32)])
    res = E.permutation_test(y, alternative="centered", return_null=True, n_permutations=3_000, precision=precision)
    assert res.null is not None and res.null.dtype == np.dtype(precision)
    null = res.null.astype(np.float64)  # the authors' rule: mean(|T - mean T| >= |t - mean T|)
    m = null.mean(axis=-1)
    expected = np.mean(np.abs(null - m[:, None]) >= np.abs(res.statistic.astype(np.float64) - m)[:, None], axis=-1)
    np.testing.assert_array_equal(res.pvalue, expected)


def test_float32_and_float64_agree_on_saturated_curves() -> None:
    y = _batch(7)
    k = 10_000
    p32 = E.permutation_test(y, precision="float32", n_permutations=k)
    p64 = E.permutation_test(y.astype(np.float64), precision="float64", n_permutations=k)
    np.testing.assert_array_equal(p32.significant, p64.significant)
    se = np.sqrt(np.maximum(p64.pvalue, 1 / k) * (1 - np.minimum(p64.pvalue, 1 - 1 / k)) / k) * 2
    assert np.all(np.abs(p32.pvalue - p64.pvalue) <= 4 * math.sqrt(2) * se + 1e-12)
    np.testing.assert_allclose(p32.statistic, p64.statistic, rtol=1e-5)


def test_switching_precision_in_one_process() -> None:
    y = np.random.default_rng(3).normal(size=(5, 25))
    a = E.permutation_test(y, precision="float32", n_permutations=500)
    b = E.permutation_test(y, precision="float64", n_permutations=500)
    c = E.permutation_test(y, precision="float32", n_permutations=500)
    assert a.statistic.dtype == np.float32 and b.statistic.dtype == np.float64
    np.testing.assert_array_equal(a.pvalue, c.pvalue)
    with E.use_precision("float64"):
        assert E.permutation_test(y, n_permutations=500).statistic.dtype == np.float64
    with pytest.raises(ValueError, match="precision"):
        E.permutation_test(y, precision="float16")  # type: ignore[arg-type]


def test_a_curve_alone_equals_the_curve_in_a_batch_and_as_its_complement() -> None:
    y = _batch(9)
    batch = E.permutation_test(y, n_permutations=1_000, precision="float32")
    for i in (0, 5, 11):
        alone = E.permutation_test(np.float32(1) - y[i], n_permutations=1_000, precision="float32")
        assert float(alone.pvalue) == float(batch.pvalue[i])
