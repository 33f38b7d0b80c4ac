"""Benchmark: batched InstructPix2Pix guidance sweep vs. one stock pipeline call per scale (the authors' loop).

    python -m epg_bench.bench_edit [--quick] [--json PATH] [--real-size] [--device cuda]
    python -m epg_bench.bench_edit --editors [--quick]    # one row per editor (tiny pipelines, CPU)

Default: the tiny random pipeline of ``epg_bridges.testing.tiny_random_pipeline`` on the CPU. ``--real-size``
builds a random-weight pipeline with Stable Diffusion 1.5 / InstructPix2Pix dimensions (860M-parameter UNet,
512x512 images, fp16 on CUDA) — meant for a GPU machine. Both variants produce the same N edits; the table
reports wall time, time per edit, the speed-up of the batched loop over the per-scale loop, and the largest
pixel difference between the two (they compute the same images). One run per variant after a warm-up.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from epg_bridges.interventions import Counter, make_editor, quiet_libraries, select_device
from epg_bridges.testing import (
    TINY_EDITORS,
    small_qwen_condition,
    stock_edit,
    tiny_random_pipeline,
    tiny_tokenizer,
)

PROMPT = "make it a cat"
IMAGE_GUIDANCE = 1.5
SEED = 0


def _real_size_pipeline(device: torch.device, dtype: torch.dtype) -> Any:
    """Random weights with the dimensions of timbrooks/instruct-pix2pix (SD 1.5 UNet with 8 input channels)."""
    from diffusers import (
        AutoencoderKL,
        EulerAncestralDiscreteScheduler,
        StableDiffusionInstructPix2PixPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel

    tokenizer = tiny_tokenizer()
    torch.manual_seed(0)
    with quiet_libraries(), torch.device(device):
        unet = UNet2DConditionModel(
            sample_size=64, in_channels=8, out_channels=4, layers_per_block=2,
            block_out_channels=(320, 640, 1280, 1280),
            down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
            cross_attention_dim=768, attention_head_dim=8,
        )
        vae = AutoencoderKL(
            in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2, sample_size=512,
            block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,  # pyright: ignore[reportArgumentType]
            up_block_types=("UpDecoderBlock2D",) * 4,  # pyright: ignore[reportArgumentType]
        )
        text_encoder = CLIPTextModel(CLIPTextConfig(
            hidden_size=768, intermediate_size=3072, num_attention_heads=12, num_hidden_layers=12,
            vocab_size=len(tokenizer), max_position_embeddings=77, bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        ))
        pipe = StableDiffusionInstructPix2PixPipeline(
            vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
            scheduler=EulerAncestralDiscreteScheduler(beta_start=0.00085, beta_end=0.012,  # pyright: ignore[reportArgumentType]
                                                      beta_schedule="scaled_linear"),
            safety_checker=None, feature_extractor=None,  # pyright: ignore[reportArgumentType]
            requires_safety_checker=False,
        )
        pipe = pipe.to(device=device, dtype=dtype)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _per_scale(pipe: Any, image: Image.Image, scales: np.ndarray, steps: int) -> np.ndarray:
    """The authors' loop: one stock pipeline call per guidance scale, same seed each time."""
    return np.stack([
        pipe(PROMPT, image=image, guidance_scale=float(g), image_guidance_scale=IMAGE_GUIDANCE,
             num_inference_steps=steps, generator=torch.Generator().manual_seed(SEED), output_type="np").images[0]
        for g in scales
    ])


def _batched(pipe: Any, image: Image.Image, scales: np.ndarray, steps: int, batch_size: int) -> np.ndarray:
    editor = make_editor("instruct-pix2pix", {"image_guidance_scale": IMAGE_GUIDANCE}).use(pipe)
    return editor.edit(image, PROMPT, np.asarray(scales, float), seed=SEED, steps=steps, batch_size=batch_size,
                       counter=Counter(None, 0))


def _timed(device: torch.device, repeats: int, fn: Any, *args: Any) -> tuple[float, np.ndarray]:
    """Best wall time of ``repeats`` runs (the least disturbed by other processes) and the last output."""
    best = float("inf")
    out: Any = None
    for _ in range(max(1, repeats)):
        _sync(device)
        t0 = time.perf_counter()
        out = fn(*args)
        _sync(device)
        best = min(best, time.perf_counter() - t0)
    return best, out


