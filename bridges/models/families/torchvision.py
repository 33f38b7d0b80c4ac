"""``--arch torchvision:NAME``: a torchvision model built without weights, with the preprocessing of its weights.

torchvision is imported when the model is built, never before; a checkpoint trained on another number of
classes is built with its ``num_classes``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, ClassVar, cast

from torch import nn

from epg_core import UsageError

from .._sources import import_package, known_model_name
from .._spec import Preprocessing, as_interpolation
from ._base import ModelFamily

__all__ = ["TorchvisionFamily"]


class TorchvisionFamily(ModelFamily):
    """``--arch torchvision:NAME`` (``torchvision.models.get_model(NAME, weights=None, **kwargs)``)."""

    name: ClassVar[str] = "torchvision"
    prefixed: ClassVar[bool] = True
    usage: ClassVar[str] = "torchvision:NAME"
    infers_num_classes: ClassVar[bool] = True

    def __init__(self, architecture: str) -> None:
        super().__init__(architecture)
        if not self.model_name:
            raise UsageError(f"--arch {architecture!r}: give the model name, e.g. torchvision:resnet18")

    def factory(self) -> Callable[..., nn.Module]:
        import_package("torchvision", self.architecture)
        models = import_package("torchvision", self.architecture, "torchvision.models")
        name = self.model_name

        def tv_factory(**kwargs: Any) -> nn.Module:
            return cast(nn.Module, models.get_model(name, weights=None, **kwargs))

        return known_model_name(tv_factory, models, name, self.architecture)

    def model_preprocessing(self, model: nn.Module) -> Preprocessing | None:
        try:
            models = importlib.import_module("torchvision.models")
            transform = models.get_model_weights(self.model_name).DEFAULT.transforms()
            crop, resize = int(transform.crop_size[0]), int(transform.resize_size[0])
            mode = getattr(transform.interpolation, "value", transform.interpolation)
            return Preprocessing(size=(crop, crop), resize="shortest", crop="center", crop_pct=crop / resize,
                                 interpolation=as_interpolation(mode), mean=tuple(transform.mean),
                                 std=tuple(transform.std))
        except Exception:  # noqa: BLE001 - metadata missing or of another version: the user must give --size
            return None
