"""Exact mean and standard deviation of the EPG null distribution over all N! orderings, in O(N^2) per curve.

For a two-tap stencil the EPG of a shuffle is ``sum_i w_i h(pi(a_i), pi(b_i))`` with ``h`` the distance
between two steps' outputs. Each term's null mean is Gini's mean difference; covariances between terms
depend only on how many positions their taps share, so three centred moments over distinct pairs, triples
and quadruples of steps give the exact variance (see ``_perm_kernels._table_moments``).
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from epg_core._errors import DataError, UsageError
from epg_core._numerics._derivative import check_grid
from epg_core._permutation._engine import as_curves, kernel_inputs, normalise, resolve_dtype, use_precision
from epg_core._permutation._kernels import CLASS_CHUNK, MAX_TABLE_STEPS, Kernel, make_epg_kernel
from epg_core._permutation._scan import blocks, curves_last, pad_rows


class Moments(NamedTuple):
    """Exact null moments of the EPG, shaped like the batch (in the units of the outputs)."""

    mean: np.ndarray
    std: np.ndarray


@functools.partial(jax.jit, static_argnames=("kernel",))
def _block_moments(blocks_: Array, *, kernel: Kernel) -> tuple[Array, Array]:
    assert kernel.moments is not None
    moments = kernel.moments
    return jax.lax.map(lambda b: moments(kernel.prepare(b)), blocks_)


def permutation_moments(
    y: Float[ArrayLike, ...],
    x: Float[ArrayLike, " n"] | None = None,
    *,
    axis: int = -1,
    class_axis: int | None = None,
    norm: str = "l2",
    weighting: str = "mean",
    precision: str | None = None,
    **derivative_options: Any,
) -> Moments:
    """Exact mean and SD of the EPG of ``y`` over all orderings of its steps (the shuffle test's null).

    Available for two-tap stencils: unit or uniform spacing with np.gradient edges, forward or backward
    differences; a ValueError otherwise (non-uniform central grids, higher accuracy or order). Memory: one
    table of N(N+1)/2 distances per curve (chunks of curves are bounded by bytes); curves of more than
    ``MAX_TABLE_STEPS`` = 8,192 steps are refused with a DataError before anything is allocated.
    """
    if norm not in ("l2", "l1"):
        raise UsageError(f"unknown norm {norm!r}; use 'l2' or 'l1'")
    with use_precision(precision):
        y3, batch = as_curves(y, axis, class_axis)
        n_curves, n, c = y3.shape
        if x is not None:
            check_grid(x, n)
        vector = class_axis is not None
        if n > MAX_TABLE_STEPS:  # checked before anything of size N^2 (or the stencil plan) is built
            raise DataError(f"exact permutation moments of curves with {n:,} steps are refused: they need a table "
                            f"of N(N+1)/2 distances per curve; the limit is N = {MAX_TABLE_STEPS:,} steps")
        kernel = make_epg_kernel(n, x, weighting, vector, norm, dict(derivative_options))
        if kernel.moments is None:
            raise UsageError(
                "exact permutation moments need a two-tap stencil (unit or uniform spacing with np.gradient edges, "
                "forward or backward differences); these options give wider stencils"
            )
        dtype = resolve_dtype(y3, precision)
        width = -(-c // CLASS_CHUNK) * CLASS_CHUNK if vector else 1
        dev = jax.devices()[0]
        bb, nb = blocks(n_curves, n, dtype.itemsize, 1, True, width)
        means, sds = [], []
        for start in range(0, n_curves, bb * nb):
            z64, s = normalise(y3[start:start + bb * nb])
            block, _ = kernel_inputs(kernel, z64, None, dtype, width if vector else 0)
            mean, sd = _block_moments(curves_last(pad_rows(block, bb * nb, 0.0), nb, dev), kernel=kernel)
            rows = len(s)
            means.append(np.asarray(mean, np.float64).reshape(-1)[:rows] * s)
            sds.append(np.asarray(sd, np.float64).reshape(-1)[:rows] * s)
    return Moments(np.concatenate(means).reshape(batch), np.concatenate(sds).reshape(batch))
