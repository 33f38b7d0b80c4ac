"""The model spec: how uint8 RGB images become the model input, class names, and the JSON beside an .onnx file.

The spec (preprocessing + class names) lives in a JSON file beside each exported model (``model.onnx.json``)
and is copied into every outputs file, so outputs can be reproduced.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np
from PIL import Image

from epg_core import DataError, UsageError, write_bytes_atomic

__all__ = ["Preprocessing", "ModelSpec", "spec_path", "write_spec", "read_spec", "ResizeMode", "CropMode",
           "Interpolation", "ChannelOrder", "RESIZE_MODES", "CROP_MODES", "INTERPOLATIONS", "CHANNEL_ORDERS",
           "as_interpolation"]

#: How an image reaches the input size: stretched, or its shorter side scaled (aspect kept) then centre-cropped.
ResizeMode = Literal["stretch", "shortest"]
#: Whether the input size is cut out of the middle of the resized image.
CropMode = Literal["none", "center"]
#: The PIL resize filter.
Interpolation = Literal["bilinear", "bicubic", "nearest", "lanczos"]
#: The channel order of the model input.
ChannelOrder = Literal["RGB", "BGR"]

RESIZE_MODES: tuple[ResizeMode, ...] = get_args(ResizeMode)
CROP_MODES: tuple[CropMode, ...] = get_args(CropMode)
INTERPOLATIONS: tuple[Interpolation, ...] = get_args(Interpolation)
CHANNEL_ORDERS: tuple[ChannelOrder, ...] = get_args(ChannelOrder)


def as_interpolation(value: object) -> Interpolation:
    """``value`` (a filter name from a library's metadata) as an :data:`Interpolation`; a UsageError otherwise."""
    name = str(value).strip().lower()
    for choice in INTERPOLATIONS:
        if name == choice:
            return choice
    raise UsageError(f"interpolation {value!r} not in {list(INTERPOLATIONS)}")


_RESIZE_FILTERS = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC,
                   "nearest": Image.Resampling.NEAREST, "lanczos": Image.Resampling.LANCZOS}


@dataclass(frozen=True)
class Preprocessing:
    """How uint8 RGB images become the model input: resize (and crop), scale to [0, 1], mean/std, channel order.

    Defaults are the paper's ConvMixer (128x128, mean = std = 0.5, i.e. inputs in [-1, 1]). ``size`` is the
    model input (height, width). ``resize``: ``"stretch"`` scales the image to ``size / crop_pct`` ignoring its
    aspect ratio; ``"shortest"`` scales its shorter side to ``floor(max(size) / crop_pct)`` keeping the aspect
    ratio (torchvision ``Resize(int)``). ``crop="center"`` then cuts the centre ``size`` (torchvision
    ``CenterCrop``: offsets rounded, zero padding if the image is smaller); ``"shortest"`` needs it.
    ``--resize shortest --crop center`` with ``crop_pct`` 0.875 is the ImageNet evaluation transform (256 ->
    224), with 1.0 CLIP's. ``interpolation`` is the PIL filter. For files written before v2 a filter name given
    as ``resize`` means ``stretch`` with that filter. ``channel_order`` "RGB" or "BGR"; the layout is NCHW.
    """

    size: tuple[int, int] = (128, 128)
    resize: ResizeMode = "stretch"
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    channel_order: ChannelOrder = "RGB"
    layout: Literal["NCHW"] = "NCHW"
    scale: Literal["0-1"] = "0-1"  # pixel values divided by 255 before mean/std
    crop: CropMode = "none"
    crop_pct: float = 1.0
    interpolation: Interpolation = "bilinear"

    def __post_init__(self) -> None:
        size = tuple(int(s) for s in self.size)
        if len(size) != 2 or min(size) < 1:
            raise UsageError(f"preprocessing size must be (height, width) >= 1, got {self.size}")
        mean, std = tuple(float(m) for m in self.mean), tuple(float(s) for s in self.std)
        if len(mean) != 3 or len(std) != 3:
            raise UsageError(f"preprocessing mean and std need 3 values each, got {self.mean} and {self.std}")
        if min(std) <= 0:
            raise UsageError(f"preprocessing std must be positive, got {self.std}")
        resize, interpolation = self.resize, self.interpolation
        if resize in _RESIZE_FILTERS:  # v1 spelling: the filter name, always a stretch
            resize, interpolation = "stretch", resize
        if resize not in RESIZE_MODES:
            raise UsageError(f"preprocessing resize {self.resize!r} not in {list(RESIZE_MODES)} "
                             f"(or a filter: {sorted(_RESIZE_FILTERS)})")
        if interpolation not in _RESIZE_FILTERS:
            raise UsageError(f"preprocessing interpolation {interpolation!r} not in {sorted(_RESIZE_FILTERS)}")
        if self.crop not in CROP_MODES:
            raise UsageError(f"preprocessing crop {self.crop!r} not in {list(CROP_MODES)}")
        if resize == "shortest" and self.crop != "center":
            raise UsageError("preprocessing resize 'shortest' keeps the aspect ratio and needs crop 'center' "
                             "(--resize shortest --crop center)")
        crop_pct = float(self.crop_pct)
        if not 0.05 <= crop_pct <= 1.0:
            raise UsageError(f"preprocessing crop_pct must be in [0.05, 1], got {self.crop_pct}")
        if self.channel_order not in CHANNEL_ORDERS:
            raise UsageError(f"preprocessing channel_order must be 'RGB' or 'BGR', got {self.channel_order!r}")
        if self.layout != "NCHW" or self.scale != "0-1":
            raise UsageError(f"unsupported preprocessing layout/scale {self.layout!r}/{self.scale!r} (NCHW, 0-1)")
        for name, value in (("size", size), ("mean", mean), ("std", std), ("resize", resize),
                            ("interpolation", interpolation), ("crop_pct", crop_pct)):
            object.__setattr__(self, name, value)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict (lists, not tuples)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Preprocessing:
        """Inverse of :meth:`to_dict`; unknown keys are an error (a typo must not pass silently)."""
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise UsageError(f"unknown preprocessing keys {unknown} (known: {sorted(known)})")
        fields: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        return cls(**fields)

    def apply(self, images: np.ndarray) -> np.ndarray:
        """uint8 ``[B, H, W, 3]`` RGB images -> float32 ``[B, 3, h, w]`` model input."""
        images = np.asarray(images)
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
            raise UsageError(f"images must be uint8 [B, H, W, 3], got {images.dtype} {images.shape}")
        h, w = self.size
        if images.shape[1:3] != (h, w) or self.crop != "none":
            images = np.stack([self.resized(img) for img in images]) if len(images) else \
                np.zeros((0, h, w, 3), np.uint8)
        x = images.astype(np.float32) / np.float32(255.0)
        x = (x - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)
        if self.channel_order == "BGR":
            x = x[..., ::-1]
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2), dtype=np.float32)

    def resized(self, image: np.ndarray) -> np.ndarray:
        """One uint8 ``[H, W, 3]`` image resized (and cropped) to ``size``."""
        h, w = self.size
        if self.crop == "none":
            return _resize(image, (h, w), self.interpolation) if image.shape[:2] != (h, w) else image
        if self.resize == "shortest":
            short = math.floor(max(h, w) / self.crop_pct)
            height, width = image.shape[:2]
            if height <= width:
                target = (short, int(short * width / height))
            else:
                target = (int(short * height / width), short)
        else:
            target = (math.floor(h / self.crop_pct), math.floor(w / self.crop_pct))
        scaled = _resize(image, target, self.interpolation) if image.shape[:2] != target else image
        return _center_crop(scaled, (h, w))

    def random_batch(self, batch: int, seed: int = 0) -> np.ndarray:
        """A random batch of model inputs with the value range real images would have."""
        rng = np.random.default_rng(seed)
        pixels = rng.integers(0, 256, size=(batch, *self.size, 3), dtype=np.uint8)
        return self.apply(pixels)


