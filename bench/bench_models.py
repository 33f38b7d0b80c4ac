"""Benchmark of the model bridge on the paper's ConvMixer at 128x128 (issue 4).

Measures (one run, this machine):
1. sweep throughput: ``epg_bridges.models.sweep`` (one export, then weight swap per checkpoint) against a
   loop that re-exports every checkpoint (load, build, ``torch.onnx.export``, new ORT session, run, store);
2. inference: ONNX Runtime against torch eager, images per second at batch 1 and batch 16.

Uses ../shared/reference/propgrad (beside the checkout) when present, else a randomly initialised ConvMixer
with the reference ``paras``. Prints a markdown table with ratios; ``--json PATH`` also writes the numbers.

    python -m epg_bench.bench_models [--quick] [--json PATH] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from epg_bridges.models import (
    OnnxRunner,
    Preprocessing,
    RunOptions,
    build_model,
    conv_mixer,
    export_model,
    load_checkpoint,
    select_provider,
    sweep,
)
from epg_bridges.testing import noise_interventions, perturbed_checkpoints
from epg_core import OutputsBlock, set_checkpoint_outputs, write_outputs

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference" / "propgrad"
REFERENCE_CKPT = REFERENCE / "checkpoints" / "cats-vs-dogs" / "convmixer_unbiased.pth"
PARAS = {"dim": 256, "depth": 8, "kernel_size": 7, "patch_size": 5, "n_classes": 2, "in_channels": 3}
PREP = Preprocessing(size=(128, 128), mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))


def _base_state() -> tuple[dict[str, torch.Tensor], str]:
    """The reference checkpoint's tensors, or a random ConvMixer with the same paras."""
    if REFERENCE_CKPT.is_file():
        return load_checkpoint(REFERENCE_CKPT).state_dict, f"reference {REFERENCE_CKPT.name}"
    torch.manual_seed(0)
    return conv_mixer(**PARAS).state_dict(), "random init (reference assets not found)"


def bench_sweeps(folder: Path, n_ckpt: int, n_images: int, threads: int) -> dict[str, float]:
    """Seconds for a weight-swap sweep and a re-export-per-checkpoint loop over the same checkpoints."""
    base, _ = _base_state()
    paths = perturbed_checkpoints(folder, PARAS, base, n_ckpt, 1e-3)
    inputs = noise_interventions(folder / "iv.h5", n_images)

    stamps: list[float] = []
    t0 = time.perf_counter()
    options = RunOptions(preprocessing=PREP, threads=threads)
    result = sweep([str(p) for p in paths], [inputs], folder / "swap.h5", options,
                   progress=lambda done, _total: stamps.append(time.perf_counter()) if done else None)
    swap_total = time.perf_counter() - t0
    assert len(result.computed) == n_ckpt
    steady = statistics.median(np.diff([t0, *stamps])[1:]) if n_ckpt > 1 else swap_total

    t0 = time.perf_counter()
    reexport = _reexport_loop(paths, inputs, folder / "reexport.h5", threads)
    reexport_total = time.perf_counter() - t0
    return {"checkpoints": n_ckpt, "images": n_images, "swap_total_s": swap_total,
            "swap_per_ckpt_steady_s": float(steady), "reexport_total_s": reexport_total,
            "reexport_per_ckpt_s": reexport_total / n_ckpt, "reexport_max_diff_vs_swap": reexport}


def _reexport_loop(paths: list[Path], inputs: Path, out: Path, threads: int) -> float:
    """The naive sweep: a fresh export and session per checkpoint; returns max |difference| to the swap sweep."""
    from epg_bridges.models import collect_inputs
    from epg_core import read_outputs

    x = collect_inputs([inputs]).preprocessed("bench", PREP)
    names = [p.stem for p in paths]
    write_outputs(out, [OutputsBlock("convmixer", "bench", np.full((len(paths), len(x), 2), np.nan, np.float32),
                                     np.zeros(len(paths), bool), names, ["cat", "dog"], np.linspace(0, 1, len(x)))])
    for i, path in enumerate(paths):
        model = build_model("convmixer", path)
        runner = OnnxRunner(export_model(model, PREP), threads=threads)
        set_checkpoint_outputs(out, "convmixer", i, {"bench": runner.outputs(x)})
    naive = read_outputs(out)[0].outputs
    swapped = read_outputs(out.with_name("swap.h5"))[0].outputs
    return float(np.max(np.abs(naive - swapped)))


