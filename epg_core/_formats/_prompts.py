"""CLIP prompt outputs in an outputs block: ``prompt_outputs float32 [M, N, P]`` plus attributes.

A CLIP block's ``outputs`` hold one column per class (the mean over the class's prompts of the cosine, the
paper's value); ``prompt_outputs`` holds every prompt's cosine, ``prompts`` the prompt texts,
``prompt_classes`` the class of each prompt and ``logit_scale`` the model's temperature. All optional: blocks
without them (every non-CLIP model, every v1 file) stay valid. Only whole blocks carry prompt outputs
(``write_outputs``); the per-checkpoint shard store refuses such blocks.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from epg_core._errors import DataError, UsageError
from epg_core._formats._common import check_finite_outputs, str_list

PROMPT_DATASET = "prompt_outputs"
PROMPT_ATTRS = ("prompts", "prompt_classes", "logit_scale")


def check_prompt_fields(
    where: str, outputs: np.ndarray, classes: list[str], prompt_outputs: Any, prompts: Any, prompt_classes: Any,
    logit_scale: Any,
) -> tuple[np.ndarray | None, list[str] | None, list[str] | None, float | None]:
    """Validate a block's prompt fields (all absent, or all consistent); return them normalised."""
    if prompt_outputs is None:
        if prompts is not None or prompt_classes is not None:
            raise UsageError(f"{where}: prompts given without prompt_outputs")
        scale = None if logit_scale is None else float(logit_scale)
        return None, None, None, scale
    array = np.asarray(prompt_outputs)
    m, n, _ = outputs.shape
    if array.ndim != 3 or array.shape[:2] != (m, n):
        raise UsageError(f"{where}: prompt_outputs must be [{m}, {n}, P], got shape {array.shape}")
    names = [str(p) for p in (prompts or [])]
    owners = [str(c) for c in (prompt_classes or [])]
    if len(names) != array.shape[2] or len(owners) != array.shape[2]:
        raise UsageError(f"{where}: {array.shape[2]} prompt outputs need as many prompts and prompt_classes "
                         f"(got {len(names)} and {len(owners)})")
    unknown = sorted(set(owners) - set(classes))
    if unknown:
        raise UsageError(f"{where}: prompt_classes name {unknown[0]!r}, which is not one of the classes")
    scale = None if logit_scale is None else float(logit_scale)
    if scale is not None and not math.isfinite(scale):
        raise UsageError(f"{where}: logit_scale must be finite, got {logit_scale}")
    return array.astype(np.float32, copy=False), names, owners, scale


def prompt_attrs(block: Any) -> dict[str, Any]:
    """The attributes to store for ``block``'s prompt fields (none for a block without them)."""
    attrs: dict[str, Any] = {}
    if block.prompt_outputs is not None:
        attrs.update(prompts=list(block.prompts), prompt_classes=list(block.prompt_classes))
    if block.logit_scale is not None:
        attrs["logit_scale"] = float(block.logit_scale)
    return attrs


def write_prompt_dataset(group: h5py.Group, block: Any) -> None:
    """Create ``prompt_outputs`` beside ``outputs`` (chunked per checkpoint), when the block has one."""
    if block.prompt_outputs is None:
        return
    _, n, p = block.prompt_outputs.shape
    group.create_dataset(PROMPT_DATASET, data=block.prompt_outputs, chunks=(1, n, max(p, 1)))


def pop_prompt_attrs(attrs: dict[str, Any]) -> dict[str, Any]:
    """Remove the prompt attributes from a block's provenance; return them."""
    return {k: attrs.pop(k) for k in PROMPT_ATTRS if k in attrs}


def read_prompt_fields(
    group: h5py.Group, path: Path, field: str, shape: tuple[int, int, int], classes: list[str],
    stored: dict[str, Any], ckpts: slice, steps: slice, done: np.ndarray, names: list[str],
) -> dict[str, Any]:
    """Keyword arguments for OutputsBlock: the checked prompt fields of one chunk (empty when absent)."""
    scale = stored.get("logit_scale")
    if scale is not None and not isinstance(scale, (int, float)):
        raise DataError(f"{path}: {field} attribute 'logit_scale' must be a number")
    out: dict[str, Any] = {"logit_scale": None if scale is None else float(scale)}
    dset = group.get(PROMPT_DATASET)
    if dset is None:
        return out
    if not isinstance(dset, h5py.Dataset) or dset.ndim != 3 or dset.dtype.kind != "f" \
            or tuple(dset.shape[:2]) != shape[:2]:
        raise DataError(f"{path}: {field}/{PROMPT_DATASET} must be float [{shape[0]}, {shape[1]}, P]")
    p = int(dset.shape[2])
    prompts = str_list(stored.get("prompts"), path, f"{field} attribute 'prompts'", p)
    owners = str_list(stored.get("prompt_classes"), path, f"{field} attribute 'prompt_classes'", p)
    if set(owners) - set(classes):
        raise DataError(f"{path}: {field} attribute 'prompt_classes' names a class the block does not have")
    array = np.asarray(dset[ckpts, steps], dtype=np.float32)
    check_finite_outputs(path, f"{field}/{PROMPT_DATASET}", array, done, names, prompts)
    out.update(prompt_outputs=array, prompts=prompts, prompt_classes=owners)
    return out
