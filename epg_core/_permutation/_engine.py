"""The shuffle test of paper Algorithm 1, for whole batches of curves in one jitted call per chunk.

Every curve is first normalised on the host in float64, ``z = (y - midrange) / half-range`` (one scale per
curve, shared by all its outputs), and the test runs on ``z``. The statistic of ``a*y + c`` is then ``|a|``
times that of ``y`` with the same bits in its counts: ``y``, ``1 - y`` and ``a*y + c`` get identical p-values
and decisions, ties are judged on the scale of the curve's spread (not of its magnitude, which would swallow
the whole effect of a saturated probability in float32), and float32 keeps the resolution of the data.

All curves with the same number of steps share one cached set of K permutations; each curve is relabelled
once by its own permutation seeded from its canonical normalised shape (see ``_perm_sets``), so a curve gets
the same p-value alone or inside a batch and every test stays exact: the null uses ``sigma_b o pi_k``, i.i.d.
uniform permutations for fixed ``sigma_b``.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from typing import Any, Literal, NamedTuple

import jax
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from epg_core._errors import DataError, UsageError
from epg_core._numerics._derivative import check_curves, check_grid
from epg_core._permutation._kernels import (
    CLASS_CHUNK,
    Kernel,
    host_pair_table,
    identity,
)
from epg_core._permutation._scan import CHUNK_BYTES as CHUNK_BYTES
from epg_core._permutation._scan import blocks, pad_rows, perm_chunk, run_chunk, scan_inputs
from epg_core._permutation._sequential import SEQ_CURVES, run_sequential
from epg_core._permutation._sets import all_permutations, random_permutations, relabellings
from epg_core._statistics._base import Statistic, StatisticSetup
from epg_core._statistics._lookup import get_statistic, resolve_statistic, statistic_names

Alternative = Literal["two-sided", "less", "greater", "centered"]
Precision = Literal["float32", "float64"]
ALTERNATIVES: tuple[str, ...] = ("two-sided", "less", "greater", "centered")
METHODS: tuple[str, ...] = ("fixed", "sequential")
PRECISIONS: tuple[str, ...] = ("float32", "float64")
# Two statistics closer than TIE_ULPS * N ulps of the observed one (on the normalised scale) are a tie: the
# bound of the rounding of an N-term sum, so a shuffle equal to the true order up to summation order ties.
TIE_ULPS = 2
# The K shared shuffles of N steps are made once (float64 sort keys, int32 indices): refused above PERM_BYTES,
# so that a file claiming millions of steps (or a huge K) fails with one line instead of exhausting memory.
PERM_ENTRY_BYTES = 12
PERM_BYTES = 4 << 30


class PermutationResult(NamedTuple):
    """Result of ``permutation_test``; arrays are shaped like the batch (``null``: batch + ``[K]``).

    ``zscore`` = (T - E0[T]) / SD0[T] and ``ratio`` = T / E0[T] use the exact moments of the null over all
    orderings (1 = as rough as noise, toward 0 = smooth); NaN where they are not available. ``n_used``: the
    shuffles drawn per curve (K for the fixed test; ``n_permutations`` is then the cap K).
    """

    statistic: np.ndarray
    pvalue: np.ndarray
    significant: np.ndarray
    n_permutations: int
    exact: bool
    null: np.ndarray | None = None
    zscore: np.ndarray | None = None
    ratio: np.ndarray | None = None
    n_used: np.ndarray | None = None


@contextlib.contextmanager
def use_precision(name: str | None) -> Iterator[None]:
    """Run the enclosed JAX work in ``float32`` or ``float64`` (None: JAX's current setting).

    A scoped switch (``jax.enable_x64``) instead of a global one, so both precisions can be used one after
    the other in one process.
    """
    if name is None:
        yield
        return
    if name not in PRECISIONS:
        raise UsageError(f"unknown precision {name!r}; use 'float32' or 'float64'")
    with jax.enable_x64(name == "float64"):
        yield


def _validate_method(method: str, risk: float, alternative: str, return_null: bool) -> None:
    if method not in METHODS:
        raise UsageError(f"unknown method {method!r}; use 'fixed' or 'sequential'")
    if not 0 < risk < 1:
        raise UsageError(f"risk must be in (0, 1), got {risk}")
    if method == "sequential" and (alternative == "centered" or return_null):
        raise UsageError("method 'sequential' draws a different number of shuffles per curve: it has no null "
                         "to return and no 'centered' alternative; use method='fixed'")


def _validate(alternative: str, n_permutations: int, exact: Any, alpha: float, norm: str) -> None:
    if alternative not in ALTERNATIVES:
        raise UsageError(f"unknown alternative {alternative!r}; use one of {', '.join(ALTERNATIVES)}")
    if int(n_permutations) < 1:
        raise UsageError(f"n_permutations must be >= 1, got {n_permutations}")
    if exact not in ("auto", True, False):
        raise UsageError(f"exact must be 'auto', True or False, got {exact!r}")
    if not 0 < alpha < 1:
        raise UsageError(f"alpha must be in (0, 1), got {alpha}")
    if norm not in ("l2", "l1"):
        raise UsageError(f"unknown norm {norm!r}; use 'l2' or 'l1'")


def as_curves(y: ArrayLike, axis: int, class_axis: int | None) -> tuple[np.ndarray, tuple[int, ...]]:
    """Host float array ``[B, N, C]`` (C = 1 without a class axis) and the batch shape."""
    ya = np.asarray(y)
    if not np.issubdtype(ya.dtype, np.floating):
        ya = ya.astype(np.float64)
    if class_axis is not None:
        if ya.ndim < 2:
            raise UsageError(f"class_axis needs outputs of shape [..., N, C], got shape {ya.shape}")
        ya = np.moveaxis(ya, class_axis, -1)
        ya = np.moveaxis(ya, axis % (ya.ndim - 1), -2)
    else:
        ya = np.moveaxis(ya, axis, -1)[..., None]
    n = ya.shape[-2]
    if n < 2:
        raise DataError(f"a curve needs at least 2 steps, got {n}")
    check_curves(ya)
    return ya.reshape(-1, n, ya.shape[-1]), ya.shape[:-2]


def normalise(y: Float[np.ndarray, "b n c"]) -> tuple[Float[np.ndarray, "b n c"], Float[np.ndarray, " b"]]:
    """``z = (y - midrange) / s`` per curve in float64, ``s`` the largest half-range over its outputs.

    Exact in sign (``-y`` gives ``-z`` bit for bit) and, for float32 data, exact for every map ``a*y + c``
    that is itself exact on the data (``1 - p`` of a probability above 0.5, powers of two, shifts).
    """
    lo, hi = y.min(axis=1).astype(np.float64), y.max(axis=1).astype(np.float64)  # exact in y's own dtype
    mid = (lo + hi) / 2.0
    s = np.max((hi - lo) / 2.0, axis=-1)
    s = np.where(s > 0, s, 1.0)
    z = np.array(y, np.float64)  # one copy, then in place: the same values as (y - mid) / s
    z -= mid[:, None, :]
    z /= s[:, None, None]
    return z, s


def resolve_dtype(y: np.ndarray, precision: str | None = None) -> np.dtype:
    """The dtype to compute ``y`` in: ``precision`` if given, else what JAX makes of ``y``'s dtype now."""
    return np.dtype(precision) if precision is not None else np.dtype(jax.dtypes.canonicalize_dtype(y.dtype))


def _setup(statistic: str | Statistic | Callable[..., Array], n: int, c: int, vector: bool, x: ArrayLike | None,
           dtype: Any, norm: str, options: dict[str, Any]) -> StatisticSetup:
    """The registered statistic's kernel (a statistic that takes one output per step refuses output vectors)."""
    stat = resolve_statistic(statistic)
    if vector and not stat.vector:
        raise UsageError(f"statistic {stat.name!r} needs one output per step; class_axis works with "
                         f"{', '.join(n for n in statistic_names() if get_statistic(n).vector)} only")
    grid = np.arange(n, dtype=np.float64) if x is None else np.asarray(x, np.float64)
    return stat.setup(n, grid, None if x is None else np.asarray(x), vector, np.dtype(dtype), norm,
                      stat.checked_options(options))


def permutation_test(
    y: Float[ArrayLike, ...],
    x: Float[ArrayLike, " n"] | None = None,
    *,
    statistic: str | Statistic | Callable[..., Array] = "epg",
    n_permutations: int = 10_000,
    alternative: str = "two-sided",
    seed: int = 0,
    alpha: float = 0.01,
    exact: bool | Literal["auto"] = "auto",
    return_null: bool = False,
    axis: int = -1,
    class_axis: int | None = None,
    norm: str = "l2",
    precision: str | None = None,
    method: str = "fixed",
    risk: float = 1e-3,
    **statistic_options: Any,
) -> PermutationResult:
    """Shuffle test of the statistic of every curve in ``y`` against random orderings of its own outputs.

    ``statistic``: a registered name (``statistic_names()``: "epg", "pearson", "mi" and the user's own), a
    :class:`Statistic` or a callable ``f(y[N], x[N], **options) -> scalar``; ``statistic_options`` are its
    options (``Statistic.options``: EPG's ``weighting``, derivative ``accuracy``..., MI's ``k``).

    A real, smooth effect has a *smaller* EPG than its shuffles (lower tail); "two-sided" (default) looks
    at both tails. p-values: "less" ``(#{T<=t}+1)/(K+1)``, "greater" ``(#{T>=t}+1)/(K+1)``, "two-sided"
    ``min(1, 2 min(p_less, p_greater))``, "centered" the authors' ``#{|T-mean|>=|t-mean|}/K`` (computed in
    float64 on the returned null). When ``N! <= n_permutations`` (``exact="auto"``) all orderings are
    enumerated and p is exact (no +1). ``class_axis`` shuffles whole output vectors (EPG of the ``norm`` of
    the vector derivative); ``precision`` runs the test in float32 or float64 whatever the JAX setting.

    ``method="sequential"`` stops each curve's shuffles once its decision at ``alpha`` is settled with
    resampling risk <= ``risk`` (Gandy 2009), at most ``n_permutations``: the same shuffles in the same order
    as the fixed test, so a curve that needs all K gets the fixed test's answer; p-values are
    ``(count + 1) / (n_used + 1)`` from the shuffles drawn (``n_used`` in the result). A curve whose exact-moment
    Cantelli bound on its p-value is already below ``alpha`` draws none: its p-value is that bound (valid and
    conservative) and ``n_used`` is 0.
    """
    _validate(alternative, n_permutations, exact, alpha, norm)
    _validate_method(method, risk, alternative, return_null)
    if int(seed) < 0 or int(seed) >= 2**63:
        raise UsageError(f"seed must be in [0, 2**63), got {seed}")
    with use_precision(precision):
        return _test(y, x, statistic, int(n_permutations), alternative, int(seed), alpha, exact, return_null, axis,
                     class_axis, norm, precision, dict(statistic_options), method, float(risk))


def _test(y: ArrayLike, x: ArrayLike | None, statistic: str | Statistic | Callable[..., Array], n_perm: int,
          alternative: str, seed: int, alpha: float, exact: Any, return_null: bool, axis: int, class_axis: int | None,
          norm: str, precision: str | None, options: dict[str, Any], method: str = "fixed",
          risk: float = 1e-3) -> PermutationResult:
    y3, batch = as_curves(y, axis, class_axis)
    n_curves, n, c = y3.shape
    if x is not None:
        if np.ndim(x) != 1:
            raise UsageError(f"the shuffle test needs one grid x of shape [{n}] shared by all curves, "
                             f"got shape {np.shape(x)}")
        check_grid(x, n)
    dtype = resolve_dtype(y3, precision)
    vector = class_axis is not None
    if n_perm * n * PERM_ENTRY_BYTES > PERM_BYTES:  # before the stencil plan or any [K, N] array is built
        raise DataError(f"a shuffle test of curves with {n:,} steps and {n_perm:,} shuffles needs "
                        f"{n_perm * n * PERM_ENTRY_BYTES / 2**30:.1f} GiB of shuffle indices (limit "
                        f"{PERM_BYTES / 2**30:g} GiB): use fewer shuffles or shorter curves")
    setup = _setup(statistic, n, c, vector, x, dtype, norm, options)

    use_exact = exact is True or (exact == "auto" and math.factorial(n) <= n_perm)
    if use_exact and math.factorial(n) > 3_628_800:
        raise UsageError(f"exact enumeration of {n}! orderings is too large; use exact=False")
    perms = all_permutations(n) if use_exact else random_permutations(n, n_perm, seed)
    k = perms.shape[0]
    if method == "sequential" and not use_exact:
        return _sequential(y3, batch, setup, perms, seed, alpha, risk, alternative, vector, dtype)
    keep_null = return_null or alternative == "centered"
    width = -(-c // CLASS_CHUNK) * CLASS_CHUNK if vector else 1
    devices = jax.devices()
    itemsize = dtype.itemsize
    bb, nb = blocks(n_curves, n, itemsize, len(devices), setup.kernel.prepare is not identity, width)
    if keep_null:  # the null of a chunk ([K, curves] float64 on the host) stays under ~256 MB
        while nb > 1 and k * bb * nb * 8 > 256 << 20:
            nb -= 1
        bb = max(1, min(bb, (256 << 20) // (8 * k))) if nb == 1 else bb
    bc = bb * nb
    uses_table = setup.kernel.prepare is not identity
    chunks_host, valid_host = scan_inputs(perms, perm_chunk(n, bb, itemsize, k, 1 if uses_table else width))
    tie_rel = TIE_ULPS * n * float(np.finfo(dtype).eps)
    on_device: dict[Any, tuple[Array, Array]] = {}

    pieces = []
    for ci, start in enumerate(range(0, n_curves, bc)):
        dev = devices[ci % len(devices)]
        if dev not in on_device:
            on_device[dev] = (jax.device_put(chunks_host, dev), jax.device_put(valid_host, dev))
        chunk = y3[start:start + bc]
        z64, s = normalise(chunk) if setup.normalised else (np.asarray(chunk, np.float64), np.ones(len(chunk)))
        block, null_block = kernel_inputs(setup.kernel, z64, None if use_exact else relabellings(z64, seed), dtype,
                                          width if vector else 0)
        rows = len(chunk)
        fill = np.zeros(block.shape[1:], dtype)  # padded curves are constant and dropped below
        out = run_chunk(setup.kernel, setup.params, dev, pad_rows(block, bc, fill), pad_rows(null_block, bc, fill),
                        pad_rows(setup.per_curve(z64), bc, np.nan), *on_device[dev], nb, tie_rel,
                        alternative != "centered", keep_null)
        pieces.append((out, rows, s if setup.scaled else np.ones(rows)))
    return _collect(pieces, k, batch, alternative, use_exact, alpha, return_null)


def kernel_inputs(kernel: Kernel, z64: np.ndarray, relabel: np.ndarray | None, dtype: np.dtype,
                  width: int) -> tuple[np.ndarray, np.ndarray]:
    """What the kernel reads for the curves ``z64`` ``[B, N, C]`` in their true order and relabelled by
    ``relabel`` (None: not relabelled): the curves (``[B, N]``, or ``[B, N, width]`` zero-padded for whole
    output vectors), or their pairwise tables ``[B, N(N+1)/2]`` when the kernel's table is built on the host."""
    if kernel.host_table is not None:
        table, null = host_pair_table(z64, relabel, dtype)
        return table.astype(dtype, copy=False), null.astype(dtype, copy=False)
    block = z64.astype(dtype)
    null_block = block if relabel is None else np.take_along_axis(block, relabel[:, :, None], axis=1)
    if width:
        pad = ((0, 0), (0, 0), (0, width - block.shape[2]))
        return np.pad(block, pad), np.pad(null_block, pad)
    return block[:, :, 0], null_block[:, :, 0]


def _sequential(y3: np.ndarray, batch: tuple[int, ...], setup: StatisticSetup, perms: np.ndarray, seed: int,
                alpha: float, risk: float, alternative: str, vector: bool, dtype: np.dtype) -> PermutationResult:
    """The sequential engine on host chunks of curves (see ``_perm_sequential``)."""
    n_curves, n, c = y3.shape
    width = -(-c // CLASS_CHUNK) * CLASS_CHUNK if vector else 1
    tie_rel = TIE_ULPS * n * float(np.finfo(dtype).eps)
    devices = list(jax.devices())
    bb, nb = blocks(min(n_curves, SEQ_CURVES), n, dtype.itemsize, len(devices),
                    setup.kernel.prepare is not identity, width)
    cols: list[tuple[np.ndarray, ...]] = []
    for start in range(0, n_curves, SEQ_CURVES):
        chunk = y3[start:start + SEQ_CURVES]
        z64, s = normalise(chunk) if setup.normalised else (np.asarray(chunk, np.float64), np.ones(len(chunk)))
        block, null_block = kernel_inputs(setup.kernel, z64, relabellings(z64, seed), dtype, width if vector else 0)
        out = run_sequential(setup.kernel, setup.params, block, null_block, setup.per_curve(z64), perms, alpha,
                             risk, alternative, tie_rel, (bb, nb), devices)
        cols.append((*out, s if setup.scaled else np.ones(len(chunk))))
    obs, mean, sd, lo, hi, used, bound, s = (np.concatenate(col) for col in zip(*cols, strict=True))
    pvalue = np.where(np.isnan(bound), pvalues(lo, hi, used, alternative, False), bound)  # bound: Cantelli screen
    with np.errstate(divide="ignore", invalid="ignore"):
        zscore = np.where(sd > 0, (obs - mean) / sd, np.nan)
        ratio = np.where(mean > 0, obs / mean, np.nan)
    shaped = lambda a: a.reshape(batch)  # noqa: E731
    return PermutationResult(
        statistic=shaped((obs * s).astype(dtype)), pvalue=shaped(pvalue), significant=shaped(pvalue < alpha),
        n_permutations=int(perms.shape[0]), exact=False, zscore=shaped(zscore), ratio=shaped(ratio),
        n_used=shaped(used.astype(np.int64)),
    )


def _collect(pieces: list[tuple[tuple[Any, ...], int, np.ndarray]], k: int, batch: tuple[int, ...], alternative: str,
             exact: bool, alpha: float, return_null: bool) -> PermutationResult:
    """Gather the chunks' results; p-values from the counts, or the authors' centred rule on the null."""
    def col(j: int) -> np.ndarray:
        return np.concatenate([np.asarray(out[j], np.float64)[:rows] for out, rows, _ in pieces])

    s = np.concatenate([sc for _, _, sc in pieces])
    dtype = np.asarray(pieces[0][0][0]).dtype
    obs, mean, sd = col(0), col(1), col(2)
    null = None
    if pieces[0][0][5] is not None:
        null = np.concatenate([np.asarray(out[5], np.float64)[:k, :rows].T for out, rows, _ in pieces])
        null = np.ascontiguousarray((null * s[:, None]).astype(dtype))
    stat = (obs * s).astype(dtype)
    if alternative == "centered":  # the authors' rule, in float64 on the null that is returned
        assert null is not None
        null64, stat64 = null.astype(np.float64), stat.astype(np.float64)
        centre = null64.mean(axis=-1)
        far = np.abs(null64 - centre[:, None]) >= np.abs(stat64 - centre)[:, None]
        pvalue = np.mean(far | (np.isnan(null64) & np.isnan(stat64)[:, None]), axis=-1)  # undefined: a tie
    else:
        pvalue = pvalues(col(3), col(4), k, alternative, exact)
    with np.errstate(divide="ignore", invalid="ignore"):
        zscore = np.where(sd > 0, (obs - mean) / sd, np.nan)
        ratio = np.where(mean > 0, obs / mean, np.nan)
    shaped = lambda a: a.reshape(batch)  # noqa: E731
    return PermutationResult(
        statistic=shaped(stat), pvalue=shaped(pvalue), significant=shaped(pvalue < alpha), n_permutations=int(k),
        exact=bool(exact), null=null.reshape(batch + (k,)) if return_null and null is not None else None,
        zscore=shaped(zscore), ratio=shaped(ratio), n_used=np.full(batch, int(k), np.int64),
    )


def pvalues(lo: np.ndarray, hi: np.ndarray, k: int | np.ndarray, alternative: str, exact: bool) -> np.ndarray:
    """Tail counts to p-values (``+1`` on both sides for Monte Carlo, none for exact enumeration)."""
    plus = 0 if exact else 1
    p_less = (lo + plus) / (k + plus)
    p_greater = (hi + plus) / (k + plus)
    if alternative == "less":
        return p_less
    if alternative == "greater":
        return p_greater
    return np.minimum(1.0, 2.0 * np.minimum(p_less, p_greater))
