"""The fused scan of the shuffle test: one jitted call per chunk of curves.

Gather + stencil + |.| + mean + tie-aware counting are fused in one ``lax.scan`` over chunks of
permutations, and only counts leave the loop unless the null distribution is asked for. Blocks of curves are
scanned one after the other (``lax.map``), so each block's pairwise table stays small and hot; memory is
bounded by the chunk sizes whatever the number of curves or classes.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array

from epg_core._permutation._kernels import Kernel

# Bytes of the gathered intermediate of one scan step ([P perms, N steps, Bb curves(, C)]).
CHUNK_BYTES = 512 << 10
# Curves per device call (and at most CALL_BYTES of curves); the last chunk is padded to one compiled shape.
CURVE_CHUNK = 2048
CALL_BYTES = 32 << 20
# Curves scanned together (a block); its pairwise-distance table is capped by TABLE_BYTES.
BLOCK_CURVES = 128
TABLE_BYTES = 64 << 20


def perm_chunk(n: int, n_curves: int, itemsize: int, k: int, width: int = 1) -> int:
    """Permutations per scan step so that the [P, N, Bb(, C)] intermediate stays under CHUNK_BYTES."""
    per_perm = max(1, n * n_curves * itemsize * width)
    return int(max(1, min(k, CHUNK_BYTES // per_perm, 1024)))


def blocks(n_curves: int, n: int, itemsize: int, n_devices: int, uses_table: bool, width: int = 1) -> tuple[int, int]:
    """(curves per block, blocks per device call) for curves of ``n`` steps and ``width`` outputs each."""
    per_call = max(1, min(n_curves, CURVE_CHUNK, max(1, CALL_BYTES // (n * width * itemsize)),
                          -(-n_curves // n_devices)))
    limit = BLOCK_CURVES
    if uses_table:  # the table [N(N+1)/2, Bb] and its build step [N(N+1)/2, Bb, CLASS_CHUNK] stay bounded
        limit = min(limit, max(1, TABLE_BYTES // (n * n * itemsize * (8 if width > 1 else 1))))
    elif width > 1:  # the gathered [P=1, N, Bb, C] slice of one permutation must fit a scan step
        limit = min(limit, max(1, CHUNK_BYTES // (n * width * itemsize)))
    nb = -(-per_call // limit)
    bb = -(-per_call // nb)
    if bb >= 8:  # whole SIMD lanes per gathered row
        bb = -(-bb // 8) * 8
    return bb, nb


def _is_tie(t: Array, obs: Array, tol: Array) -> Array:
    both_nan = jnp.isnan(t) & jnp.isnan(obs)[None, :]
    return both_nan | (jnp.abs(t - obs[None, :]) <= tol[None, :])


@functools.partial(jax.jit, static_argnames=("kernel", "n_steps"))
def observed(blocks_: Array, params: Any, per_curve: Array, *, kernel: Kernel,
             n_steps: int) -> tuple[Array, Array, Array]:
    """The statistic of every curve in its true order and its exact null mean and SD (NaN if unavailable)."""
    ident = jnp.arange(n_steps, dtype=jnp.int32)[None, :]

    def one(args: tuple[Array, Array]) -> tuple[Array, Array, Array]:
        prepared = kernel.prepare(args[0])
        t = kernel.kernel(prepared, ident, params, args[1])[0]
        if kernel.moments is None:
            nan = jnp.full(t.shape, jnp.nan, t.dtype)
            return t, nan, nan
        mean, sd = kernel.moments(prepared)
        return t, mean.astype(t.dtype), sd.astype(t.dtype)

    return jax.lax.map(one, (blocks_, per_curve))


@functools.partial(jax.jit, static_argnames=("kernel", "count", "keep_null"))
def scan(
    blocks_: Array, chunks: Array, valid: Array, obs: Array, tol: Array, params: Any, per_curve: Array,
    *, kernel: Kernel, count: bool, keep_null: bool,
) -> tuple[Array, Array, Array | None]:
    """For each block of curves, scan the permutation chunks; return (#T<=obs, #T>=obs) per curve (ties
    within ``tol`` count on both sides) and the null if asked."""

    def one_block(args: tuple[Array, ...]) -> tuple[Array, Array, Array | None]:
        yt, obs_b, tol_b, pc_b = args
        table = kernel.prepare(yt)
        b = yt.shape[1]

        def step(carry: tuple[Array, Array], xs: tuple[Array, Array]) -> tuple[tuple[Array, Array], Array | None]:
            lo, hi = carry
            perms, ok = xs
            t = kernel.kernel(table, perms, params, pc_b)  # [P, Bb]
            if count:
                okb = ok[:, None]
                tie = _is_tie(t, obs_b, tol_b)
                lo = lo + jnp.sum(((t <= obs_b[None, :]) | tie) & okb, axis=0, dtype=jnp.int32)
                hi = hi + jnp.sum(((t >= obs_b[None, :]) | tie) & okb, axis=0, dtype=jnp.int32)
            return (lo, hi), (t if keep_null else None)

        init = (jnp.zeros((b,), jnp.int32), jnp.zeros((b,), jnp.int32))
        (lo, hi), null = jax.lax.scan(step, init, (chunks, valid))
        return lo, hi, null

    return jax.lax.map(one_block, (blocks_, obs, tol, per_curve))


def pad_rows(a: np.ndarray, rows: int, fill: Any) -> np.ndarray:
    """Pad the leading axis of ``a`` to ``rows`` (one compiled shape for every curve chunk)."""
    if a.shape[0] == rows:
        return a
    pad = np.broadcast_to(np.asarray(fill, a.dtype), (rows - a.shape[0],) + a.shape[1:])
    return np.concatenate([a, pad])


def to_blocks(a: np.ndarray, nb: int, dev: Any) -> Array:
    """``[nb * Bb, ...] -> [nb, Bb, ...]`` on the device."""
    return jax.device_put(np.ascontiguousarray(a.reshape(nb, -1, *a.shape[1:])), dev)


def curves_last(a: np.ndarray, nb: int, dev: Any) -> Array:
    """``[nb * Bb, N(, C)] -> [nb, N, Bb(, C)]`` on the device (steps first: a permutation is a row gather)."""
    b = a.reshape(nb, -1, *a.shape[1:])
    return jax.device_put(np.ascontiguousarray(np.swapaxes(b, 1, 2)), dev)


def run_chunk(
    kernel: Kernel, params: Any, dev: Any, block: np.ndarray, null_block: np.ndarray, per_curve: np.ndarray,
    chunks: Array, valid: Array, nb: int, tie_rel: float, count: bool, keep_null: bool,
) -> tuple[Array, Array, Array, Array, Array, Array | None]:
    """Observed statistic, exact moments, tail counts and (optionally) the null for one chunk of curves.

    Ties are judged relative to the observed statistic of the normalised curve, i.e. on the scale of the
    curve's spread, where the statistic is really computed.
    """
    pc = to_blocks(np.asarray(per_curve, block.dtype), nb, dev)
    obs, mean, sd = observed(curves_last(block, nb, dev), params, pc, kernel=kernel, n_steps=chunks.shape[-1])
    tol = tie_rel * jnp.abs(obs)
    lo, hi, null = scan(curves_last(null_block, nb, dev), chunks, valid, obs, tol, params, pc, kernel=kernel,
                        count=count, keep_null=keep_null)
    if null is not None:  # [nb, n_chunks, P, Bb] -> [n_chunks * P, nb * Bb]
        null = jnp.moveaxis(null, 0, 2).reshape(null.shape[1] * null.shape[2], -1)
    return obs.reshape(-1), mean.reshape(-1), sd.reshape(-1), lo.reshape(-1), hi.reshape(-1), null


def scan_inputs(perms: np.ndarray, p: int) -> tuple[np.ndarray, np.ndarray]:
    """Permutations padded to whole scan steps ``[n_chunks, P, N]`` and their validity mask."""
    k, n = perms.shape
    n_chunks = -(-k // p)
    padded = np.concatenate([perms, np.broadcast_to(np.arange(n, dtype=np.int32), (n_chunks * p - k, n))])
    return padded.reshape(n_chunks, p, n), (np.arange(n_chunks * p) < k).reshape(n_chunks, p)


def device_cycle() -> list[Any]:
    """The JAX devices curve chunks are spread over."""
    return list(jax.devices())

