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
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array

from epg_core._permutation._bounds import boundaries
from epg_core._permutation._kernels import Kernel, identity
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


def _pow2_at_most(v: int) -> int:
    return 1 << (max(1, v).bit_length() - 1)


def run_sequential(
    kernel: Kernel, params: Any, block: np.ndarray, null_block: np.ndarray, per_curve: np.ndarray,
    perms: np.ndarray, alpha: float, risk: float, alternative: str, tie_rel: float, layout: tuple[int, int],
    devices: list[Any],
) -> tuple[np.ndarray, ...]:
    """The sequential test of one host chunk of curves (``block``/``null_block`` what the kernel reads:
    normalised curves, relabelled ones, see ``kernel_inputs``), ``layout`` = (curves per block, blocks per
    call). Returns obs, mean, sd, lo, hi, n_used per curve."""
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

    # 2. order of work: by z-score (similar curves share a block); NaN (no moments) keep their place
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(sd > 0, (obs - mean) / sd, 0.0)
    order = np.argsort(np.nan_to_num(z, nan=0.0), kind="stable")

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
            nb = min(nb_max, 1 << max(0, (-(-len(idx) // bb) - 1).bit_length()))  # power-of-two block counts
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
    return obs, mean, sd, lo, hi, used
