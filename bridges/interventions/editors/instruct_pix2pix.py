"""InstructPix2Pix (``StableDiffusionInstructPix2PixPipeline``): the text guidance scale swept in batches.

The image guidance scale and the seed stay fixed, so only the text guidance scale changes between frames.
Several scales run in ONE batched denoising loop with a per-item guidance-scale vector; every item starts
from the same initial noise and sees the same scheduler noise as the stock pipeline called with
``generator=torch.Generator().manual_seed(seed)`` (one CPU generator per item, all seeded alike), so the
batched sweep reproduces the stock per-scale calls. At most ``batch_size`` scales are denoised at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from PIL import Image

from epg_core import DataError, UsageError

from ..._progress import Counter
from ._base import Editor, EditorOptions, chunks, stock_generators

__all__ = ["InstructPix2Pix", "Pix2PixOptions"]


@dataclass(frozen=True)
class Pix2PixOptions(EditorOptions):
    """InstructPix2Pix: the fixed image guidance scale (>= 1)."""

    image_guidance_scale: float = 2.5

    def check(self) -> None:
        if not float(self.image_guidance_scale) >= 1.0:
            raise UsageError(f"image_guidance_scale must be >= 1 (guidance is off below 1), "
                             f"got {self.image_guidance_scale!r}")


class InstructPix2Pix(Editor):
    """InstructPix2Pix, batched over text guidance scales."""

    name: ClassVar[str] = "instruct-pix2pix"
    Options: ClassVar[type[EditorOptions]] = Pix2PixOptions
    description: ClassVar[str] = "text guidance scale"
    default_steps: ClassVar[int] = 100
    pipeline: ClassVar[str] = "StableDiffusionInstructPix2PixPipeline"

    def load_kwargs(self) -> dict[str, Any]:
        return {"safety_checker": None, "requires_safety_checker": False}

    def prompt_embeds(self, instruction: str, device: torch.device) -> torch.Tensor:
        """``[text, uncond, uncond]`` prompt embeddings (MGIE overrides this with its own embeddings)."""
        return self.pipe._encode_prompt(instruction, device, 1, True)

    @torch.no_grad()
    def edit(self, image: Image.Image, instruction: str, scales: np.ndarray, *, seed: int, steps: int,
             batch_size: int, counter: Counter) -> np.ndarray:
        pipe = self.pipe
        opts: Any = self.options
        device = pipe._execution_device
        prompt_embeds = self.prompt_embeds(instruction, device)
        dtype = prompt_embeds.dtype
        pixels = pipe.image_processor.preprocess(image)
        image_latents = pipe.prepare_image_latents(pixels, 1, 1, dtype, device, True)  # [image, image, zeros]
        height = image_latents.shape[-2] * pipe.vae_scale_factor
        width = image_latents.shape[-1] * pipe.vae_scale_factor
        n_latent = pipe.vae.config.latent_channels
        if n_latent + image_latents.shape[1] != pipe.unet.config.in_channels:
            raise DataError(f"the UNet expects {pipe.unet.config.in_channels} input channels, "
                            f"not {n_latent} + {image_latents.shape[1]}: is this an InstructPix2Pix model?")
        out = np.empty((scales.size, height, width, 3), dtype=np.float32)
        for sl in chunks(scales.size, batch_size):
            out[sl] = self._batch(prompt_embeds, image_latents, scales[sl], float(opts.image_guidance_scale), steps,
                                  seed, (height, width), counter)
        return out

    def _batch(self, prompt_embeds: torch.Tensor, image_latents: torch.Tensor, scales: np.ndarray,
               image_guidance_scale: float, num_inference_steps: int, seed: int, hw: tuple[int, int],
               counter: Counter) -> np.ndarray:
        """One batched denoising loop for ``len(scales)`` text guidance scales (the stock loop, vectorised)."""
        pipe = self.pipe
        b = int(scales.size)
        device, dtype = prompt_embeds.device, prompt_embeds.dtype
        generators = stock_generators(seed, b)
        pipe.scheduler.set_timesteps(num_inference_steps, device=device)
        timesteps = pipe.scheduler.timesteps
        latents = pipe.prepare_latents(b, pipe.vae.config.latent_channels, hw[0], hw[1], dtype, device, generators)
        embeds = prompt_embeds.repeat_interleave(b, dim=0)  # [text*b, uncond*b, uncond*b]
        cond = image_latents.repeat_interleave(b, dim=0)  # [image*b, image*b, zeros*b]
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