def run_benchmark(
    *, quick: bool = False, real_size: bool = False, device: str | None = None, size: int | None = None,
    n_scales: int | None = None, steps: int | None = None, batch_sizes: list[int] | None = None,
    repeats: int | None = None, threads: int | None = 1,
) -> dict[str, Any]:
    """Time the per-scale loop and the batched sweep(s); return settings and one row per variant.

    On the CPU, ``threads`` intra-op threads (default 1: on a small shared machine more threads mostly wait
    on each other); each variant's time is the best of ``repeats`` runs.
    """
    if threads:
        torch.set_num_threads(int(threads))
    repeats = repeats or (2 if quick else 3)
    dev, dtype = select_device(device if device is not None else ("auto" if real_size else "cpu"))
    size = size or ((512 if not quick else 256) if real_size else (32 if quick else 64))
    n_scales = n_scales or (8 if quick else 16)
    steps = steps or (4 if quick else 10)
    batch_sizes = batch_sizes or ([4, 8] if quick else [4, 8, 16])
    scales = np.linspace(1.0, 15.0, n_scales + 1)[1:]
    pipe = _real_size_pipeline(dev, dtype) if real_size else tiny_random_pipeline("instruct-pix2pix", device=str(dev))
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8))
    # warm-up (kernel selection, allocator) with the shapes timed below
    _per_scale(pipe, image, scales[:1], 1)
    for b in batch_sizes:
        _batched(pipe, image, scales[: min(b, n_scales)], 1, b)
    t_ref, ref = _timed(dev, repeats, _per_scale, pipe, image, scales, steps)
    rows = [{"variant": "per-scale (stock loop)", "batch": 1, "seconds": t_ref, "speedup": 1.0, "max_abs_diff": 0.0}]
    for b in batch_sizes:
        t, out = _timed(dev, repeats, _batched, pipe, image, scales, steps, b)
        rows.append({"variant": "batched (epg)", "batch": b, "seconds": t, "speedup": t_ref / t,
                     "max_abs_diff": float(np.abs(out - ref).max())})
    for r in rows:
        r["per_edit"] = r["seconds"] / n_scales
    return {
        "pipeline": "random SD-1.5-size InstructPix2Pix" if real_size else "tiny random InstructPix2Pix",
        "device": str(dev),
        "device_name": (torch.cuda.get_device_name(dev) if dev.type == "cuda"
                        else platform.processor() or platform.machine()),
        "dtype": str(dtype).replace("torch.", ""), "threads": torch.get_num_threads(),
        "image": f"{size}x{size}", "n_scales": n_scales, "steps": steps, "repeats": repeats,
        "torch": torch.__version__, "rows": rows,
    }


#: per editor: scales of the sweep (qwen: large, its random MMDiT hardly reads the prompt) and its options
_EDITOR_CASES: dict[str, tuple[float, float, dict[str, Any]]] = {
    "instruct-pix2pix": (1.5, 9.0, {"image_guidance_scale": IMAGE_GUIDANCE}),
    "ledits++": (2.0, 12.0, {}),
    "cosxl": (1.5, 9.0, {"image_guidance_scale": IMAGE_GUIDANCE}),
    "mgie": (1.5, 9.0, {"image_guidance_scale": IMAGE_GUIDANCE}),
    "qwen-image-edit": (2.0, 100.0, {}),
    "flux-kontext": (1.5, 9.0, {}),
}


def run_editors(*, n_scales: int = 8, steps: int = 2, size: int = 32, repeats: int = 2, threads: int | None = 1,
                editors: list[str] | None = None, embeddings: Path | None = None) -> dict[str, Any]:
    """One row per built-in editor on its tiny random pipeline (CPU): the stock per-scale loop vs the editor's
    sweep (all scales in one batch), the ratio, and the largest uint8 difference between the two."""
    import tempfile

    if threads:
        torch.set_num_threads(int(threads))
    scales_of = {m: np.linspace(lo, hi, n_scales) for m, (lo, hi, _) in _EDITOR_CASES.items()}
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, size=(size, size, 3), dtype=np.uint8))
    rows = []
    with tempfile.TemporaryDirectory() as tmp, small_qwen_condition():
        if embeddings is None:
            g = torch.Generator().manual_seed(3)
            embeddings = Path(tmp) / "mgie.npz"
            np.savez(embeddings, prompt_embeds=torch.randn(1, 8, 16, generator=g).numpy())
        for method in editors or list(TINY_EDITORS):
            pipe = tiny_random_pipeline(method)
            options = dict(_EDITOR_CASES[method][2])
            if method == "mgie":
                options["embeddings"] = str(embeddings)
            editor = make_editor(method, options).use(pipe)
            scales = scales_of[method]

            def stock(pipe: Any = pipe, method: str = method, options: dict[str, Any] = options,
                      scales: np.ndarray = scales) -> np.ndarray:
                return np.stack([stock_edit(method, pipe, image, PROMPT, float(g), seed=SEED, steps=steps,
                                            options=options) for g in scales])

            def ours(editor: Any = editor, scales: np.ndarray = scales) -> np.ndarray:
                return editor.sweep(image, PROMPT, scales, seed=SEED, steps=steps, batch_size=len(scales))

            stock(scales=scales[:1])  # warm-up
            ours(scales=scales[:1])
            t_stock, ref = _timed(torch.device("cpu"), repeats, stock)
            t_ours, out = _timed(torch.device("cpu"), repeats, ours)
            ref8 = np.clip(np.rint(np.asarray(ref, np.float64) * 255), 0, 255).astype(int)
            rows.append({"editor": method, "batched": bool(editor.batched), "stock_s": t_stock, "epg_s": t_ours,
                         "speedup": t_stock / t_ours, "max_uint8_diff": int(np.abs(out.astype(int) - ref8).max())})
    return {"pipeline": "tiny random pipelines", "device": "cpu", "threads": torch.get_num_threads(),
            "image": f"{size}x{size}", "n_scales": n_scales, "steps": steps, "repeats": repeats,
            "torch": torch.__version__, "rows": rows}


