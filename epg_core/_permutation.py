"""The shuffle test of paper Algorithm 1, for whole batches of curves in one jitted call.

Layout (why it is fast): all curves with the same number of steps share one cached set of K permutation
index arrays; curves are stored along the fast (last) axis, so applying a permutation is a row gather;
gather + stencil + |.| + mean + tie-aware counting are fused in one ``lax.scan`` over chunks of
permutations, and only counts leave the loop unless the null distribution is asked for. Memory is bounded
by the chunk size whatever the batch (curves are processed in chunks too).

Each curve is first relabelled once by its own random permutation (seeded by the seed and the curve's
content), so sharing the permutations across curves does not correlate their Monte-Carlo errors, a
curve gets the same p-value alone or inside a batch, and every curve's test stays exact: the null uses
``sigma_b o pi_k``, which for fixed ``sigma_b`` are i.i.d. uniform permutations.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from epg_core._derivative import check_curves, check_grid, host_plan
from epg_core._stats import cell_widths

Alternative = Literal["two-sided", "less", "greater", "centered"]
ALTERNATIVES: tuple[str, ...] = ("two-sided", "less", "greater", "centered")

# Bytes of the gathered intermediate of one scan step ([P perms, N steps, Bb curves]).
CHUNK_BYTES = 512 << 10
# Curves per device call; the last chunk is padded to keep one compiled shape.
CURVE_CHUNK = 2048
# Curves scanned together (a block); its pairwise-difference table is capped by TABLE_BYTES.
BLOCK_CURVES = 128
TABLE_BYTES = 64 << 20
# Ties within this many ulps (relative to the statistic's scale) count as equal.
TIE_ULPS = 16


class PermutationResult(NamedTuple):
    """Result of ``permutation_test``; arrays are shaped like the batch (``null``: batch + ``[K]``)."""

    statistic: np.ndarray
    pvalue: np.ndarray
    significant: np.ndarray
    n_permutations: int
    exact: bool
    null: np.ndarray | None = None


# --------------------------------------------------------------------------------------------------
# Permutation index sets (host side, cached: JAX's own permutation/argsort on CPU is slow)


def _splitmix64(z: np.ndarray) -> np.ndarray:
    """Vectorised SplitMix64 finaliser: a fast, well-mixed 64-bit hash."""
    z = z.astype(np.uint64, copy=True)
    with np.errstate(over="ignore"):
        z += np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return z


@functools.lru_cache(maxsize=8)
def _random_permutations(n: int, k: int, seed: int) -> np.ndarray:
    """K random permutations of ``range(n)`` as int32 ``[k, n]`` (cached per n, k, seed)."""
    # argsort of i.i.d. float64 keys is a uniform permutation (ties have probability ~n^2 2^-54) and is
    # 1.5x faster than Generator.permuted; SFC64 is numpy's fastest bit generator.
    rng = np.random.Generator(np.random.SFC64(np.random.SeedSequence([seed, n, 0x5EED])))
    perms = np.argsort(rng.random((k, n)), axis=1).astype(np.int32)
    perms.setflags(write=False)
    return perms


@functools.lru_cache(maxsize=8)
def _all_permutations(n: int) -> np.ndarray:
    """All ``n!`` orderings (identity first) as int32 ``[n!, n]``."""
    perms = np.array(list(itertools.permutations(range(n))), dtype=np.int32)
    perms.setflags(write=False)
    return perms


def clear_cache() -> None:
    """Forget cached permutation sets (benchmarks use it to time generation)."""
    _random_permutations.cache_clear()
    _all_permutations.cache_clear()


def _relabellings(y: np.ndarray, seed: int) -> np.ndarray:
    """One random permutation per curve, seeded by ``seed`` and the curve's bytes: ``[B, n]``."""
    b, n = y.shape
    bits = np.ascontiguousarray(y).view(np.uint8).reshape(b, -1)
    words = bits.view(np.uint32) if bits.shape[1] % 4 == 0 else bits
    mult = _splitmix64(np.arange(words.shape[1], dtype=np.uint64) + np.uint64(seed & 0xFFFFFFFF))
    mult |= np.uint64(1)
    with np.errstate(over="ignore"):
        h = (words.astype(np.uint64) * mult[None, :]).sum(axis=1, dtype=np.uint64)
        keys = _splitmix64(_splitmix64(h ^ np.uint64(seed & 0xFFFFFFFFFFFF))[:, None]
                           + np.arange(n, dtype=np.uint64)[None, :] * np.uint64(0x9E3779B97F4A7C15))
    return np.argsort(keys, axis=1, kind="stable").astype(np.int32)


