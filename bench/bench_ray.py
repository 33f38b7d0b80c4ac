"""Benchmark of the Ray executor for ``epg sweep`` (issue 14): local (one process) against Ray with 1 and 2 workers.

A 30-checkpoint x 101-step sweep of a small model (a random ConvMixer dim 64, depth 4 at 128x128, one thread per
process) on a local Ray instance of this machine. For each executor: wall time of the whole ``sweep`` call, time to
the first stored checkpoint (start-up: export and probe in the driver, plus worker start on Ray), the median
interval between stored checkpoints (steady state), the overhead per checkpoint against local and the speed-up.
Every Ray run is checked bit for bit against the local outputs. Ray's own start (``ray.init``) is measured apart:
it is paid once per driver process. Each executor runs ``--repeat`` times, interleaved, and the fastest run is
shown. The load average is read before and after: other processes on the machine make the times pessimistic.

    python -m epg_bench.bench_ray [--checkpoints 30] [--steps 101] [--repeat 2] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from epg_bridges.executors import ExecutorOptions, ray_init
from epg_bridges.models import Preprocessing, RunOptions, conv_mixer, sweep
from epg_bridges.testing import noise_interventions, perturbed_checkpoints
from epg_core import read_outputs

PARAS = {"dim": 64, "depth": 4, "kernel_size": 7, "patch_size": 5, "n_classes": 2, "in_channels": 3}
PREP = Preprocessing(size=(128, 128))


def write_checkpoints(folder: Path, count: int) -> None:
    """``count`` checkpoints of one random ConvMixer with small distinct perturbations (a fake training run)."""
    torch.manual_seed(0)
    perturbed_checkpoints(folder, PARAS, conv_mixer(**PARAS).state_dict(), count, 1e-2)


def timed_sweep(folder: Path, out: Path, executor: ExecutorOptions | None) -> dict[str, Any]:
    """One fresh sweep: wall time, time to the first stored checkpoint, intervals between stored checkpoints."""
    stamps: list[float] = []
    start = time.perf_counter()
    result = sweep(str(folder / "ckpts" / "epoch_*.pth"), [folder / "iv.h5"], out,
                   RunOptions(preprocessing=PREP, threads=1, batch_size=32), executor=executor,
                   progress=lambda done, _total: stamps.append(time.perf_counter()) if done else None)
    wall = time.perf_counter() - start
    intervals = np.diff(stamps)
    return {"wall_s": wall, "first_s": stamps[0] - start, "median_interval_s": float(statistics.median(intervals)),
            "computed": len(result.computed)}


def outputs(path: Path) -> np.ndarray:
    (block,) = read_outputs(path, "convmixer")
    assert block.done.all()
    return block.outputs


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


def run(checkpoints: int, steps: int, repeat: int) -> dict[str, Any]:
    """Every executor ``repeat`` times, interleaved (so a burst of load hits all alike); the fastest run of each."""
    configs: dict[str, ExecutorOptions | None] = {
        "local (1 process)": None, "ray, 1 worker": ExecutorOptions(executor="ray", workers=1),
        "ray, 2 workers": ExecutorOptions(executor="ray", workers=2)}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        write_checkpoints(folder / "ckpts", checkpoints)
        noise_interventions(folder / "iv.h5", steps)
        before = loadavg()
        start = time.perf_counter()
        ray_init(None, os.cpu_count())
        ray_start = time.perf_counter() - start
        best: dict[str, dict[str, Any]] = {}
        reference: np.ndarray | None = None
        for _ in range(repeat):
            for name, executor in configs.items():
                out = folder / "out.h5"
                out.unlink(missing_ok=True)
                row = timed_sweep(folder, out, executor)
                got = outputs(out)
                reference = got if reference is None else reference
                row["identical"] = bool(np.array_equal(got, reference)) if executor is not None else "reference"
                if name not in best or row["wall_s"] < best[name]["wall_s"]:
                    best[name] = row
        after = loadavg()
    local = best["local (1 process)"]
    for row in best.values():
        row["overhead_per_ckpt_s"] = (row["wall_s"] - local["wall_s"]) / checkpoints
        row["steady_overhead_per_ckpt_s"] = row["median_interval_s"] - local["median_interval_s"]
        row["speedup"] = local["wall_s"] / row["wall_s"]
    return {"checkpoints": checkpoints, "steps": steps, "paras": PARAS, "size": PREP.size, "ray_init_s": ray_start,
            "repeat": repeat, "loadavg_before": before, "loadavg_after": after, "cpus": os.cpu_count(), "rows": best}


def markdown(res: dict[str, Any]) -> str:
    head = ("| executor | wall s | first ckpt s | s per ckpt (median interval) | overhead per ckpt s (wall) | "
            "speed-up | identical |\n|---|---:|---:|---:|---:|---:|---|")
    lines = [head]
    for name, r in res["rows"].items():
        lines.append(f"| {name} | {r['wall_s']:.2f} | {r['first_s']:.2f} | {r['median_interval_s']:.3f} | "
                     f"{r['overhead_per_ckpt_s']:+.3f} | {r['speedup']:.2f}x | {r['identical']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--checkpoints", type=int, default=30)
    parser.add_argument("--steps", type=int, default=101)
    parser.add_argument("--repeat", type=int, default=2, help="runs of each executor (the fastest is shown)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    res = run(args.checkpoints, args.steps, args.repeat)
    print(f"{args.checkpoints} checkpoints x {args.steps} steps, ConvMixer {PARAS} at {PREP.size[1]}x{PREP.size[0]}, "
          f"threads=1, batch 32, {res['cpus']} CPUs, best of {res['repeat']} interleaved runs; "
          f"ray.init {res['ray_init_s']:.1f} s (once per driver, not in "
          f"the wall times); load average before {res['loadavg_before']}, after {res['loadavg_after']}")
    print()
    print(markdown(res))
    if args.json is not None:
        args.json.write_text(json.dumps(res, indent=2, default=str))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
