"""Benchmark: the cost of storing one checkpoint vs the outputs file's size, and ``epg score`` memory vs classes.

    python -m epg_bench.bench_store [--quick] [--json PATH] [--dir DIR]

1. *Store*: an outputs file of one block (``M`` checkpoints x 101 steps x 250 classes, float32) is made at
   10 MB, 100 MB, 1 GB and 2 GB; storing one checkpoint's rows (``set_checkpoint_outputs``: a shard written and
   folded in place) is timed (median of 7 after a warm-up). It should not grow with the file (v1 rewrote the
   whole file: seconds per checkpoint at 1 GB and more). The time to write the file once is shown beside it.
2. *Score memory*: ``epg score`` runs as a child process on outputs files of 10 sequences x 20 checkpoints x
   101 steps with 10, 100, 1,000 and 4,000 classes; the child's peak resident memory (``VmHWM`` from
   ``/proc/self/status`` at exit) should stay flat (scoring reads chunks of checkpoints and classes).

The big files go to ``--dir`` (default: a temporary folder under the system temp dir) and are deleted at the
end; sizes that do not fit in the free space are skipped with a note. ``--quick`` stops at 100 MB and 1,000
classes. The load average is printed, since the machine may be shared.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from epg_core import OutputsBlock, set_checkpoint_outputs, write_outputs

STEPS, CLASSES = 101, 250
ROW_BYTES = STEPS * CLASSES * 4  # one checkpoint's outputs in the store benchmark: 101 kB
SIZES_MB = (10, 100, 1000, 2000)
SCORE_CLASSES = (10, 100, 1000, 4000)
SCORE_SEQUENCES, SCORE_CHECKPOINTS = 10, 20

_CHILD = (
    "import atexit, sys\n"
    "def _hwm(path=sys.argv[1]):\n"
    "    with open('/proc/self/status') as fh:\n"
    "        kb = [ln.split()[1] for ln in fh if ln.startswith('VmHWM:')][0]\n"
    "    with open(path, 'w') as out:\n"
    "        out.write(kb)\n"
    "atexit.register(_hwm)\n"
    "sys.argv = ['epg', *sys.argv[2:]]\n"
    "from epg_cli.main import cli\n"
    "cli(prog_name='epg')\n"
)


def _block(m: int, n: int, c: int, sequence: str = "s", *, filled: bool = False, seed: int = 0) -> OutputsBlock:
    """A block of ``m`` checkpoints: empty (NaN, not done) or filled with softmax rows (all done)."""
    if filled:
        raw = np.random.default_rng(seed).random((m, n, c), dtype=np.float32)
        outputs = raw / raw.sum(-1, keepdims=True)
    else:
        outputs = np.full((m, n, c), np.nan, np.float32)
    return OutputsBlock(model="m", sequence=sequence, outputs=outputs, done=np.full(m, filled),
                        checkpoints=[f"epoch_{i}" for i in range(m)], classes=[f"class_{j}" for j in range(c)],
                        values=np.linspace(0.0, 1.0, n), output_kind="probabilities",
                        preprocessing={"size": [32, 32]},
                        attrs={"source": "synthetic", "property": "brightness", "unit": "", "includes_original": True})


def _median_store_seconds(path: Path, m: int, repeats: int = 7) -> float:
    """Median wall time of storing one checkpoint's rows at spread-out indices of an ``m``-checkpoint block."""
    times = []
    for k in range(repeats):
        rows = {"s": np.full((STEPS, CLASSES), 1.0 / CLASSES, np.float32)}
        start = time.perf_counter()
        set_checkpoint_outputs(path, "m", (k * 7919) % m, rows)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def bench_store(folder: Path, sizes_mb: tuple[int, ...]) -> list[dict[str, Any]]:
    """One row per file size: the file's real size, the time to write it once, the time to store a checkpoint."""
    rows = []
    for mb in sizes_mb:
        m = max(2, mb * 1_000_000 // ROW_BYTES)
        free = shutil.disk_usage(folder).free
        if free < 2.5 * m * ROW_BYTES:
            rows.append({"target": f"{mb:,} MB", "note": f"skipped: {free / 1e9:.1f} GB free"})
            continue
        path = folder / f"store-{mb}.h5"
        block = _block(m, STEPS, CLASSES)
        start = time.perf_counter()
        write_outputs(path, [block])
        write_s = time.perf_counter() - start
        del block
        _median_store_seconds(path, m, repeats=2)  # warm-up: imports, first shard folder
        store_s = _median_store_seconds(path, m)
        rows.append({"target": f"{mb:,} MB", "checkpoints": m, "file_mb": path.stat().st_size / 1e6,
                     "write_file_s": write_s, "store_one_s": store_s})
        print(f"  store: {rows[-1]}", file=sys.stderr, flush=True)
        path.unlink()
    return rows


def _peak_rss_mb(args: list[str], folder: Path) -> tuple[float, float]:
    """Run ``epg args`` in a child process; return (its peak RSS in MB from VmHWM, wall seconds)."""
    hwm = folder / "vmhwm.txt"
    hwm.unlink(missing_ok=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", _CHILD, str(hwm), *args], cwd=folder, env=env,
                          capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"epg {' '.join(args)} failed: {proc.stderr[-2000:]}")
    return int(hwm.read_text()) / 1024, seconds


def bench_score_memory(folder: Path, classes: tuple[int, ...], permutations: int) -> list[dict[str, Any]]:
    """One row per number of classes: the outputs file size and ``epg score``'s peak RSS and wall time."""
    rows = []
    for c in classes:
        path = folder / f"score-{c}.h5"
        blocks = [_block(SCORE_CHECKPOINTS, STEPS, c, f"seq_{s}", filled=True, seed=s) for s in range(SCORE_SEQUENCES)]
        write_outputs(path, blocks)
        del blocks
        rss, seconds = _peak_rss_mb(["score", str(path), "-k", str(permutations), "-q", "-o",
                                     str(folder / f"score-{c}.csv")], folder)
        rows.append({"classes": c, "file_mb": path.stat().st_size / 1e6, "peak_rss_mb": rss, "score_s": seconds,
                     "curves": SCORE_SEQUENCES * SCORE_CHECKPOINTS})
        print(f"  score: {rows[-1]}", file=sys.stderr, flush=True)
        path.unlink()
        (folder / f"score-{c}.csv").unlink(missing_ok=True)
    return rows


def _table(rows: list[dict[str, Any]], columns: list[tuple[str, str, str]]) -> str:
    """A markdown table of ``rows``: columns are (key, header, format)."""
    lines = ["| " + " | ".join(h for _, h, _ in columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = [format(row[k], f) if k in row else row.get("note", "") for k, _, f in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="Up to 100 MB files and 1,000 classes.")
    parser.add_argument("--json", type=Path, default=None, help="Also write the numbers as JSON here.")
    parser.add_argument("--dir", type=Path, default=None, help="Folder for the big files (deleted after).")
    parser.add_argument("--permutations", type=int, default=1000, help="Shuffles K of the score runs.")
    args = parser.parse_args(argv)
    sizes = SIZES_MB[:2] if args.quick else SIZES_MB
    classes = SCORE_CLASSES[:3] if args.quick else SCORE_CLASSES
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="epg-bench-store-", dir=args.dir) as tmp:
        folder = Path(tmp)
        print(f"files in {folder} ({shutil.disk_usage(folder).free / 1e9:.0f} GB free); load average "
              f"{load_before[0]:.2f}", file=sys.stderr)
        store = bench_store(folder, sizes)
        score = bench_score_memory(folder, classes, args.permutations)
    load_after = os.getloadavg()
    result = {"machine": f"{platform.machine()}, {os.cpu_count()} CPUs", "python": platform.python_version(),
              "load_average_before": load_before[0], "load_average_after": load_after[0],
              "store": store, "score": score}
    print("\nStoring one checkpoint (101 steps x 250 classes, 101 kB) vs outputs file size\n")
    print(_table(store, [("target", "file", "s"), ("checkpoints", "checkpoints", ",d"),
                         ("file_mb", "size MB", ",.0f"), ("write_file_s", "write whole file s", ".2f"),
                         ("store_one_s", "store one checkpoint s", ".4f")]))
    print(f"\n`epg score` peak RSS (VmHWM) vs classes ({SCORE_SEQUENCES} sequences x {SCORE_CHECKPOINTS} checkpoints x "
          f"{STEPS} steps, K={args.permutations})\n")
    print(_table(score, [("classes", "classes", ",d"), ("file_mb", "file MB", ",.1f"),
                         ("peak_rss_mb", "peak RSS MB", ",.0f"), ("score_s", "wall s", ".1f")]))
    print(f"\nload average {load_before[0]:.2f} before, {load_after[0]:.2f} after")
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
