"""Statistic kernels of the shuffle test: ``kernel(prepared, perms [P, N], params, per_curve) -> [P, Bb]``.

A block of curves arrives with the step axis first (``[N, Bb]``, or ``[N, Bb, C]`` for whole output
vectors), so applying a permutation is a row gather. Two-tap stencils (unit or uniform spacing with
np.gradient edges, forward, backward) gather from a table of pairwise distances ``|z_a - z_b|`` (or the
norm of the vector difference), built once per block; wider stencils gather the permuted curve and apply
the stencil as static slices.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

from epg_core._errors import UsageError
from epg_core._numerics._derivative import host_plan
from epg_core._numerics._stats import cell_widths

Runs = tuple[tuple[int, int, tuple[int, ...]], ...]
# Classes added into the distance table per step of its scan (bounds the [pairs, Bb, chunk] intermediate).
CLASS_CHUNK = 8
# Above this many steps no pairwise table is built (it holds N(N+1)/2 entries per curve: 134 MB at float32);
# the shuffle test then gathers the curve itself, and exact moments come from sorting (scalar curves only).
MAX_TABLE_STEPS = 8192
# Bytes of one float64 Gram chunk of the vector table (its [curves, N, C] input plus [curves, N, N] products).
# Small on purpose: chunks of a few MB stay in reused heap memory and cache; 64 MB chunks took 3x as long here
# (fresh pages for every chunk), more than the float64 products themselves (bench_vector, 2026-12-04).
GRAM_BYTES = 8 << 20


class Kernel(NamedTuple):
    """A statistic ready for the scan.

    ``prepare(block)`` builds what ``kernel`` gathers from; ``moments(prepared)`` gives the exact null mean
    and standard deviation per curve, or is None where they are not available.
    """

    kernel: Callable[..., Array]
    prepare: Callable[[Array], Array]
    moments: Callable[[Array], tuple[Array, Array]] | None
    host_table: str | None = None  # a norm: the table is built on the host (``host_pair_table``), not by prepare
    # (N, sum w, K2, K1, K0, vector norm or None, taps a, taps b, weights) of two-tap kernels (``host_moments``)
    moment_consts: tuple[Any, ...] | None = None


def _i32(a: np.ndarray) -> Array:
    """A host index array as an int32 JAX constant (host int64 indices break when x64 is switched)."""
    return jnp.asarray(a, dtype=jnp.int32)


def stencil_runs(idx: Int[np.ndarray, "n w"], widths: Int[np.ndarray, " n"]) -> Runs:
    """Split a stencil plan into runs of consecutive rows with the same tap offsets (static slices)."""
    runs: list[tuple[int, int, tuple[int, ...]]] = []
    for i in range(idx.shape[0]):
        offs = tuple(int(v) - i for v in idx[i, : widths[i]])
        if runs and runs[-1][2] == offs and runs[-1][1] == i:
            runs[-1] = (runs[-1][0], i + 1, offs)
        else:
            runs.append((i, i + 1, offs))
    return tuple(runs)


def two_tap_pairs(
    idx: Int[np.ndarray, "n w"], weights: Float[np.ndarray, "n w"]
) -> tuple[Int[np.ndarray, " n"], Int[np.ndarray, " n"], Float[np.ndarray, " n"]] | None:
    """If every row is ``w * (y[a] - y[b])`` (uniform grids, forward/backward, np.gradient edges), its taps.

    Returns ``(a, b, |w|)`` per row, or None for wider stencils (non-uniform central grids).
    """
    a, b, mag = [], [], []
    for i in range(idx.shape[0]):
        row = weights[i]
        nz = np.nonzero(np.abs(row) > 1e-12 * np.max(np.abs(row)))[0]  # Fornberg rounding on uniform grids
        if len(nz) != 2:
            return None
        wa, wb = weights[i, nz[0]], weights[i, nz[1]]
        if abs(wa + wb) > 1e-12 * max(abs(wa), abs(wb)):
            return None
        a.append(idx[i, nz[1]])
        b.append(idx[i, nz[0]])
        mag.append(abs(wb))
    return np.array(a, np.int32), np.array(b, np.int32), np.array(mag)


def runs_to_plan(runs: Runs, n: int, taps: int) -> Int[np.ndarray, "n w"]:
    """Rebuild the stencil indices of a plan from its runs."""
    idx = np.zeros((n, taps), np.int64)
    for r0, r1, offs in runs:
        for j, o in enumerate(offs):
            idx[r0:r1, j] = np.arange(r0, r1) + o
    return idx


def overlap_weights(a: np.ndarray, b: np.ndarray, w: np.ndarray) -> tuple[float, float, float]:
    """``K_k = sum w_i w_j`` over row pairs whose taps share k = 2, 1, 0 positions (exact-moment constants).

    O(N): rows with the same unordered pair of taps share 2 positions, so ``K2 = sum_pairs W_pair^2``;
    ``sum_positions W_pos^2 = K1 + 2 K2`` (W_pos: weight of the rows touching a position) and
    ``(sum w)^2 = K0 + K1 + K2``.
    """
    a, b, w = np.asarray(a, np.int64), np.asarray(b, np.int64), np.asarray(w, np.float64)
    n = int(max(a.max(), b.max())) + 1
    key = np.minimum(a, b) * n + np.maximum(a, b)
    _, group = np.unique(key, return_inverse=True)
    k2 = float(np.sum(np.bincount(group, weights=w) ** 2))
    pos = np.bincount(a, weights=w, minlength=n) + np.bincount(b, weights=w, minlength=n)
    k1 = float(np.sum(pos * pos)) - 2.0 * k2
    return k2, k1, float(np.sum(w)) ** 2 - k1 - k2


def _pair_table(vector: bool, norm: str, n: int) -> Callable[[Array], Array]:
    """``prepare``: the half table of pairwise distances, row ``hi*(hi+1)/2 + lo`` for ``hi >= lo``."""
    lower = tuple(a.astype(np.int32) for a in np.tril_indices(n))

    def scalar(yt: Array) -> Array:
        l0, l1 = _i32(lower[0]), _i32(lower[1])
        return jnp.abs(yt[l0] - yt[l1])

    def vectors(yt: Array) -> Array:  # yt [N, Bb, C], C a multiple of CLASS_CHUNK (zero padded)
        chunks = jnp.moveaxis(yt.reshape(n, yt.shape[1], -1, CLASS_CHUNK), 2, 0)

        def add(acc: Array, zc: Array) -> tuple[Array, None]:
            d = zc[_i32(lower[0])] - zc[_i32(lower[1])]
            return acc + (jnp.sum(d * d, axis=-1) if norm == "l2" else jnp.sum(jnp.abs(d), axis=-1)), None

        acc, _ = jax.lax.scan(add, jnp.zeros((len(lower[0]), yt.shape[1]), yt.dtype), chunks)
        return jnp.sqrt(acc) if norm == "l2" else acc

    return vectors if vector else scalar


def _table_moments(n: int, mean_w: float, k2: float, k1: float, k0: float) -> Callable[[Array], tuple[Array, Array]]:
    """Exact mean and SD of ``sum_i w_i h(pi(a_i), pi(b_i))`` over uniform permutations, from the half table.

    ``E = D sum w`` with D the mean distance over distinct pairs (Gini's mean difference); the variance sums
    ``w_i w_j Cov`` over row pairs, and the covariance depends only on how many positions the two pairs of taps
    share (2, 1, 0): centred second moments over distinct pairs, triples and quadruples, each O(N^2).
    """
    hi_np, lo_np = (a.astype(np.int32) for a in np.tril_indices(n))
    off_np = hi_np != lo_np
    nn1 = n * (n - 1)
    n3 = nn1 * (n - 2)
    n4 = n3 * (n - 3)

    def moments(table: Array) -> tuple[Array, Array]:
        hi, lo, off = _i32(hi_np), _i32(lo_np), jnp.asarray(off_np)
        d = 2.0 * jnp.sum(table, axis=0) / nn1
        hc = jnp.where(off[:, None], table - d[None, :], 0.0)
        q = 2.0 * jnp.sum(hc * hc, axis=0)
        rows = jax.ops.segment_sum(hc, hi, n) + jax.ops.segment_sum(hc, lo, n)
        r = jnp.sum(rows * rows, axis=0) - q
        f = -2.0 * q - 4.0 * r
        var = k2 * q / nn1
        if n3:
            var = var + k1 * r / n3
        if n4:
            var = var + k0 * f / n4
        return d * mean_w, jnp.sqrt(jnp.maximum(var, 0.0))

    return moments


def host_moments(kernel: Kernel, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The observed statistic and ``kernel.moments`` in float64 numpy for curves ``rows`` as the kernel reads them
    (``[m, N]`` curves, ``[m, N, C]`` output vectors or ``[m, N(N+1)/2]`` host tables): the statistic and the
    exact null moments in exact arithmetic on exactly these values (up to float64 rounding), each curve reduced on
    its own, so a curve gets the same bits alone or in a batch."""
    assert kernel.moment_consts is not None
    n, mean_w, k2, k1, k0, norm, ta, tb, tw = kernel.moment_consts
    hi, lo = _tril(n)
    r64 = np.asarray(rows, np.float64)

    def total(v: np.ndarray) -> np.ndarray:  # sequential along the last axis: the same bits whatever the batch
        return np.cumsum(v, axis=-1)[..., -1]

    if kernel.host_table is not None:
        table = r64
    elif r64.ndim == 2:
        table = np.abs(r64[:, hi] - r64[:, lo])
    else:  # whole output vectors: one curve at a time ([pairs, C] at once)
        table = np.empty((len(r64), len(hi)))
        for i, z in enumerate(r64):
            d = z[hi] - z[lo]
            table[i] = np.sqrt(total(d * d)) if norm == "l2" else total(np.abs(d))
    off = hi != lo
    nn1 = n * (n - 1)
    n3, n4 = nn1 * (n - 2), nn1 * (n - 2) * (n - 3)
    dm = 2.0 * total(table) / nn1
    hc = np.where(off[None, :], table - dm[:, None], 0.0)
    q = 2.0 * total(hc * hc)
    i, j = np.indices((n, n))
    full = hc[:, np.maximum(i, j) * (np.maximum(i, j) + 1) // 2 + np.minimum(i, j)]  # [m, n, n], 0 on the diagonal
    per = total(full)  # the centred distances of each position to all others
    r = total(per * per) - q
    var = k2 * q / nn1
    if n3:
        var = var + k1 * r / n3
    if n4:
        var = var + k0 * (-2.0 * q - 4.0 * r) / n4
    a, b = np.asarray(ta, np.int64), np.asarray(tb, np.int64)
    top, bottom = np.maximum(a, b), np.minimum(a, b)
    obs = total(table[:, top * (top + 1) // 2 + bottom] * np.asarray(tw)[None, :])
    return obs, dm * mean_w, np.sqrt(np.maximum(var, 0.0))


def prebuilt(table: Array) -> Array:
    """``prepare`` of kernels whose table was built on the host (``host_pair_table``)."""
    return table


@functools.lru_cache(maxsize=8)
def _tril(n: int) -> tuple[np.ndarray, np.ndarray]:
    return tuple(a.astype(np.int64) for a in np.tril_indices(n))  # type: ignore[return-value]


@functools.partial(jax.jit, static_argnames=("n", "out"))
def _gram_tables(z: Array, perm: Array, *, n: int, out: str) -> tuple[Array, Array]:
    """Half tables ``[B, N(N+1)/2]`` of one padded chunk and of its relabelled curves ``z[b, perm[b]]``, computed
    in float64 and rounded to ``out`` once at the end (traced with x64 enabled)."""
    hi, lo = (_i32(a) for a in np.tril_indices(n))
    z = z.astype(jnp.float64)
    sq = jnp.sum(z * z, axis=-1)
    gram = jax.lax.map(lambda a: a @ a.T, z)  # one BLAS product per curve (faster than a batched einsum)
    flat = (sq[:, :, None] + sq[:, None, :] - 2.0 * gram).reshape(z.shape[0], n * n)

    def table(a: Array, c: Array) -> Array:  # a, c: [B, P] step indices
        d2 = jnp.take_along_axis(flat, a * n + c, axis=1)
        return jnp.where(a == c, 0.0, jnp.sqrt(jnp.maximum(d2, 0.0))).astype(out)

    b = z.shape[0]
    return (table(jnp.broadcast_to(hi, (b, hi.shape[0])), jnp.broadcast_to(lo, (b, lo.shape[0]))),
            table(perm[:, hi], perm[:, lo]))


def host_pair_table(z: Float[np.ndarray, "b n c"], relabel: Int[np.ndarray, "b n"] | None = None,
                    dtype: Any = np.float64) -> tuple[np.ndarray, np.ndarray]:
    """The half tables of L2 distances between the output vectors of every curve's steps (and of the curves
    relabelled by ``relabel``, None: the same), computed in float64 as matrix products and returned in ``dtype``:
    ``|a - b|^2 = |a|^2 + |b|^2 - 2 a.b`` (the curves arrive normalised: each output centred on its midrange).

    float64 accumulation (a scoped ``jax.enable_x64``, whatever the test's precision) keeps the cancellation
    of close vectors (adjacent steps of a smooth curve) far below float32 resolution; rows are
    ``hi*(hi+1)/2 + lo`` as in ``_pair_table``. Chunks of ``GRAM_BYTES`` bound the memory. The curves travel
    to the device in float64 whatever ``dtype``: rounding them to float32 first would cost up to 6e-4 relative on
    steps that differ by 1e-4 of the curve's spread (eps32 |z| / |z_a - z_b|); only the finished distances are
    rounded to ``dtype`` (6e-8 relative for float32). See ``tests/core/test_vector_blas.py``.
    """
    b, n, c = z.shape
    out = np.empty((b, n * (n + 1) // 2), dtype)
    out_r = out if relabel is None else np.empty_like(out)
    step = max(1, min(b, GRAM_BYTES // (8 * n * (c + 2 * n))))
    ident = np.broadcast_to(np.arange(n, dtype=np.int32), (b, n))
    perm_all = ident if relabel is None else relabel
    with jax.enable_x64(True):
        for s0 in range(0, b, step):
            chunk = np.asarray(z[s0:s0 + step], np.float64)
            perm = np.asarray(perm_all[s0:s0 + step], np.int32)
            rows = len(chunk)
            if rows < step:
                chunk = np.concatenate([chunk, np.zeros((step - rows,) + chunk.shape[1:])])
                perm = np.concatenate([perm, ident[: step - rows]])
            t, t_r = _gram_tables(jnp.asarray(chunk), jnp.asarray(perm), n=n, out=np.dtype(dtype).name)
            out[s0:s0 + rows] = np.asarray(t)[:rows]
            if relabel is not None:
                out_r[s0:s0 + rows] = np.asarray(t_r)[:rows]
    return out, out_r


def relabel_table(table: Float[np.ndarray, "b p"], perm: Int[np.ndarray, "b n"]) -> Float[np.ndarray, "b p"]:
    """The table of the relabelled curves ``z[b, perm[b]]`` from the table of ``z`` (a gather of its rows)."""
    n = perm.shape[1]
    hi, lo = _tril(n)
    a, c = perm[:, hi].astype(np.int64), perm[:, lo].astype(np.int64)
    top, bottom = np.maximum(a, c), np.minimum(a, c)
    return np.take_along_axis(table, top * (top + 1) // 2 + bottom, axis=1)


@functools.lru_cache(maxsize=64)
def epg_kernel(runs: Runs, static_w: bytes, static_c: bytes, n: int, taps: int, vector: bool, norm: str) -> Kernel:
    """EPG kernel for one stencil plan and grid (weights are compile-time constants)."""
    w_np = np.frombuffer(static_w, dtype=np.float64).reshape(n, taps)
    c_np = np.frombuffer(static_c, dtype=np.float64)
    idx = runs_to_plan(runs, n, taps)
    pairs = two_tap_pairs(idx, np.where(idx >= 0, w_np, 0.0)) if n <= MAX_TABLE_STEPS else None

    if pairs is not None:
        a_np, b_np, mag = pairs
        coef_np = c_np * mag

        def kernel(table: Array, perms: Array, params: Any, per_curve: Array) -> Array:
            pa, pb = perms[:, _i32(a_np)], perms[:, _i32(b_np)]
            hi, lo = jnp.maximum(pa, pb), jnp.minimum(pa, pb)
            rows = hi * (hi + 1) // 2 + lo  # [P, N] composed pair indices
            coef = jnp.asarray(coef_np, table.dtype)
            return jnp.sum(table[rows] * coef[None, :, None], axis=1)

        consts = overlap_weights(a_np, b_np, coef_np)
        moments = _table_moments(n, float(np.sum(coef_np)), *consts)
        mc = (n, float(np.sum(coef_np)), *consts, norm if vector else None, tuple(a_np.tolist()),
              tuple(b_np.tolist()), tuple(coef_np.tolist()))
        if vector and norm == "l2":  # matrix products on the host (float64), not element by element
            return Kernel(kernel, prebuilt, moments, "l2", mc)
        return Kernel(kernel, _pair_table(vector, norm, n), moments, None, mc)

    def magnitude(v: Array) -> Array:
        if not vector:
            return jnp.abs(v)
        return jnp.sqrt(jnp.sum(v * v, axis=-1)) if norm == "l2" else jnp.sum(jnp.abs(v), axis=-1)

    def kernel_slices(yt: Array, perms: Array, params: Any, per_curve: Array) -> Array:
        z = yt[perms]  # [P, N, Bb(, C)]: a row gather, curves contiguous
        extra = (None,) * (z.ndim - 2)
        total = jnp.zeros((perms.shape[0], yt.shape[1]), yt.dtype)
        for r0, r1, offs in runs:
            acc = None
            for j, o in enumerate(offs):
                col = w_np[r0:r1, j]
                if not np.any(col):
                    continue
                wj = (jnp.asarray(col, z.dtype)[(None, slice(None), *extra)] if np.ptp(col)
                      else jnp.asarray(col[0], z.dtype))
                term = z[:, r0 + o:r1 + o] * wj
                acc = term if acc is None else acc + term
            if acc is not None:
                total = total + jnp.sum(magnitude(acc) * jnp.asarray(c_np[r0:r1], z.dtype)[None, :, None], axis=1)
        return total

    return Kernel(kernel_slices, identity, None)


def identity(yt: Array) -> Array:
    """Kernels that gather from the curves themselves need no table."""
    return yt


def pearson_kernel(yt: Array, perms: Array, params: tuple[Array], per_curve: Array) -> Array:
    """Pearson's rho of every permuted curve (means and norms are permutation invariant)."""
    (xn,) = params  # [N] centred unit-norm grid; per_curve: [B] 1/||y - mean|| (NaN if constant)
    return jnp.sum(yt[perms] * xn[None, :, None], axis=1) * per_curve[None, :]


@functools.lru_cache(maxsize=32)
def callable_kernel(fn: Callable[..., Array], options: tuple[tuple[str, Any], ...]) -> Kernel:
    """Wrap a user statistic ``fn(y[N], x[N], **options) -> scalar`` into a batched kernel."""
    kw = dict(options)

    def kernel(yt: Array, perms: Array, params: tuple[Array], per_curve: Array) -> Array:
        (grid,) = params
        z = jnp.moveaxis(yt[perms], 1, 2)  # [P, B, N]
        return jax.vmap(jax.vmap(lambda c: fn(c, grid, **kw)))(z)

    return Kernel(kernel, identity, None)


def unit_norm_grid(grid: Float[np.ndarray, " n"]) -> Float[np.ndarray, " n"]:
    """The centred grid scaled to unit norm (Pearson's x side)."""
    xc = grid - grid.mean()
    return xc / np.linalg.norm(xc)


def make_epg_kernel(n: int, x: Any, weighting: str, vector: bool, norm: str, options: dict[str, Any]) -> Kernel:
    """The EPG kernel for ``n`` steps on grid ``x`` (None: unit spacing) with the derivative ``options``."""
    if weighting not in ("mean", "trapezoid"):
        raise UsageError(f"unknown weighting {weighting!r}; use 'mean' or 'trapezoid'")
    grid = np.arange(n, dtype=np.float64) if x is None else np.asarray(x, np.float64)
    coef = np.full((n,), 1.0 / n) if weighting == "mean" else np.asarray(cell_widths(grid, xp=np))
    idx, widths, w = host_plan(n, x, **options)
    return epg_kernel(stencil_runs(idx, widths), w.tobytes(), coef.tobytes(), n, idx.shape[1], vector, norm)
