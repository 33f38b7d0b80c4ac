"""Fornberg (1988) finite-difference weights on arbitrary grids.

Pure JAX: differentiable and jit/vmap-able. The stencil length is static (it is the shape of ``nodes``),
so the recursion unrolls into a small fixed graph.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from epg_core._errors import UsageError
from epg_core._typing import HostOrDevice


def fornberg_table(
    nodes_in: ArrayLike, x0_in: ArrayLike, max_order: int, xp: Any = jnp
) -> Float[HostOrDevice, "m n"]:
    """Weights for every derivative order ``0..max_order`` at ``x0`` from ``nodes``: shape ``[max_order+1, n]``.

    Row ``k`` holds the weights ``w`` with ``f^(k)(x0) ~= sum_j w[j] f(nodes[j])``. ``xp`` is ``jax.numpy``
    (traceable) or ``numpy`` (host float64 weights whatever the JAX precision setting).
    """
    nodes: Any = xp.asarray(nodes_in)
    x0: Any = xp.asarray(x0_in, dtype=nodes.dtype)
    n = nodes.shape[-1]
    if max_order < 0:
        raise UsageError(f"derivative order must be >= 0, got {max_order}")
    # c[j][k]: weight of node j for the k-th derivative, built up node by node (Fornberg's recursion).
    zero = xp.zeros((), dtype=nodes.dtype)
    c = [[zero] * (max_order + 1) for _ in range(n)]
    c[0][0] = xp.ones((), dtype=nodes.dtype)
    c1 = xp.ones((), dtype=nodes.dtype)
    c4 = nodes[0] - x0
    for i in range(1, n):
        mn = min(i, max_order)
        c2 = xp.ones((), dtype=nodes.dtype)
        c5 = c4
        c4 = nodes[i] - x0
        for j in range(i):
            c3 = nodes[i] - nodes[j]
            c2 = c2 * c3
            if j == i - 1:
                for k in range(mn, 0, -1):
                    c[i][k] = c1 * (k * c[i - 1][k - 1] - c5 * c[i - 1][k]) / c2
                c[i][0] = -c1 * c5 * c[i - 1][0] / c2
            for k in range(mn, 0, -1):
                c[j][k] = (c4 * c[j][k] - k * c[j][k - 1]) / c3
            c[j][0] = c4 * c[j][0] / c3
        c1 = c2
    return xp.stack([xp.stack([c[j][k] for j in range(n)]) for k in range(max_order + 1)])


def fornberg_weights(nodes: ArrayLike, x0: ArrayLike, order: int) -> Float[Array, " n"]:
    """Fornberg weights for the ``order``-th derivative at ``x0`` from distinct ``nodes`` (any spacing).

    ``f^(order)(x0) ~= weights @ f(nodes)``. Needs ``len(nodes) > order``; exact for polynomials of degree
    ``< len(nodes)``.
    """
    nodes_np = None if _is_traced(nodes) else np.asarray(nodes)
    if nodes_np is not None:
        if nodes_np.ndim != 1:
            raise UsageError(f"nodes must be 1-D, got shape {nodes_np.shape}")
        if nodes_np.shape[0] <= order:
            raise UsageError(
                f"a stencil of {nodes_np.shape[0]} nodes cannot give a derivative of order {order}; "
                f"it needs at least {order + 1} nodes"
            )
        if len(np.unique(nodes_np)) != len(nodes_np):
            raise UsageError(f"stencil nodes must be distinct, got {nodes_np.tolist()}")
    return fornberg_table(nodes, x0, order)[order]


def _is_traced(a: object) -> bool:
    """True for a JAX tracer (values unknown at trace time: skip host-side validation)."""
    import jax

    return isinstance(a, jax.core.Tracer)  # pyright: ignore[reportAttributeAccessIssue]
