"""Benchmark of the shuffle test: error correlation of Monte-Carlo p-values between adjacent curves."""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from ._perm_cases import DATA_SEED, ErrCorrSpec, epg_numpy, peak_rss_mb


def _pair_weights(perms: np.ndarray, n: int) -> np.ndarray:
    """``[P, n*n]`` weights such that ``|y_a - y_b|`` (flattened) times them gives the statistic."""
    c = np.zeros((perms.shape[0], n * n))
    rows = np.arange(perms.shape[0])

    def add(a: int, b: int, w: float) -> None:
        np.add.at(c, (rows, perms[:, a] * n + perms[:, b]), w)

    add(0, 1, 1.0 / n)
    add(n - 2, n - 1, 1.0 / n)
    for i in range(1, n - 1):
        add(i - 1, i + 1, 0.5 / n)
    return c


def exact_pvalues(y: np.ndarray, chunk: int = 250) -> np.ndarray:
    """Exact two-sided p-values by enumerating all ``N!`` orderings (numpy, float64, ties to 1e-9)."""
    import itertools

    n = y.shape[1]
    perms = np.array(list(itertools.permutations(range(n))), dtype=np.int64)  # identity first
    c = _pair_weights(perms, n)
    total = perms.shape[0]
    out = np.empty(y.shape[0])
    for s in range(0, y.shape[0], chunk):
        yb = y[s:s + chunk]
        d = np.abs(yb[:, :, None] - yb[:, None, :]).reshape(yb.shape[0], n * n)
        t = d @ c.T  # [b, N!]
        obs = t[:, 0]
        tol = 1e-9 * np.abs(obs)
        less = np.sum(t <= (obs + tol)[:, None], axis=1) / total
        greater = np.sum(t >= (obs - tol)[:, None], axis=1) / total
        out[s:s + chunk] = np.minimum(1.0, 2.0 * np.minimum(less, greater))
    return out


def _mc_pvalues(y: np.ndarray, perms: np.ndarray) -> np.ndarray:
    """Monte-Carlo two-sided p-values: ``perms`` is ``[K, N]`` (shared) or ``[B, K, N]`` (per curve)."""
    k = perms.shape[-2]
    idx = np.broadcast_to(perms, (y.shape[0],) + perms.shape[-2:])
    z = np.take_along_axis(y[:, None, :], idx, axis=2)  # [B, K, N]
    null = epg_numpy(z, axis=-1)
    obs = epg_numpy(y, axis=-1)
    tol = 1e-9 * np.abs(obs)
    less = np.sum(null <= (obs + tol)[:, None], axis=1)
    greater = np.sum(null >= (obs - tol)[:, None], axis=1)
    return np.minimum(1.0, 2.0 * np.minimum((less + 1) / (k + 1), (greater + 1) / (k + 1)))


def run_errcorr(spec: ErrCorrSpec, quick: bool) -> dict[str, Any]:
    """Correlation of p-value errors between near-duplicate adjacent curves, per way of drawing shuffles."""
    import jax

    jax.config.update("jax_enable_x64", True)
    import epg_core

    b, n, k = spec.n_curves, spec.n_steps, spec.n_permutations
    if b % 2 or b < 6:
        raise ValueError("the error-correlation experiment needs an even number (>= 6) of curves")
    if math.factorial(n) <= k:
        raise ValueError("choose N! > K so that the tests are Monte Carlo, not exact")
    rng = np.random.default_rng([DATA_SEED, 7])
    base = rng.standard_normal((b // 2, n))
    near = np.repeat(base, 2, axis=0)
    near[1::2] += 1e-6 * rng.standard_normal((b // 2, n))
    dup = np.repeat(base, 2, axis=0)
    t0 = time.perf_counter()
    p_exact = exact_pvalues(near)
    p_exact_dup = np.repeat(p_exact[0::2], 2)
    t_exact = time.perf_counter() - t0

    shared = rng.permuted(np.broadcast_to(np.arange(n), (k, n)), axis=1)
    independent = rng.permuted(np.broadcast_to(np.arange(n), (b, k, n)), axis=2)
    estimates = {
        "epg_core": (epg_core.permutation_test(near, n_permutations=k, seed=1, exact=False).pvalue, p_exact),
        "shared": (_mc_pvalues(near, shared), p_exact),
        "independent": (_mc_pvalues(near, independent), p_exact),
        "epg_core_exact_duplicates": (
            epg_core.permutation_test(dup, n_permutations=k, seed=1, exact=False).pvalue, p_exact_dup),
    }
    methods = {}
    for name, (p, ref) in estimates.items():
        e = np.asarray(p, np.float64).ravel() - ref
        a, c = e[0::2], e[1::2]
        rho = float(np.corrcoef(a, c)[0, 1]) if np.std(a) > 0 and np.std(c) > 0 else float("nan")
        methods[name] = dict(rho=rho, rms_error=float(np.sqrt(np.mean(e * e))), mean_error=float(np.mean(e)))
    return dict(n_curves=b, n_steps=n, k=k, n_pairs=b // 2, rho_standard_error=1.0 / math.sqrt(b // 2 - 1),
                exact_enumeration_s=t_exact, methods=methods, peak_rss_mb=peak_rss_mb())
