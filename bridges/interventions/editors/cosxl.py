"""CosXL edit (``StableDiffusionXLInstructPix2PixPipeline``): the SDXL InstructPix2Pix text guidance swept.

The stock pipeline runs once per batch of scales: ``num_images_per_prompt`` = the batch, one CPU generator per
item seeded alike, and the text guidance scale handed over as a :class:`PerSample` scale (one value per item),
so each item is the stock call with its scale. ``is_cosxl_edit`` (the CosXL edit model's input scaling) is an
option, on by default; turn it off for other SDXL InstructPix2Pix models.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from PIL import Image

from epg_core import UsageError

from ..._progress import Counter
from .._edit_setup import quiet_libraries
from ._base import Editor, EditorOptions, PerSample, chunks, stock_generators

__all__ = ["CosXL", "CosXLOptions"]


@dataclass(frozen=True)
class CosXLOptions(EditorOptions):
    """CosXL: fixed image guidance scale, negative prompt, the CosXL edit input scaling, guidance rescale."""

    image_guidance_scale: float = 1.5
    negative_prompt: str = ""
    is_cosxl_edit: bool = True
    guidance_rescale: float = 0.0

    def check(self) -> None:
        if not float(self.image_guidance_scale) >= 1.0:
            raise UsageError(f"image_guidance_scale must be >= 1, got {self.image_guidance_scale!r}")
        if not 0.0 <= float(self.guidance_rescale) <= 1.0:
            raise UsageError(f"guidance_rescale must lie in [0, 1], got {self.guidance_rescale!r}")


def _old_callback(counter: Counter, b: int) -> Any:
    """A ``callback(i, t, latents)`` that counts ``b`` scale-steps per denoising step."""
    return lambda *_: counter.add(b)


class CosXL(Editor):
    """CosXL edit / SDXL InstructPix2Pix, batched over text guidance scales."""

    name: ClassVar[str] = "cosxl"
    Options: ClassVar[type[EditorOptions]] = CosXLOptions
    description: ClassVar[str] = "text guidance scale"
    default_steps: ClassVar[int] = 20
    default_max_scale: ClassVar[float] = 10.0
    pipeline: ClassVar[str] = "StableDiffusionXLInstructPix2PixPipeline"

    def load_kwargs(self) -> dict[str, Any]:
        return {"is_cosxl_edit": bool(getattr(self.options, "is_cosxl_edit", True))}

    def check_pipeline(self, pipe: Any) -> None:
        super().check_pipeline(pipe)
        pipe.is_cosxl_edit = bool(getattr(self.options, "is_cosxl_edit", True))

    @torch.no_grad()
    def edit(self, image: Image.Image, instruction: str, scales: np.ndarray, *, seed: int, steps: int,
             batch_size: int, counter: Counter) -> np.ndarray:
        opts: Any = self.options
        out = np.empty((scales.size, image.height, image.width, 3), dtype=np.float32)
        for sl in chunks(scales.size, batch_size):
            b = sl.stop - sl.start
            with quiet_libraries():  # a FutureWarning about one image for several prompts (that is the intent)
                out[sl] = self.pipe(
                    prompt=instruction, image=image, height=image.height, width=image.width,
                    num_inference_steps=steps, guidance_scale=PerSample(scales[sl]),
                    image_guidance_scale=float(opts.image_guidance_scale), negative_prompt=opts.negative_prompt or None,
                    guidance_rescale=float(opts.guidance_rescale), num_images_per_prompt=b,
                    generator=stock_generators(seed, b), output_type="np",
                    callback=_old_callback(counter, b), callback_steps=1,  # the old callback only in this pipeline
                ).images
        return out
