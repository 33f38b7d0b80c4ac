"""Kernel SHAP (Lundberg & Lee) on SLIC superpixels: Shapley values estimated by a weighted linear model."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ._method import BASELINES, Context, Method, one_of, positive
from ._superpixels import superpixel_attributions

__all__ = ["KernelShap"]


@dataclass(frozen=True)
class KernelShapOptions:
    """The paper's superpixels (``segments`` 100, ``compactness`` 1); Captum's default of 25 samples; removed
    superpixels take the mean grey."""

    segments: int = 100
    compactness: float = 1.0
    samples: int = 25
    baseline: str = "grey"

    def check(self) -> None:
        positive("kernel-shap", segments=self.segments, compactness=self.compactness, samples=self.samples)
        one_of("kernel-shap", "baseline", self.baseline, BASELINES)


class KernelShap(Method):
    """Captum ``KernelShap``, one image at a time, batched over samples; seeded per image."""

    name = "kernel-shap"
    Options = KernelShapOptions
    channels = "first"
    stochastic = True

    def compute(self, x: torch.Tensor, target: int, ctx: Context) -> torch.Tensor:
        from captum.attr import KernelShap as CaptumKernelShap

        return superpixel_attributions(x, target, ctx, self.options, lambda: CaptumKernelShap(ctx.model))
