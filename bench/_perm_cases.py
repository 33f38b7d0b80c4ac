"""Benchmark of the shuffle test: cases, implementation labels and shared measuring helpers."""

from __future__ import annotations

import resource
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

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
    a, b = np.asarray(pa, np.float64), np.asarray(pb, np.float64)
    n = min(a.size, b.size)
    if n == 0:
        return float("nan")
    a, b = a[:n], b[:n]
    pbar = np.clip(0.5 * (a + b), 1.0 / (max(ka, kb) + 1), 1.0)
    se = np.sqrt(pbar * (2.0 - pbar) * (1.0 / ka + 1.0 / kb))
    return float(np.max(np.abs(a - b) / se))


def max_z_bound(n: int, level: float = 0.99) -> float:
    """``level`` quantile of the largest of ``n`` independent |N(0, 1)| (Sidak)."""
    from statistics import NormalDist

    tail = 1.0 - level ** (1.0 / max(n, 1))
    return NormalDist().inv_cdf(1.0 - tail / 2.0)
