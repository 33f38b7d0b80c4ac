"""Array type aliases shared by epg_core's annotations (checked by jaxtyping + beartype in the tests)."""

from __future__ import annotations

from typing import TypeAlias

import jax
import numpy as np

# Functions that run both on the host (NumPy, float64 weights for the engine) and in JAX take either.
HostOrDevice: TypeAlias = jax.Array | np.ndarray
