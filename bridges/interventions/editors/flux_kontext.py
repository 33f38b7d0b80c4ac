"""FLUX.1 Kontext (``FluxKontextPipeline``): the distilled guidance scale swept, a whole batch in one pass.

Kontext is guidance-distilled: its guidance scale enters the transformer as an embedding, one value per batch
item, so a batch of scales needs no classifier-free doubling. The stock pipeline runs once per batch of scales
(``num_images_per_prompt`` = the batch, one CPU generator per item seeded alike); a forward pre-hook on the
transformer hands it the per-item guidance vector in place of the stock call's constant one (the same float32
values), so each item is the stock call with its scale. ``true_cfg_scale`` > 1 adds true CFG with
``negative_prompt`` (a python float, as in the stock call). The output is the edit size: ``max_area`` = its
area, and the picture conditions the edit at that size unless ``auto_resize`` picks Kontext's preferred one.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from PIL import Image

from epg_core import DataError, UsageError

from ..._progress import Counter
from ._base import Editor, EditorOptions, chunks, step_counter, stock_generators

__all__ = ["FluxKontext", "FluxKontextOptions"]


@dataclass(frozen=True)
class FluxKontextOptions(EditorOptions):
    """FLUX.1 Kontext: true CFG (off at 1) and its negative prompt, the prompt length, Kontext's auto-resize."""

    true_cfg_scale: float = 1.0
    negative_prompt: str = ""
    max_sequence_length: int = 512
    auto_resize: bool = False

    def check(self) -> None:
        if not float(self.true_cfg_scale) >= 1.0:
            raise UsageError(f"true_cfg_scale must be >= 1 (1 = off), got {self.true_cfg_scale!r}")


@contextmanager
def _per_item_guidance(transformer: Any, scales: np.ndarray) -> Iterator[None]:
    """While active, every transformer call gets ``guidance = scales`` (float32, one per item)."""
    values = torch.as_tensor(np.asarray(scales, np.float64), dtype=torch.float32)

    def hook(_module: Any, args: Any, kwargs: dict[str, Any]) -> Any:
        stock = kwargs.get("guidance")
        if stock is None:
            raise DataError("the transformer has no guidance embedding (guidance_embeds): not a Kontext model?")
        if stock.shape[0] != values.numel():
            raise DataError(f"per-item guidance: a batch of {stock.shape[0]} for {values.numel()} scales")
        kwargs["guidance"] = values.to(device=stock.device, dtype=stock.dtype)
        return args, kwargs

    handle = transformer.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        yield
    finally:
        handle.remove()


class FluxKontext(Editor):
    """FLUX.1 Kontext, batched over distilled guidance scales."""

    name: ClassVar[str] = "flux-kontext"
    Options: ClassVar[type[EditorOptions]] = FluxKontextOptions
    description: ClassVar[str] = "distilled guidance scale"
    default_steps: ClassVar[int] = 28
    default_max_scale: ClassVar[float] = 5.0
    pipeline: ClassVar[str] = "FluxKontextPipeline"

    def size_multiple(self) -> int:
        return 2 * super().size_multiple()  # latents are packed 2x2

    def check_pipeline(self, pipe: Any) -> None:
        super().check_pipeline(pipe)
        if not getattr(pipe.transformer.config, "guidance_embeds", False):
            raise DataError("the transformer has no guidance embedding (guidance_embeds): not a Kontext model?")

    @torch.no_grad()
    def edit(self, image: Image.Image, instruction: str, scales: np.ndarray, *, seed: int, steps: int,
             batch_size: int, counter: Counter) -> np.ndarray:
        opts: Any = self.options
        cfg = float(opts.true_cfg_scale)
        out = np.empty((scales.size, image.height, image.width, 3), dtype=np.float32)
        for sl in chunks(scales.size, batch_size):
            b = sl.stop - sl.start
            with _per_item_guidance(self.pipe.transformer, scales[sl]):
                out[sl] = self.pipe(
                    prompt=instruction, image=image, height=image.height, width=image.width,
                    max_area=image.height * image.width, _auto_resize=bool(opts.auto_resize),
                    num_inference_steps=steps, guidance_scale=float(scales[sl][0]), true_cfg_scale=cfg,
                    negative_prompt=opts.negative_prompt if cfg > 1 else None,
                    max_sequence_length=int(opts.max_sequence_length), num_images_per_prompt=b,
                    generator=stock_generators(seed, b), output_type="np",
                    callback_on_step_end=step_counter(counter, b),
                ).images
        return out
