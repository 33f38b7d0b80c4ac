"""A checkpoint made ready for a run: its layout read, its architecture built, the preprocessing decided.

Shared by ``predict``, ``sweep`` and ``epg export``. What a model carries wins over defaults (see
``_preprocessing``): a checkpoint's own ``preprocessing`` entry or an HF folder's image-processor config, else
what the model's family records for it (timm, torchvision); without one the family's fallback is used with a
notice (an HF folder: its config's ``image_size``; the paper's ConvMixer: 128 px); any other model needs
``--size``. A Hugging Face model folder is run only by a family that says it can (``hf``, a factory).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from epg_core import UsageError

from ._architectures import Checkpoint, build_with, load_checkpoint
from ._preprocessing import Notice
from ._run_options import RunOptions, run_preprocessing
from ._spec import Preprocessing
from .families import get_model_family, model_family

__all__ = ["LoadedModel", "load_for_run", "carried_preprocessing", "model_preprocessing"]


@dataclass(frozen=True)
class LoadedModel:
    """A built model (eval mode, weights loaded), its checkpoint, architecture kwargs and run preprocessing."""

    checkpoint: Checkpoint
    model: nn.Module
    kwargs: dict[str, Any]
    preprocessing: Preprocessing


def carried_preprocessing(
    ckpt: Checkpoint, model: nn.Module, architecture: str
) -> tuple[Preprocessing | None, Preprocessing | None, str]:
    """(what the model carries, a fallback used with a notice when the user gives no size, where it comes from)."""
    family = model_family(architecture)
    return family.carried_preprocessing(ckpt, model), family.fallback_preprocessing(ckpt), family.fallback_from


def model_preprocessing(kind: str, model: nn.Module, architecture: str) -> Preprocessing | None:
    """The evaluation preprocessing family ``kind`` (timm, torchvision) records for this model (None: unknown)."""
    return get_model_family(kind)(architecture).model_preprocessing(model)


def load_for_run(path: str | os.PathLike[str], opts: RunOptions, notice: Notice | None = None) -> LoadedModel:
    """Read the checkpoint (``opts.no_ema``), build ``opts.architecture`` for it, decide the preprocessing."""
    ckpt = load_checkpoint(Path(path), no_ema=opts.no_ema, notice=notice)
    family = model_family(opts.architecture)
    if ckpt.layout == "hf" and not family.runs_hf_folder:
        raise UsageError(f"{path}: a Hugging Face model folder; run it with --arch hf")
    kwargs = family.kwargs(ckpt, opts.arch_kwargs, notice)
    model = build_with(family, ckpt, kwargs, notice)
    prep = run_preprocessing(opts, family.carried_preprocessing(ckpt, model), source=os.fspath(path),
                             fallback=family.fallback_preprocessing(ckpt), fallback_from=family.fallback_from,
                             notice=notice)
    return LoadedModel(ckpt, model, kwargs, prep)
