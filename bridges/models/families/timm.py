"""``--arch timm:NAME``: a timm model built without downloading weights, with the preprocessing timm records.

timm is imported when the model is built, never before. An unknown NAME is refused up front (``list_models``);
a checkpoint trained on another number of classes is built with its ``num_classes``.
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

__all__ = ["TimmFamily"]


class TimmFamily(ModelFamily):
    """``--arch timm:NAME`` (``timm.create_model(NAME, pretrained=False, **kwargs)``)."""

    name: ClassVar[str] = "timm"
    prefixed: ClassVar[bool] = True
    usage: ClassVar[str] = "timm:NAME"
    infers_num_classes: ClassVar[bool] = True

    def __init__(self, architecture: str) -> None:
        super().__init__(architecture)
        if not self.model_name:
            raise UsageError(f"--arch {architecture!r}: give the model name, e.g. timm:resnet18")

    def factory(self) -> Callable[..., nn.Module]:
        timm = import_package("timm", self.architecture)
        name = self.model_name

        def timm_factory(**kwargs: Any) -> nn.Module:
            return cast(nn.Module, timm.create_model(name, pretrained=False, **kwargs))

        return known_model_name(timm_factory, timm, name, self.architecture)

    def model_preprocessing(self, model: nn.Module) -> Preprocessing | None:
        try:
            data = importlib.import_module("timm.data").resolve_data_config({}, model=model)
            _, h, w = data["input_size"]
            return Preprocessing(size=(int(h), int(w)), resize="shortest", crop="center",
                                 crop_pct=float(data.get("crop_pct", 1.0)),
                                 interpolation=as_interpolation(data.get("interpolation", "bilinear")),
                                 mean=tuple(data["mean"]), std=tuple(data["std"]))
        except Exception:  # noqa: BLE001 - metadata missing or of another version: the user must give --size
            return None
