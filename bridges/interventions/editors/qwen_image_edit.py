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

__all__ = ["QwenImageEdit", "QwenImageEditOptions", "qwen_processor", "video_free_processor"]


def video_free_processor(image_processor: Any, tokenizer: Any) -> Any:
    """Qwen2-VL's processor from a tokenizer and an image processor, without a video processor."""
    from transformers import Qwen2VLProcessor

    class _Processor(Qwen2VLProcessor):
        def check_argument_for_proper_class(self, argument_name: str, argument: Any) -> Any:
            return type(None) if argument is None else super().check_argument_for_proper_class(argument_name,
                                                                                                argument)

    return _Processor(image_processor=image_processor, tokenizer=tokenizer, chat_template="")


def qwen_processor(folder: Any) -> Any:
    """The processor of a Qwen-Image-Edit folder's ``processor/`` (tokenizer files and preprocessor config)."""
    from transformers import Qwen2Tokenizer
    from transformers.models.qwen2_vl import Qwen2VLImageProcessorPil

    from epg_core import DataError

    try:
        return video_free_processor(Qwen2VLImageProcessorPil.from_pretrained(str(folder)),
                                    Qwen2Tokenizer.from_pretrained(str(folder)))
    except (OSError, ValueError) as exc:
        raise DataError(f"{folder}: cannot build the Qwen2-VL processor ({type(exc).__name__}: {exc})") from None


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

    def load(self, model: Any, device: Any = None, dtype: Any = None) -> Editor:
        """As :meth:`Editor.load`, with Qwen2-VL's processor built from the folder's tokenizer and PIL image
        processor (transformers' default processor needs torchvision and a video processor)."""
        from pathlib import Path

        from .._edit_setup import load_pipeline_class

        folder = Path(model)
        kwargs: dict[str, Any] = {}
        if (folder / "processor").is_dir():
            kwargs["processor"] = qwen_processor(folder / "processor")
        self.pipe = load_pipeline_class(self.pipeline_class(), model, name=self.name, device=device, dtype=dtype,
                                        **kwargs)
        self.model = str(model)
        self.check_pipeline(self.pipe)
        return self

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
