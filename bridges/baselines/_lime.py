"""LIME (Ribeiro et al.) on SLIC superpixels: a sparse linear model of the output on random superpixel subsets."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ._method import BASELINES, Context, Method, one_of, positive
from ._superpixels import superpixel_attributions

__all__ = ["Lime"]


@dataclass(frozen=True)
class LimeOptions:
    """The paper's superpixels (``segments`` 100, ``compactness`` 1); Captum's defaults otherwise (50 samples,
    Lasso alpha 0.01, exponential cosine kernel); removed superpixels take the mean grey."""

    segments: int = 100
    compactness: float = 1.0
    samples: int = 50
    alpha: float = 0.01
    baseline: str = "grey"

    def check(self) -> None:
        positive("lime", segments=self.segments, compactness=self.compactness, samples=self.samples)
        one_of("lime", "baseline", self.baseline, BASELINES)


class Lime(Method):
    """Captum ``Lime``, one image at a time, batched over samples; seeded per image (same seed, same map)."""

    name = "lime"
    Options = LimeOptions
    channels = "first"
    stochastic = True

    def compute(self, x: torch.Tensor, target: int, ctx: Context) -> torch.Tensor:
        from captum._utils.models.linear_model import SkLearnLasso
        from captum.attr import Lime as CaptumLime

        alpha = self.options.alpha
        return superpixel_attributions(
            x, target, ctx, self.options,
            lambda: CaptumLime(ctx.model, interpretable_model=SkLearnLasso(alpha=alpha)))
