"""Mutual information between the outputs and the property (KSG estimator), tested by shuffles."""

from __future__ import annotations

from typing import Any, ClassVar

import jax.numpy as jnp
import numpy as np

from epg_core._errors import UsageError
from epg_core._permutation._kernels import mi_kernel
from epg_core._statistics._base import Statistic, StatisticSetup, no_moments


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
        return StatisticSetup(mi_kernel(k), (jnp.asarray(grid, dtype),), True, False, no_moments)
