"""The two guidance-scale sweeps: InstructPix2Pix batched over scales, LEDITS++ re-using one inversion.

See ``_editing.py`` for why one is batched and the other is not. ``progress(done, total)`` counts denoising
steps times scales (InstructPix2Pix) or the inversion plus one unit per edited scale (LEDITS++).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image

from epg_core import DataError, UsageError

from .._progress import Counter
from ._edit_setup import LeditsOptions, Pix2PixOptions, Progress, quiet_libraries, validate_scales

__all__ = ["prepare_edit_image", "size_multiple", "pix2pix_sweep", "ledits_sweep"]

# -------------------------------------------------------------------------------------------- sweeps


def _as_pil(image: Image.Image | np.ndarray) -> Image.Image:
    """An RGB PIL image from a PIL image or a uint8 ``[H, W, 3]`` array."""
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    arr = np.asarray(image)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
        raise UsageError(f"expected an RGB uint8 image [H, W, 3], got dtype {arr.dtype} and shape {arr.shape}")
    return Image.fromarray(arr)


def size_multiple(pipe: Any, method: str) -> int:
    """Image sides must be multiples of this: the VAE factor (InstructPix2Pix) or 32 (LEDITS++ requires it)."""
    factor = int(getattr(pipe, "vae_scale_factor", 8))
    return max(factor, 32) if method == "ledits++" else factor


def prepare_edit_image(
    image: Image.Image | np.ndarray, *, size: int | Sequence[int] | None = None, multiple: int = 8
) -> Image.Image:
    """Resize to ``size = (width, height)`` (an int: square) if given, then down to multiples of ``multiple``.

    This is the exact picture the editor sees, so it is also step 0 (the unedited original) of the sequence.
    """
    pil = _as_pil(image)
    if size is not None:
        wh = (int(size), int(size)) if isinstance(size, (int, np.integer)) else (int(size[0]), int(size[1]))
        if min(wh) < 1:
            raise UsageError(f"edit size must be positive, got {size!r}")
        if pil.size != wh:
            pil = pil.resize(wh, Image.Resampling.BICUBIC)
    w, h = (pil.width // multiple) * multiple, (pil.height // multiple) * multiple
    if w < multiple or h < multiple:
        raise UsageError(f"image of size {pil.width}x{pil.height} is smaller than the editor's minimum {multiple}px")
    if (w, h) != pil.size:
        pil = pil.resize((w, h), Image.Resampling.BICUBIC)
    return pil


def _chunks(n: int, size: int) -> list[slice]:
    """Consecutive slices of at most ``size`` covering ``range(n)``."""
    if size < 1:
        raise UsageError(f"batch size must be >= 1, got {size}")
    return [slice(i, min(i + size, n)) for i in range(0, n, size)]


def _repeat_blocks(x: torch.Tensor, b: int) -> torch.Tensor:
    """``[k, ...]`` -> ``[k * b, ...]`` with each of the k blocks repeated ``b`` times (block-major order)."""
    return x.repeat_interleave(b, dim=0)


@torch.no_grad()
def pix2pix_sweep(
    pipe: Any,
    image: Image.Image | np.ndarray,
    instruction: str,
    guidance_scales: Sequence[float] | np.ndarray,
    options: Pix2PixOptions | None = None,
    *,
    seed: int = 0,
    progress: Progress | None = None,
) -> np.ndarray:
    """Edit ``image`` once per text guidance scale, ``options.batch_size`` scales per denoising loop.

    Returns float32 ``[N, H, W, 3]`` in ``[0, 1]``, equal (up to float rounding) to the stock calls
    ``pipe(instruction, image=image, guidance_scale=g, image_guidance_scale=..., num_inference_steps=...,
    generator=torch.Generator().manual_seed(seed), output_type="np")`` for each ``g`` (options default to
    :class:`Pix2PixOptions`). The prompt and the
    image are encoded once; the per-sample text scale is a ``[B, 1, 1, 1]`` vector in the guidance formula.
    ``image`` should already have sides that are multiples of the VAE factor (see :func:`prepare_edit_image`).
    """
    opts = options or Pix2PixOptions()
    scales = validate_scales(guidance_scales, minimum=1.0, name="text guidance scales")
    steps = int(opts.num_inference_steps)
    pil = _as_pil(image)
    device = pipe._execution_device
    prompt_embeds = pipe._encode_prompt(instruction, device, 1, True)  # [text, uncond, uncond]
    dtype = prompt_embeds.dtype
    pixels = pipe.image_processor.preprocess(pil)
    image_latents = pipe.prepare_image_latents(pixels, 1, 1, dtype, device, True)  # [image, image, zeros]
    height = image_latents.shape[-2] * pipe.vae_scale_factor
    width = image_latents.shape[-1] * pipe.vae_scale_factor
    n_latent = pipe.vae.config.latent_channels
    if n_latent + image_latents.shape[1] != pipe.unet.config.in_channels:
        raise DataError(f"the UNet expects {pipe.unet.config.in_channels} input channels, "
                         f"not {n_latent} + {image_latents.shape[1]}: is this an InstructPix2Pix model?")
    out = np.empty((scales.size, height, width, 3), dtype=np.float32)
    counter = Counter(progress, steps * scales.size)
    for sl in _chunks(scales.size, opts.batch_size):
        out[sl] = _pix2pix_batch(
            pipe, prompt_embeds, image_latents, scales[sl], float(opts.image_guidance_scale),
            steps, seed, (height, width), counter,
        )
    return out


def _pix2pix_batch(
    pipe: Any,
    prompt_embeds: torch.Tensor,
    image_latents: torch.Tensor,
    scales: np.ndarray,
    image_guidance_scale: float,
    num_inference_steps: int,
    seed: int,
    hw: tuple[int, int],
    counter: Counter,
) -> np.ndarray:
    """One batched denoising loop for ``len(scales)`` text guidance scales (the stock loop, vectorised)."""
    b = int(scales.size)
    device, dtype = prompt_embeds.device, prompt_embeds.dtype
    generators = [torch.Generator().manual_seed(int(seed)) for _ in range(b)]
    pipe.scheduler.set_timesteps(num_inference_steps, device=device)
    timesteps = pipe.scheduler.timesteps
    latents = pipe.prepare_latents(b, pipe.vae.config.latent_channels, hw[0], hw[1], dtype, device, generators)
    embeds = _repeat_blocks(prompt_embeds, b)  # [text*b, uncond*b, uncond*b]
    cond = _repeat_blocks(image_latents, b)  # [image*b, image*b, zeros*b]
    extra = pipe.prepare_extra_step_kwargs(generators, 0.0)
    # float32 scales, product rounded back to the model dtype: the same arithmetic as the stock pipeline's
    # python-float scale (computed in float32, rounded once) also in fp16 on CUDA
    g = torch.as_tensor(scales, dtype=torch.float32, device=device).view(b, 1, 1, 1)
    for t in timesteps:
        model_input = pipe.scheduler.scale_model_input(torch.cat([latents] * 3), t)
        model_input = torch.cat([model_input, cond], dim=1)
        noise = pipe.unet(model_input, t, encoder_hidden_states=embeds, return_dict=False)[0]
        text, img, uncond = noise.chunk(3)
        noise = uncond + (g * (text - img)).to(dtype) + image_guidance_scale * (img - uncond)
        latents = pipe.scheduler.step(noise, t, latents, **extra, return_dict=False)[0]
        counter.add(b)  # b scales advanced by one denoising step
    decoded = pipe.vae.decode(latents / pipe.vae.config.scaling_factor, return_dict=False)[0]
    return pipe.image_processor.postprocess(decoded, output_type="np", do_denormalize=[True] * b)


@torch.no_grad()
def ledits_sweep(
    pipe: Any,
    image: Image.Image | np.ndarray,
    editing_prompt: str,
    edit_guidance_scales: Sequence[float] | np.ndarray,
    options: LeditsOptions | None = None,
    *,
    seed: int = 0,
    progress: Progress | None = None,
) -> np.ndarray:
    """LEDITS++: invert ``image`` once (noise from ``seed``), then one stock edit call per edit guidance scale.

    Returns float32 ``[N, H, W, 3]`` in ``[0, 1]`` (options default to :class:`LeditsOptions`). Not batched
    (see the module docstring): the loop re-uses the inversion, which is what a per-scale sweep costs beyond
    the edit calls themselves.
    """
    opts = options or LeditsOptions()
    scales = validate_scales(edit_guidance_scales, minimum=0.0, name="edit guidance scales")
    pil = _as_pil(image)
    if pil.width % 32 or pil.height % 32:
        raise UsageError(f"LEDITS++ needs image sides that are multiples of 32, got {pil.width}x{pil.height}")
    counter = Counter(progress, scales.size + 1)
    with quiet_libraries():
        pipe.invert(
            image=pil, source_prompt=opts.source_prompt, source_guidance_scale=opts.source_guidance_scale,
            num_inversion_steps=int(opts.num_inversion_steps), skip=float(opts.skip),
            generator=torch.Generator().manual_seed(int(seed)),
        )
    counter.add()
    images = []
    for g in scales:
        result = pipe(
            editing_prompt=[editing_prompt], edit_guidance_scale=[float(g)],
            edit_threshold=[float(opts.edit_threshold)],
            reverse_editing_direction=[bool(opts.reverse_editing_direction)], output_type="np",
        )
        images.append(np.asarray(result.images[0], dtype=np.float32))
        counter.add()
    return np.stack(images)
