"""Occlusion (Zeiler & Fergus): the output drop when a square window of the input is replaced by a baseline."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ._method import BASELINES, Context, Method, baseline_tensor, one_of, positive

__all__ = ["Occlusion"]


@dataclass(frozen=True)
class OcclusionOptions:
    """The paper's setting: a ``window`` x ``window`` patch (9) moved by ``stride`` (4), the mean grey as baseline."""

    window: int = 9
    stride: int = 4
    baseline: str = "grey"

    def check(self) -> None:
        positive("occlusion", window=self.window, stride=self.stride)
        one_of("occlusion", "baseline", self.baseline, BASELINES)


class Occlusion(Method):
    """Captum ``Occlusion`` over all channels at once, batched over the window positions (``batch_size``).

    A pixel's value is the mean, over the windows that cover it, of output(x) - output(x with the window
    replaced by the baseline); every channel holds the same value.
    """

    name = "occlusion"
    Options = OcclusionOptions
    channels = "first"

    def compute(self, x: torch.Tensor, target: int, ctx: Context) -> torch.Tensor:
        from captum.attr import Occlusion as CaptumOcclusion

        o = self.options
        c = int(x.shape[1])
        if o.window > min(x.shape[2], x.shape[3]):
            from epg_core import UsageError

            raise UsageError(f"occlusion.window {o.window} is larger than the model input {tuple(x.shape[2:])}")
        occ = CaptumOcclusion(ctx.model)
        parts = [occ.attribute(x[i:i + 1], sliding_window_shapes=(c, o.window, o.window),
                               strides=(c, o.stride, o.stride), target=target,
                               baselines=baseline_tensor(o.baseline, x[i:i + 1], ctx),
                               perturbations_per_eval=ctx.batch_size)
                 for i in range(len(x))]
        return torch.cat(parts)
