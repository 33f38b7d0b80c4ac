"""Permutation index sets and per-curve relabellings (host side, cached).

JAX's own permutation/argsort on the CPU is slow, so the K shuffles of a test are made once per
(N, K, seed) with NumPy and shared by every curve of that length. Each curve is then relabelled by its own
random permutation, seeded from a form of the curve that is invariant under ``y -> a*y + c``, so that a
curve, its complement ``1 - y`` and any affine copy draw the same shuffles, and near-duplicate curves do not
share their Monte-Carlo errors.
"""

from __future__ import annotations

import functools
import itertools

import numpy as np
from jaxtyping import Float, Int

# Resolution of the normalised curve used to seed its relabelling (fine enough to tell noisy copies apart,
# coarse enough that float64 rounding of a*y + c never moves a value to another bucket in practice).
SEED_BITS = 20
# Outputs of a whole output vector that seed its relabelling (the first ones: hashing 1,000 classes costs more
# than the test itself, and a few outputs already tell near-duplicate curves apart).
HASH_OUTPUTS = 16


def splitmix64(z: np.ndarray) -> np.ndarray:
    """Vectorised SplitMix64 finaliser: a fast, well-mixed 64-bit hash."""
    z = z.astype(np.uint64, copy=True)
    with np.errstate(over="ignore"):
        z += np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return z


@functools.lru_cache(maxsize=8)
def random_permutations(n: int, k: int, seed: int) -> Int[np.ndarray, "k n"]:
    """K random permutations of ``range(n)`` as int32 ``[k, n]`` (cached per n, k, seed)."""
    # argsort of i.i.d. float64 keys is a uniform permutation (ties have probability ~n^2 2^-54) and is
    # 1.5x faster than Generator.permuted; SFC64 is numpy's fastest bit generator.
    rng = np.random.Generator(np.random.SFC64(np.random.SeedSequence([seed, n, 0x5EED])))
    perms = np.argsort(rng.random((k, n)), axis=1).astype(np.int32)
    perms.setflags(write=False)
    return perms


@functools.lru_cache(maxsize=8)
def all_permutations(n: int) -> Int[np.ndarray, "m n"]:
    """All ``n!`` orderings (identity first) as int32 ``[n!, n]``."""
    perms = np.array(list(itertools.permutations(range(n))), dtype=np.int32)
    perms.setflags(write=False)
    return perms


def clear_cache() -> None:
    """Forget cached permutation sets (benchmarks use it to time generation)."""
    random_permutations.cache_clear()
    all_permutations.cache_clear()


def canonical_shape(z: Float[np.ndarray, "b n c"]) -> Float[np.ndarray, "b n h"]:
    """Normalised curves with their sign fixed, so that ``z`` and ``-z`` give the same array (only the first
    ``HASH_OUTPUTS`` outputs are returned: what ``relabellings`` hashes).

    The sign is the one that makes the trend (correlation with the step index, summed over outputs)
    positive; for a curve without trend, the first non-zero value is made positive.
    """
    n = z.shape[1]
    steps = np.arange(n, dtype=np.float64) - (n - 1) / 2.0
    trend = np.einsum("bnc,n->b", z, steps)
    flat = z.reshape(z.shape[0], -1)
    nonzero = flat != 0
    first = np.where(nonzero.any(axis=1), flat[np.arange(flat.shape[0]), np.argmax(nonzero, axis=1)], 0.0)
    sign = np.where(trend != 0, np.sign(trend), np.where(first < 0, -1.0, 1.0))
    return z[:, :, :HASH_OUTPUTS] * sign[:, None, None]


def relabellings(z: Float[np.ndarray, "b n c"], seed: int) -> Int[np.ndarray, "b n"]:
    """One random permutation per curve, seeded by ``seed`` and the curve's canonical normalised shape."""
    b, n = z.shape[:2]
    q = np.rint(canonical_shape(z) * float(1 << SEED_BITS)).astype(np.int64).reshape(b, -1)
    q = q + 0  # -0.0 and 0.0 round to the same integer
    mult = splitmix64(np.arange(q.shape[1], dtype=np.uint64) + np.uint64(seed & 0xFFFFFFFF)) | np.uint64(1)
    with np.errstate(over="ignore"):
        h = (q.view(np.uint64) * mult[None, :]).sum(axis=1, dtype=np.uint64)
        keys = splitmix64(splitmix64(h ^ np.uint64(seed & 0xFFFFFFFFFFFF))[:, None]
                          + np.arange(n, dtype=np.uint64)[None, :] * np.uint64(0x9E3779B97F4A7C15))
    return np.argsort(keys, axis=1, kind="stable").astype(np.int32)
