"""Benchmark of the local baselines (issue 19): ``epg_bridges.baselines.attribute`` per method.

One row per method: 3 checkpoints x 4 images x 2 stored steps (the original and the last step) of the paper's
128 px ConvMixer, with the paper's settings (Occlusion 9x9 stride 4; LIME / Kernel SHAP on 100 SLIC superpixels;
Captum's defaults otherwise). Each method runs in its own process, so its peak RSS is its own. Uses
../shared/reference/propgrad (the three cats-vs-dogs checkpoints and four photos, darkened background) when
present, else perturbed random ConvMixers on noise images. Prints a markdown table; ``--json PATH`` also
writes the numbers.

    python -m epg_bench.bench_baselines [--methods a,b] [--batch-size N] [--threads N] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference" / "propgrad"
ALL = ("saliency", "integrated-gradients", "deeplift", "guided-gradcam", "occlusion", "lime", "kernel-shap")
PARAS = {"dim": 256, "depth": 8, "kernel_size": 7, "patch_size": 5, "n_classes": 2, "in_channels": 3}


def _peak_rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _inputs(folder: Path) -> tuple[Path, str, str]:
    """(interventions file, checkpoints glob, where they come from): 4 sequences x 8 steps at 128 px."""
    folder.mkdir(parents=True, exist_ok=True)
    iv = folder / "iv.h5"
    images = sorted((REFERENCE / "example_images" / "cvd").glob("*.jpg"))
    ckpts = REFERENCE / "checkpoints" / "cats-vs-dogs"
    if len(images) >= 4 and len(list(ckpts.glob("*.pth"))) >= 3:
        from epg_cli.main import cli

        cli.main(["intervene", "synthetic", "darken-background", *map(str, images[:4]), "--size", "128",
                  "--n-steps", "8", "-o", str(iv), "-q"], standalone_mode=False)
        return iv, str(ckpts / "*.pth"), "reference ConvMixers (cats-vs-dogs) on 4 photos, darken-background"
    import numpy as np
    import torch

    from epg_bridges.models import conv_mixer
    from epg_bridges.testing import perturbed_checkpoints
    from epg_core import InterventionSequence, write_interventions

    torch.manual_seed(0)
    perturbed_checkpoints(folder / "ckpt", PARAS, conv_mixer(**PARAS).state_dict(), 3, 0.01)
    rng = np.random.default_rng(0)
    seqs = {f"noise{i}": InterventionSequence(rng.integers(0, 256, (8, 128, 128, 3), dtype=np.uint8),
                                              np.linspace(0, 1, 8), {"source": "synthetic", "property": "noise",
                                                                     "unit": "", "includes_original": True})
            for i in range(4)}
    write_interventions(iv, seqs)
    return iv, str(folder / "ckpt" / "*.pth"), "random ConvMixers on noise images (reference assets not found)"


def run_one(method: str, iv: Path, ckpts: str, out: Path, batch_size: int, threads: int) -> dict[str, Any]:
    """Attributions of one method in this process: seconds, maps, peak RSS."""
    from epg_bridges.baselines import attribute
    from epg_bridges.models import RunOptions

    start = time.perf_counter()
    result = attribute([iv], ckpts, out, target=0, methods=[method], steps=(0, -1),
                       options=RunOptions(batch_size=batch_size, threads=threads, classes=["cat", "dog"]))
    seconds = time.perf_counter() - start
    maps = result.computed * 2
    return {"method": method, "seconds": seconds, "compute_seconds": result.seconds_by_method.get(method, 0.0),
            "maps": maps, "peak_rss_mb": _peak_rss_mb()}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--methods", default=",".join(ALL))
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)  # METHOD,IV,CKPTS,OUT (child process)
    args = parser.parse_args(argv)
    if args.one:
        method, iv, ckpts, out = args.one.split("|")
        print(json.dumps(run_one(method, Path(iv), ckpts, Path(out), args.batch_size, args.threads)))
        return {}
    import captum
    import torch

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        iv, ckpts, source = _inputs(Path(tmp))
        for method in args.methods.split(","):
            out = Path(tmp) / f"{method}.h5"
            res = subprocess.run([sys.executable, "-m", "epg_bench.bench_baselines", "--batch-size",
                                  str(args.batch_size), "--threads", str(args.threads), "--one",
                                  f"{method}|{iv}|{ckpts}|{out}"], capture_output=True, text=True,
                                 env={**os.environ, "HF_HUB_OFFLINE": "1"})
            if res.returncode != 0:
                raise SystemExit(f"{method} failed: {res.stderr.strip().splitlines()[-1:]}")
            rows.append(json.loads(res.stdout.strip().splitlines()[-1]))
    base = next((r["compute_seconds"] for r in rows if r["method"] == "saliency"), None)
    print("| method | maps | total s | attribution s | s per map | x saliency | peak RSS MB |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        ratio = f"{r['compute_seconds'] / base:.1f}x" if base else "-"
        print(f"| {r['method']} | {r['maps']} | {r['seconds']:.1f} | {r['compute_seconds']:.1f} | "
              f"{r['compute_seconds'] / max(r['maps'], 1):.3f} | {ratio} | {r['peak_rss_mb']:.0f} |")
    info = (f"{source}; 3 checkpoints x 4 images x 2 stored steps = 24 maps per method; batch size "
            f"{args.batch_size}, threads={args.threads}; torch {torch.__version__}, captum {captum.__version__}; "
            f"{platform.machine()}, {os.cpu_count()} CPU cores.")
    print(info)
    out = {"rows": rows, "info": info}
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
