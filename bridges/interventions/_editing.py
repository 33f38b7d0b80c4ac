"""Gradual diffusion edits: sweep an editor over its guidance scale (paper Sec. 3, source 1).

The editors are plug-ins (``editors/``, one file each); this module turns a sweep into a sequence: step 0 is
the unedited original at the edit resolution (``includes_original``, value = the editor's ``original_value``,
guidance off), then one frame per scale. fp16 on CUDA, fp32 on CPU. The safety checker is never loaded: it
replaces flagged images with black frames, which would break a gradual sequence (the authors' code disables it).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image

from epg_core import InterventionSequence, UsageError

from .._progress import Progress
from ._edit_setup import default_guidance_scales
from .editors import Editor

__all__ = ["edit_sequence", "load_editor", "edit_with_spec", "load_pipeline"]


def edit_sequence(
    image: Image.Image | np.ndarray,
    instruction: str,
    *,
    editor: Editor,
    scales: Sequence[float] | np.ndarray | None = None,
    seed: int = 0,
    steps: int | None = None,
    size: int | Sequence[int] | None = None,
    batch_size: int = 8,
    progress: Progress | None = None,
) -> InterventionSequence:
    """A gradual edit of ``image`` by ``instruction`` with a loaded ``editor``: the original, then the sweep.

    ``scales`` default to 100 values in ``(minimum, default_max_scale]`` of the editor. ``size`` = the edit
    resolution (width, height; an int: square), sides rounded down to the editor's multiple.
    """
    if not instruction or not instruction.strip():
        raise UsageError("the edit instruction is empty")
    grid = editor.check_scales(
        default_guidance_scales(start=editor.minimum, stop=editor.default_max_scale) if scales is None else scales)
    pil = editor.prepare(image, size)
    frames = editor.sweep(pil, instruction, grid, seed=seed, steps=steps, batch_size=batch_size, progress=progress)
    original = np.asarray(pil, dtype=np.uint8)
    n_steps = int(steps if steps is not None else editor.default_steps)
    attrs: dict[str, Any] = {
        "source": "edit", "property": editor.description, "unit": "", "includes_original": True,
        "original_value": float(editor.original_value), "instruction": instruction,
        "guidance_scales": [float(s) for s in grid], "seed": int(seed), "num_inference_steps": n_steps,
        "width": int(pil.width), "height": int(pil.height), "batch_size": int(batch_size),
        **editor.provenance(),
    }
    return InterventionSequence(images=np.concatenate([original[None], frames], axis=0),
                                values=np.concatenate([[float(editor.original_value)], grid]), attrs=attrs)


def load_editor(spec: Any) -> Editor:
    """The editor of an :class:`EditSpec`, its pipeline loaded on the spec's device (torch threads set first)."""
    if spec.threads:
        import torch

        torch.set_num_threads(int(spec.threads))
    editor = spec.editor()
    editor.load(spec.model, device=spec.device)
    return editor


def edit_with_spec(editor: Editor, spec: Any, picture: np.ndarray, progress: Progress | None = None,
                   image: str | None = None) -> InterventionSequence:
    """One image's sequence as an :class:`EditSpec` describes it (``image``: its id, for per-image inputs)."""
    if image is not None:
        editor.for_image(image)
    return edit_sequence(picture, spec.instruction, editor=editor, scales=spec.grid(editor), seed=spec.seed,
                         steps=spec.steps, size=spec.size, batch_size=spec.batch_size, progress=progress)


def load_pipeline(model: Any, *, method: str = "instruct-pix2pix", device: Any = None, dtype: Any = None) -> Any:
    """The pipeline of editor ``method`` loaded from local files only (see :meth:`Editor.load`)."""
    from .editors import make_editor

    return make_editor(method).load(model, device=device, dtype=dtype).pipe
