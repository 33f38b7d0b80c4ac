"""Benchmark of the shuffle test (issue 3): ``epg_core.permutation_test`` against the authors' loop and scipy.

Run from the repository root (or ``epg bench`` from an editable install)::

    python -m bench.permutation                       # full run, a few minutes on 2 cores
    python -m bench.permutation --quick               # ~30 s: smaller K for the baselines, extrapolated
    python -m bench.permutation --case sweep --json bench.json
    python -m bench.permutation --one sweep epg32 --out r.json   # one implementation, one case

Cases (all with K = 10,000 shuffles, two-sided p-values, unit spacing): ``one`` = one curve of N = 101 steps
(the authors' original + 100 edits), ``sweep`` = 1,616 curves x 101 steps (8 architectures x 2
initialisations x 101 epochs), ``rotation`` = 30 curves x 360 steps (one image per degree). The curves are
synthetic and seeded: a logistic effect of random amplitude, centre and width plus noise of random size,
so that the p-values spread over (0, 1] (curve 0, the one-curve case, is pure noise).

Implementations (each in its own subprocess, so that its peak resident memory ``ru_maxrss`` is its own and
JAX's float32 / float64 modes never mix):

- ``authors``: the paper's reference loop, ``np.random.permutation`` + ``np.gradient`` per shuffle, timed on
  a few curves (quick: one curve, 1,000 shuffles) and extrapolated linearly in curves and shuffles
  (the notes column says from what).
- ``scipy_curve``: ``scipy.stats.permutation_test(..., permutation_type='pairings', vectorized=True)``
  called once per curve; curves are timed until a budget (20 s, quick 0.5 s) and the rest is extrapolated.
- ``scipy_batch``: one call on the whole ``(B, N)`` array, ``axis=-1``, ``batch=SCIPY_BATCH``. 16 was the
  fastest of 8 / 16 / 64 on the full sweep (4.3 s vs 7.0 / 6.7 s, idle 2-core machine) and of
  16 / 64 / 256 / 1000 on 128 of its curves (batch=None needs tens of GiB). Quick: the first 64 curves
  with 1,000 shuffles, extrapolated.
- ``epg32`` / ``epg64``: ``epg_core.permutation_test`` in float32 (default) and with ``jax_enable_x64``.
  The first call (compile + permutation generation) is timed separately; the reported time is the median
  of >= 5 warm calls (quick: >= 1, within a budget); "incl. perm. gen." is a warm call after
  ``epg_core._permutation.clear_cache()`` (or, if there is none, with a fresh seed); the compile time is
  first call minus that.

Compute lower bound (``bound`` row, measured inside the ``epg32`` subprocess, after its peak memory was
read): a minimal fused JAX kernel that does only the arithmetic of the statistic -- for every lane of a
pre-gathered dense block ``[N, W]`` of shuffled curves, the ``np.gradient`` stencil (central differences,
one-sided edges), ``|.|`` and the mean over the N steps -- with no gather, no permutation generation and no
comparison counting. The block is small enough to stay in cache (the real engine reads its curves from a
small, cache-resident array too), and a ``fori_loop`` inside one jitted call sweeps over two such blocks
(a loop-carried index, so nothing can be hoisted) many times, so that dispatch costs nothing. Two
formulations (an unrolled sum over the steps, for N <= 160, and a ``fori_loop`` over the steps with
unroll 8) times a few lane widths are timed and the fastest rate wins: "stencil terms per second", one
term being one step of one shuffled curve. The kernel's output is checked against numpy. The lower bound
of a case is ``B * K * N`` terms at that rate; epg_core's distance to it is its time divided by the bound.

p-value agreement: for each implementation, the largest over the compared curves of
``|p_a - p_ref| / sqrt(p(2 - p) (1/K_a + 1/K_ref))`` with ``p`` the mean of the two. A two-sided Monte-Carlo
p-value is ``2 q`` with ``q ~ Binomial(K, p/2) / K``, so ``p (2 - p) / K`` is its variance and the
denominator is the standard error of the difference of two independent estimates (the reference is scipy
batched when it ran, else scipy per curve; the reference row itself is compared with scipy per curve).
Under agreement each z is about standard normal; the column also shows the 99 % quantile of the largest of
that many |z| (Sidak), which the largest z should stay under.

Busy machine: the harness reads ``/proc/stat`` around every subprocess and subtracts the subprocess's own
CPU time; when other processes used more than 10 % of that wall time, the row's note says "BUSY" (its time
is then pessimistic; rerun on an idle machine for acceptance numbers).

Error correlation between adjacent curves (``errcorr``): ``B`` curves in adjacent pairs that are
near-duplicates (white noise ``N(0, 1)``, the second of each pair plus ``1e-6`` noise), as two adjacent
checkpoints of a sweep whose outputs barely change. The steps are few (N = 8, quick 7), so every curve's *exact*
p-value is known by enumerating all ``N!`` orderings (numpy, float64, not epg_core). Each method's error is
``e = p_MC - p_exact`` (no reference noise at all), and the reported number is Pearson's correlation of
``e`` between the two curves of each pair, over the pairs (standard error about ``1/sqrt(pairs)`` when it
is 0). Methods: epg_core (one call on all curves: shared permutations plus its per-curve relabelling),
shared permutations without relabelling (numpy, what the layout would give without the fix: the errors of
near-duplicates are then almost identical), independent permutations per curve (numpy), and epg_core on
*exact* duplicate pairs (its relabelling is seeded by the curve's content, so identical curves get
identical p-values by design). The root-mean-square error is reported beside it: equal rms for all methods
means every curve's test keeps its Monte-Carlo precision.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]

SCIPY_BATCH = 16
DATA_SEED = 20260101
IMPLS: tuple[str, ...] = ("authors", "scipy_curve", "scipy_batch", "epg32", "epg64")
IMPL_LABELS = {
    "authors": "authors' loop (np.random.permutation + np.gradient)",
    "scipy_curve": "scipy.stats.permutation_test, one call per curve",
    "scipy_batch": f"scipy.stats.permutation_test, one call, batch={SCIPY_BATCH}",
    "epg32": "epg_core float32",
    "epg64": "epg_core float64",
    "bound": "compute lower bound (fused stencil kernel, float32)",
}
ERRCORR_LABELS = {
    "epg_core": "epg_core (shared permutations + per-curve relabelling)",
    "shared": "shared permutations, no relabelling (numpy)",
    "independent": "independent permutations per curve (numpy)",
    "epg_core_exact_duplicates": "epg_core, exact-duplicate neighbours",
}


@dataclass(frozen=True)
class Case:
    """One benchmark case: ``n_curves`` curves of ``n_steps`` steps, ``n_permutations`` shuffles each."""

    name: str
    n_curves: int
    n_steps: int
    n_permutations: int = 10_000
    label: str = ""

    def spec(self) -> str:
        return f"{self.name}:{self.n_curves}:{self.n_steps}:{self.n_permutations}"

    @property
    def title(self) -> str:
        return self.label or f"{self.name}: {self.n_curves:,} x {self.n_steps}"

    @classmethod
    def parse(cls, text: str) -> Case:
        """A case name (``one``, ``sweep``, ``rotation``) or ``name:curves:steps:shuffles``."""
        if text in CASES:
            return CASES[text]
        try:
            name, b, n, k = text.split(":")
            return cls(name, int(b), int(n), int(k))
        except ValueError:
            raise ValueError(f"unknown case {text!r}: use {', '.join(CASES)} or name:curves:steps:shuffles") from None


CASES: dict[str, Case] = {
    "one": Case("one", 1, 101, label="(a) one curve, N=101"),
    "sweep": Case("sweep", 1616, 101, label="(b) sweep 1,616 x 101"),
    "rotation": Case("rotation", 30, 360, label="(c) 30 x 360"),
}


@dataclass(frozen=True)
class ErrCorrSpec:
    """Size of the error-correlation experiment: curves (even), steps (exact enumeration), shuffles."""

    n_curves: int = 2000
    n_steps: int = 8
    n_permutations: int = 2000

    def spec(self) -> str:
        return f"errcorr:{self.n_curves}:{self.n_steps}:{self.n_permutations}"


ERRCORR_FULL = ErrCorrSpec(2000, 8, 2000)
ERRCORR_QUICK = ErrCorrSpec(400, 7, 1000)


# --------------------------------------------------------------------------------------------------
# Shared helpers


def make_curves(n_curves: int, n_steps: int, seed: int = DATA_SEED) -> np.ndarray:
    """Seeded synthetic curves ``[B, N]`` (float64): logistic effects of random size plus noise."""
    rng = np.random.default_rng([seed, n_curves, n_steps])
    t = np.linspace(0.0, 1.0, n_steps)
    amp = rng.uniform(0.0, 1.0, n_curves) * (np.arange(n_curves) % 5 >= 2)  # 40 % pure noise, curve 0 too
    centre = rng.uniform(0.2, 0.8, n_curves)
    width = rng.uniform(0.03, 0.3, n_curves)
    noise = rng.uniform(0.02, 0.3, n_curves)
    effect = amp[:, None] / (1.0 + np.exp(-(t[None, :] - centre[:, None]) / width[:, None]))
    return effect + noise[:, None] * rng.standard_normal((n_curves, n_steps))


def epg_numpy(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """The paper's statistic, ``mean(|np.gradient(x)|)`` along ``axis`` (scipy's vectorized form)."""
    return np.mean(np.abs(np.gradient(x, axis=axis)), axis=axis)


def two_sided_pvalue(null: np.ndarray, obs: np.ndarray, k: int) -> np.ndarray:
    """scipy's two-sided Monte-Carlo p-value from a null ``[..., K]`` (relative tie tolerance 100 eps)."""
    obs = np.asarray(obs, dtype=np.float64)
    gamma = np.abs(100 * np.finfo(np.float64).eps * obs)
    less = np.sum(null <= (obs + gamma)[..., None], axis=-1)
    greater = np.sum(null >= (obs - gamma)[..., None], axis=-1)
    return np.minimum(1.0, 2.0 * np.minimum((less + 1) / (k + 1), (greater + 1) / (k + 1)))


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MB.

    Linux: ``VmHWM`` of /proc/self/status (``ru_maxrss`` survives exec, so a child would report its
    parent's peak if that was larger); elsewhere ``ru_maxrss`` (bytes on macOS).
    """
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1 << 20) if sys.platform == "darwin" else rss / 1024


def repeat(fn: Callable[[], Any], n_min: int, n_max: int, budget_s: float) -> list[float]:
    """Wall times of ``fn()``: at least ``n_min`` runs, then more (up to ``n_max``) while within the budget."""
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < n_max and (len(times) < n_min or time.perf_counter() - start < budget_s):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def agreement_z(pa: Sequence[float], ka: int, pb: Sequence[float], kb: int) -> float:
    """Largest |p_a - p_b| over curves in units of the Monte-Carlo standard error of the difference."""
    pa, pb = np.asarray(pa, np.float64), np.asarray(pb, np.float64)
    n = min(pa.size, pb.size)
    if n == 0:
        return float("nan")
    pa, pb = pa[:n], pb[:n]
    pbar = np.clip(0.5 * (pa + pb), 1.0 / (max(ka, kb) + 1), 1.0)
    se = np.sqrt(pbar * (2.0 - pbar) * (1.0 / ka + 1.0 / kb))
    return float(np.max(np.abs(pa - pb) / se))


def max_z_bound(n: int, level: float = 0.99) -> float:
    """``level`` quantile of the largest of ``n`` independent |N(0, 1)| (Sidak)."""
    from statistics import NormalDist

    tail = 1.0 - level ** (1.0 / max(n, 1))
    return NormalDist().inv_cdf(1.0 - tail / 2.0)


# --------------------------------------------------------------------------------------------------
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
    from epg_core import _permutation as perm_module

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


# --------------------------------------------------------------------------------------------------
# Error correlation between adjacent curves


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


# --------------------------------------------------------------------------------------------------
# Orchestration


def run_one(spec: str, impl: str, quick: bool) -> dict[str, Any]:
    """Run one implementation of one case in this process (the body of ``--one``)."""
    if impl == "errcorr":
        _, b, n, k = spec.split(":")
        return run_errcorr(ErrCorrSpec(int(b), int(n), int(k)), quick)
    case = Case.parse(spec)
    if impl == "authors":
        return run_authors(case, quick)
    if impl == "scipy_curve":
        return run_scipy_curve(case, quick)
    if impl == "scipy_batch":
        return run_scipy_batch(case, quick)
    if impl in ("epg32", "epg64"):
        return run_epg(case, quick, x64=impl == "epg64", with_bound=impl == "epg32")
    raise ValueError(f"unknown implementation {impl!r}; use one of {', '.join(IMPLS)} or errcorr")


def _busy_cpu_s() -> float | None:
    """CPU seconds the whole machine has spent busy since boot (``/proc/stat``), or None off Linux."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
        ticks = [int(v) for v in fields]
    except (OSError, ValueError, IndexError):
        return None
    busy = sum(ticks[:8]) - ticks[3] - (ticks[4] if len(ticks) > 4 else 0)  # all but idle and iowait
    return busy / os.sysconf("SC_CLK_TCK")


def _run_child(spec: str, impl: str, quick: bool, tmp: Path, log: Callable[[str], None]) -> dict[str, Any]:
    """``python -m bench.permutation --one SPEC IMPL`` in a fresh process; its JSON result, or an error."""
    out = tmp / f"{spec.replace(':', '_')}-{impl}.json"
    cmd = [sys.executable, "-m", "bench.permutation", "--one", spec, impl, "--out", str(out)]
    if quick:
        cmd.append("--quick")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env.pop("JAX_ENABLE_X64", None)  # each child sets its own precision
    log(f"[bench] {spec} {impl} ...")
    busy0, own0 = _busy_cpu_s(), resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    busy1, own1 = _busy_cpu_s(), resource.getrusage(resource.RUSAGE_CHILDREN)
    foreign = None
    if busy0 is not None and busy1 is not None:  # CPU time of other processes while this one ran
        own = (own1.ru_utime + own1.ru_stime) - (own0.ru_utime + own0.ru_stime)
        foreign = max(0.0, (busy1 - busy0) - own)
    if out.is_file():
        result = json.loads(out.read_text())
    else:
        lines = [ln for ln in (proc.stderr or proc.stdout or "").strip().splitlines() if ln.strip()]
        result = {"error": lines[-1] if lines else f"exit code {proc.returncode}"}
    result["process_wall_s"] = wall
    result["foreign_cpu_s"] = foreign
    if "error" in result:
        log(f"[bench] {spec} {impl} failed: {result['error']}")
    elif "time_s" in result:
        log(f"[bench] {spec} {impl}: {result['time_s']:.4g} s ({result.get('note', '')}), "
            f"peak {result.get('peak_rss_mb', float('nan')):.0f} MB, process {wall:.1f} s")
    return result


def _derive(case: Case, impls: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Speed-ups, distance to the lower bound and p-value agreement of one case."""
    ok = {name: r for name, r in impls.items() if "error" not in r and "time_s" in r}
    scipy_times = [ok[n]["time_s"] for n in ("scipy_curve", "scipy_batch") if n in ok]
    best_scipy = min(scipy_times) if scipy_times else None
    authors = ok.get("authors", {}).get("time_s")
    bound = None
    rate = ok.get("epg32", {}).get("bound", {}).get("rate_terms_per_s")
    if rate:
        terms = case.n_curves * case.n_permutations * case.n_steps
        bound = dict(time_s=terms / rate, terms=terms, **ok["epg32"]["bound"])
    ref = "scipy_batch" if "scipy_batch" in ok else ("scipy_curve" if "scipy_curve" in ok else None)
    derived: dict[str, Any] = dict(best_scipy_s=best_scipy, authors_s=authors, reference=ref, lower_bound=bound,
                                   impls={})
    for name, r in ok.items():
        d: dict[str, Any] = {}
        t = r["time_s"]
        if best_scipy:
            d["speedup_vs_best_scipy"] = best_scipy / t
        if authors:
            d["speedup_vs_authors"] = authors / t
        if bound and name.startswith("epg"):
            d["times_lower_bound"] = t / bound["time_s"]
        other = ref if name != ref else ("scipy_curve" if name != "scipy_curve" and "scipy_curve" in ok else None)
        if other and r.get("pvalues") and ok[other].get("pvalues"):
            n_cmp = min(len(r["pvalues"]), len(ok[other]["pvalues"]))
            d["agreement"] = dict(against=other, n_curves=n_cmp,
                                  max_z=agreement_z(r["pvalues"], r["k"], ok[other]["pvalues"], ok[other]["k"]),
                                  z99=max_z_bound(n_cmp))
        derived["impls"][name] = d
    return derived


def _fmt(v: float | None, unit: str = "") -> str:
    if v is None or not math.isfinite(v):
        return "–"
    if abs(v) >= 1000:
        s = f"{v:,.0f}"
    elif abs(v) >= 0.01:
        s = f"{v:.3g}"
    else:
        s = f"{v:.2g}"
    return s + unit


def format_table(results: dict[str, Any]) -> str:
    """The markdown table (one row per case x implementation, then the error-correlation rows)."""
    head = ["case", "implementation", "time [s]", "compile [s]", "incl. perm. gen. [s]", "peak RSS [MB]",
            "vs best scipy", "vs authors", "vs lower bound", "p agreement: max z (99% bound)", "notes"]
    rows: list[list[str]] = []
    for cres in results["cases"].values():
        title = cres["case"]["title"]
        derived = cres["derived"]
        for name, r in cres["impls"].items():
            label = IMPL_LABELS.get(name, name)
            if "error" in r:
                rows.append([title, label] + ["–"] * 8 + [f"failed: {r['error']}"])
                continue
            d = derived["impls"].get(name, {})
            agr = d.get("agreement")
            agr_s = "–" if not agr else f"{agr['max_z']:.2f} ({agr['z99']:.2f})"
            if agr and name == derived["reference"]:
                agr_s += f" vs {agr['against']}"
            note = r.get("note", "")
            foreign = r.get("foreign_cpu_s")
            if foreign is not None and foreign > 0.1 * r.get("process_wall_s", math.inf):
                note += f"; BUSY: others used {foreign:.1f} CPU-s during this {r['process_wall_s']:.1f} s process"
            if name == derived["reference"]:
                note = "p-value reference; " + note
            rows.append([
                title, label, _fmt(r["time_s"]),
                _fmt(r.get("compile_s")), _fmt(r.get("incl_generation_s")), _fmt(r.get("peak_rss_mb")),
                _fmt(d.get("speedup_vs_best_scipy"), "×"), _fmt(d.get("speedup_vs_authors"), "×"),
                _fmt(d.get("times_lower_bound"), "×"), agr_s, note,
            ])
        lb = derived.get("lower_bound")
        if lb:
            rows.append([
                title, IMPL_LABELS["bound"], _fmt(lb["time_s"]), "–", "–", "–",
                _fmt(derived["best_scipy_s"] / lb["time_s"] if derived["best_scipy_s"] else None, "×"),
                _fmt(derived["authors_s"] / lb["time_s"] if derived["authors_s"] else None, "×"), "1×", "–",
                f"{lb['terms']:.3g} terms at {lb['rate_terms_per_s']:.3g} terms/s ({lb['variant']}, W={lb['width']})",
            ])
    ec = results.get("error_correlation")
    if ec:
        if "error" in ec:
            rows.append(["error correlation", "–"] + ["–"] * 8 + [f"failed: {ec['error']}"])
        else:
            title = f"adjacent-error correlation ({ec['n_curves']:,} curves, N={ec['n_steps']}, K={ec['k']:,})"
            for name, m in ec["methods"].items():
                rows.append([title, ERRCORR_LABELS.get(name, name)] + ["–"] * 8 + [
                    f"rho = {m['rho']:.3f} (±{ec['rho_standard_error']:.3f}), rms error {m['rms_error']:.4f}"])
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(cell.replace("|", "/") for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _machine() -> dict[str, Any]:
    info: dict[str, Any] = dict(python=platform.python_version(), platform=platform.platform(),
                                cpu_count=os.cpu_count(), numpy=np.__version__)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        from importlib.metadata import version

        info["scipy"], info["jax"] = version("scipy"), version("jax")
    except Exception:  # noqa: BLE001  (informational only)
        pass
    return info


def run_benchmark(
    cases: Sequence[Case] | None = None,
    *,
    impls: Sequence[str] = IMPLS,
    quick: bool = False,
    json_path: str | os.PathLike[str] | None = None,
    quiet: bool = False,
    errcorr: ErrCorrSpec | None | bool = True,
    stream: TextIO | None = None,
) -> dict[str, Any]:
    """Run the benchmark, print the markdown table to ``stream`` (stdout) and write the JSON if asked.

    ``errcorr=True`` runs the default error-correlation experiment (smaller with ``quick``), ``None`` /
    ``False`` skips it. Returns the results (what the JSON holds, plus the table under ``"table"``).
    """
    cases = list(cases) if cases is not None else list(CASES.values())
    unknown = [i for i in impls if i not in IMPLS]
    if unknown:
        raise ValueError(f"unknown implementation(s) {unknown}; use {', '.join(IMPLS)}")
    if errcorr is True:
        errcorr = ERRCORR_QUICK if quick else ERRCORR_FULL
    stream = stream or sys.stdout

    def log(msg: str) -> None:
        if not quiet:
            print(msg, file=sys.stderr, flush=True)

    t_start = time.perf_counter()
    results: dict[str, Any] = dict(
        meta=dict(quick=quick, machine=_machine(), started=time.strftime("%Y-%m-%d %H:%M:%S"),
                  scipy_batch=SCIPY_BATCH, impls=list(impls)),
        cases={}, error_correlation=None)
    with tempfile.TemporaryDirectory(prefix="epg-bench-") as tmp_name:
        tmp = Path(tmp_name)
        for case in cases:
            impl_results = {impl: _run_child(case.spec(), impl, quick, tmp, log) for impl in impls}
            results["cases"][case.name] = dict(case=dict(asdict(case), title=case.title), impls=impl_results,
                                               derived=_derive(case, impl_results))
        if errcorr:
            results["error_correlation"] = _run_child(errcorr.spec(), "errcorr", quick, tmp, log)
    results["meta"]["total_s"] = time.perf_counter() - t_start
    table = format_table(results)
    kind = ("QUICK run: baselines with 1,000 shuffles on subsets and extrapolated, fewer repeats; "
            "not for acceptance numbers" if quick else "full run")
    header = (f"epg bench: shuffle test, {kind}. Times in seconds for all curves with the case's K; "
              f"{results['meta']['machine'].get('cpu', '?')}, {os.cpu_count()} CPUs; "
              f"total {results['meta']['total_s']:.0f} s.")
    print(header, file=stream)
    print(file=stream)
    print(table, file=stream)
    print(file=stream)
    print("vs best scipy / vs authors: speed-up (their time / this time). vs lower bound: this time / "
          "bound. p agreement: largest |p - p_ref| / MC standard error of the difference, with the 99% "
          "quantile of the largest of that many |z| in brackets. rho: correlation of p-value errors "
          "between near-duplicate adjacent curves (exact p by enumeration). BUSY: other processes used the "
          "CPUs during that measurement (from /proc/stat), so its time is pessimistic.", file=stream)
    stream.flush()
    if json_path is not None:
        Path(json_path).write_text(json.dumps(_jsonable(results), indent=1, allow_nan=False) + "\n")
    results["table"] = table
    return results


def _jsonable(obj: Any) -> Any:
    """Drop per-curve p-value lists, turn non-finite floats into None (strict JSON)."""
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items() if k not in ("pvalues", "pvalues_centered")}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, np.generic):
        return _jsonable(obj.item())
    return obj


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.permutation", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="~30 s run: smaller K for the baselines, extrapolated")
    parser.add_argument("--json", metavar="PATH", help="write the numbers as JSON")
    parser.add_argument("--case", action="append", choices=sorted(CASES), help="case(s) to run (default: all)")
    parser.add_argument("--impl", action="append", choices=IMPLS, help="implementation(s) (default: all)")
    parser.add_argument("--no-errcorr", action="store_true", help="skip the error-correlation experiment")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    parser.add_argument("--one", nargs=2, metavar=("CASE", "IMPL"),
                        help="run one implementation of one case in this process (used by the harness)")
    parser.add_argument("--out", metavar="PATH", help="with --one: where to write its JSON result")
    args = parser.parse_args(argv)
    if args.one:
        spec, impl = args.one
        try:
            result = run_one(spec, impl, args.quick)
        except Exception as exc:  # noqa: BLE001  (reported to the parent as one line)
            result = {"error": f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"}
        text = json.dumps(result)
        if args.out:
            Path(args.out).write_text(text)
        else:
            print(text)
        return 1 if "error" in result else 0
    cases = [CASES[c] for c in dict.fromkeys(args.case)] if args.case else None
    run_benchmark(cases, impls=tuple(dict.fromkeys(args.impl)) if args.impl else IMPLS, quick=args.quick,
                  json_path=args.json, quiet=args.quiet, errcorr=not args.no_errcorr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
