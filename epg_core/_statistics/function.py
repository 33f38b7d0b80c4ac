"""A user's own statistic given as a function ``f(y[N], x[N], **options) -> scalar`` (JAX-traceable)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array

from epg_core._permutation._kernels import callable_kernel
from epg_core._statistics._base import Statistic, StatisticSetup, no_moments


class FunctionStatistic(Statistic):
    """Wraps a callable; tested on the raw curves (no normalisation: the function may not be affine-invariant)."""

    name: ClassVar[str] = "function"
    summary: ClassVar[str] = "a callable f(y, x, **options) -> scalar"

    def __init__(self, fn: Callable[..., Array]) -> None:
        self.fn = fn

    def checked_options(self, options: Any) -> dict[str, Any]:
        """Any keyword the function takes (checked when it is traced)."""
        return dict(options)

    def setup(self, n: int, grid: np.ndarray, x: np.ndarray | None, vector: bool, dtype: np.dtype, norm: str,
              options: dict[str, Any]) -> StatisticSetup:
        kernel = callable_kernel(self.fn, tuple(sorted(options.items())))
        return StatisticSetup(kernel, (jnp.asarray(grid, dtype),), False, False, no_moments)
