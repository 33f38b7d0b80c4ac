"""Mutual information between the outputs and the property (KSG estimator), tested by shuffles."""

from __future__ import annotations

import functools
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array

from epg_core._errors import UsageError
from epg_core._numerics._mi import ksg_scaled
from epg_core._permutation._kernels import Kernel, identity
from epg_core._statistics._base import Statistic, StatisticSetup


@functools.lru_cache(maxsize=8)
def _kernel(k: int) -> Kernel:
    """KSG of every permuted curve, scaled by its host-computed factor (``per_curve``) to the grid's SD."""

    def kernel(yt: Array, perms: Array, params: tuple[Array], per_curve: Array) -> Array:
        (grid,) = params
        z = jnp.moveaxis(yt[perms], 1, 2) * per_curve[None, :, None]  # [P, B, N], elementwise: batch-invariant
        return jax.vmap(jax.vmap(lambda c: ksg_scaled(c, grid, k=k)))(z)

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
        return StatisticSetup(_kernel(k), (jnp.asarray(grid, dtype),), True, False, _scales(grid))
