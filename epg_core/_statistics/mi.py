"""Mutual information between the outputs and the property (KSG estimator), tested by shuffles."""

from __future__ import annotations

import functools
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array

from epg_core._errors import UsageError
from epg_core._numerics._mi import ksg_counts
from epg_core._permutation._kernels import Kernel, identity
from epg_core._statistics._base import Statistic, StatisticSetup


def digamma_table(n: int, k: int, itype: type[np.signedinteger[Any]] = np.int32) -> tuple[np.ndarray, int, float]:
    """``psi(m + 1)`` for m = 0..n-1 in fixed point (``bits`` fractional bits, as many as keep a sum of 2n
    entries inside ``itype``: int32 for float32 tests, int64 for float64 ones, whose values then agree with the
    float KSG to the last digits), and the constant ``psi(n) + psi(k)``: KSG = constant - sum / (n 2^bits)."""
    psi = digamma_values(n)  # psi(1) .. psi(n)
    top = float(np.iinfo(itype).max) / 2.0  # headroom for rounding
    bits = min(52, int(np.floor(np.log2(top / (2 * n * (abs(psi[-1]) + 1.0))))))
    table = np.rint(psi * 2.0**bits).astype(itype)  # entry m: psi(m + 1), m = 0 .. n-1 neighbours
    return table, bits, float(psi[n - 1] + psi[k - 1])  # psi(n), psi(k)


def digamma_values(m: int) -> np.ndarray:
    """``psi(1) .. psi(m)`` in float64 (``psi(j + 1) = psi(j) + 1 / j``, ``psi(1) = -gamma``)."""
    out = np.empty(m, np.float64)
    out[0] = -0.5772156649015329
    for j in range(1, m):
        out[j] = out[j - 1] + 1.0 / j
    return out


@functools.lru_cache(maxsize=8)
def _kernel(k: int) -> Kernel:
    """KSG of every permuted curve, scaled by its host-computed factor (``per_curve``) to the grid's SD.

    The digamma sum is added in integer fixed point: exact and independent of the order of summation, so a
    shuffle whose neighbour counts equal the observed curve's gets the same value bit for bit (MI's null has
    many such ties) whether the curve is tested alone or in a batch.
    """

    def kernel(yt: Array, perms: Array, params: tuple[Array, Array, Array], per_curve: Array) -> Array:
        grid, table, scale = params
        z = jnp.moveaxis(yt[perms], 1, 2) * per_curve[None, :, None]  # [P, B, N], elementwise: batch-invariant

        def one(c: Array) -> Array:
            nx, ny = ksg_counts(c, grid, k=k)
            total = jnp.sum(table[nx] + table[ny], dtype=table.dtype)  # exact
            return scale[0] - total.astype(scale.dtype) * scale[1]

        return jax.vmap(jax.vmap(one))(z)

    return Kernel(kernel, identity, None)


def _scales(grid: np.ndarray) -> Any:
    """Per curve: SD(grid) / SD(curve) in float64 (1 for a constant curve), the KSG standardisation."""
    sx = float(np.std(grid))

    def scale(z: np.ndarray) -> np.ndarray:
        sy = np.std(z[:, :, 0], axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(sy > 0, sx / sy, 1.0)

    return scale


class MutualInformation(Statistic):
    """KSG mutual information of one output with the property values (``k`` nearest neighbours)."""

    name: ClassVar[str] = "mi"
    summary: ClassVar[str] = "mutual information between the output and the property (KSG, k neighbours)"
    options: ClassVar[dict[str, Any]] = {"k": 5}

    def setup(self, n: int, grid: np.ndarray, x: np.ndarray | None, vector: bool, dtype: np.dtype, norm: str,
              options: dict[str, Any]) -> StatisticSetup:
        k = int(options["k"])
        if not 1 <= k < n:
            raise UsageError(f"the KSG estimator needs 1 <= k < N steps, got k={k} and N={n}")
        wide = np.dtype(dtype) == np.float64  # float64 tests run with JAX's 64-bit types enabled
        table, bits, constant = digamma_table(n, k, np.int64 if wide else np.int32)
        scale = jnp.asarray([constant, 1.0 / (n * 2.0**bits)], dtype)
        params = (jnp.asarray(grid, dtype), jnp.asarray(table), scale)
        return StatisticSetup(_kernel(k), params, True, False, _scales(grid))
