"""RGB <-> HSV in NumPy, for the hue edit (the algorithm of matplotlib.colors, without matplotlib).

Kept here so that designed interventions need only NumPy and Pillow (the ``images`` extra); the tests compare
both functions with matplotlib's.
"""

from __future__ import annotations

import numpy as np

from epg_core import UsageError

__all__ = ["rgb_to_hsv", "hsv_to_rgb"]


def rgb_to_hsv(rgb: np.ndarray) -> np.ndarray:
    """float RGB in ``[0, 1]``, shape ``[..., 3]`` -> HSV with hue in ``[0, 1)``, same shape (float64)."""
    arr = np.asarray(rgb, dtype=np.float64)
    if arr.shape[-1:] != (3,):
        raise UsageError(f"RGB arrays need a last axis of length 3, got shape {arr.shape}")
    out = np.zeros_like(arr)
    top = arr.max(axis=-1)
    delta = np.ptp(arr, axis=-1)
    sat = np.zeros_like(delta)
    lit = top > 0
    sat[lit] = delta[lit] / top[lit]
    moving = delta > 0
    hue = np.zeros_like(delta)
    for channel, offset, (a, b) in ((0, 0.0, (1, 2)), (1, 2.0, (2, 0)), (2, 4.0, (0, 1))):
        idx = (arr[..., channel] == top) & moving  # later channels win ties, as in matplotlib
        hue[idx] = offset + (arr[..., a][idx] - arr[..., b][idx]) / delta[idx]
    out[..., 0] = (hue / 6.0) % 1.0
    out[..., 1] = sat
    out[..., 2] = top
    return out


def hsv_to_rgb(hsv: np.ndarray) -> np.ndarray:
    """HSV in ``[0, 1]``, shape ``[..., 3]`` -> float RGB in ``[0, 1]``, same shape (float64)."""
    arr = np.asarray(hsv, dtype=np.float64)
    if arr.shape[-1:] != (3,):
        raise UsageError(f"HSV arrays need a last axis of length 3, got shape {arr.shape}")
    h, s, v = arr[..., 0], arr[..., 1], arr[..., 2]
    sector = (h * 6.0).astype(int)
    f = h * 6.0 - sector
    p = v * (1.0 - s)
    q = v * (1.0 - s * f)
    t = v * (1.0 - s * (1.0 - f))
    r, g, b = np.empty_like(h), np.empty_like(h), np.empty_like(h)
    table = ((v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q))
    for k, (rk, gk, bk) in enumerate(table):
        idx = sector % 6 == k if k == 0 else sector == k
        r[idx], g[idx], b[idx] = rk[idx], gk[idx], bk[idx]
    grey = s == 0
    r[grey], g[grey], b[grey] = v[grey], v[grey], v[grey]
    return np.stack([r, g, b], axis=-1)
