"""Benchmark of the shuffle test: the timed implementations (authors' loop, scipy, epg_core) and the bound."""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from ._perm_cases import SCIPY_BATCH, Case, epg_numpy, make_curves, peak_rss_mb, repeat, two_sided_pvalue

# Implementations (each runs in a subprocess: ``--one CASE IMPL``)


def run_authors(case: Case, quick: bool) -> dict[str, Any]:
    """The authors' reference loop on a subset, extrapolated linearly to all curves and shuffles."""
    y = make_curves(case.n_curves, case.n_steps)
    n_sub = 1 if quick else min(case.n_curves, 3)
    k_sub = min(case.n_permutations, 1000) if quick else case.n_permutations
    base = peak_rss_mb()
    out: dict[str, Any] = {}

    def work() -> None:
        np.random.seed(0)
        pv, pc = [], []
        for b in range(n_sub):
            curve = y[b]
            stats = []
            for _ in range(k_sub):
                p = np.random.permutation(curve)
                stats.append(np.mean(np.abs(np.gradient(p))))
            null = np.asarray(stats)
            obs = np.mean(np.abs(np.gradient(curve)))
            pv.append(float(two_sided_pvalue(null, obs, k_sub)))
            m = null.mean()
            pc.append(float(np.sum(np.abs(null - m) >= np.abs(obs - m)) / k_sub))
        out["pvalues"], out["pvalues_centered"] = pv, pc

    times = repeat(work, 1, 5, 0.5 if quick else 3.0)
    scale = (case.n_curves / n_sub) * (case.n_permutations / k_sub)
    full = n_sub == case.n_curves and k_sub == case.n_permutations
    note = (f"median of {len(times)}" if full else
            f"extrapolated from {n_sub:,} curve{'s' if n_sub > 1 else ''} x {k_sub:,} shuffles"
            + (f" (median of {len(times)})" if len(times) > 1 else ""))
    return dict(time_s=statistics.median(times) * scale, times_s=times, extrapolated=not full,
                measured_curves=n_sub, k=k_sub, note=note, pvalues=out["pvalues"],
                pvalues_centered=out["pvalues_centered"], base_rss_mb=base, peak_rss_mb=peak_rss_mb())


def _scipy_test(y: np.ndarray, k: int, rng: np.random.Generator, batch: int | None = None) -> np.ndarray:
    from scipy import stats

    res = stats.permutation_test((y,), epg_numpy, permutation_type="pairings", vectorized=True,
                                 n_resamples=k, alternative="two-sided", axis=-1, rng=rng, batch=batch)
    return np.atleast_1d(res.pvalue)


def run_scipy_curve(case: Case, quick: bool) -> dict[str, Any]:
    """scipy once per curve; curves until a time budget, the rest extrapolated."""
    from scipy import stats  # noqa: F401  (import outside the timing)

    y = make_curves(case.n_curves, case.n_steps)
    k = min(case.n_permutations, 1000) if quick else case.n_permutations
    budget = 0.5 if quick else 20.0
    base = peak_rss_mb()
    _scipy_test(y[0, :8], 10, np.random.default_rng(0))  # warm scipy's lazy imports
    pv: list[float] = []
    t0 = time.perf_counter()
    for b in range(case.n_curves):
        pv.append(float(_scipy_test(y[b], k, np.random.default_rng([1, b]))[0]))
        if time.perf_counter() - t0 > budget:
            break
    elapsed = time.perf_counter() - t0
    times = [elapsed]
    n_done = len(pv)
    if n_done == case.n_curves and elapsed < budget / 5:  # cheap: repeat the whole loop for a median
        def again() -> None:
            for b in range(case.n_curves):
                _scipy_test(y[b], k, np.random.default_rng([1, b]))
        times += repeat(again, 1, 4, budget / 2)
    scale = (case.n_curves / n_done) * (case.n_permutations / k)
    full = n_done == case.n_curves and k == case.n_permutations
    parts = []
    if n_done < case.n_curves:
        parts.append(f"{n_done:,} of {case.n_curves:,} curves")
    if k < case.n_permutations:
        parts.append(f"{k:,} shuffles")
    note = (f"median of {len(times)}" if full else "extrapolated from " + " x ".join(parts)
            + (f" (median of {len(times)})" if len(times) > 1 else ""))
    return dict(time_s=statistics.median(times) * scale, times_s=times, extrapolated=not full,
                measured_curves=n_done, k=k, note=note, pvalues=pv, base_rss_mb=base,
                peak_rss_mb=peak_rss_mb())


