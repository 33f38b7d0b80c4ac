"""GPU benchmark of the editors at full size, fp16: the stock per-scale loop vs the epg sweep (ready to run).

    python -m epg_bench.bench_edit_gpu [--editors instruct-pix2pix,cosxl,flux-kontext,qwen-image-edit]
        [--n-scales 8] [--steps 20] [--batch-size 8] [--json PATH]

Needs a CUDA GPU (an H100/H200 holds every pipeline; FLUX.1 Kontext is ~12B parameters and Qwen-Image ~20B, so
each pipeline is built, timed and freed in turn). Nothing is downloaded: every pipeline is built from its config
with random weights (speed and memory do not depend on the weights) and tiny in-memory tokenizers padded to the
real sequence lengths (CLIP 77, T5 512). The denoisers, VAEs and CLIP/T5 text encoders have the released models'
dimensions; Qwen-Image-Edit's Qwen2.5-VL text encoder is cut to 4 layers (it runs once per call; the 60-layer
MMDiT that runs at every step is full size). Per editor the table reports both wall times, the speed-up, the
peak GPU memory of the sweep, and the largest uint8 difference between the two (fp16: a few levels may differ).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from epg_bridges.interventions import make_editor, quiet_libraries
from epg_bridges.testing import stock_edit, tiny_t5_tokenizer, tiny_tokenizer

PROMPT = "make it a cat"
SEED = 0
SIZES = {"instruct-pix2pix": 512, "cosxl": 1024, "flux-kontext": 1024, "qwen-image-edit": 1024}
SCALES = {"instruct-pix2pix": (1.5, 9.0), "cosxl": (1.5, 9.0), "flux-kontext": (1.5, 5.0),
          "qwen-image-edit": (1.5, 8.0)}


def _clip(tok: Any, hidden: int, layers: int, heads: int, projection: int | None = None) -> Any:
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    cfg = CLIPTextConfig(hidden_size=hidden, intermediate_size=4 * hidden, num_attention_heads=heads,
                         num_hidden_layers=layers, vocab_size=len(tok), max_position_embeddings=77,
                         bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                         projection_dim=projection or hidden)
    return CLIPTextModelWithProjection(cfg) if projection else CLIPTextModel(cfg)


def _vae(latent: int, **kw: Any) -> Any:
    from diffusers import AutoencoderKL

    return AutoencoderKL(in_channels=3, out_channels=3, latent_channels=latent, layers_per_block=2,
                         block_out_channels=(128, 256, 512, 512),  # pyright: ignore[reportArgumentType]
                         down_block_types=("DownEncoderBlock2D",) * 4,  # pyright: ignore[reportArgumentType]
                         up_block_types=("UpDecoderBlock2D",) * 4, **kw)  # pyright: ignore[reportArgumentType]


def build(method: str) -> Any:
    """A random-weight pipeline with the released model's dimensions (fp16 on CUDA)."""
    import diffusers as d

    dev = torch.device("cuda")
    with quiet_libraries(), torch.device(dev):
        torch.manual_seed(0)
        if method == "instruct-pix2pix":
            from epg_bench.bench_edit import _real_size_pipeline

            return _real_size_pipeline(dev, torch.float16)
        if method == "cosxl":
            tok, tok2 = tiny_tokenizer(), tiny_tokenizer()
            unet = d.UNet2DConditionModel(
                sample_size=128, in_channels=8, out_channels=4, layers_per_block=2,
                block_out_channels=(320, 640, 1280), down_block_types=("DownBlock2D", "CrossAttnDownBlock2D",
                                                                       "CrossAttnDownBlock2D"),
                up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
                attention_head_dim=(5, 10, 20), transformer_layers_per_block=(1, 2, 10),  # pyright: ignore
                use_linear_projection=True, cross_attention_dim=2048, addition_embed_type="text_time",
                addition_time_embed_dim=256, projection_class_embeddings_input_dim=2816)
            sched: Any = d.EDMEulerScheduler(sigma_min=0.002, sigma_max=120.0, sigma_data=1.0,
                                             prediction_type="v_prediction", sigma_schedule="exponential")
            pipe: Any = d.StableDiffusionXLInstructPix2PixPipeline(
                vae=_vae(4, scaling_factor=0.13025), text_encoder=_clip(tok, 768, 12, 12),
                text_encoder_2=_clip(tok2, 1280, 32, 20, projection=1280), tokenizer=tok, tokenizer_2=tok2, unet=unet,
                scheduler=sched, is_cosxl_edit=True)
        elif method == "flux-kontext":
            from transformers import T5Config, T5EncoderModel

            tok, tok2 = tiny_tokenizer(), tiny_t5_tokenizer(max_length=512)
            transformer = d.FluxTransformer2DModel(
                patch_size=1, in_channels=64, num_layers=19, num_single_layers=38, attention_head_dim=128,
                num_attention_heads=24, joint_attention_dim=4096, pooled_projection_dim=768, guidance_embeds=True,
                axes_dims_rope=(16, 56, 56))
            t5 = T5EncoderModel(T5Config(vocab_size=len(tok2), d_model=4096, d_ff=10240, d_kv=64, num_layers=24,
                                         num_heads=64, feed_forward_proj="gated-gelu"))
            cls: Any = d.FluxKontextPipeline
            pipe = cls(scheduler=d.FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True),
                       vae=_vae(16, scaling_factor=0.3611, shift_factor=0.1159, use_quant_conv=False,
                                use_post_quant_conv=False),
                       text_encoder=_clip(tok, 768, 12, 12), tokenizer=tok, text_encoder_2=t5, tokenizer_2=tok2,
                       transformer=transformer, image_encoder=None, feature_extractor=None)
        elif method == "qwen-image-edit":
            from epg_bridges.testing import tiny_random_pipeline

            small = tiny_random_pipeline("qwen-image-edit")  # its tokenizer, processor and encoder config
            transformer = d.QwenImageTransformer2DModel(
                patch_size=2, in_channels=64, out_channels=16, num_layers=60, attention_head_dim=128,
                num_attention_heads=24, joint_attention_dim=3584, guidance_embeds=False, axes_dims_rope=(16, 56, 56))
            te_cfg = small.text_encoder.config
            te_cfg.text_config.hidden_size, te_cfg.text_config.intermediate_size = 3584, 18944
            te_cfg.text_config.num_hidden_layers, te_cfg.text_config.num_attention_heads = 4, 28
            te_cfg.text_config.num_key_value_heads = 4
            te_cfg.vision_config.out_hidden_size = 3584
            from transformers import Qwen2_5_VLForConditionalGeneration

            vae = d.AutoencoderKLQwenImage(base_dim=96, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=2,
                                           temperal_downsample=[False, True, True])
            pipe = d.QwenImageEditPipeline(transformer=transformer, vae=vae, scheduler=small.scheduler,
                                           text_encoder=Qwen2_5_VLForConditionalGeneration(te_cfg),
                                           tokenizer=small.tokenizer, processor=small.processor)
        else:
            raise SystemExit(f"no full-size builder for {method!r}")
        pipe = pipe.to(device=dev, dtype=torch.float16)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _timed(fn: Any) -> tuple[float, Any]:
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    out = fn()
    torch.cuda.synchronize()
    return time.perf_counter() - t0, out


