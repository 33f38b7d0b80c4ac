"""Models from checkpoints: the family an ``--arch`` string names builds the model, loading is strict for all.

Checkpoints are read by :func:`load_checkpoint` (``_layouts``: every supported layout, never unpickling
objects); the architecture is the business of its model family (``families/``: convmixer, hf, timm,
torchvision, the user's factory or own family). :func:`build_model` asks the family for the keyword arguments
and the model, loads the tensors strictly (a common name prefix is stripped, with a notice, when that makes
them match) and sets eval mode.

Every problem with a checkpoint (wrong architecture, missing tensor, corrupt file) is one line naming the file.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from epg_core import DataError

from ._layouts import Checkpoint, load_checkpoint, match_state
from ._preprocessing import Notice
from .families import ModelFamily, model_family

__all__ = [
    "Checkpoint",
    "load_checkpoint",
    "arch_kind",
    "resolve_factory",
    "architecture_kwargs",
    "check_state_dict",
    "build_model",
    "build_with",
    "load_weights",
]


def arch_kind(architecture: str) -> str:
    """The name of the family ``--arch architecture`` names (``convmixer``, ``hf``, ``timm``, ``torchvision``,
    ``factory``, or a registered family's); a one-line UsageError for anything else."""
    return model_family(architecture).kind


def resolve_factory(architecture: str) -> Callable[..., nn.Module]:
    """``convmixer``, ``timm:NAME``, ``torchvision:NAME`` or ``package.module:function`` -> a model factory."""
    return model_family(architecture).factory()


def architecture_kwargs(
    architecture: str, checkpoint: Checkpoint, overrides: Mapping[str, Any] | None = None,
    notice: Notice | None = None,
) -> dict[str, Any]:
    """Keyword arguments for the factory, bounded: ``paras``, else the Lightning ``hyper_parameters`` the factory
    names, else (ConvMixer) the tensor shapes; then ``overrides``. For ``hf`` only the overrides (config fields)."""
    return model_family(architecture).kwargs(checkpoint, overrides, notice)


def check_state_dict(model: nn.Module, state: Mapping[str, torch.Tensor], source: str | os.PathLike[str]) -> None:
    """Compare a checkpoint's tensor names and shapes with ``model``; one-line DataError on any mismatch.

    Unexpected tensors or different shapes mean the wrong architecture; a checkpoint whose names are a
    strict subset of the model's is missing tensors.
    """
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if unexpected:
        raise DataError(f"{source}: wrong architecture: {len(unexpected)} tensor(s) the model does not have, "
                         f"e.g. {unexpected[0]!r}"
                         + (f" ({len(missing)} expected tensor(s) absent)" if missing else ""))
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise DataError(f"{source}: missing tensor {missing[0]!r}{more}")
    for key, tensor in expected.items():
        if tuple(state[key].shape) != tuple(tensor.shape):
            raise DataError(f"{source}: wrong architecture: tensor {key!r} has shape {tuple(state[key].shape)}, "
                             f"the model expects {tuple(tensor.shape)}")


def build_model(
    architecture: str,
    checkpoint: Checkpoint | str | os.PathLike[str],
    overrides: Mapping[str, Any] | None = None,
    *,
    no_ema: bool = False,
    notice: Notice | None = None,
) -> nn.Module:
    """Instantiate ``architecture`` for the checkpoint, load its tensors strictly, set eval mode.

    timm and torchvision models get the checkpoint's class count when only their last linear layer differs.
    """
    ckpt = checkpoint if isinstance(checkpoint, Checkpoint) else load_checkpoint(checkpoint, no_ema=no_ema,
                                                                                 notice=notice)
    family = model_family(architecture)
    return build_with(family, ckpt, family.kwargs(ckpt, overrides, notice), notice)


def build_with(
    family: ModelFamily, checkpoint: Checkpoint, kwargs: Mapping[str, Any], notice: Notice | None = None
) -> nn.Module:
    """``family``'s model for ``checkpoint`` built with ``kwargs``, its tensors loaded strictly, in eval mode."""
    model = family.build(checkpoint, kwargs, notice)
    load_weights(model, checkpoint.state_dict, checkpoint.path, notice=notice)
    return model.eval()


def load_weights(
    model: nn.Module, state: Mapping[str, torch.Tensor], source: str | os.PathLike[str], notice: Notice | None = None
) -> None:
    """Strip a common name prefix when that makes the names match (:func:`match_state`), check, load strictly."""
    state = match_state(model.state_dict().keys(), state, os.fspath(source), notice)
    check_state_dict(model, state, source)
    model.load_state_dict(state, strict=True)
