"""Shuffle test of the scalar and the vector EPG at study scale (``python -m epg_bench.bench_vector``).

Each case runs in its own child process, so its peak RSS (VmHWM) is its own: the paper's training-dynamics
sweep (1,616 curves x 101 steps) with K = 10,000 shuffles, as one class (scalar EPG) and as the whole output
vector of 10, 100 and 1,000 classes (vector EPG, L2 norm of the vector derivative). Time is the median of warm
calls after one compiling call; memory must stay bounded by the class chunk, not grow with the classes.

BLAS lower bound (issue 20), timed in the same child: the one matrix product per curve that any distance
table needs, ``z z^T`` of its ``[N, C]`` outputs in float32 (XLA's batched dot, chunks of 64 curves, warm,
median), with nothing else. The vector test builds its tables with the same product in float64 on float64
inputs, in chunks of 8 MB (the float32 identity loses up to 1e-3 relative to cancellation, even on outputs
centred on each curve's mean vector: see tests/core/test_vector_blas.py), then runs the scalar test's scan.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

B, N, K = 1_616, 101, 10_000


def _hwm_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def child(n_classes: int, repeats: int) -> dict[str, float]:
    """One case in this process: compile once, then the median of ``repeats`` warm calls."""
    import numpy as np

    import epg_core as E

    rng = np.random.default_rng(0)
    shape = (B, N) if n_classes == 0 else (B, N, n_classes)
    y = rng.random(shape, dtype=np.float32)
    class_axis = None if n_classes == 0 else -1
    t0 = time.perf_counter()
    np.asarray(E.permutation_test(y, n_permutations=K, seed=0, class_axis=class_axis).pvalue)
    first = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        np.asarray(E.permutation_test(y, n_permutations=K, seed=0, class_axis=class_axis).pvalue)
        times.append(time.perf_counter() - t0)
    rss = _hwm_mb()
    bound = float("nan")
    if n_classes:
        import jax
        import jax.numpy as jnp

        gram = jax.jit(lambda z: jnp.einsum("bnc,bmc->bnm", z, z))
        chunks = [jnp.asarray(y[i:i + 64]) for i in range(0, B - B % 64, 64)]
        tail = B % 64 / 64  # the last partial chunk, counted pro rata
        gram(chunks[0]).block_until_ready()
        runs = []
        for _ in range(max(3, repeats)):
            t0 = time.perf_counter()
            for c in chunks:
                gram(c).block_until_ready()
            runs.append((time.perf_counter() - t0) * (1 + tail / len(chunks)))
        bound = float(np.median(runs))
    return {"first": first, "time": float(np.median(times)), "input_mb": y.nbytes / 2**20, "rss_mb": rss,
            "bound": bound}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--classes", default="0,10,100,1000", help="0 = scalar EPG of one class")
    args = parser.parse_args(argv)
    if args.child is not None:
        print(json.dumps(child(args.child, args.repeats)))
        return
    with open("/proc/loadavg") as fh:
        load = fh.read().split()[:3]
    print(f"load average before: {' '.join(load)}")
    print("| case | classes | time [s] | x scalar test | BLAS bound [s] | x bound | first call incl. compile [s] "
          "| input [MB] | peak RSS [MB] |")
    print("|---|---|---|---|---|---|---|---|---|")
    scalar = float("nan")
    for n in (int(c) for c in args.classes.split(",")):
        out = subprocess.run([sys.executable, "-m", "epg_bench.bench_vector", "--child", str(n), "--repeats",
                              str(args.repeats)], capture_output=True, text=True, check=True).stdout
        r = json.loads(out.strip().splitlines()[-1])
        name = "scalar EPG (one class)" if n == 0 else "vector EPG (L2)"
        if n == 0:
            scalar = r["time"]
        bound = r["bound"]
        print(f"| {B:,} x {N}, K = {K:,}: {name} | {n or 1:,} | {r['time']:.3g} | {r['time'] / scalar:.2f} | "
              f"{bound:.3g} | {r['time'] / bound:.1f} | {r['first']:.3g} | {r['input_mb']:.0f} | "
              f"{r['rss_mb']:.0f} |", flush=True)
    with open("/proc/loadavg") as fh:
        print(f"load average after: {' '.join(fh.read().split()[:3])}")


if __name__ == "__main__":
    main()
