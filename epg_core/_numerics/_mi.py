"""Mutual information between a curve and its property grid: the KSG estimator (Kraskov et al. 2004, alg. 1).

Both variables are brought to the same standard deviation first (so the estimate is invariant under
``y -> a*y + c``), distances in the joint space use the max-norm, and
``I = psi(N) + psi(k) - <psi(n_x + 1) + psi(n_y + 1)>`` with ``n_x``, ``n_y`` the neighbours strictly closer
than the k-th joint neighbour. Pure JAX, so it runs inside the
shuffle test's vmap. Unlike scikit-learn, no noise is added and negative estimates are not clipped to 0
(clipping would create artificial ties in the null distribution).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.scipy.special import digamma
from jaxtyping import Array, ArrayLike, Float

from epg_core._errors import UsageError


def _centre(v: Array) -> tuple[Array, Array]:
    c = v - jnp.mean(v)
    return c, jnp.sqrt(jnp.mean(c * c))


def ksg_mi(y: Float[ArrayLike, " n"], x: Float[ArrayLike, " n"], *, k: int = 5) -> Float[Array, ""]:
    """KSG estimate (nats) of the mutual information between one curve ``y`` and the grid ``x``."""
    yc, sy = _centre(jnp.asarray(y))
    x = jnp.asarray(x, yc.dtype)
    sx = _centre(x)[1]
    # Equivalent to standardising both, but keeps the grid's distances exact (a uniform grid has many equal
    # distances, and rounding them differently would move neighbours across the k-th distance).
    y = jnp.where(sy > 0, yc * (sx / jnp.where(sy > 0, sy, 1.0)), yc)
    return ksg_scaled(y, x, k=k)


def ksg_scaled(y: Float[ArrayLike, " n"], x: Float[ArrayLike, " n"], *, k: int = 5) -> Float[Array, ""]:
    """The KSG estimate for a curve ``y`` already brought to the grid's standard deviation (any offset)."""
    nx, ny = ksg_counts(y, x, k=k)
    n = nx.shape[-1]
    return digamma(float(n)) + digamma(float(k)) - jnp.mean(digamma(nx + 1.0) + digamma(ny + 1.0))


def ksg_counts(y: Float[ArrayLike, " n"], x: Float[ArrayLike, " n"], *, k: int = 5) -> tuple[Array, Array]:
    """Per point, the neighbours strictly closer than its k-th joint neighbour in x and in y (int32 ``[n]``
    each), for a curve ``y`` already brought to the grid's standard deviation: KSG's only data-dependent part."""
    y = jnp.asarray(y)
    x = jnp.asarray(x, y.dtype)
    n = y.shape[-1]
    if not 1 <= k < n:
        raise UsageError(f"the KSG estimator needs 1 <= k < N steps, got k={k} and N={n}")
    dx = jnp.abs(x[:, None] - x[None, :])
    dy = jnp.abs(y[:, None] - y[None, :])
    eye = jnp.eye(n, dtype=bool)
    dz = jnp.where(eye, jnp.inf, jnp.maximum(dx, dy))
    eps = -jax.lax.top_k(-dz, k)[0][:, k - 1]  # distance to the k-th joint neighbour
    nx = jnp.sum((dx < eps[:, None]) & ~eye, axis=1, dtype=jnp.int32)
    ny = jnp.sum((dy < eps[:, None]) & ~eye, axis=1, dtype=jnp.int32)
    return nx, ny