def run_scipy_batch(case: Case, quick: bool) -> dict[str, Any]:
    """scipy once on the whole (B, N) array, ``batch=SCIPY_BATCH`` (quick: a subset, extrapolated)."""
    from scipy import stats  # noqa: F401

    y = make_curves(case.n_curves, case.n_steps)
    n_sub = min(case.n_curves, 64) if quick else case.n_curves
    k = min(case.n_permutations, 1000) if quick else case.n_permutations
    base = peak_rss_mb()
    _scipy_test(y[:2, :8], 10, np.random.default_rng(0), batch=SCIPY_BATCH)
    out: dict[str, Any] = {}

    def work() -> None:
        out["p"] = _scipy_test(y[:n_sub], k, np.random.default_rng(2), batch=SCIPY_BATCH)

    times = repeat(work, 1, 5, 0.5 if quick else 3.0)
    scale = (case.n_curves / n_sub) * (case.n_permutations / k)
    full = n_sub == case.n_curves and k == case.n_permutations
    parts = []
    if n_sub < case.n_curves:
        parts.append(f"{n_sub:,} of {case.n_curves:,} curves")
    if k < case.n_permutations:
        parts.append(f"{k:,} shuffles")
    runs = f"median of {len(times)}" if len(times) > 1 else "1 run"
    note = runs if full else "extrapolated from " + " x ".join(parts) + f" ({runs})"
    return dict(time_s=statistics.median(times) * scale, times_s=times, extrapolated=not full,
                measured_curves=n_sub, k=k, note=note, pvalues=[float(v) for v in out["p"]],
                base_rss_mb=base, peak_rss_mb=peak_rss_mb())


def run_epg(case: Case, quick: bool, x64: bool, with_bound: bool) -> dict[str, Any]:
    """epg_core.permutation_test: first call, warm median, call including permutation generation."""
    import jax

    jax.config.update("jax_enable_x64", x64)
    import epg_core
    import epg_core._permutation._sets as perm_module

    dtype = np.float64 if x64 else np.float32
    y = make_curves(case.n_curves, case.n_steps).astype(dtype)
    k = case.n_permutations
    base = peak_rss_mb()
    box: dict[str, Any] = {}

    def call(seed: int = 0) -> None:
        box["r"] = epg_core.permutation_test(y, n_permutations=k, seed=seed)

    t0 = time.perf_counter()
    call()
    t_first = time.perf_counter() - t0
    times = repeat(call, 1 if quick else 5, 5 if quick else 9, 1.5 if quick else 10.0)
    res = box["r"]  # seed 0
    clear = getattr(perm_module, "clear_cache", None)
    gen_times = []
    for i in range(1 if quick else 3):
        seed = 0
        if callable(clear):
            clear()
        else:
            seed = 1000 + i
        t0 = time.perf_counter()
        call(seed)
        gen_times.append(time.perf_counter() - t0)
    t_gen = statistics.median(gen_times)
    out = dict(time_s=statistics.median(times), times_s=times, first_call_s=t_first,
               incl_generation_s=t_gen, incl_generation_times_s=gen_times,
               compile_s=max(0.0, t_first - t_gen), extrapolated=False, measured_curves=case.n_curves,
               k=int(res.n_permutations), note=f"median of {len(times)} warm calls",
               generation_timed_by="clear_cache()" if callable(clear) else "fresh seed",
               pvalues=[float(v) for v in np.ravel(res.pvalue)], dtype=str(np.asarray(res.statistic).dtype),
               base_rss_mb=base, peak_rss_mb=peak_rss_mb(), jax_version=jax.__version__,
               devices=[str(d) for d in jax.devices()],
               compilation_cache_dir=getattr(jax.config, "jax_compilation_cache_dir", None))
    if with_bound:
        out["bound"] = measure_stencil_rate(case.n_steps, quick)
    return out


