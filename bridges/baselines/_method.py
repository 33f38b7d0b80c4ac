"""The base class of an attribution method and what every method shares (options, baselines, channels).

One file per method (``_saliency.py``, ...): a subclass of :class:`Method` with a ``name``, a frozen ``Options``
dataclass (the paper's settings, appendix B.4, as defaults) and :meth:`Method.compute`. A method returns
attributions of the model input ``[B, 3, H, W]``; :meth:`Method.maps` turns them into one map per image
``[B, H, W]``: gradient methods sum over the channels (completeness is kept), methods whose features span all
channels (occlusion windows, superpixels) give every channel the same value and take it once.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from epg_core import UsageError

__all__ = ["Context", "Method", "baseline_tensor", "BASELINES", "positive", "one_of"]

#: Baselines a method may use: zeros of the model input, the mid-grey image (0.5 after scaling to [0, 1], i.e.
#: the "mean grey value"), or each image's own per-channel mean.
BASELINES = ("zero", "grey", "mean")


@dataclass(frozen=True)
class Context:
    """What a method needs besides the input: the model, the preprocessing's grey, batching and the seed.

    ``grey``: the mid-grey image in model-input space ``[1, 3, 1, 1]``; ``to_image`` maps model inputs
    ``[B, 3, H, W]`` back to images ``[B, H, W, 3]`` in [0, 1] (for superpixels); ``layer``: the layer of
    layer methods (Guided Grad-CAM); ``batch_size``: inputs per forward pass (perturbations included).
    """

    model: nn.Module
    grey: torch.Tensor
    to_image: Callable[[torch.Tensor], np.ndarray]
    layer: nn.Module | None
    layer_name: str | None
    batch_size: int
    seed: int


def baseline_tensor(kind: str, x: torch.Tensor, ctx: Context) -> torch.Tensor:
    """The baseline ``kind`` (see :data:`BASELINES`) for inputs ``x`` ``[B, 3, H, W]``, same shape."""
    if kind == "zero":
        return torch.zeros_like(x)
    if kind == "grey":
        return ctx.grey.to(x.dtype).expand_as(x).contiguous()
    if kind == "mean":
        return x.mean(dim=(2, 3), keepdim=True).expand_as(x).contiguous()
    raise UsageError(f"unknown baseline {kind!r}; use one of {', '.join(BASELINES)}")


class Method:
    """An attribution method: ``name``, its ``Options`` dataclass, and :meth:`compute` on a batch."""

    name: ClassVar[str] = ""
    Options: ClassVar[type[Any]]
    #: How channels become one map: "sum" (gradients: keeps completeness) or "first" (all channels equal).
    channels: ClassVar[str] = "sum"
    #: Whether the result depends on the random seed (LIME, Kernel SHAP: seeded per image).
    stochastic: ClassVar[bool] = False
    #: Whether the method needs ``Context.layer``.
    needs_layer: ClassVar[bool] = False

    def __init__(self, options: Any = None) -> None:
        self.options = options if options is not None else self.Options()

    def compute(self, x: torch.Tensor, target: int, ctx: Context) -> torch.Tensor:
        """Attributions ``[B, 3, H, W]`` of output ``target`` for the model inputs ``x``."""
        raise NotImplementedError

    def maps(self, x: torch.Tensor, target: int, ctx: Context) -> np.ndarray:
        """One attribution map per image, ``float32 [B, H, W]``."""
        attr = self.compute(x, target, ctx).detach()
        if attr.ndim != 4:
            raise RuntimeError(f"{self.name}: expected attributions [B, C, H, W], got {tuple(attr.shape)}")
        out = attr.sum(dim=1) if self.channels == "sum" else attr[:, 0]
        return out.to(torch.float32).cpu().numpy()

    def options_json(self) -> str:
        """The options as JSON (stored with every attribution and compared on resume)."""
        return json.dumps(dataclasses.asdict(self.options), sort_keys=True)

    @classmethod
    def make_options(cls, given: Mapping[str, Any]) -> Any:
        """``Options`` from ``given`` (command-line strings are converted); a wrong key names the valid ones."""
        fields = {f.name: f for f in dataclasses.fields(cls.Options)}
        values: dict[str, Any] = {}
        for key, value in given.items():
            norm = key.replace("-", "_")
            if norm not in fields:
                raise UsageError(f"{cls.name} has no option {key!r}; valid: {', '.join(sorted(fields)) or 'none'}")
            values[norm] = _convert(cls.name, norm, value, getattr(cls.Options(), norm))
        try:
            options = cls.Options(**values)
        except (TypeError, ValueError) as exc:
            raise UsageError(f"{cls.name}: {exc}") from None
        check = getattr(options, "check", None)
        if callable(check):
            check()
        return options


def _convert(method: str, key: str, value: Any, default: Any) -> Any:
    """``value`` as the type of the option's default (bool, int, float, str; None defaults take JSON or text)."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    try:
        if isinstance(default, bool):
            if text.lower() in ("1", "true", "yes", "on"):
                return True
            if text.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(text)
        if isinstance(default, int):
            return int(text)
        if isinstance(default, float):
            return float(text)
    except ValueError:
        raise UsageError(f"{method}.{key}: expected a {type(default).__name__}, got {value!r}") from None
    if default is None:
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            return text
    return text


def positive(method: str, **values: float) -> None:
    """Raise a UsageError naming the first of ``values`` that is not > 0."""
    for key, value in values.items():
        if not value > 0:
            raise UsageError(f"{method}.{key} must be > 0, got {value}")


def one_of(method: str, key: str, value: str, choices: tuple[str, ...]) -> None:
    """Raise a UsageError when ``value`` is not one of ``choices``."""
    if value not in choices:
        raise UsageError(f"{method}.{key} must be one of {', '.join(choices)}, got {value!r}")
