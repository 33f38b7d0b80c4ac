"""Gradual diffusion edits: sweep an instruction-based editor over its guidance scale (paper Sec. 3, source 1).

Two editors from diffusers, both loaded from local files only (a local pipeline folder or a hub id already in
the Hugging Face cache; nothing is downloaded):

- InstructPix2Pix (``StableDiffusionInstructPix2PixPipeline``): the text guidance scale is swept, the image
  guidance scale and the seed stay fixed, so only the guidance scale changes between steps. Several scales run
  in ONE batched denoising loop with a per-sample guidance-scale vector; every sample starts from the same
  initial noise and sees the same scheduler noise as the stock pipeline called with
  ``generator=torch.Generator().manual_seed(seed)`` (one CPU generator per sample, all seeded alike), so the
  batched sweep reproduces the stock per-scale calls (tested to 1e-4).
- LEDITS++ (``LEditsPPPipelineStableDiffusion``): the image is inverted ONCE, then the edit guidance scale is
  swept in a loop of stock calls re-using that inversion. It is not batched: the stock attention store splits
  its batch dimension as if it were ordered (head, sample) while it is ordered (sample, head), so a batch of
  several scales would mix the cross-attention masks of different samples and no longer equal per-scale calls.

Step 0 of every sequence is the unedited original at the edit resolution (recorded as ``includes_original``).
fp16 on CUDA, fp32 on CPU. The safety checker is not loaded: it replaces flagged images with black frames,
which would break a gradual sequence (the authors' reference code disables it too).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image

from epg_core import InterventionSequence, UsageError

from .._progress import Progress
from ._edit_setup import (
    HOW_TO_PROVIDE,
    METHOD_INFO,
    EditOptions,
    Pix2PixOptions,
    default_guidance_scales,
    load_pipeline,
    validate_scales,
)
from ._edit_sweeps import ledits_sweep, pix2pix_sweep, prepare_edit_image, size_multiple

__all__ = ["edit_sequence"]

# ------------------------------------------------------------------------------------- whole sequence


def _float_to_uint8(images: np.ndarray) -> np.ndarray:
    """Float images in [0, 1] to uint8 as diffusers' ``numpy_to_pil`` does (``round(x * 255)``)."""
    return np.clip(np.rint(np.asarray(images, dtype=np.float64) * 255.0), 0, 255).astype(np.uint8)


def edit_sequence(
    image: Image.Image | np.ndarray,
    instruction: str,
    *,
    pipe: Any | None = None,
    model: str | os.PathLike[str] | None = None,
    options: EditOptions | None = None,
    guidance_scales: Sequence[float] | np.ndarray | None = None,
    seed: int = 0,
    size: int | Sequence[int] | None = None,
    device: str | torch.device | None = None,
    progress: Progress | None = None,
) -> InterventionSequence:
    """A gradual edit of ``image`` by ``instruction``: step 0 is the original, steps 1..N the guidance sweep.

    ``options`` choose the editor and its settings: :class:`Pix2PixOptions` (the default) or
    :class:`LeditsOptions`. Give a loaded ``pipe`` or a ``model`` (local folder / cached hub id, loaded with
    :func:`load_pipeline` on ``device``); with both, ``model`` only names the editor in the provenance.
    ``guidance_scales`` default to :func:`default_guidance_scales` (100 values in (1, 15] for InstructPix2Pix,
    in (0, 15] for LEDITS++). Step 0 holds the unedited image at the edit resolution (``size`` = width, height)
    with value 1.0 (InstructPix2Pix: text guidance off) or 0.0 (LEDITS++: no edit guidance).
    ``progress(done, total)`` follows the editor's sweep.
    """
    opts: EditOptions = options or Pix2PixOptions()
    method = opts.method
    info = METHOD_INFO[method]
    if not instruction or not instruction.strip():
        raise UsageError("the edit instruction is empty")
    if pipe is None:
        if model is None:
            raise UsageError(f"give a model to edit with; {HOW_TO_PROVIDE}")
        pipe = load_pipeline(model, method=method, device=device)
    scales = validate_scales(
        default_guidance_scales(start=info["minimum"]) if guidance_scales is None else guidance_scales,
        minimum=info["minimum"], name=f"{info['property']}s",
    )
    pil = prepare_edit_image(image, size=size, multiple=size_multiple(pipe, method))
    if isinstance(opts, Pix2PixOptions):
        edits = pix2pix_sweep(pipe, pil, instruction, scales, opts, seed=seed, progress=progress)
    else:
        edits = ledits_sweep(pipe, pil, instruction, scales, opts, seed=seed, progress=progress)
    original = np.asarray(pil, dtype=np.uint8)
    images = np.concatenate([original[None], _float_to_uint8(edits)], axis=0)
    values = np.concatenate([[info["original_value"]], scales])
    attrs = _edit_attrs(pipe, model, opts, instruction, scales, seed, pil.size)
    return InterventionSequence(images=images, values=values, attrs=attrs)


def _edit_attrs(
    pipe: Any, model: str | os.PathLike[str] | None, opts: EditOptions, instruction: str, scales: np.ndarray,
    seed: int, wh: tuple[int, int],
) -> dict[str, Any]:
    """Provenance of an edit sweep (everything needed to reproduce it)."""
    import diffusers

    method = opts.method
    info = METHOD_INFO[method]
    unet = pipe.unet
    attrs: dict[str, Any] = {
        "source": "edit",
        "edit": method,
        "property": info["property"],
        "unit": "",
        "includes_original": True,
        "original_value": info["original_value"],
        "instruction": instruction,
        "guidance_scales": [float(s) for s in scales],
        "seed": int(seed),
        "editor_model": os.fspath(model) if model is not None else str(getattr(pipe, "name_or_path", "") or ""),
        "editor_pipeline": type(pipe).__name__,
        "scheduler": type(pipe.scheduler).__name__,
        "num_inference_steps": int(opts.num_inference_steps if isinstance(opts, Pix2PixOptions)
                                   else opts.num_inversion_steps),
        "width": int(wh[0]),
        "height": int(wh[1]),
        "dtype": str(unet.dtype).replace("torch.", ""),
        "device": str(unet.device),
        "generator": "torch.Generator() on the CPU, manual_seed(seed), one per sample",
        "diffusers_version": diffusers.__version__,
        "safety_checker": False,
    }
    if isinstance(opts, Pix2PixOptions):
        attrs.update(image_guidance_scale=float(opts.image_guidance_scale), batch_size=int(opts.batch_size),
                     batched=True)
    else:
        attrs.update(skip=float(opts.skip), edit_threshold=float(opts.edit_threshold),
                     reverse_editing_direction=bool(opts.reverse_editing_direction), batched=False)
    return attrs