def _resize(image: np.ndarray, size: tuple[int, int], method: str) -> np.ndarray:
    h, w = size
    return np.asarray(Image.fromarray(image).resize((w, h), _RESIZE_FILTERS[method]), dtype=np.uint8)


def _center_crop(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """torchvision ``CenterCrop``: zero padding where the image is smaller, then offsets rounded to nearest."""
    h, w = size
    height, width = image.shape[:2]
    if height < h or width < w:
        pad_h, pad_w = max(h - height, 0), max(w - width, 0)
        image = np.pad(image, ((pad_h // 2, (pad_h + 1) // 2), (pad_w // 2, (pad_w + 1) // 2), (0, 0)))
        height, width = image.shape[:2]
    top, left = int(round((height - h) / 2.0)), int(round((width - w) / 2.0))
    return image[top:top + h, left:left + w]


@dataclass(frozen=True)
class ModelSpec:
    """What a model file needs besides its graph: preprocessing, class names, and export provenance."""

    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    classes: list[str] | None = None
    input_name: str = "images"
    output_name: str = "outputs"
    info: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"format": "epg-model-spec", "format_version": 1, "preprocessing": self.preprocessing.to_dict(),
                "classes": self.classes, "input_name": self.input_name, "output_name": self.output_name,
                "info": self.info}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelSpec:
        if data.get("format") != "epg-model-spec":
            raise DataError(f"not an epg model spec (format {data.get('format')!r})")
        return cls(preprocessing=Preprocessing.from_dict(data.get("preprocessing", {})),
                   classes=data.get("classes"), input_name=data.get("input_name", "images"),
                   output_name=data.get("output_name", "outputs"), info=dict(data.get("info", {})))


def spec_path(model_path: str | os.PathLike[str]) -> Path:
    """Where the spec of ``model.onnx`` lives: ``model.onnx.json`` beside it."""
    model_path = Path(model_path)
    return model_path.with_name(model_path.name + ".json")


def write_spec(model_path: str | os.PathLike[str], spec: ModelSpec) -> Path:
    """Write the spec JSON beside the model, atomically."""
    target = spec_path(model_path)
    write_bytes_atomic(target, (json.dumps(spec.to_dict(), indent=2) + "\n").encode())
    return target


def read_spec(model_path: str | os.PathLike[str]) -> ModelSpec | None:
    """The spec beside ``model_path``, or None if there is none."""
    target = spec_path(model_path)
    if not target.exists():
        return None
    try:
        return ModelSpec.from_dict(json.loads(target.read_text()))
    except (json.JSONDecodeError, ValueError, TypeError, AttributeError) as exc:
        raise DataError(f"{target}: invalid model spec ({str(exc).splitlines()[0]})") from None
