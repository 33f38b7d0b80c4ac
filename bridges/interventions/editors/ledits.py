"""LEDITS++ (``LEditsPPPipelineStableDiffusion``): one inversion, then the edit guidance scale swept.

The image is inverted ONCE (noise from the seed), then the edit guidance scale is swept in a loop of stock
calls re-using that inversion. It is not batched: the stock attention store splits its batch dimension as if it
were ordered (head, item) while it is ordered (item, head), so a batch of several scales would mix the
cross-attention masks of different items and no longer equal per-scale calls. ``steps`` are inversion steps.
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
from ._base import Editor, EditorOptions

__all__ = ["Ledits", "LeditsOptions"]


@dataclass(frozen=True)
class LeditsOptions(EditorOptions):
    """LEDITS++: skipped share of the diffusion, mask threshold, direction, source prompt and its guidance."""

    skip: float = 0.15
    edit_threshold: float = 0.9
    reverse_editing_direction: bool = False
    source_prompt: str = ""
    source_guidance_scale: float = 3.5

    def check(self) -> None:
        if not 0.0 <= float(self.skip) < 1.0:
            raise UsageError(f"skip must lie in [0, 1), got {self.skip!r}")
        if not 0.0 <= float(self.edit_threshold) <= 1.0:
            raise UsageError(f"edit_threshold must lie in [0, 1], got {self.edit_threshold!r}")


class Ledits(Editor):
    """LEDITS++: the inversion once, then one stock edit call per edit guidance scale."""

    name: ClassVar[str] = "ledits++"
    Options: ClassVar[type[EditorOptions]] = LeditsOptions
    scale: ClassVar[str] = "edit_guidance_scale"
    description: ClassVar[str] = "edit guidance scale"
    original_value: ClassVar[float] = 0.0
    minimum: ClassVar[float] = 0.0
    default_steps: ClassVar[int] = 30
    pipeline: ClassVar[str] = "LEditsPPPipelineStableDiffusion"
    batched: ClassVar[bool] = False

    def load_kwargs(self) -> dict[str, Any]:
        return {"safety_checker": None, "requires_safety_checker": False}

    def size_multiple(self) -> int:
        return max(super().size_multiple(), 32)  # LEDITS++ requires multiples of 32

    def progress_total(self, n_scales: int, steps: int) -> int:
        return n_scales + 1  # the inversion, then one unit per scale

    @torch.no_grad()
    def edit(self, image: Image.Image, instruction: str, scales: np.ndarray, *, seed: int, steps: int,
             batch_size: int, counter: Counter) -> np.ndarray:
        pipe = self.pipe
        opts: Any = self.options
        if image.width % 32 or image.height % 32:
            raise UsageError(f"LEDITS++ needs image sides that are multiples of 32, got {image.width}x{image.height}")
        with quiet_libraries():
            pipe.invert(
                image=image, source_prompt=opts.source_prompt, source_guidance_scale=opts.source_guidance_scale,
                num_inversion_steps=int(steps), skip=float(opts.skip),
                generator=torch.Generator().manual_seed(int(seed)),
            )
        counter.add()
        frames = []
        for g in scales:
            result = pipe(
                editing_prompt=[instruction], edit_guidance_scale=[float(g)],
                edit_threshold=[float(opts.edit_threshold)],
                reverse_editing_direction=[bool(opts.reverse_editing_direction)], output_type="np",
            )
            frames.append(np.asarray(result.images[0], dtype=np.float32))
            counter.add()
        return np.stack(frames)
