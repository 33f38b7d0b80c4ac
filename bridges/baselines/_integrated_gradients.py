"""Integrated Gradients (Sundararajan et al.): the path integral of gradients from a baseline to the input."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ._method import BASELINES, Context, Method, baseline_tensor, one_of, positive

__all__ = ["IntegratedGradients"]


@dataclass(frozen=True)
class IntegratedGradientsOptions:
    """``steps`` of the integral (Captum's default 50, Gauss-Legendre), ``baseline`` (Captum's default: zero)."""

    steps: int = 50
    method: str = "gausslegendre"
    baseline: str = "zero"

    def check(self) -> None:
        positive("integrated-gradients", steps=self.steps)
        one_of("integrated-gradients", "baseline", self.baseline, BASELINES)
        one_of("integrated-gradients", "method", self.method,
               ("gausslegendre", "riemann_trapezoid", "riemann_left", "riemann_right", "riemann_middle"))


class IntegratedGradients(Method):
    """Captum ``IntegratedGradients``; channels summed (sum over pixels = output(x) - output(baseline))."""

    name = "integrated-gradients"
    Options = IntegratedGradientsOptions

    def compute(self, x: torch.Tensor, target: int, ctx: Context) -> torch.Tensor:
        from captum.attr import IntegratedGradients as CaptumIG

        o = self.options
        return CaptumIG(ctx.model).attribute(x, baselines=baseline_tensor(o.baseline, x, ctx), target=target,
                                             n_steps=o.steps, method=o.method,
                                             internal_batch_size=max(ctx.batch_size, len(x)))
