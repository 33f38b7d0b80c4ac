"""Guided Grad-CAM (Selvaraju et al.): Grad-CAM of a layer (the paper: the last convolution) x guided backprop."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch

from epg_core import UsageError

from ._method import Context, Method, one_of

__all__ = ["GuidedGradCam"]


@dataclass(frozen=True)
class GuidedGradCamOptions:
    """``interpolate_mode``: how the layer's map is upsampled to the input (Captum's default: nearest)."""

    interpolate_mode: str = "nearest"

    def check(self) -> None:
        one_of("guided-gradcam", "interpolate_mode", self.interpolate_mode,
               ("nearest", "bilinear", "bicubic", "area"))


class GuidedGradCam(Method):
    """Captum ``GuidedGradCam`` on ``Context.layer`` (default: the model's last ``Conv2d``); channels summed."""

    name = "guided-gradcam"
    Options = GuidedGradCamOptions
    needs_layer = True

    def compute(self, x: torch.Tensor, target: int, ctx: Context) -> torch.Tensor:
        from captum.attr import GuidedGradCam as CaptumGuidedGradCam

        if ctx.layer is None:
            raise UsageError("guided-gradcam needs a convolutional layer; the model has none: give --layer NAME")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "setting backward hooks on ReLU activations"
            return CaptumGuidedGradCam(ctx.model, ctx.layer).attribute(
                x.clone().requires_grad_(True), target=target, interpolate_mode=self.options.interpolate_mode)
