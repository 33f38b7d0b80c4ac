"""The paper's ConvMixer (``--arch convmixer``): the architecture itself and its family.

A checkpoint gives its keyword arguments as ``paras`` (the paper's reference checkpoints), as Lightning
``hyper_parameters``, or, for a plain state_dict, through its tensor shapes (:func:`infer_convmixer_paras`). The
model's forward already returns the logits; a model that carries no preprocessing falls back to the paper's
(128 px, mean = std = 0.5) with a notice.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import torch
from torch import nn

from epg_core import DataError

from .._checkpoints import Checkpoint
from .._preprocessing import Notice
from .._spec import Preprocessing
from ._base import ModelFamily

__all__ = ["Residual", "conv_mixer", "ConvMixer", "infer_convmixer_paras", "ConvMixerFamily"]


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


class ConvMixerFamily(ModelFamily):
    """``--arch convmixer``: the paper's ConvMixer; keyword arguments inferred from the tensor shapes when the
    checkpoint names none."""

    name: ClassVar[str] = "convmixer"
    usage: ClassVar[str] = "convmixer"
    wants_tensor_output: ClassVar[bool] = False  # its forward returns the logits already
    fallback_from: ClassVar[str] = "the paper's ConvMixer"

    def factory(self) -> Callable[..., nn.Module]:
        return conv_mixer

    def checkpoint_kwargs(self, checkpoint: Checkpoint, notice: Notice | None = None) -> dict[str, Any]:
        kwargs = super().checkpoint_kwargs(checkpoint, notice)
        if kwargs:
            return kwargs
        state = checkpoint.state_dict
        while state and "0.weight" not in state and len({k.split(".", 1)[0] for k in state}) == 1:
            state = {k.split(".", 1)[1]: v for k, v in state.items() if "." in k}  # module./model. prefixes
        try:
            return infer_convmixer_paras(state)
        except ValueError as exc:
            raise DataError(f"{checkpoint.path}: wrong architecture: {exc}") from None

    def fallback_preprocessing(self, checkpoint: Checkpoint) -> Preprocessing | None:
        return Preprocessing()