def editors_table(result: dict[str, Any]) -> str:
    """The per-editor result as a markdown table."""
    head = (f"{result['pipeline']}, {result['image']}, {result['n_scales']} scales x {result['steps']} steps, "
            f"{result['device']} ({result['threads']} threads), best of {result['repeats']} runs")
    lines = [head, "", "| editor | batched | stock per-scale loop [s] | epg sweep [s] | speed-up | max uint8 diff |",
             "|---|---|---:|---:|---:|---:|"]
    for r in result["rows"]:
        lines.append(f"| {r['editor']} | {'yes' if r['batched'] else 'no'} | {r['stock_s']:.2f} | {r['epg_s']:.2f} | "
                     f"{r['speedup']:.2f}x | {r['max_uint8_diff']} |")
    return "\n".join(lines)


def markdown_table(result: dict[str, Any]) -> str:
    """The result as a markdown table plus a one-line header of the settings."""
    head = (f"{result['pipeline']}, {result['image']}, {result['n_scales']} guidance scales x {result['steps']} "
            f"steps, {result['device']} ({result['device_name']}, {result['threads']} threads), {result['dtype']}, "
            f"best of {result['repeats']} runs")
    lines = [head, "", "| variant | batch | time [s] | per edit [s] | speed-up | max abs diff |",
             "|---|---:|---:|---:|---:|---:|"]
    for r in result["rows"]:
        lines.append(f"| {r['variant']} | {r['batch']} | {r['seconds']:.2f} | {r['per_edit']:.3f} | "
                     f"{r['speedup']:.2f}x | {r['max_abs_diff']:.1e} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sweep (8 scales x 4 steps), ~1 minute on CPU")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers to this JSON file")
    parser.add_argument("--real-size", action="store_true", help="SD-1.5-size random pipeline (for a GPU)")
    parser.add_argument("--device", default=None, help="torch device (default: cpu; auto with --real-size)")
    parser.add_argument("--size", type=int, default=None, help="image side in pixels")
    parser.add_argument("--n-scales", type=int, default=None, help="number of guidance scales")
    parser.add_argument("--steps", type=int, default=None, help="denoising steps")
    parser.add_argument("--batch-sizes", type=str, default=None, help="comma-separated batch sizes, e.g. 4,8")
    parser.add_argument("--repeats", type=int, default=None, help="runs per variant, best time kept (2 quick, 3)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (0: torch default)")
    parser.add_argument("--editors", action="store_true",
                        help="one row per built-in editor (tiny pipelines on the CPU): stock loop vs epg sweep")
    args = parser.parse_args(argv)
    if args.editors:
        ed = run_editors(n_scales=args.n_scales or (4 if args.quick else 8), steps=args.steps or 2,
                         size=args.size or 32, repeats=args.repeats or (1 if args.quick else 2), threads=args.threads)
        print(editors_table(ed))
        if args.json is not None:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(ed, indent=2))
        return 0
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")] if args.batch_sizes else None
    result = run_benchmark(quick=args.quick, real_size=args.real_size, device=args.device, size=args.size,
                           n_scales=args.n_scales, steps=args.steps, batch_sizes=batch_sizes,
                           repeats=args.repeats, threads=args.threads)
    print(markdown_table(result))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
