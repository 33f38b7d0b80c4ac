"""The built-in attribution methods by name (one file each) and how a method is made from its options."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from epg_core import UsageError

from ._deeplift import DeepLift
from ._guided_gradcam import GuidedGradCam
from ._integrated_gradients import IntegratedGradients
from ._kernel_shap import KernelShap
from ._lime import Lime
from ._method import Method
from ._names import METHOD_NAMES
from ._occlusion import Occlusion
from ._saliency import Saliency

__all__ = ["METHODS", "make_method", "parse_method_options"]

#: Every built-in method by name (the order of :data:`METHOD_NAMES`).
METHODS: dict[str, type[Method]] = {cls.name: cls for cls in (
    Saliency, IntegratedGradients, DeepLift, GuidedGradCam, Occlusion, Lime, KernelShap)}
assert tuple(METHODS) == METHOD_NAMES


def make_method(name: str, given: Mapping[str, Any] | None = None) -> Method:
    """The method ``name`` with ``given`` options replacing its defaults (a wrong name or key names the valid ones)."""
    cls = METHODS.get(name)
    if cls is None:
        raise UsageError(f"unknown method {name!r}; use {', '.join(METHODS)}")
    return cls(cls.make_options(given or {}))


def parse_method_options(items: list[str] | tuple[str, ...]) -> dict[str, dict[str, str]]:
    """``["occlusion.window=15", "lime.samples=200"]`` -> ``{"occlusion": {"window": "15"}, ...}``."""
    out: dict[str, dict[str, str]] = {}
    for item in items:
        head, sep, value = item.partition("=")
        method, dot, key = head.strip().rpartition(".")
        if not sep or not dot or not method or not key:
            raise UsageError(f"method option {item!r}: expected METHOD.KEY=VALUE, e.g. occlusion.window=15")
        if method not in METHODS:
            raise UsageError(f"method option {item!r}: unknown method {method!r}; use {', '.join(METHODS)}")
        out.setdefault(method, {})[key.strip()] = value.strip()
    return out
