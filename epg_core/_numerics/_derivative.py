"""Finite-difference derivatives along the step axis on arbitrary (non-uniform) grids.

A derivative is a *stencil plan* (which neighbours each step uses: static, depends only on the number of
steps and the options) plus *weights* (Fornberg weights from the grid: traced, so the grid may be a JAX
array under jit/vmap/grad). The defaults reproduce ``np.gradient``.
"""

from __future__ import annotations

import functools
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, Int

from epg_core._errors import DataError, UsageError
from epg_core._numerics._fornberg import _is_traced, fornberg_table
from epg_core._typing import HostOrDevice

Scheme = Literal["central", "forward", "backward"]


@functools.lru_cache(maxsize=256)
def stencil_plan(
    n: int, order: int, accuracy: int, edge_accuracy: int, scheme: str
) -> tuple[np.ndarray, np.ndarray]:
    """Neighbour indices ``[n, W]`` and their per-row widths ``[n]`` for each of the ``n`` steps.

    Rows are zero-padded to the widest stencil ``W`` (padding repeats the row's first index; its weight is 0).
    Central rows use ``2*ceil(order/2) - 1 + accuracy`` symmetric points. Where that does not fit, a row uses
    the widest centred stencil that fits, but at least ``order + edge_accuracy`` points flush with the
    boundary, which is what ``np.gradient`` does at its edges. ``forward``/``backward`` use
    ``order + accuracy`` one-sided points, flipping direction where the grid ends.
    """
    _check_plan_args(n, order, accuracy, edge_accuracy, scheme)
    rows: list[list[int]] = []
    if scheme == "central":
        half = (2 * ((order + 1) // 2) - 1 + accuracy) // 2
        edge_width = order + edge_accuracy
        for i in range(n):
            if half <= i <= n - 1 - half:
                rows.append(list(range(i - half, i + half + 1)))
            else:  # the widest centred stencil that fits, at least edge_width points flush with the boundary
                near = min(i, n - 1 - i)
                width = min(n, max(edge_width, 2 * near + 1))
                rows.append(list(range(0, width)) if i < n - 1 - i else list(range(n - width, n)))
    else:
        width = order + accuracy
        for i in range(n):
            if scheme == "forward":
                start = i if i + width <= n else n - width
            else:
                start = i - width + 1 if i - width + 1 >= 0 else 0
            rows.append(list(range(start, start + width)))
    widths = np.array([len(r) for r in rows], dtype=np.int64)
    big = int(widths.max())
    idx = np.array([r + [r[0]] * (big - len(r)) for r in rows], dtype=np.int32)
    return idx, widths


def _check_plan_args(n: int, order: int, accuracy: int, edge_accuracy: int, scheme: str) -> None:
    """One-line ValueErrors for options that cannot give a derivative on ``n`` steps."""
    if scheme not in ("central", "forward", "backward"):
        raise UsageError(f"unknown scheme {scheme!r}; use 'central', 'forward' or 'backward'")
    if order < 1:
        raise UsageError(f"derivative order must be >= 1, got {order}")
    if n < 2:
        raise DataError(f"a curve needs at least 2 steps, got {n}")
    if accuracy < 1 or edge_accuracy < 1:
        raise UsageError(f"accuracy and edge_accuracy must be >= 1, got {accuracy} and {edge_accuracy}")
    if scheme == "central":
        if accuracy % 2:
            raise UsageError(f"central differences need an even accuracy, got {accuracy}")
        central = 2 * ((order + 1) // 2) - 1 + accuracy
        edge = order + edge_accuracy
        # A grid no longer than the edge stencil is all edge (np.gradient on 2 points); otherwise the
        # requested central stencil must fit.
        need = edge if n <= edge else max(central, edge)
    else:
        need = order + accuracy
    if need > n:
        raise UsageError(
            f"the stencil needs {need} points but the grid has only {n} steps "
            f"(order={order}, accuracy={accuracy}, edge_accuracy={edge_accuracy}, scheme={scheme!r})"
        )


def stencil_weights(
    x: Float[HostOrDevice, "*batch n"], idx: Int[np.ndarray, "n w"], widths: Int[np.ndarray, " n"], order: int,
    xp: Any = jnp,
) -> Float[HostOrDevice, "*batch n w"]:
    """Fornberg weights of every row of a stencil plan on grid ``x`` (zeros on the padding).

    With ``xp=numpy`` the weights are computed on the host in float64 (``x`` must then be 1-D).
    """
    n, big = idx.shape
    if xp is np:
        out = np.zeros((n, big))
        for i in range(n):
            nodes = np.asarray(x, np.float64)[idx[i, : widths[i]]] - float(x[i])
            out[i, : widths[i]] = fornberg_table(nodes, 0.0, order, xp=np)[order]
        return out
    out_rows: list[Array] = []
    order_rows: list[np.ndarray] = []
    for width in np.unique(widths):
        rows = np.nonzero(widths == width)[0]
        nodes = x[..., idx[rows, :width]]  # [*batch, g, width]
        centre = x[..., rows][..., None]  # [*batch, g, 1]
        offsets = nodes - centre
        flat = offsets.reshape(-1, int(width))
        w = jax.vmap(lambda o: fornberg_table(o, jnp.zeros((), o.dtype), order)[order])(flat)
        w = w.reshape(offsets.shape)
        pad = [(0, 0)] * (w.ndim - 1) + [(0, big - int(width))]
        out_rows.append(jnp.pad(w, pad))
        order_rows.append(rows)
    weights = jnp.concatenate(out_rows, axis=-2)
    inverse = np.argsort(np.concatenate(order_rows))
    return weights[..., inverse, :]


def unit_grid(n: int, dtype: jnp.dtype) -> Float[Array, " n"]:
    """The paper's reference spacing: one unit per step."""
    return jnp.arange(n, dtype=dtype)


def check_grid(x: ArrayLike, n: int) -> None:
    """Host-side checks of a concrete grid: finite, right length, strictly monotonic (no duplicates)."""
    if _is_traced(x):
        return
    xa = np.asarray(x)
    if xa.shape[-1:] != (n,):
        raise DataError(f"the grid x has shape {xa.shape} but the curves have {n} steps")
    if not np.all(np.isfinite(xa)):
        raise DataError(f"the grid x contains NaN or infinite values: {xa.ravel()[~np.isfinite(xa.ravel())][:3]}")
    d = np.diff(xa, axis=-1)
    if np.any(d == 0):
        k = int(np.argwhere(d.reshape(-1, d.shape[-1]) == 0)[0, 1])
        raise DataError(f"the grid x has duplicate points: x[{k}] == x[{k + 1}] == {xa.reshape(-1, n)[0, k]}")
    inc: np.ndarray = np.all(d > 0, axis=-1)
    dec: np.ndarray = np.all(d < 0, axis=-1)
    if not np.all(np.logical_or(inc, dec)):
        raise DataError(f"the grid x is not strictly monotonic: {np.array2string(xa.ravel()[:8])}...")


def check_curves(y: ArrayLike) -> None:
    """Host-side check that concrete outputs are finite (a NaN would silently poison every statistic)."""
    if _is_traced(y):
        return
    ya = np.asarray(y)
    if not np.all(np.isfinite(ya)):
        bad = np.argwhere(~np.isfinite(ya))[0]
        raise DataError(f"outputs contain NaN or infinite values, e.g. {ya[tuple(bad)]} "
                         f"at index {tuple(bad.tolist())}")


def derivative(
    y: Float[ArrayLike, ...],
    x: Float[ArrayLike, ...] | None = None,
    *,
    order: int = 1,
    accuracy: int = 2,
    edge_accuracy: int = 1,
    scheme: str = "central",
    axis: int = -1,
) -> Float[Array, ...]:
    """Derivative of ``y`` along ``axis`` on grid ``x`` (``None``: unit spacing).

    Defaults equal ``np.gradient(y, x)``; ``edge_accuracy=2`` equals ``edge_order=2``. ``scheme`` picks
    central or one-sided (forward/backward) stencils; higher ``accuracy`` widens the stencil.
    """
    y = jnp.moveaxis(jnp.asarray(y), axis, -1)
    if not jnp.issubdtype(y.dtype, jnp.floating):
        y = y.astype(jnp.result_type(float))
    n = y.shape[-1]
    idx, widths = stencil_plan(n, order, accuracy, edge_accuracy, scheme)
    check_curves(y)
    if x is None:
        grid = unit_grid(n, y.dtype)
    else:
        check_grid(x, n)
        grid = jnp.asarray(x, dtype=y.dtype)
    w = stencil_weights(grid, idx, widths, order)  # [*#batch, n, W]
    d = jnp.sum(w * y[..., idx], axis=-1)
    return jnp.moveaxis(d, -1, axis)


def host_plan(
    n: int, x: ArrayLike | None, *, order: int = 1, accuracy: int = 2, edge_accuracy: int = 1,
    scheme: str = "central",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stencil indices, widths and float64 host weights for a concrete grid (the permutation engine's input)."""
    idx, widths = stencil_plan(n, order, accuracy, edge_accuracy, scheme)
    if x is None:
        grid = np.arange(n, dtype=np.float64)
    else:
        check_grid(x, n)
        grid = np.asarray(x, np.float64)
    return idx, widths, np.asarray(stencil_weights(grid, idx, widths, order, xp=np))
