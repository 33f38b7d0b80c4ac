"""Per-curve statistics: EPG (paper Eq. 2), Pearson's rho and prediction flips."""

from __future__ import annotations

from typing import Any, Literal

import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Bool, Float, Int

from epg_core._errors import DataError, UsageError
from epg_core._numerics._derivative import check_grid, derivative, unit_grid
from epg_core._typing import HostOrDevice

Weighting = Literal["mean", "trapezoid"]
Norm = Literal["l2", "l1"]


def cell_widths(x: Float[HostOrDevice, "*#batch n"], xp: Any = jnp) -> Float[HostOrDevice, "*#batch n"]:
    """Trapezoid weights of each step (half the distance to its neighbours), normalised to sum to 1."""
    dx = xp.abs(xp.diff(x, axis=-1))
    zero = xp.zeros(dx.shape[:-1] + (1,), dx.dtype)
    w = 0.5 * (xp.concatenate([zero, dx], axis=-1) + xp.concatenate([dx, zero], axis=-1))
    return w / xp.sum(w, axis=-1, keepdims=True)


def _weighted_mean(d: Array, x: ArrayLike | None, weighting: str) -> Array:
    """Mean over the step axis (last) of ``d``, plain or weighted by each step's share of the grid."""
    if weighting == "mean":
        return jnp.mean(d, axis=-1)
    if weighting == "trapezoid":
        grid = unit_grid(d.shape[-1], d.dtype) if x is None else jnp.asarray(x, d.dtype)
        return jnp.sum(d * cell_widths(grid), axis=-1)
    raise UsageError(f"unknown weighting {weighting!r}; use 'mean' or 'trapezoid'")


def epg(
    y: Float[ArrayLike, ...],
    x: Float[ArrayLike, ...] | None = None,
    *,
    axis: int = -1,
    class_axis: int | None = None,
    norm: str = "l2",
    weighting: str = "mean",
    **derivative_options: Any,
) -> Float[Array, ...]:
    """Expected property gradient magnitude: mean over steps of ``|d y / d property|`` (paper Eq. 2).

    With ``x=None`` and the defaults this is the paper's ``mean(abs(np.gradient(p)))``. ``weighting=
    "trapezoid"`` weights each step by its share of the property range (for non-uniform grids). With
    ``class_axis``, ``y`` holds whole output vectors (``[..., N, C]``; ``axis`` then counts the other axes) and
    the magnitude is the ``norm`` ("l2" or "l1") of the vector derivative: no class has to be chosen.
    """
    y = jnp.asarray(y)
    if class_axis is None:
        y = jnp.moveaxis(y, axis, -1)
        d = jnp.abs(derivative(y, x, axis=-1, **derivative_options))
        return _weighted_mean(d, x, weighting)
    if norm not in ("l2", "l1"):
        raise UsageError(f"unknown norm {norm!r}; use 'l2' or 'l1'")
    y = jnp.moveaxis(y, class_axis, -1)
    y = jnp.moveaxis(y, axis % (y.ndim - 1), -2)
    d = derivative(y, x, axis=-2, **derivative_options)
    mag = jnp.sqrt(jnp.sum(d * d, axis=-1)) if norm == "l2" else jnp.sum(jnp.abs(d), axis=-1)
    return _weighted_mean(mag, x, weighting)


def mean_gradient(
    y: Float[ArrayLike, ...],
    x: Float[ArrayLike, ...] | None = None,
    *,
    axis: int = -1,
    weighting: str = "mean",
    **derivative_options: Any,
) -> Float[Array, ...]:
    """Signed mean derivative along the steps (the authors' ``measure_avg_gradient``): direction of the effect."""
    y = jnp.moveaxis(jnp.asarray(y), axis, -1)
    return _weighted_mean(derivative(y, x, axis=-1, **derivative_options), x, weighting)


def pearson(
    y: Float[ArrayLike, ...],
    x: Float[ArrayLike, ...] | None = None,
    *,
    axis: int = -1,
) -> Float[Array, ...]:
    """Pearson's rho between the outputs and the property (NaN for a constant curve)."""
    y = jnp.moveaxis(jnp.asarray(y), axis, -1)
    if not jnp.issubdtype(y.dtype, jnp.floating):
        y = y.astype(jnp.result_type(float))
    n = y.shape[-1]
    if n < 2:
        raise DataError(f"a curve needs at least 2 steps, got {n}")
    if x is None:
        grid = unit_grid(n, y.dtype)
    else:
        check_grid(x, n)
        grid = jnp.asarray(x, y.dtype)
    xc = grid - jnp.mean(grid, axis=-1, keepdims=True)
    # Shift by the first step before centring: an exactly constant curve gives exact zeros (rho undefined, not
    # +-1 from rounding), and y, 1 - y and a*y + c give the same |rho| on the scale of the curve's spread.
    shifted = y - y[..., :1]
    yc = shifted - jnp.mean(shifted, axis=-1, keepdims=True)
    ss_y = jnp.sum(yc * yc, axis=-1)
    rho = jnp.sum(xc * yc, axis=-1) / jnp.sqrt(jnp.sum(xc * xc, axis=-1) * ss_y)
    return jnp.where(jnp.max(y, axis=-1) == jnp.min(y, axis=-1), jnp.nan, rho)


def flip_points(
    outputs: Float[ArrayLike, ...],
    *,
    class_axis: int = -1,
    step_axis: int = -2,
    threshold: float | None = None,
) -> Bool[Array, "*batch n_minus_1"]:
    """Where the prediction changes between consecutive steps: ``[..., N-1]`` (True at step i -> i+1).

    Without ``threshold``: the argmax over ``class_axis`` changes along ``step_axis``. With ``threshold``:
    ``outputs`` is a single output per step with the step axis last (as for ``epg``), and a flip is a
    crossing of the threshold (``>= threshold`` changes).
    """
    outputs = jnp.asarray(outputs)
    if threshold is None:
        if outputs.ndim < 2:
            raise UsageError(f"flips needs a class axis and a step axis, got shape {outputs.shape}")
        labels = jnp.argmax(outputs, axis=class_axis)
        # after removing the class axis, the step axis index may shift
        ca = class_axis % outputs.ndim
        sa = step_axis % outputs.ndim
        if ca == sa:
            raise UsageError("class_axis and step_axis must differ")
        sa = sa - 1 if ca < sa else sa
        labels = jnp.moveaxis(labels, sa, -1)
    else:
        labels = outputs >= threshold
    if labels.shape[-1] < 2:
        raise DataError(f"a curve needs at least 2 steps, got {labels.shape[-1]}")
    return labels[..., 1:] != labels[..., :-1]


def flips(
    outputs: Float[ArrayLike, ...],
    *,
    class_axis: int = -1,
    step_axis: int = -2,
    threshold: float | None = None,
) -> Int[Array, "*batch"]:
    """Number of prediction flips along the steps (see ``flip_points`` for the conventions)."""
    return jnp.sum(
        flip_points(outputs, class_axis=class_axis, step_axis=step_axis, threshold=threshold), axis=-1
    )
