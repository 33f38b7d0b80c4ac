"""Decisions at study scale (issue 20): fixed K = 10,000 against the sequential test, in one run
(``python -m epg_bench.bench_sequential [--curves 200000]``).

Curves: ``B`` x 101 steps, float32, a realistic mix: 20 % clear drifts (a logistic step of amplitude 2-5
noise SDs), 60 % pure noise, 20 % borderline (amplitude 0.9-1.5 SDs: fixed-K p-values around alpha = 0.01).
Each method runs in its own child process (its peak RSS, VmHWM, is its own), one warm-up call on 2,000 curves
first (compilation excluded), then one timed call on all curves. Seconds per 1M curves are extrapolated
linearly from ``B`` (the work is per curve; memory is bounded by chunk sizes, so peak RSS is not scaled).
Agreement: the share of curves whose decision at alpha equals the fixed test's; every disagreement is
reported in units of the Monte Carlo standard error of the fixed p-value at alpha, ``sqrt(alpha (2 - alpha) / K)``.
"settled by Cantelli": curves the sequential test decided from their exact moments alone (``n_used = 0``, a
rigorous bound on the exact p-value below alpha), counted per group.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

N, K, ALPHA, RISK = 101, 10_000, 0.01, 1e-3
GROUPS = (("clear drift", 0.2), ("noise", 0.6), ("borderline", 0.2))


def _hwm_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def curves(b: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The mix (float32 ``[b, N]``) and each curve's group index."""
    rng = np.random.default_rng(seed)
    t = np.linspace(-1, 1, N)
    sizes = [int(round(f * b)) for _, f in GROUPS]
    sizes[1] = b - sizes[0] - sizes[2]
    amp = np.concatenate([rng.uniform(2, 5, sizes[0]), np.zeros(sizes[1]), rng.uniform(0.9, 1.5, sizes[2])])
    group = np.repeat(np.arange(3), sizes)
    y = amp[:, None] / (1 + np.exp(-6 * t))[None, :] + rng.normal(size=(b, N))
    return y.astype(np.float32), group


def child(method: str, b: int, out: str) -> dict[str, float]:
    import epg_core as E

    y, _ = curves(b)
    E.permutation_test(y[:2_000], n_permutations=K, alpha=ALPHA, method=method, risk=RISK)  # compile
    t0 = time.perf_counter()
    res = E.permutation_test(y, n_permutations=K, alpha=ALPHA, method=method, risk=RISK)
    seconds = time.perf_counter() - t0
    assert res.n_used is not None
    np.savez(out, pvalue=res.pvalue, significant=res.significant, n_used=res.n_used)
    t0 = time.perf_counter()
    E.permutation_moments(y)
    moments = time.perf_counter() - t0
    return {"time": seconds, "rss_mb": _hwm_mb(), "moments": moments}


def _run(method: str, b: int, tmp: Path) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    out = tmp / f"{method}.npz"
    proc = subprocess.run([sys.executable, "-m", "epg_bench.bench_sequential", "--child", method, "--curves", str(b),
                           "--out", str(out)], capture_output=True, text=True, check=True)
    data = np.load(out)
    return json.loads(proc.stdout.strip().splitlines()[-1]), {k: data[k] for k in data.files}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--curves", type=int, default=200_000)
    args = parser.parse_args(argv)
    if args.child is not None:
        print(json.dumps(child(args.child, args.curves, args.out)))
        return
    b = args.curves
    with open("/proc/loadavg") as fh:
        print(f"load average before: {' '.join(fh.read().split()[:3])}")
    with tempfile.TemporaryDirectory() as tmp:
        runs = {m: _run(m, b, Path(tmp)) for m in ("fixed", "sequential")}
    _, group = curves(b)
    (ft, fixed), (st, seq) = runs["fixed"], runs["sequential"]
    scale = 1_000_000 / b
    print(f"\n{b:,} curves x {N} steps (float32), alpha = {ALPHA}, two-sided, K = {K:,}, risk = {RISK:g}; "
          f"per 1M extrapolated x{scale:g} from {b:,}")
    print("| method | time [s] | per 1M curves [s] (extrapolated) | x fixed | mean shuffles drawn | "
          "peak RSS [MB] | agreement with fixed | settled by Cantelli |")
    print("|---|---|---|---|---|---|---|---|")
    agree = float(np.mean(fixed["significant"] == seq["significant"]))
    settled = int(np.sum(seq["n_used"] == 0))
    for name, t, r in (("fixed K = 10,000", ft, fixed), ("sequential (Gandy), risk 1e-3", st, seq)):
        print(f"| {name} | {t['time']:.3g} | {t['time'] * scale:.3g} | {t['time'] / ft['time']:.3f} | "
              f"{float(np.mean(r['n_used'])):,.0f} | {t['rss_mb']:.0f} | "
              f"{'-' if r is fixed else f'{100 * agree:.3f} %'} | "
              f"{'-' if r is fixed else f'{settled:,}'} |")
    print(f"| exact moments alone (permutation_moments) | {ft['moments']:.3g} | {ft['moments'] * scale:.3g} | "
          f"{ft['moments'] / ft['time']:.3f} | 0 | | | |")
    print("\n| group | curves | fixed: significant | sequential: significant | mean shuffles drawn | "
          "reached the cap K | settled by Cantelli |")
    print("|---|---|---|---|---|---|---|")
    for g, (gname, _) in enumerate(GROUPS):
        m = group == g
        print(f"| {gname} | {int(m.sum()):,} | {100 * float(np.mean(fixed['significant'][m])):.2f} % | "
              f"{100 * float(np.mean(seq['significant'][m])):.2f} % | {float(np.mean(seq['n_used'][m])):,.0f} | "
              f"{100 * float(np.mean(seq['n_used'][m] == K)):.2f} % | {int(np.sum(seq['n_used'][m] == 0)):,} |")
    diff = fixed["significant"] != seq["significant"]
    se = np.sqrt(ALPHA * (2 - ALPHA) / K)
    z = np.abs(fixed["pvalue"][diff] - ALPHA) / se
    print(f"\ndisagreements: {int(diff.sum()):,} of {b:,}; |p_fixed - alpha| / SE_K: max "
          f"{float(z.max()) if z.size else 0:.2f}, median {float(np.median(z)) if z.size else 0:.2f}")
    with open("/proc/loadavg") as fh:
        print(f"load average after: {' '.join(fh.read().split()[:3])}")


if __name__ == "__main__":
    main()
