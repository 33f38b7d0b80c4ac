"""The sequential shuffle test (``permutation_test(..., method="sequential")``): each curve stops drawing
shuffles once its decision at alpha is settled with resampling risk <= ``risk`` (Gandy 2009, see
``_perm_bounds``).

Every curve walks through the same shared list of K shuffles as the fixed test (``sigma_b o pi_k``, its own
relabelling ``sigma_b`` times the shared ``pi_1 .. pi_K``) and checks the shared boundaries at the ends of
shared rounds. Its decision, p-value and ``n_used`` therefore depend on nothing but the curve (alone or in a
batch, ``y`` or ``a*y + c``: the same answer), and a curve that is still undecided at K gets exactly the
fixed-K counts. The order of work is free: curves are sorted by their exact-moment z-score, so that a block
of curves scanned together holds curves of similar difficulty (clear drifts with clear drifts, noise with
noise), and a block's loop over rounds ends when all its curves are settled. Curves still undecided at the
end of a stage are gathered, re-blocked and continued with larger rounds.

Before any shuffle, a rigorous screen (``cantelli_pvalues``) settles curves from their exact null moments:
Cantelli's one-sided Chebyshev inequality ``P(T <= mu - k sigma) <= 1 / (1 + k^2)`` bounds the exact
permutation p-value; a curve whose bound is below alpha is significant with no resampling risk at all, its
reported p-value is the bound itself (super-uniform, so the FDR correction stays valid) and ``n_used = 0``.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array

from epg_core._permutation._bounds import boundaries
from epg_core._permutation._kernels import Kernel, host_moments, identity
from epg_core._permutation._scan import CHUNK_BYTES, curves_last, observed, pad_rows, to_blocks

# Curves prepared together on the host (normalised, relabelled, sorted by z-score): bounds host memory.
SEQ_CURVES = 65_536


def _side(s_lo: Array, s_hi: Array, side: str) -> Array:
    if side == "less":
        return s_lo
    if side == "greater":
        return s_hi
    return jnp.minimum(s_lo, s_hi)


@functools.partial(jax.jit, static_argnames=("kernel", "size", "pc", "side"))
def _stage(
    null_blocks: Array, obs: Array, tol: Array, per_curve: Array, lo0: Array, hi0: Array, active0: Array,
    perms: Array, start: Array, ends: Array, upper: Array, lower: Array, params: Any,
    *, kernel: Kernel, size: int, pc: int, side: str,
) -> tuple[Array, Array, Array]:
    """One stage for every block: rounds of ``size`` shuffles until all curves of the block are settled or the
    stage's checks (``ends``, with boundaries ``upper``/``lower``) are used up. Returns (lo, hi, n_used);
    ``n_used`` is 0 for a curve still undecided."""
    n = perms.shape[1]
    n_rounds = ends.shape[0]
    steps = size // pc

    def one_block(args: tuple[Array, ...]) -> tuple[Array, Array, Array]:
        yt, obs_b, tol_b, pc_b, lo_b, hi_b, act_b = args
        table = kernel.prepare(yt)

        def count(r: Array) -> tuple[Array, Array]:
            base = start + r * size

            def step(carry: tuple[Array, Array], i: Array) -> tuple[tuple[Array, Array], None]:
                lo, hi = carry
                off = base + i * pc
                chunk = jax.lax.dynamic_slice(perms, (off, jnp.int32(0)), (pc, n))
                ok = ((off + jnp.arange(pc, dtype=jnp.int32)) < ends[r])[:, None]
                t = kernel.kernel(table, chunk, params, pc_b)  # [pc, Bb]
                tie = (jnp.isnan(t) & jnp.isnan(obs_b)[None, :]) | (jnp.abs(t - obs_b[None, :]) <= tol_b[None, :])
                lo = lo + jnp.sum(((t <= obs_b[None, :]) | tie) & ok, axis=0, dtype=jnp.int32)
                hi = hi + jnp.sum(((t >= obs_b[None, :]) | tie) & ok, axis=0, dtype=jnp.int32)
                return (lo, hi), None

            zero = jnp.zeros(obs_b.shape, jnp.int32)
            (lo, hi), _ = jax.lax.scan(step, (zero, zero), jnp.arange(steps, dtype=jnp.int32))
            return lo, hi

        def body(state: tuple[Array, ...]) -> tuple[Array, ...]:
            r, lo, hi, act, used = state
            d_lo, d_hi = count(r)
            lo = jnp.where(act, lo + d_lo, lo)
            hi = jnp.where(act, hi + d_hi, hi)
            s = _side(lo, hi, side)
            stop = act & ((s >= upper[r]) | (s <= lower[r]))
            used = jnp.where(stop, ends[r], used)
            return r + 1, lo, hi, act & ~stop, used

        def cond(state: tuple[Array, ...]) -> Array:
            return (state[0] < n_rounds) & jnp.any(state[3])

        init = (jnp.int32(0), lo_b, hi_b, act_b, jnp.zeros(obs_b.shape, jnp.int32))
        _, lo, hi, _, used = jax.lax.while_loop(cond, body, init)
        return lo, hi, used

    return jax.lax.map(one_block, (null_blocks, obs, tol, per_curve, lo0, hi0, active0))


# Curves whose screen bound from the kernel's own moments (float32: accurate to ~1e-6) is below SCREEN_SLACK *
# alpha get their statistic and moments recomputed in float64; the slack only picks candidates, the decision
# is made on the float64 values.
SCREEN_SLACK = 1.25
# Candidate curves whose float64 moments are computed together (bounds the [curves, pairs] float64 table).
SCREEN_CURVES = 128


def cantelli_bound(obs: np.ndarray, mean: np.ndarray, sd: np.ndarray, tol: np.ndarray, alternative: str,
                   rel: float) -> np.ndarray:
    """Cantelli's bound on the exact permutation p-value of every curve, counting ties as the fixed test does
    (``T <= obs + tol`` is "less", ``T >= obs - tol`` is "greater"); 1 where there is none.

    ``mean``/``sd`` are the exact null moments of the statistic in exact arithmetic; ``rel`` bounds the relative
    rounding of a computed shuffle statistic (a sum of non-negative terms), so the bound covers the counts the
    kernel makes: a computed ``T' <= obs + tol`` implies ``T <= (obs + tol)(1 + rel)``.
    Two-sided: ``min(1, 2 min(bound_less, bound_greater))``, the convention of ``pvalues``.
    """
    obs, mean, sd, tol = (np.asarray(a, np.float64) for a in (obs, mean, sd, tol))
    ok = np.isfinite(obs) & np.isfinite(mean) & np.isfinite(sd) & (sd > 0)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        gap_less = mean - (obs + tol) * (1.0 + rel)
        gap_greater = (obs - tol) * (1.0 - rel) - mean
        var = sd * sd

        def one(gap: np.ndarray) -> np.ndarray:
            return np.where(ok & (gap > 0), var / (var + gap * gap), 1.0)

        less, greater = one(gap_less), one(gap_greater)
    if alternative == "less":
        return less
    if alternative == "greater":
        return greater
    return np.minimum(1.0, 2.0 * np.minimum(less, greater))


def cantelli_pvalues(kernel: Kernel, block: np.ndarray, obs: np.ndarray, mean: np.ndarray, sd: np.ndarray,
                     tie_rel: float, alpha: float, alternative: str, n: int) -> np.ndarray:
    """Cantelli's bound on each curve's exact p-value where it is below alpha (NaN elsewhere: not settled).

    The statistic and moments the kernel computed in the test's precision pick the candidates (a rough bound <
    ``SCREEN_SLACK`` * alpha); for them the observed statistic and the moments are recomputed in float64 from the
    same inputs, curve by curve. The kernel's values are sums of non-negative terms with N + 2 roundings each
    (``rel`` = twice that), so its counts ``T' <= obs' + tol`` imply ``T <= (obs (1 + rel) + tol)(1 + rel)`` in
    exact arithmetic, with ``tol = tie_rel obs (1 + rel)`` at most: the bound covers the kernel's counts.
    """
    out = np.full(obs.shape, np.nan)
    if kernel.moment_consts is None or obs.size == 0:
        return out
    rel = max(2.0 * (n + 2) * float(np.finfo(block.dtype).eps), 1e-9)  # 1e-9: the float64 moments' own rounding
    obs = np.asarray(obs, np.float64)
    rough = cantelli_bound(obs, mean, sd, tie_rel * np.abs(obs), alternative, 1e3 * rel)
    cand = np.nonzero(rough < SCREEN_SLACK * alpha)[0]
    if len(cand) == 0:
        return out
    o64, m64, sd64 = (np.empty(len(cand)) for _ in range(3))
    for s0 in range(0, len(cand), SCREEN_CURVES):
        part = slice(s0, s0 + SCREEN_CURVES)
        o64[part], m64[part], sd64[part] = host_moments(kernel, block[cand[part]])
    obs_hi = np.abs(o64) * (1.0 + rel)  # the kernel's observed value is at most this, and at least o64 (1 - rel)
    bound = np.minimum(
        1.0, _sided(cantelli_bound(obs_hi, m64, sd64, tie_rel * obs_hi, "less", rel),
                    cantelli_bound(np.abs(o64) * (1.0 - rel), m64, sd64, tie_rel * obs_hi, "greater", rel),
                    alternative))
    keep = bound < alpha
    out[cand[keep]] = bound[keep]
    return out


def _sided(less: np.ndarray, greater: np.ndarray, alternative: str) -> np.ndarray:
    if alternative == "less":
        return less
    if alternative == "greater":
        return greater
    return 2.0 * np.minimum(less, greater)


def _pow2_at_most(v: int) -> int:
    return 1 << (max(1, v).bit_length() - 1)


def run_sequential(
    kernel: Kernel, params: Any, block: np.ndarray, null_block: np.ndarray, per_curve: np.ndarray,
    perms: np.ndarray, alpha: float, risk: float, alternative: str, tie_rel: float, layout: tuple[int, int],
    devices: list[Any],
) -> tuple[np.ndarray, ...]:
    """The sequential test of one host chunk of curves (``block``/``null_block`` what the kernel reads:
    normalised curves, relabelled ones, see ``kernel_inputs``), ``layout`` = (curves per block, blocks per
    call). Returns obs, mean, sd, lo, hi, n_used and the Cantelli p-value per curve (NaN where the screen did
    not settle the curve; such curves have ``n_used = 0`` and no counts)."""
    n_curves = block.shape[0]
    k, n = perms.shape
    two_sided = alternative == "two-sided"
    bnd = boundaries(float(alpha), float(risk), int(k), two_sided)
    dtype = block.dtype
    itemsize = dtype.itemsize
    uses_table = kernel.prepare is not identity
    bb, nb_max = layout
    bc_max = bb * nb_max
    width = int(np.prod(block.shape[2:])) if block.ndim > 2 else 1

    # 1. observed statistic and exact null moments (same kernel and chunking as the fixed test)
    obs = np.empty(n_curves, np.float64)
    mean = np.empty(n_curves, np.float64)
    sd = np.empty(n_curves, np.float64)
    pc_all = np.asarray(per_curve, dtype)
    for ci, s0 in enumerate(range(0, n_curves, bc_max)):
        dev = devices[ci % len(devices)]
        rows = min(bc_max, n_curves - s0)
        pc = to_blocks(pad_rows(pc_all[s0:s0 + rows], bc_max, np.nan), nb_max, dev)
        o, m, d = observed(curves_last(pad_rows(block[s0:s0 + rows], bc_max, 0), nb_max, dev), params, pc,
                           kernel=kernel, n_steps=n)
        obs[s0:s0 + rows] = np.asarray(o, np.float64).reshape(-1)[:rows]
        mean[s0:s0 + rows] = np.asarray(m, np.float64).reshape(-1)[:rows]
        sd[s0:s0 + rows] = np.asarray(d, np.float64).reshape(-1)[:rows]
    obs_d = obs.astype(dtype)  # the observed statistic exactly as the kernel computed it
    tol = np.asarray(tie_rel, dtype) * np.abs(obs_d)  # as the fixed test computes it (in the test's dtype)

    # 2. the rigorous screen: curves significant by Cantelli's bound draw no shuffle
    bound = cantelli_pvalues(kernel, block, obs_d, mean, sd, tie_rel, alpha, alternative, n)

    # 3. order of work: by z-score (similar curves share a block); NaN (no moments) keep their place
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(sd > 0, (obs - mean) / sd, 0.0)
    order = np.argsort(np.nan_to_num(z, nan=0.0), kind="stable")
    order = order[np.isnan(bound[order])]

    max_size = max(bnd.round_size)
    perms_pad = np.concatenate([perms, np.broadcast_to(np.arange(n, dtype=np.int32), (max_size, n))])
    perms_dev = {dev: jax.device_put(perms_pad, dev) for dev in devices}
    lo = np.zeros(n_curves, np.int32)
    hi = np.zeros(n_curves, np.int32)
    used = np.zeros(n_curves, np.int64)
    todo = order  # undecided curves, in z order
    start = 0
    for stage, size in enumerate(bnd.round_size):
        if len(todo) == 0:
            break
        sel = np.nonzero(bnd.stage == stage)[0]
        ends, up, low = bnd.n[sel], bnd.upper[sel], bnd.lower[sel]
        per_perm = max(1, n * bb * itemsize * (1 if uses_table else width))
        pc = min(size, _pow2_at_most(max(1, CHUNK_BYTES // per_perm)))
        consts = (jnp.asarray(ends, jnp.int32), jnp.asarray(up, jnp.int32), jnp.asarray(low, jnp.int32))
        outs = []
        for ci, s0 in enumerate(range(0, len(todo), bc_max)):
            dev = devices[ci % len(devices)]
            idx = todo[s0:s0 + bc_max]
            nb = nb_max  # one compiled shape per stage; a block of padding has no active curve, so no rounds
            bc = bb * nb
            act = pad_rows(np.ones(len(idx), bool), bc, False)
            args = (curves_last(pad_rows(null_block[idx], bc, 0), nb, dev),
                    *(to_blocks(pad_rows(a[idx], bc, f), nb, dev)
                      for a, f in ((obs_d, 0), (tol, 0), (pc_all, np.nan), (lo, 0), (hi, 0))),
                    to_blocks(act, nb, dev))
            out = _stage(*args, perms_dev[dev], jnp.int32(start), *consts, params, kernel=kernel, size=size,
                         pc=pc, side=alternative)
            outs.append((idx, out))
        for idx, (lo_o, hi_o, used_o) in outs:
            m = len(idx)
            lo[idx] = np.asarray(lo_o).reshape(-1)[:m]
            hi[idx] = np.asarray(hi_o).reshape(-1)[:m]
            used[idx] = np.asarray(used_o).reshape(-1)[:m]
        todo = todo[used[todo] == 0]
        start = int(ends[-1])
    assert len(todo) == 0, "the last check decides every curve"
    return obs, mean, sd, lo, hi, used, bound
