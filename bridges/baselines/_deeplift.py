"""DeepLIFT (Shrikumar et al.), Captum's rescale rule, against a baseline."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch

from ._method import BASELINES, Context, Method, baseline_tensor, one_of

__all__ = ["DeepLift"]


@dataclass(frozen=True)
class DeepLiftOptions:
    """``baseline`` (Captum's default: zero); ``multiply_by_inputs``: global attributions (Captum's default)."""

    baseline: str = "zero"
    multiply_by_inputs: bool = True

    def check(self) -> None:
        one_of("deeplift", "baseline", self.baseline, BASELINES)


class DeepLift(Method):
    """Captum ``DeepLift``; channels summed. Nonlinearities Captum has no rule for pass plain gradients."""

    name = "deeplift"
    Options = DeepLiftOptions

    def compute(self, x: torch.Tensor, target: int, ctx: Context) -> torch.Tensor:
        from captum.attr import DeepLift as CaptumDeepLift

        o = self.options
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "setting hooks on non-linear activations"
            return CaptumDeepLift(ctx.model, multiply_by_inputs=o.multiply_by_inputs).attribute(
                x.clone().requires_grad_(True), baselines=baseline_tensor(o.baseline, x, ctx), target=target)
