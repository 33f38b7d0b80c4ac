"""EPG, the paper's statistic: the mean (or trapezoid-weighted) magnitude of the property gradient."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from epg_core._permutation._kernels import make_epg_kernel
from epg_core._statistics._base import Statistic, StatisticSetup, no_moments


class Epg(Statistic):
    """Expected property gradient magnitude; takes whole output vectors (their distance along the steps)."""

    name: ClassVar[str] = "epg"
    summary: ClassVar[str] = "expected property gradient magnitude (the paper's statistic)"
    options: ClassVar[dict[str, Any]] = {"weighting": "mean", "order": 1, "accuracy": 2, "edge_accuracy": 1,
                                         "scheme": "central"}
    vector: ClassVar[bool] = True

    def setup(self, n: int, grid: np.ndarray, x: np.ndarray | None, vector: bool, dtype: np.dtype, norm: str,
              options: dict[str, Any]) -> StatisticSetup:
        opts = dict(options)
        weighting = opts.pop("weighting", "mean")
        derivative = {k: opts[k] for k in ("order", "accuracy", "edge_accuracy", "scheme")}
        return StatisticSetup(make_epg_kernel(n, x, weighting, vector, norm, derivative), (), True, True,
                              no_moments)
