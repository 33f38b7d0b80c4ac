"""Benjamini–Hochberg false discovery rate control over a whole sweep of tests."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from jaxtyping import ArrayLike

from epg_core._errors import DataError, UsageError


class FDRResult(NamedTuple):
    """``significant``: rejected at FDR ``alpha``; ``qvalues``: BH-adjusted p-values (same shape as input)."""

    significant: np.ndarray
    qvalues: np.ndarray


def fdr(pvalues: ArrayLike, alpha: float = 0.01) -> FDRResult:
    """Benjamini–Hochberg over all p-values of any shape (NaNs are ignored and never significant)."""
    if not 0 < alpha < 1:
        raise UsageError(f"alpha must be in (0, 1), got {alpha}")
    p = np.asarray(pvalues, dtype=np.float64)
    flat = p.ravel()
    ok = ~np.isnan(flat)
    if np.any((flat[ok] < 0) | (flat[ok] > 1)):
        bad = flat[ok][(flat[ok] < 0) | (flat[ok] > 1)][0]
        raise DataError(f"p-values must lie in [0, 1], got {bad}")
    q = np.full(flat.shape, np.nan)
    pv = flat[ok]
    m = pv.size
    if m:
        order = np.argsort(pv, kind="stable")
        ranked = pv[order] * m / np.arange(1, m + 1)
        ranked = np.minimum.accumulate(ranked[::-1])[::-1]
        qq = np.empty(m)
        qq[order] = np.minimum(ranked, 1.0)
        q[ok] = qq
    q = q.reshape(p.shape)
    with np.errstate(invalid="ignore"):
        sig = np.where(np.isnan(q), False, q <= alpha)
    return FDRResult(significant=sig, qvalues=q)