def _images_per_second(fn: Callable[[], Any], batch: int, min_seconds: float) -> float:
    fn()  # warm-up
    runs, start = 0, time.perf_counter()
    while True:
        fn()
        runs += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds and runs >= 3:
            return runs * batch / elapsed


def bench_inference(threads: int, min_seconds: float) -> dict[str, float]:
    """Images per second of ORT and torch eager on the same model and inputs."""
    base, _ = _base_state()
    model = conv_mixer(**PARAS)
    model.load_state_dict(base)
    model.eval()
    torch.set_num_threads(threads)
    runner = OnnxRunner(export_model(model, PREP), threads=threads, batch_size=64, output_kind="logits")
    found: dict[str, float] = {}
    for batch in (1, 16):
        x = PREP.random_batch(batch, seed=batch)
        xt = torch.from_numpy(x)

        def eager(xt: torch.Tensor = xt) -> None:
            with torch.inference_mode():
                model(xt)

        found[f"ort_b{batch}_img_s"] = _images_per_second(lambda x=x: runner.raw(x), batch, min_seconds)
        found[f"torch_b{batch}_img_s"] = _images_per_second(eager, batch, min_seconds)
        with torch.inference_mode():
            found[f"max_diff_b{batch}"] = float(np.max(np.abs(runner.raw(x) - model(xt).numpy())))
    return found


def _table(sw: dict[str, float], inf: dict[str, float], meta: dict[str, Any]) -> str:
    rows = [
        "| measurement | weight swap / ONNX Runtime | re-export / torch eager | ratio |",
        "|---|---|---|---|",
        f"| sweep, {sw['checkpoints']} checkpoints x {sw['images']} images, total s "
        f"| {sw['swap_total_s']:.2f} | {sw['reexport_total_s']:.2f} "
        f"| {sw['reexport_total_s'] / sw['swap_total_s']:.2f}x faster |",
        f"| sweep, s per checkpoint (swap: steady state) | {sw['swap_per_ckpt_steady_s']:.3f} "
        f"| {sw['reexport_per_ckpt_s']:.3f} | {sw['reexport_per_ckpt_s'] / sw['swap_per_ckpt_steady_s']:.2f}x faster |",
    ]
    once = sw["swap_total_s"] - sw["checkpoints"] * sw["swap_per_ckpt_steady_s"]
    swap_101, naive_101 = once + 101 * sw["swap_per_ckpt_steady_s"], 101 * sw["reexport_per_ckpt_s"]
    rows.append(f"| sweep, 101 checkpoints (extrapolated: one-time {once:.2f} s + 101 x per checkpoint), s "
                f"| {swap_101:.1f} | {naive_101:.1f} | {naive_101 / swap_101:.2f}x faster |")
    for batch in (1, 16):
        ort_v, tor_v = inf[f"ort_b{batch}_img_s"], inf[f"torch_b{batch}_img_s"]
        rows.append(f"| inference, batch {batch}, images/s | {ort_v:.1f} | {tor_v:.1f} | {ort_v / tor_v:.2f}x |")
    notes = (f"\nModel: ConvMixer {PARAS} at 128x128, weights: {meta['weights']}; {meta['provider']}, "
             f"threads={meta['threads']}; torch {torch.__version__}, {meta['ort']}; {meta['machine']}.\n"
             "Re-export = load + build + torch.onnx.export + new ORT session + run + store per checkpoint "
             "(no torch check, which would make it slower still). "
             f"Swap vs re-export outputs max |diff| = {sw['reexport_max_diff_vs_swap']:.2g}; "
             f"ORT vs torch max |logit diff| = {max(inf['max_diff_b1'], inf['max_diff_b16']):.2g}.")
    return "\n".join(rows) + notes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer checkpoints, images and repetitions")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers as JSON")
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads for torch and ORT")
    args = parser.parse_args(argv)
    import onnxruntime

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    n_ckpt, n_images, min_seconds = (4, 8, 1.0) if args.quick else (10, 16, 3.0)
    meta = {"weights": _base_state()[1], "provider": select_provider(report=False), "threads": args.threads,
            "ort": f"onnxruntime {onnxruntime.__version__}",
            "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores"}
    with tempfile.TemporaryDirectory() as tmp:
        sw = bench_sweeps(Path(tmp), n_ckpt, n_images, args.threads)
    inf = bench_inference(args.threads, min_seconds)
    print(_table(sw, inf, meta))
    if args.json:
        args.json.write_text(json.dumps({"sweep": sw, "inference": inf, "meta": meta}, indent=2) + "\n")
        print(f"\n{args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
