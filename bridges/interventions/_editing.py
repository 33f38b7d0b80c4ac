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

from epg_core import InterventionSequence

from ._edit_setup import (
    HOW_TO_PROVIDE,
    METHOD_INFO,
    Method,
    check_method,
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
    method: Method = "instruct-pix2pix",
    guidance_scales: Sequence[float] | np.ndarray | None = None,
    image_guidance_scale: float = 2.5,
    num_inference_steps: int | None = None,
    seed: int = 0,
    batch_size: int = 8,
    size: int | Sequence[int] | None = None,
    device: str | torch.device | None = None,
    quiet: bool = False,
    skip: float = 0.15,
    edit_threshold: float = 0.9,
    reverse_editing_direction: bool = False,
) -> InterventionSequence:
    """A gradual edit of ``image`` by ``instruction``: step 0 is the original, steps 1..N the guidance sweep.

    Give a loaded ``pipe`` or a ``model`` (local folder / cached hub id, loaded with :func:`load_pipeline` on
    ``device``); with both, ``model`` only names the editor in the provenance. ``guidance_scales`` default to
    :func:`default_guidance_scales` (100 values in
    (1, 15] for InstructPix2Pix, in (0, 15] for LEDITS++). Step 0 holds the unedited image at the edit
    resolution with value 1.0 (InstructPix2Pix: text guidance off) or 0.0 (LEDITS++: no edit guidance).
    ``num_inference_steps`` defaults to diffusers' defaults (100 denoising steps; 30 LEDITS++ inversion
    steps). ``skip``, ``edit_threshold`` and ``reverse_editing_direction`` apply to LEDITS++ only.
    """
    from tqdm.auto import tqdm

    check_method(method)
    info = METHOD_INFO[method]
    if not instruction or not instruction.strip():
        raise ValueError("the edit instruction is empty")
    if pipe is None:
        if model is None:
            raise ValueError(f"give a model to edit with; {HOW_TO_PROVIDE}")
        pipe = load_pipeline(model, method=method, device=device)
    scales = validate_scales(
        default_guidance_scales(start=info["minimum"]) if guidance_scales is None else guidance_scales,
        minimum=info["minimum"], name=f"{info['property']}s",
    )
    steps = int(num_inference_steps or info["steps"])
    if batch_size < 1:
        raise ValueError(f"batch size must be >= 1, got {batch_size}")
    pil = prepare_edit_image(image, size=size, multiple=size_multiple(pipe, method))
    total = steps * scales.size + (steps if method == "ledits++" else 0)
    with tqdm(total=total, disable=quiet, desc=f"{method} sweep", unit="step", leave=False) as bar:
        if method == "instruct-pix2pix":
            edits = pix2pix_sweep(
                pipe, pil, instruction, scales, image_guidance_scale=image_guidance_scale,
                num_inference_steps=steps, seed=seed, batch_size=batch_size, progress=bar.update,
            )
        else:
            edits = ledits_sweep(
                pipe, pil, instruction, scales, num_inversion_steps=steps, skip=skip,
                edit_threshold=edit_threshold, reverse_editing_direction=reverse_editing_direction,
                seed=seed, progress=bar.update,
            )
    original = np.asarray(pil, dtype=np.uint8)
    images = np.concatenate([original[None], _float_to_uint8(edits)], axis=0)
    values = np.concatenate([[info["original_value"]], scales])
    attrs = _edit_attrs(pipe, model, method, instruction, scales, image_guidance_scale, steps, seed, batch_size,
                        pil.size, skip, edit_threshold, reverse_editing_direction)
    return InterventionSequence(images=images, values=values, attrs=attrs)


def _edit_attrs(
    pipe: Any, model: str | os.PathLike[str] | None, method: str, instruction: str, scales: np.ndarray,
    image_guidance_scale: float, steps: int, seed: int, batch_size: int, wh: tuple[int, int],
    skip: float, edit_threshold: float, reverse: bool,
) -> dict[str, Any]:
    """Provenance of an edit sweep (everything needed to reproduce it)."""
    import diffusers

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
        "num_inference_steps": int(steps),
        "width": int(wh[0]),
        "height": int(wh[1]),
        "dtype": str(unet.dtype).replace("torch.", ""),
        "device": str(unet.device),
        "generator": "torch.Generator() on the CPU, manual_seed(seed), one per sample",
        "diffusers_version": diffusers.__version__,
        "safety_checker": False,
    }
    if method == "instruct-pix2pix":
        attrs.update(image_guidance_scale=float(image_guidance_scale), batch_size=int(batch_size), batched=True)
    else:
        attrs.update(skip=float(skip), edit_threshold=float(edit_threshold),
                     reverse_editing_direction=bool(reverse), batched=False)
    return attrs
