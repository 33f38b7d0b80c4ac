"""Saliency (Simonyan et al.): the absolute gradient of the target output with respect to the input."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ._method import Context, Method

__all__ = ["Saliency"]


@dataclass(frozen=True)
class SaliencyOptions:
    """``abs``: the gradient's absolute value (Captum's default) or the signed gradient."""

    abs: bool = True


class Saliency(Method):
    """Captum ``Saliency``; channels summed (of |gradient| with ``abs``)."""

    name = "saliency"
    Options = SaliencyOptions

    def compute(self, x: torch.Tensor, target: int, ctx: Context) -> torch.Tensor:
        from captum.attr import Saliency as CaptumSaliency

        return CaptumSaliency(ctx.model).attribute(x.clone().requires_grad_(True), target=target,
                                                   abs=self.options.abs)
