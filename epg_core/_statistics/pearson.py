"""Pearson's rho between the outputs and the property, tested by shuffles (the paper's baseline)."""

from __future__ import annotations

from typing import Any, ClassVar

import jax.numpy as jnp
import numpy as np

from epg_core._permutation._kernels import Kernel, identity, pearson_kernel, unit_norm_grid
from epg_core._statistics._base import Statistic, StatisticSetup


def inverse_norm(z: np.ndarray) -> np.ndarray:
    """1 / ||z - mean|| per curve (NaN for a constant curve): Pearson's y side, invariant under shuffles."""
    zc = z[:, :, 0] - z[:, :, 0].mean(axis=1, keepdims=True)
    ss = np.sum(zc * zc, axis=1)
    with np.errstate(divide="ignore"):
        return np.where(ss > 0, 1.0 / np.sqrt(ss), np.nan)


class Pearson(Statistic):
    """Pearson's correlation of one output with the property values."""

    name: ClassVar[str] = "pearson"
    summary: ClassVar[str] = "Pearson's rho between the output and the property (the paper's baseline)"

    def setup(self, n: int, grid: np.ndarray, x: np.ndarray | None, vector: bool, dtype: np.dtype, norm: str,
              options: dict[str, Any]) -> StatisticSetup:
        return StatisticSetup(Kernel(pearson_kernel, identity, None), (jnp.asarray(unit_norm_grid(grid), dtype),),
                              True, False, inverse_norm)
