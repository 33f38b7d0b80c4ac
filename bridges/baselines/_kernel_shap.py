"""Kernel SHAP (Lundberg & Lee) on SLIC superpixels: Shapley values estimated by a weighted linear model."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ._method import BASELINES, Context, Method, baseline_tensor, one_of, positive
from ._superpixels import slic_mask

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

        o = self.options
        images = ctx.to_image(x)
        parts = []
        for i in range(len(x)):
            mask = slic_mask(images[i], o.segments, o.compactness)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(ctx.seed)
                parts.append(CaptumKernelShap(ctx.model).attribute(
                    x[i:i + 1], target=target, feature_mask=mask,
                    baselines=baseline_tensor(o.baseline, x[i:i + 1], ctx), n_samples=o.samples,
                    perturbations_per_eval=ctx.batch_size))
        return torch.cat(parts)