# --------------------------------------------------------------------------------------------------
# Statistic kernels: (YT [N, B], perms [P, N], params) -> [P, B]


def _stencil_runs(idx: np.ndarray, widths: np.ndarray) -> tuple[tuple[int, int, tuple[int, ...]], ...]:
    """Split a stencil plan into runs of consecutive rows with the same tap offsets (static slices)."""
    runs: list[tuple[int, int, tuple[int, ...]]] = []
    for i in range(idx.shape[0]):
        offs = tuple(int(v) - i for v in idx[i, : widths[i]])
        if runs and runs[-1][2] == offs and runs[-1][1] == i:
            runs[-1] = (runs[-1][0], i + 1, offs)
        else:
            runs.append((i, i + 1, offs))
    return tuple(runs)


def _two_tap_pairs(idx: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """If every row is ``w * (y[a] - y[b])`` (uniform grids, forward/backward, np.gradient edges), its taps.

    Returns ``(a, b, |w|)`` per row, or None for wider stencils (non-uniform central grids).
    """
    a, b, mag = [], [], []
    for i in range(idx.shape[0]):
        nz = np.nonzero(weights[i])[0]
        if len(nz) != 2:
            return None
        wa, wb = weights[i, nz[0]], weights[i, nz[1]]
        if abs(wa + wb) > 1e-12 * max(abs(wa), abs(wb)):
            return None
        a.append(idx[i, nz[1]]), b.append(idx[i, nz[0]]), mag.append(abs(wb))
    return np.array(a, np.int32), np.array(b, np.int32), np.array(mag)


@functools.lru_cache(maxsize=64)
def _epg_kernel(
    runs: tuple[tuple[int, int, tuple[int, ...]], ...], static_w: bytes, static_c: bytes, n: int, taps: int,
) -> tuple[Callable[..., Array], Callable[[Array], Array]]:
    """EPG kernel for one stencil plan and grid (weights are compile-time constants).

    Returns ``(kernel, prepare)``: ``prepare(yt)`` builds what the kernel gathers from, once per curve
    chunk. Two-tap stencils gather from a table of pairwise differences ``|y_a - y_b|`` (one row gather per
    term, no arithmetic); wider stencils gather the permuted curve once and apply the stencil as slices.
    """
    w_np = np.frombuffer(static_w, dtype=np.float64).reshape(n, taps)
    c_np = np.frombuffer(static_c, dtype=np.float64)
    idx = np.zeros((n, taps), np.int64)
    for r0, r1, offs in runs:
        for j, o in enumerate(offs):
            idx[r0:r1, j] = np.arange(r0, r1) + o
    pairs = _two_tap_pairs(idx, np.where(idx >= 0, w_np, 0.0))

    if pairs is not None:
        a_np, b_np, mag = pairs
        coef_np = c_np * mag

        lower = np.tril_indices(n)  # row hi*(hi+1)/2 + lo holds |y_hi - y_lo| (half the table, hotter cache)

        def prepare(yt: Array) -> Array:
            return jnp.abs(yt[:, None, :] - yt[None, :, :])[lower[0], lower[1]]

        def kernel(table: Array, perms: Array, params: Any, per_curve: Array) -> Array:
            pa, pb = perms[:, a_np], perms[:, b_np]
            hi, lo = jnp.maximum(pa, pb), jnp.minimum(pa, pb)
            rows = hi * (hi + 1) // 2 + lo  # [P, N] composed pair indices
            coef = jnp.asarray(coef_np, table.dtype)
            return jnp.sum(table[rows] * coef[None, :, None], axis=1)

        return kernel, prepare

    def kernel_slices(yt: Array, perms: Array, params: Any, per_curve: Array) -> Array:
        z = yt[perms]  # [P, N, B]: a row gather, curves contiguous
        total = None
        for r0, r1, offs in runs:
            acc = None
            for j, o in enumerate(offs):
                col = w_np[r0:r1, j]
                if not np.any(col):
                    continue
                wj = jnp.asarray(col, z.dtype)[None, :, None] if np.ptp(col) else jnp.asarray(col[0], z.dtype)
                term = z[:, r0 + o:r1 + o, :] * wj
                acc = term if acc is None else acc + term
            if acc is None:
                continue
            part = jnp.sum(jnp.abs(acc) * jnp.asarray(c_np[r0:r1], z.dtype)[None, :, None], axis=1)
            total = part if total is None else total + part
        return total if total is not None else jnp.zeros((perms.shape[0], yt.shape[1]), yt.dtype)

    return kernel_slices, _identity


def _identity(yt: Array) -> Array:
    """Kernels that gather from the curves themselves need no table."""
    return yt


@functools.partial(jax.jit, static_argnames=("prepare",))
def _prepare(prepare: Callable[[Array], Array], yt: Array) -> Array:
    return prepare(yt)


def _pearson_kernel(yt: Array, perms: Array, params: tuple[Array], per_curve: Array) -> Array:
    """Pearson's rho of every permuted curve (means and norms are permutation invariant)."""
    (xn,) = params  # [N] centred unit-norm grid; per_curve: [B] 1/||y - mean|| (NaN if constant)
    return jnp.sum(yt[perms] * xn[None, :, None], axis=1) * per_curve[None, :]


@functools.lru_cache(maxsize=32)
def _callable_kernel(fn: Callable[..., Array], options: tuple[tuple[str, Any], ...]) -> Callable[..., Array]:
    """Wrap a user statistic ``fn(y[N], x[N], **options) -> scalar`` into a batched kernel."""
    kw = dict(options)

    def kernel(yt: Array, perms: Array, params: tuple[Array], per_curve: Array) -> Array:
        (grid,) = params
        z = jnp.moveaxis(yt[perms], 1, 2)  # [P, B, N]
        return jax.vmap(jax.vmap(lambda c: fn(c, grid, **kw)))(z)

    return kernel


# --------------------------------------------------------------------------------------------------
# The fused scan


def _is_tie(t: Array, obs: Array, tol: Array) -> Array:
    both_nan = jnp.isnan(t) & jnp.isnan(obs)[None, :]
    return both_nan | (jnp.abs(t - obs[None, :]) <= tol[None, :])


@functools.partial(jax.jit, static_argnames=("kernel", "prepare"))
def _observed(yt_blocks: Array, params: Any, per_curve: Array, *, kernel: Callable[..., Array],
              prepare: Callable[[Array], Array]) -> Array:
    """The statistic of every curve in its true order: ``[nb, Bb]``."""
    ident = jnp.arange(yt_blocks.shape[1], dtype=jnp.int32)[None, :]
    return jax.lax.map(lambda a: kernel(prepare(a[0]), ident, params, a[1])[0], (yt_blocks, per_curve))


@functools.partial(jax.jit, static_argnames=("kernel", "prepare", "mode", "keep_null"))
def _scan(
    yt_blocks: Array, chunks: Array, valid: Array, obs: Array, tol: Array, centre: Array, params: Any,
    per_curve: Array,
    *, kernel: Callable[..., Array], prepare: Callable[[Array], Array], mode: str, keep_null: bool,
) -> tuple[Array, Array, Array | None]:
    """For each block of curves (sequentially, so its table stays small and hot), scan the permutation
    chunks; return (#T<=obs, #T>=obs) or (sum T, #|T-c|>=|obs-c|) per curve, and the null if asked."""

    def one_block(args: tuple[Array, ...]) -> tuple[Array, Array, Array | None]:
        yt, obs_b, tol_b, centre_b, pc_b = args
        table = prepare(yt)
        b = yt.shape[1]

        def step(carry: tuple[Array, Array], xs: tuple[Array, Array]) -> tuple[tuple[Array, Array], Array | None]:
            a, c = carry
            perms, ok = xs
            t = kernel(table, perms, params, pc_b)  # [P, Bb]
            okb = ok[:, None]
            if mode == "sum":
                a = a + jnp.sum(jnp.where(okb, t, 0.0), axis=0)
            elif mode == "centered":
                far = jnp.abs(t - centre_b[None, :]) >= jnp.abs(obs_b - centre_b)[None, :] - tol_b[None, :]
                far = far | _is_tie(t, obs_b, tol_b)
                a = a + jnp.sum(far & okb, axis=0, dtype=jnp.int32)
            else:
                tie = _is_tie(t, obs_b, tol_b)
                a = a + jnp.sum(((t <= obs_b[None, :]) | tie) & okb, axis=0, dtype=jnp.int32)
                c = c + jnp.sum(((t >= obs_b[None, :]) | tie) & okb, axis=0, dtype=jnp.int32)
            return (a, c), (t if keep_null else None)

        acc_dtype = yt.dtype if mode == "sum" else jnp.int32
        init = (jnp.zeros((b,), acc_dtype), jnp.zeros((b,), jnp.int32))
        (a, c), null = jax.lax.scan(step, init, (chunks, valid))
        return a, c, null

    return jax.lax.map(one_block, (yt_blocks, obs, tol, centre, per_curve))


# --------------------------------------------------------------------------------------------------
# Public entry point


def _validate(alternative: str, n_permutations: int, exact: Any, alpha: float) -> None:
    if alternative not in ALTERNATIVES:
        raise ValueError(f"unknown alternative {alternative!r}; use one of {', '.join(ALTERNATIVES)}")
    if int(n_permutations) < 1:
        raise ValueError(f"n_permutations must be >= 1, got {n_permutations}")
    if exact not in ("auto", True, False):
        raise ValueError(f"exact must be 'auto', True or False, got {exact!r}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")


class _Setup(NamedTuple):
    """A statistic ready for the scan: kernel, table builder, shared/per-curve parameters, tie scales."""

    kernel: Callable[..., Array]
    prepare: Callable[[Array], Array]
    params: Any
    per_curve: np.ndarray
    scale: np.ndarray


def _kernel_setup(
    statistic: str | Callable[..., Array], y: np.ndarray, x: ArrayLike | None, dtype: Any,
    options: dict[str, Any],
) -> _Setup:
    """Pick the kernel for ``statistic``; ``scale`` is the magnitude of its rounding per curve (for ties)."""
    n = y.shape[-1]
    grid = np.arange(n, dtype=np.float64) if x is None else np.asarray(x, np.float64)
    if statistic == "epg":
        weighting = options.pop("weighting", "mean")
        if weighting not in ("mean", "trapezoid"):
            raise ValueError(f"unknown weighting {weighting!r}; use 'mean' or 'trapezoid'")
        c = np.full((n,), 1.0 / n) if weighting == "mean" else cell_widths(grid, xp=np)
        idx, widths, w = host_plan(n, x, **options)
        kernel, prepare = _epg_kernel(_stencil_runs(idx, widths), w.tobytes(), c.tobytes(), n, idx.shape[1])
        scale = np.max(np.abs(y), axis=1) * float(np.max(np.sum(np.abs(w), axis=1)))
        return _Setup(kernel, prepare, (), np.zeros(y.shape[0]), scale)
    if statistic == "pearson":
        if options:
            raise ValueError(f"pearson takes no options, got {sorted(options)}")
        xc = grid - grid.mean()
        xn = jnp.asarray(xc / np.linalg.norm(xc), dtype)
        yc = y - y.mean(axis=1, keepdims=True)
        ss = np.sum(yc * yc, axis=1)
        floor = (n * np.finfo(y.dtype).eps * np.max(np.abs(y), axis=1)) ** 2
        with np.errstate(divide="ignore", invalid="ignore"):
            inv = np.where(ss <= floor, np.nan, 1.0 / np.sqrt(ss))
        return _Setup(_pearson_kernel, _identity, (xn,), inv, np.ones(y.shape[0]))
    if callable(statistic):
        kernel = _callable_kernel(statistic, tuple(sorted(options.items())))
        return _Setup(kernel, _identity, (jnp.asarray(grid, dtype),), np.zeros(y.shape[0]), np.zeros(y.shape[0]))
    raise ValueError(f"unknown statistic {statistic!r}; use 'epg', 'pearson' or a callable f(y, x)")


def _perm_chunk(n: int, n_curves: int, itemsize: int, k: int) -> int:
    """Permutations per scan step so that the [P, N, Bb] intermediate stays under CHUNK_BYTES."""
    per_perm = max(1, n * n_curves * itemsize)
    return int(max(1, min(k, CHUNK_BYTES // per_perm, 1024)))


def permutation_test(
    y: Float[ArrayLike, "*batch n"],
    x: Float[ArrayLike, " n"] | None = None,
    *,
    statistic: str | Callable[..., Array] = "epg",
    n_permutations: int = 10_000,
    alternative: Alternative = "two-sided",
    seed: int = 0,
    alpha: float = 0.01,
    exact: bool | Literal["auto"] = "auto",
    return_null: bool = False,
    axis: int = -1,
    **statistic_options: Any,
) -> PermutationResult:
    """Shuffle test of the statistic of every curve in ``y`` against random orderings of its own outputs.

    A real, smooth effect has a *smaller* EPG than its shuffles (lower tail); "two-sided" (default) looks
    at both tails. p-values: "less" ``(#{T<=t}+1)/(K+1)``, "greater" ``(#{T>=t}+1)/(K+1)``, "two-sided"
    ``min(1, 2 min(p_less, p_greater))``, "centered" the authors' ``#{|T-mean|>=|t-mean|}/K``. When
    ``N! <= n_permutations`` (``exact="auto"``) all orderings are enumerated and p is exact (no +1).
    """
    _validate(alternative, n_permutations, exact, alpha)
    ya = jnp.asarray(y)
    if not jnp.issubdtype(ya.dtype, jnp.floating):
        ya = ya.astype(jnp.result_type(float))
    ya = jnp.moveaxis(ya, axis, -1)
    batch, n = ya.shape[:-1], ya.shape[-1]
    if n < 2:
        raise ValueError(f"a curve needs at least 2 steps, got {n}")
    check_curves(ya)
    if x is not None:
        if np.ndim(x) != 1:
            raise ValueError(f"the shuffle test needs one grid x of shape [{n}] shared by all curves, got shape {np.shape(x)}")
        check_grid(x, n)
    dtype = ya.dtype
    y2 = np.asarray(ya).reshape(-1, n)
    n_curves = y2.shape[0]

    use_exact = exact is True or (exact == "auto" and math.factorial(n) <= n_permutations)
    if use_exact:
        if math.factorial(n) > 3_628_800:
            raise ValueError(f"exact enumeration of {n}! orderings is too large; use exact=False")
        perms = _all_permutations(n)
        relabel = None
    else:
        perms = _random_permutations(n, int(n_permutations), int(seed))
        relabel = _relabellings(y2, int(seed))
    k = perms.shape[0]

    setup = _kernel_setup(statistic, y2, x, dtype, dict(statistic_options))
    devices = jax.devices()
    itemsize = np.dtype(dtype).itemsize
    bb, nb = _blocks(n_curves, n, itemsize, len(devices), setup.prepare is not _identity)
    bc = bb * nb
    p = _perm_chunk(n, bb, itemsize, k)
    n_chunks = -(-k // p)
    padded = np.concatenate([perms, np.broadcast_to(np.arange(n, dtype=np.int32), (n_chunks * p - k, n))])
    chunks_host = padded.reshape(n_chunks, p, n)
    valid_host = (np.arange(n_chunks * p) < k).reshape(n_chunks, p)
    on_device: dict[Any, tuple[Array, Array]] = {}

    pieces = []  # dispatched asynchronously on every device, collected afterwards
    for ci, start in enumerate(range(0, n_curves, bc)):
        dev = devices[ci % len(devices)]
        if dev not in on_device:
            on_device[dev] = (jax.device_put(chunks_host, dev), jax.device_put(valid_host, dev))
        chunks, valid = on_device[dev]
        sl = slice(start, start + bc)
        block = _pad_rows(y2[sl], bc, 0.0)  # padded curves are constant and dropped below
        null_block = block if relabel is None else np.take_along_axis(
            block, _pad_rows(relabel[sl], bc, np.arange(n, dtype=np.int32)), axis=1)
        pieces.append(_test_chunk(
            setup, dev, block, null_block, chunks, valid, _pad_rows(setup.per_curve[sl], bc, np.nan),
            _pad_rows(setup.scale[sl], bc, 0.0), k, alternative, return_null, nb,
        ) + (min(bc, n_curves - start),))

    def collect(j: int) -> np.ndarray:
        return np.concatenate([np.asarray(piece[j])[..., : piece[-1]] for piece in pieces], axis=-1)

    a, c = collect(1).astype(np.float64), collect(2).astype(np.float64)
    pvalue = _pvalues(a, c, k, alternative, use_exact).reshape(batch)
    null_v = None
    if return_null:
        null_v = collect(3).reshape(n_chunks * p, n_curves)[:k].T.reshape(batch + (k,))
    return PermutationResult(
        statistic=collect(0).reshape(batch), pvalue=pvalue, significant=pvalue < alpha,
        n_permutations=int(k), exact=bool(use_exact), null=null_v,
    )


def _pad_rows(a: np.ndarray, rows: int, fill: Any) -> np.ndarray:
    """Pad the leading axis of ``a`` to ``rows`` (one compiled shape for every curve chunk)."""
    if a.shape[0] == rows:
        return a
    pad = np.broadcast_to(np.asarray(fill, a.dtype), (rows - a.shape[0],) + a.shape[1:])
    return np.concatenate([a, pad])


def _blocks(n_curves: int, n: int, itemsize: int, n_devices: int, uses_table: bool) -> tuple[int, int]:
    """(curves per block, blocks per device call). Blocks are scanned one after the other, so each block's
    pairwise table ``[N(N+1)/2, Bb]`` stays small and hot; a call holds at most CURVE_CHUNK curves per device."""
    per_call = max(1, min(n_curves, CURVE_CHUNK, -(-n_curves // n_devices)))
    limit = BLOCK_CURVES
    if uses_table:
        limit = min(limit, max(1, TABLE_BYTES // (n * n * itemsize)))
    nb = -(-per_call // limit)
    bb = -(-per_call // nb)
    if bb >= 8:  # whole SIMD lanes per gathered row
        bb = -(-bb // 8) * 8
    return bb, nb


def _test_chunk(
    setup: _Setup, dev: Any, block: np.ndarray, null_block: np.ndarray, chunks: Array, valid: Array,
    per_curve: np.ndarray, scale: np.ndarray, k: int, alternative: str, return_null: bool, nb: int,
) -> tuple[Array, Array, Array, Array | None]:
    """Observed statistic and tail counts (and the null) for one chunk of curves on one device."""
    dtype = block.dtype
    n = block.shape[1]

    def blocks(a: np.ndarray) -> Array:  # [nb * Bb, ...] -> [nb, Bb, ...] on the device
        return jax.device_put(np.ascontiguousarray(a.reshape(nb, -1, *a.shape[1:])), dev)

    def curves_last(a: np.ndarray) -> Array:  # [nb * Bb, N] -> [nb, N, Bb]
        return jax.device_put(np.ascontiguousarray(a.reshape(nb, -1, n).transpose(0, 2, 1)), dev)

    pc = blocks(np.asarray(per_curve, dtype))
    obs = _observed(curves_last(block), setup.params, pc, kernel=setup.kernel, prepare=setup.prepare)
    tol = TIE_ULPS * float(np.finfo(dtype).eps) * (jnp.abs(obs) + blocks(np.asarray(scale, dtype)))
    run = functools.partial(_scan, curves_last(null_block), chunks, valid, obs, tol, kernel=setup.kernel,
                            prepare=setup.prepare)
    if alternative == "centered":
        total, _, null = run(obs, setup.params, pc, mode="sum", keep_null=return_null)
        a, c, _ = run(total / k, setup.params, pc, mode="centered", keep_null=False)
    else:
        a, c, null = run(obs, setup.params, pc, mode="count", keep_null=return_null)
    if null is not None:  # [nb, n_chunks, P, Bb] -> [n_chunks * P, nb * Bb]
        null = jnp.moveaxis(null, 0, 2).reshape(null.shape[1] * null.shape[2], -1)
    return obs.reshape(-1), a.reshape(-1), c.reshape(-1), null


def _pvalues(a: np.ndarray, c: np.ndarray, k: int, alternative: str, exact: bool) -> np.ndarray:
    """Counts to p-values (``+1`` on both sides for Monte Carlo, none for exact enumeration)."""
    if alternative == "centered":
        return np.minimum(1.0, a / k)
    plus = 0 if exact else 1
    p_less = (a + plus) / (k + plus)
    p_greater = (c + plus) / (k + plus)
    if alternative == "less":
        return p_less
    if alternative == "greater":
        return p_greater
    return np.minimum(1.0, 2.0 * np.minimum(p_less, p_greater))
