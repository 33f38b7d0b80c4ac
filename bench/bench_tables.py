"""Scores as Parquet vs CSV (size, write, read) and the explorer's on-demand scoring latency.

``python -m epg_bench.bench_tables [--rows 200000] [--checkpoints 20] [--steps 50] [-k 10000]``

The table is ``epg score``'s real columns: one small outputs file is scored, its rows are repeated with fresh
model names and random numbers up to ``--rows``. Times are medians of 3 runs in one process; ratios are within
the run. The explorer part times ``Explorer.view`` of one model x sequence with ``--checkpoints`` checkpoints
(every checkpoint's shuffle test, the null re-run, the exact moments), warm and after a class change.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

import epg_core as E


def _median(fn: Callable[[], Any], repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _outputs(path: Path, checkpoints: int, steps: int, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    x = np.linspace(0.0, 1.0, steps)
    blocks = []
    for image in ("a", "b"):
        p = 1.0 / (1.0 + np.exp(-10.0 * (x[None, :] - rng.uniform(0.3, 0.7, (checkpoints, 1)))))
        out = np.stack([1.0 - p, 0.6 * p, 0.4 * p], -1).astype(np.float32)
        blocks.append(E.OutputsBlock("m", f"{image}-prop", out, np.ones(checkpoints, bool),
                                     [f"epoch_{i}" for i in range(checkpoints)], ["x", "y", "z"], x,
                                     "probabilities", attrs={"property": "prop", "image": image}))
    return E.write_outputs(path, blocks)


def _table(rows: int, folder: Path) -> list[dict[str, Any]]:
    base = E.score_outputs(_outputs(folder / "small.h5", 4, 12), E.ScoreOptions(n_permutations=100,
                                                                                 group_by="property"))
    rng = np.random.default_rng(1)
    out = []
    for i in range(rows):
        r = dict(base[i % len(base)])
        r["model"] = f"model_{i // len(base)}"
        for key in ("epg", "pvalue", "pearson", "zscore", "ratio"):
            if isinstance(r[key], float) and np.isfinite(r[key]):
                r[key] = float(rng.random())
        out.append(r)
    return out


def bench_tables(rows: int, folder: Path) -> list[dict[str, Any]]:
    table = _table(rows, folder)
    csv_path, pq_path = folder / "scores.csv", folder / "scores.parquet"
    results = []
    for fmt, path, write in (("CSV", csv_path, lambda: E.write_scores_csv(csv_path, table)),
                             ("Parquet", pq_path, lambda: E.write_scores_parquet(pq_path, table))):
        t_write = _median(write)
        t_read = _median(lambda path=path: E.read_scores(path))
        results.append({"format": fmt, "rows": rows, "size [MB]": path.stat().st_size / 1e6,
                        "write [s]": t_write, "epg_core.read_scores [s]": t_read})
    try:
        import pandas as pd

        results[0]["pandas [s]"] = _median(lambda: pd.read_csv(csv_path))
        results[1]["pandas [s]"] = _median(lambda: pd.read_parquet(pq_path))
    except ImportError:
        pass
    try:
        import polars as pl

        results[0]["polars [s]"] = _median(lambda: pl.read_csv(csv_path))
        results[1]["polars [s]"] = _median(lambda: pl.read_parquet(pq_path))
    except ImportError:
        pass
    return results


def bench_explorer(checkpoints: int, steps: int, k: int, folder: Path) -> list[dict[str, Any]]:
    from epg_bridges.app import Explorer, resolve_source

    source = resolve_source(_outputs(folder / "explore.h5", checkpoints, steps))
    rows = []
    explorer = Explorer(source, dataclasses.replace(E.ScoreOptions(), n_permutations=k))
    t0 = time.perf_counter()
    explorer.view("m", "a-prop", f"epoch_{checkpoints - 1}", "x")
    rows.append({"what": "first view (compiles the kernels)", "time [s]": time.perf_counter() - t0})
    t0 = time.perf_counter()
    explorer.view("m", "b-prop", f"epoch_{checkpoints - 1}", "x")
    rows.append({"what": "another sequence (scored on demand)", "time [s]": time.perf_counter() - t0})
    t0 = time.perf_counter()
    explorer.view("m", "b-prop", "epoch_0", "x")
    rows.append({"what": "another checkpoint (scores cached; null re-run)", "time [s]": time.perf_counter() - t0})
    for r in rows:
        r.update(checkpoints=checkpoints, steps=steps, K=k)
    return rows


def _print(rows: list[dict[str, Any]]) -> None:
    cols = list(dict.fromkeys(c for r in rows for c in r))
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for r in rows:
        cells = [f"{r[c]:.3g}" if isinstance(r.get(c), float) else str(r.get(c, "–")) for c in cols]
        print("| " + " | ".join(cells) + " |")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Scores as Parquet vs CSV, and the explorer's scoring latency.")
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--checkpoints", type=int, default=20)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("-k", type=int, default=10_000)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        _print(bench_tables(args.rows, Path(tmp)))
        print()
        _print(bench_explorer(args.checkpoints, args.steps, args.k, Path(tmp)))


if __name__ == "__main__":
    main()
