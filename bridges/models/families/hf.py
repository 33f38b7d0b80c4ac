"""``--arch hf``: a transformers image classifier from a ``save_pretrained`` folder, built from its config.json.

The folder's tensors are read by the checkpoint layouts (``_layouts``, in the names of the model transformers
builds); the model is built from the config (``--arch-kwargs`` are config fields), its forward returns the
logits, and class names come from ``id2label``. Without an image-processor config the preprocessing falls back
to the config's ``image_size`` (mean = std = 0.5), with a notice.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar, cast

from torch import nn

from epg_core import DataError, UsageError

from .._checkpoints import Checkpoint
from .._preprocessing import Notice
from .._sources import check_kwargs, checked_build, tensor_output
from .._spec import Preprocessing
from ._base import ModelFamily

__all__ = ["HfFamily", "build_hf", "fallback_preprocessing"]


def build_hf(ckpt: Checkpoint, overrides: Mapping[str, Any] | None, architecture: str = "hf") -> nn.Module:
    """A transformers image classifier from an HF folder's config (weights are loaded by the caller, strictly)."""
    if ckpt.config is None:
        raise UsageError(f"{ckpt.path}: --arch hf needs a Hugging Face model folder (config.json and weights)")
    try:
        from transformers import AutoConfig, AutoModelForImageClassification
    except ImportError as exc:
        raise UsageError(f"--arch hf: the 'transformers' package does not import ({exc}); "
                         "pip install transformers") from None
    try:
        config = AutoConfig.from_pretrained(str(ckpt.path), **dict(overrides or {}))
    except (ValueError, OSError, KeyError, TypeError) as exc:
        raise DataError(f"{ckpt.path}: unusable config.json ({str(exc).splitlines()[0][:200]})") from None

    def factory() -> nn.Module:
        return cast(nn.Module, AutoModelForImageClassification.from_config(config))

    try:
        model = checked_build(factory, {}, str(ckpt.path), architecture)
    except DataError as exc:
        raise DataError(f"{exc} (is it an image-classification model? model_type "
                        f"{ckpt.config.get('model_type')!r})") from None
    return model.float()


def fallback_preprocessing(ckpt: Checkpoint) -> Preprocessing | None:
    """For an HF folder without an image-processor config: its config's ``image_size`` (mean = std = 0.5)."""
    config = ckpt.config or {}
    size = config.get("image_size")
    if isinstance(size, int) and 1 <= size <= 4096:
        return Preprocessing(size=(size, size))
    return None


class HfFamily(ModelFamily):
    """``--arch hf``: built from the folder's config.json (no factory); ``--arch-kwargs`` override config fields."""

    name: ClassVar[str] = "hf"
    usage: ClassVar[str] = "hf"
    runs_hf_folder: ClassVar[bool] = True
    fallback_from: ClassVar[str] = "its config's image_size"

    def factory(self) -> Callable[..., nn.Module]:
        raise UsageError("--arch hf is built from the checkpoint folder's config.json; it has no factory")

    def kwargs(self, checkpoint: Checkpoint, overrides: Mapping[str, Any] | None = None,
               notice: Notice | None = None) -> dict[str, Any]:
        return check_kwargs(dict(overrides or {}), "--arch-kwargs")

    def build(self, checkpoint: Checkpoint, kwargs: Mapping[str, Any], notice: Notice | None = None) -> nn.Module:
        return tensor_output(build_hf(checkpoint, kwargs))

    def fallback_preprocessing(self, checkpoint: Checkpoint) -> Preprocessing | None:
        return fallback_preprocessing(checkpoint)
