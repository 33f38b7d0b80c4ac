"""MGIE: an InstructPix2Pix UNet conditioned on precomputed multimodal-LLM edit embeddings.

MGIE (Fu et al., ICLR 2024) lets a multimodal LLM turn the instruction and the picture into "visual-aware"
edit embeddings, which replace the CLIP text embeddings of an InstructPix2Pix pipeline (its own inference calls
the pipeline with ``prompt_embeds`` and ``negative_prompt_embeds``). The embeddings are made with MGIE's code
(see the README) and given as a file (``{image}`` in its name stands for each image's id, so every image of a
command or study gets its own): ``.npz`` or ``.pt`` (``torch.save`` of a dict) holding ``prompt_embeds``
``[1, L, D]`` and optionally ``negative_prompt_embeds`` (default: the pipeline's empty-prompt embedding). The
text guidance scale is swept in batches exactly as for InstructPix2Pix.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from epg_core import DataError, UsageError

from ._base import EditorOptions
from .instruct_pix2pix import InstructPix2Pix

__all__ = ["Mgie", "MgieOptions", "load_embeddings"]


@dataclass(frozen=True)
class MgieOptions(EditorOptions):
    """MGIE: the embeddings file (required) and the fixed image guidance scale (MGIE's default 1.5)."""

    embeddings: str = ""
    image_guidance_scale: float = 1.5

    def check(self) -> None:
        if not self.embeddings:
            raise UsageError("mgie needs its edit embeddings: --embeddings FILE (or -O embeddings=FILE)")
        if not float(self.image_guidance_scale) >= 1.0:
            raise UsageError(f"image_guidance_scale must be >= 1, got {self.image_guidance_scale!r}")


def load_embeddings(path: str | Path) -> dict[str, torch.Tensor]:
    """``prompt_embeds`` (and ``negative_prompt_embeds`` if present) from an .npz or .pt file."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: embeddings file not found")
    try:
        if path.suffix == ".npz":
            with np.load(path) as data:
                raw: dict[str, Any] = {k: torch.from_numpy(np.asarray(data[k])) for k in data.files}
        else:
            raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any reader failure means the file is not an embeddings file
        raise DataError(f"{path}: cannot read the embeddings ({type(exc).__name__}: {exc})") from None
    if not isinstance(raw, dict) or "prompt_embeds" not in raw:
        raise DataError(f"{path}: no 'prompt_embeds' in the embeddings file")
    out: dict[str, torch.Tensor] = {}
    for key in ("prompt_embeds", "negative_prompt_embeds"):
        if key not in raw:
            continue
        t = torch.as_tensor(raw[key]).float()
        t = t[None] if t.ndim == 2 else t
        if t.ndim != 3 or t.shape[0] != 1 or not torch.isfinite(t).all():
            raise DataError(f"{path}: '{key}' must be finite with shape [1, L, D], got {tuple(t.shape)}")
        out[key] = t
    return out


class Mgie(InstructPix2Pix):
    """MGIE: InstructPix2Pix's batched sweep with the MLLM's edit embeddings as the prompt."""

    name: ClassVar[str] = "mgie"
    Options: ClassVar[type[EditorOptions]] = MgieOptions

    _image: str = ""

    def for_image(self, image: str) -> None:
        self._image = image

    def embeddings_file(self, image: str | None = None) -> str:
        """The embeddings file of an image: ``{image}`` in the option is replaced by the image's id."""
        opts: Any = self.options
        return str(opts.embeddings).replace("{image}", image if image is not None else self._image)

    def prompt_embeds(self, instruction: str, device: torch.device) -> torch.Tensor:
        embeds = load_embeddings(self.embeddings_file())
        dim = int(self.pipe.unet.config.cross_attention_dim)
        for key, t in embeds.items():
            if t.shape[-1] != dim:
                raise DataError(f"{self.embeddings_file()}: '{key}' has width {t.shape[-1]}, the UNet expects {dim}")
        dtype = self.pipe.text_encoder.dtype
        neg = embeds.get("negative_prompt_embeds")
        return self.pipe._encode_prompt(
            None, device, 1, True, prompt_embeds=embeds["prompt_embeds"].to(device, dtype),
            negative_prompt_embeds=None if neg is None else neg.to(device, dtype))