def _stencil_sum(variant: str, n: int) -> Callable[[Any], Any]:
    """Kernel ``xs [N, W] -> [W]``: mean over the N steps of |np.gradient stencil| (one-sided edges)."""
    import jax.numpy as jnp
    from jax import lax

    def edges(xs: Any) -> Any:
        return jnp.abs(xs[1] - xs[0]) + jnp.abs(xs[n - 1] - xs[n - 2])

    if variant == "unrolled":
        def kernel(xs: Any) -> Any:
            s = jnp.abs(xs[2] - xs[0])
            for i in range(2, n - 1):
                s = s + jnp.abs(xs[i + 1] - xs[i - 1])
            return (edges(xs) + 0.5 * s) * (1.0 / n)
    else:
        def kernel(xs: Any) -> Any:
            def body(i: Any, s: Any) -> Any:
                hi = lax.dynamic_index_in_dim(xs, i + 1, 0, keepdims=False)
                lo = lax.dynamic_index_in_dim(xs, i - 1, 0, keepdims=False)
                return s + jnp.abs(hi - lo)
            s = lax.fori_loop(1, n - 1, body, jnp.zeros_like(xs[0]), unroll=8)
            return (edges(xs) + 0.5 * s) * (1.0 / n)
    return kernel


def measure_stencil_rate(n_steps: int, quick: bool) -> dict[str, Any]:
    """Fastest rate (stencil terms per second) of a fused float32 JAX kernel doing only the arithmetic."""
    import jax
    import jax.numpy as jnp
    from jax import lax

    if n_steps < 3:
        raise ValueError("the lower-bound kernel needs at least 3 steps")
    on_cpu = jax.default_backend() == "cpu"
    variants: tuple[str, ...] = ("unrolled", "fori8") if n_steps <= 160 else ("fori8",)
    if quick:  # the formulation that was fastest for this N on the development machine
        variants = variants[:1]
    if on_cpu:
        widths = (128, 256) if quick else (64, 128, 256, 512)
    else:  # accelerators need far wider blocks to fill
        widths = (1 << 14, 1 << 16) if quick else (1 << 12, 1 << 14, 1 << 16, 1 << 18)
    target = (3e7 if quick else 2e8) * (1 if on_cpu else 20)
    reps = 3 if quick else 7
    rng = np.random.default_rng(0)
    m = 2  # two blocks: the loop-carried index selects one, so nothing is loop invariant
    compiled = []
    for variant in variants:
        kernel = _stencil_sum(variant, n_steps)
        for w in widths:
            x_host = rng.random((m, n_steps, w), dtype=np.float32)
            x = jnp.asarray(x_host)
            check = np.asarray(jax.jit(kernel)(x[0]))
            np.testing.assert_allclose(check, epg_numpy(x_host[0].astype(np.float64), axis=0), rtol=1e-4)
            inner = max(4, int(target / (n_steps * w)))

            def loop(xb: Any, kernel: Any = kernel, inner: int = inner) -> Any:
                def body(r: Any, acc: Any) -> Any:
                    return acc + kernel(lax.dynamic_index_in_dim(xb, r % m, 0, keepdims=False))
                return lax.fori_loop(0, inner, body, jnp.zeros_like(xb[0, 0]))

            f = jax.jit(loop)
            f(x).block_until_ready()
            compiled.append((variant, w, inner, f, x))
    rates: dict[tuple[str, int], float] = {}
    for _ in range(1 if quick else 2):  # full: a second pass, in case the machine was busy during the first
        for variant, w, inner, f, x in compiled:
            best = math.inf
            for _ in range(reps):
                t0 = time.perf_counter()
                f(x).block_until_ready()
                best = min(best, time.perf_counter() - t0)
            rates[variant, w] = max(rates.get((variant, w), 0.0), inner * n_steps * w / best)
    tried = [dict(variant=v, width=w, rate=r) for (v, w), r in rates.items()]
    top = max(tried, key=lambda d: d["rate"])
    return dict(rate_terms_per_s=top["rate"], variant=top["variant"], width=top["width"], tried=tried,
                backend=jax.default_backend(), n_devices=len(jax.devices()))