def _one(method: str, n_scales: int, steps: int, batch_size: int) -> dict[str, Any]:
    """Build one pipeline, time both loops, free it."""
    size = SIZES[method]
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8))
    pipe = build(method)
    options = {"image_guidance_scale": 1.5} if method in ("instruct-pix2pix", "cosxl") else {}
    editor = make_editor(method, options).use(pipe)
    scales = np.linspace(*SCALES[method], n_scales)
    editor.sweep(image, PROMPT, scales[:1], seed=SEED, steps=1, batch_size=1)  # warm-up
    t_stock, ref = _timed(lambda: np.stack([stock_edit(method, pipe, image, PROMPT, float(g), seed=SEED, steps=steps,
                                                       options=options) for g in scales]))
    torch.cuda.reset_peak_memory_stats()
    t_ours, out = _timed(lambda: editor.sweep(image, PROMPT, scales, seed=SEED, steps=steps, batch_size=batch_size))
    ref8 = np.clip(np.rint(ref.astype(np.float64) * 255), 0, 255).astype(int)
    return {"editor": method, "size": size, "stock_s": t_stock, "epg_s": t_ours, "speedup": t_stock / t_ours,
            "peak_gib": torch.cuda.max_memory_allocated() / 2**30,
            "max_uint8_diff": int(np.abs(out.astype(int) - ref8).max())}


def run(editors: list[str], n_scales: int, steps: int, batch_size: int) -> list[dict[str, Any]]:
    rows = []
    for method in editors:
        rows.append(_one(method, n_scales, steps, batch_size))
        print(rows[-1], flush=True)
        torch.cuda.empty_cache()
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--editors", default="instruct-pix2pix,cosxl,flux-kontext,qwen-image-edit")
    parser.add_argument("--n-scales", type=int, default=8)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("bench_edit_gpu needs a CUDA GPU", file=sys.stderr)
        return 1
    rows = run(args.editors.split(","), args.n_scales, args.steps, args.batch_size)
    print(f"\n{torch.cuda.get_device_name()}, fp16, {args.n_scales} scales x {args.steps} steps, "
          f"batch {args.batch_size}\n")
    print("| editor | size | stock per-scale loop [s] | epg sweep [s] | speed-up | peak GPU memory [GiB] | max diff |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['editor']} | {r['size']} | {r['stock_s']:.1f} | {r['epg_s']:.1f} | {r['speedup']:.2f}x | "
              f"{r['peak_gib']:.1f} | {r['max_uint8_diff']} |")
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
