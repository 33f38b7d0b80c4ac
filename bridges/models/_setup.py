"""A checkpoint made ready for a run: its layout read, its architecture built, the preprocessing decided.

Shared by ``predict``, ``sweep`` and ``epg export``. What a model carries wins over defaults (see
``_preprocessing``): a checkpoint's own ``preprocessing`` entry or an HF folder's image-processor config, else
what timm/torchvision record for the architecture; an HF folder without one falls back to its config's
``image_size`` and the paper's ConvMixer to 128 px, each with a notice; any other model needs ``--size``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from epg_core import UsageError

from ._architectures import Checkpoint, architecture_kwargs, build_model, load_checkpoint
from ._preprocessing import Notice
from ._run_options import RunOptions, run_preprocessing
from ._sources import arch_kind, fallback_preprocessing, model_preprocessing
from ._spec import Preprocessing

__all__ = ["LoadedModel", "load_for_run", "carried_preprocessing"]


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
    kind = arch_kind(architecture)
    carried = ckpt.preprocessing
    if carried is None and kind in ("timm", "torchvision"):
        carried = model_preprocessing(kind, model, architecture)
    if kind == "hf":
        return carried, fallback_preprocessing(ckpt), "its config's image_size"
    if kind == "convmixer":
        return carried, Preprocessing(), "the paper's ConvMixer"
    return carried, None, ""


def load_for_run(path: str | os.PathLike[str], opts: RunOptions, notice: Notice | None = None) -> LoadedModel:
    """Read the checkpoint (``opts.no_ema``), build ``opts.architecture`` for it, decide the preprocessing."""
    ckpt = load_checkpoint(Path(path), no_ema=opts.no_ema, notice=notice)
    if ckpt.layout == "hf" and arch_kind(opts.architecture) in ("convmixer", "timm", "torchvision"):
        raise UsageError(f"{path}: a Hugging Face model folder; run it with --arch hf")
    kwargs = architecture_kwargs(opts.architecture, ckpt, opts.arch_kwargs, notice)
    model = build_model(opts.architecture, ckpt, opts.arch_kwargs, notice=notice)
    carried, fallback, where = carried_preprocessing(ckpt, model, opts.architecture)
    prep = run_preprocessing(opts, carried, source=os.fspath(path), fallback=fallback, fallback_from=where,
                             notice=notice)
    return LoadedModel(ckpt, model, kwargs, prep)
