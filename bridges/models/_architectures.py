"""Models from checkpoints: the paper's ConvMixer, HF/timm/torchvision/factory architectures, strict loading.

Checkpoints are read by :func:`load_checkpoint` (``_layouts``: every supported layout, never unpickling
objects); architectures are resolved by ``_sources``. :func:`build_model` builds the architecture with the
checkpoint's keyword arguments (``paras``, or Lightning ``hyper_parameters`` the factory names, or for a
ConvMixer the tensor shapes), gives it a tensor output, loads the tensors strictly (a common name prefix is
stripped, with a notice, when that makes them match) and sets eval mode.

Every problem with a checkpoint (wrong architecture, missing tensor, corrupt file) is one line naming the file.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from epg_core import DataError, UsageError

from ._layouts import Checkpoint, load_checkpoint, match_state
from ._preprocessing import Notice
from ._sources import (
    accepted_kwargs,
    arch_kind,
    build_hf,
    check_kwargs,
    checked_build,
    external_factory,
    infer_num_classes,
    tensor_output,
)

__all__ = [
    "Residual",
    "conv_mixer",
    "ConvMixer",
    "Checkpoint",
    "BUILTIN_ARCHITECTURES",
    "load_checkpoint",
    "resolve_factory",
    "infer_convmixer_paras",
    "architecture_kwargs",
    "check_state_dict",
    "build_model",
    "load_weights",
]

class Residual(nn.Module):
    """``fn(x) + x``; the attribute name ``fn`` is part of the reference state_dict keys."""

    def __init__(self, fn: nn.Module) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x) + x


def conv_mixer(
    dim: int,
    depth: int,
    kernel_size: int = 9,
    patch_size: int = 7,
    n_classes: int = 1000,
    in_channels: int = 3,
) -> nn.Sequential:
    """ConvMixer (Trockman & Kolter, 2022) as the ``nn.Sequential`` whose keys match the paper's checkpoints.

    Layout: patch-embedding conv, GELU, BatchNorm; ``depth`` blocks of [Residual(depthwise conv, GELU,
    BatchNorm), pointwise conv, GELU, BatchNorm]; adaptive average pool, flatten, linear.
    """
    blocks = [
        nn.Sequential(
            Residual(nn.Sequential(
                nn.Conv2d(dim, dim, kernel_size, groups=dim, padding="same"),
                nn.GELU(),
                nn.BatchNorm2d(dim),
            )),
            nn.Conv2d(dim, dim, kernel_size=1),
            nn.GELU(),
            nn.BatchNorm2d(dim),
        )
        for _ in range(depth)
    ]
    return nn.Sequential(
        nn.Conv2d(in_channels, dim, kernel_size=patch_size, stride=patch_size),
        nn.GELU(),
        nn.BatchNorm2d(dim),
        *blocks,
        nn.AdaptiveAvgPool2d((1, 1)),
        nn.Flatten(),
        nn.Linear(dim, n_classes),
    )


ConvMixer = conv_mixer  # the name used by the reference code

BUILTIN_ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {"convmixer": conv_mixer}


def resolve_factory(architecture: str) -> Callable[..., nn.Module]:
    """``convmixer``, ``timm:NAME``, ``torchvision:NAME`` or ``package.module:function`` -> a model factory."""
    if architecture.lower() in BUILTIN_ARCHITECTURES:
        return BUILTIN_ARCHITECTURES[architecture.lower()]
    if arch_kind(architecture) == "hf":
        raise UsageError("--arch hf is built from the checkpoint folder's config.json; it has no factory")
    return external_factory(architecture)


_BLOCK_KEY = re.compile(r"^(\d+)\.0\.fn\.0\.weight$")


def infer_convmixer_paras(state: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """Recover ConvMixer keyword arguments from a state_dict's tensor shapes (for plain state_dicts)."""
    try:
        stem = state["0.weight"]
        blocks = sorted(int(m.group(1)) for k in state if (m := _BLOCK_KEY.match(k)))
        head = state[f"{3 + len(blocks) + 2}.weight"]
        kernel = state[f"{blocks[0]}.0.fn.0.weight"].shape[-1] if blocks else 9
    except KeyError as exc:
        raise DataError(f"state_dict does not look like a ConvMixer (no tensor {exc.args[0]!r})") from None
    return {"dim": int(stem.shape[0]), "depth": len(blocks), "kernel_size": int(kernel),
            "patch_size": int(stem.shape[-1]), "n_classes": int(head.shape[0]), "in_channels": int(stem.shape[1])}


def architecture_kwargs(
    architecture: str, checkpoint: Checkpoint, overrides: Mapping[str, Any] | None = None,
    notice: Notice | None = None,
) -> dict[str, Any]:
    """Keyword arguments for the factory, bounded: ``paras``, else the Lightning ``hyper_parameters`` the factory
    names, else (ConvMixer) the tensor shapes; then ``overrides``. For ``hf`` only the overrides (config fields)."""
    kind = arch_kind(architecture)
    if kind == "hf":
        return check_kwargs(dict(overrides or {}), "--arch-kwargs")
    kwargs = dict(checkpoint.paras)
    if not kwargs and checkpoint.hyper_parameters:
        kwargs = accepted_kwargs(resolve_factory(architecture), checkpoint.hyper_parameters, str(checkpoint.path),
                                 notice)
    if not kwargs and kind == "convmixer":
        state = checkpoint.state_dict
        while state and "0.weight" not in state and len({k.split(".", 1)[0] for k in state}) == 1:
            state = {k.split(".", 1)[1]: v for k, v in state.items() if "." in k}  # module./model. prefixes
        try:
            kwargs = infer_convmixer_paras(state)
        except ValueError as exc:
            raise DataError(f"{checkpoint.path}: wrong architecture: {exc}") from None
    kwargs = check_kwargs(kwargs, str(checkpoint.path))
    kwargs.update(overrides or {})
    return kwargs


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
    kind = arch_kind(architecture)
    if kind == "hf":
        model = build_hf(ckpt, overrides)
    else:
        factory = resolve_factory(architecture)
        kwargs = architecture_kwargs(architecture, ckpt, overrides, notice)
        model = checked_build(factory, kwargs, str(ckpt.path), architecture)
        if kind in ("timm", "torchvision") and "num_classes" not in kwargs:
            state = match_state(model.state_dict().keys(), ckpt.state_dict, ckpt.path, notice=lambda _: None)
            n_classes = infer_num_classes(model, state)
            if n_classes is not None:
                model = checked_build(factory, {**kwargs, "num_classes": n_classes}, str(ckpt.path), architecture)
    if kind != "convmixer":
        model = tensor_output(model)
    load_weights(model, ckpt.state_dict, ckpt.path, notice=notice)
    return model.eval()


def load_weights(
    model: nn.Module, state: Mapping[str, torch.Tensor], source: str | os.PathLike[str], notice: Notice | None = None
) -> None:
    """Strip a common name prefix when that makes the names match (:func:`match_state`), check, load strictly."""
    state = match_state(model.state_dict().keys(), state, os.fspath(source), notice)
    check_state_dict(model, state, source)
    model.load_state_dict(state, strict=True)
