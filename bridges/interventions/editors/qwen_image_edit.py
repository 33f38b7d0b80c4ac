"""Qwen-Image-Edit (``QwenImageEditPipeline``): the true classifier-free guidance scale swept.

The stock pipeline runs once per batch of scales (``num_images_per_prompt`` = the batch, one CPU generator per
item seeded alike) with ``true_cfg_scale`` handed over as a :class:`PerSample` scale, so each item is the stock
call with its scale (the norm-preserving rescaling of the pipeline works item by item). True CFG needs a
negative prompt: the default is ``" "``, as the model card does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from PIL import Image

from ..._progress import Counter
from ._base import Editor, EditorOptions, PerSample, chunks, step_counter, stock_generators

__all__ = ["QwenImageEdit", "QwenImageEditOptions"]


@dataclass(frozen=True)
class QwenImageEditOptions(EditorOptions):
    """Qwen-Image-Edit: the negative prompt of true CFG and the longest prompt in tokens."""

    negative_prompt: str = " "
    max_sequence_length: int = 512


class QwenImageEdit(Editor):
    """Qwen-Image-Edit, batched over true CFG scales."""

    name: ClassVar[str] = "qwen-image-edit"
    Options: ClassVar[type[EditorOptions]] = QwenImageEditOptions
    scale: ClassVar[str] = "true_cfg_scale"
    description: ClassVar[str] = "true cfg scale"
    default_steps: ClassVar[int] = 50
    default_max_scale: ClassVar[float] = 8.0
    pipeline: ClassVar[str] = "QwenImageEditPipeline"

    def size_multiple(self) -> int:
        return 2 * super().size_multiple()  # latents are packed 2x2

    @torch.no_grad()
    def edit(self, image: Image.Image, instruction: str, scales: np.ndarray, *, seed: int, steps: int,
             batch_size: int, counter: Counter) -> np.ndarray:
        opts: Any = self.options
        out = np.empty((scales.size, image.height, image.width, 3), dtype=np.float32)
        for sl in chunks(scales.size, batch_size):
            b = sl.stop - sl.start
            out[sl] = self.pipe(
                prompt=instruction, image=image, height=image.height, width=image.width, num_inference_steps=steps,
                true_cfg_scale=PerSample(scales[sl]), negative_prompt=opts.negative_prompt,
                max_sequence_length=int(opts.max_sequence_length), num_images_per_prompt=b,
                generator=stock_generators(seed, b), output_type="np", callback_on_step_end=step_counter(counter, b),
            ).images
        return out
