"""The ``Editor`` base class: one instruction-based image editor swept over one guidance scale.

An editor is a small class (one file per editor) with its options as a frozen dataclass. ``load`` builds its
diffusers pipeline from local files only; ``sweep`` edits one picture once per scale and returns uint8 frames
``[len(scales), H, W, 3]``; ``provenance`` says how to reproduce them. Every built-in editor gives the frames
of the stock diffusers pipeline called once per scale with the same seed, steps and size (one CPU
``torch.Generator().manual_seed(seed)`` per frame): batching changes nothing but speed.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from PIL import Image

from epg_core import DataError, UsageError

from ..._progress import Counter, Progress

__all__ = ["Editor", "EditorOptions", "PerSample", "as_pil", "chunks", "float_to_uint8", "make_options",
           "prepare_edit_image", "step_counter", "stock_generators"]


@dataclasses.dataclass(frozen=True)
class EditorOptions:
    """Base of an editor's options: a frozen dataclass whose fields are the ``-O KEY=VALUE`` keys."""

    def __post_init__(self) -> None:
        self.check()

    def check(self) -> None:
        """Refuse bad values with a one-line :class:`UsageError` (override)."""


class Editor:
    """One editor: its options, the scale it sweeps, how it loads and how it sweeps.

    Subclasses set the class attributes and implement :meth:`edit` (float frames in [0, 1]); most only
    override :meth:`load_pipeline`'s class name (``pipeline``) and :meth:`edit`.
    """

    #: ``--method`` name (a built-in editor's registry key, or ``package.module:Class`` for the user's own)
    name: ClassVar[str] = ""
    #: the options dataclass (frozen)
    Options: ClassVar[type[EditorOptions]] = EditorOptions
    #: the pipeline argument swept and its description (the sequence's default property)
    scale: ClassVar[str] = "guidance_scale"
    description: ClassVar[str] = "guidance scale"
    #: value of the unedited step 0 (guidance off); every swept scale must exceed ``minimum``
    original_value: ClassVar[float] = 1.0
    minimum: ClassVar[float] = 1.0
    #: default number of denoising (or inversion) steps and the default largest scale of the grid
    default_steps: ClassVar[int] = 50
    default_max_scale: ClassVar[float] = 15.0
    #: diffusers pipeline class name that :meth:`load` builds
    pipeline: ClassVar[str] = ""
    #: whether one denoising loop runs several scales at once
    batched: ClassVar[bool] = True

    def __init__(self, options: EditorOptions | None = None) -> None:
        self.options = options if options is not None else self.Options()
        if not isinstance(self.options, self.Options):
            raise UsageError(f"{self.name}: options must be {self.Options.__name__}, got {type(self.options).__name__}")
        self.pipe: Any = None
        self.model: str = ""

    # ----------------------------------------------------------------------------------------- loading

    def load(self, model: str | os.PathLike[str], device: str | torch.device | None = None,
             dtype: torch.dtype | None = None) -> Editor:
        """Build the pipeline from a local folder or a cached hub id (never downloads); return ``self``."""
        from .._edit_setup import load_pipeline_class

        self.pipe = load_pipeline_class(self.pipeline_class(), model, name=self.name, device=device, dtype=dtype,
                                        **self.load_kwargs())
        self.model = os.fspath(model)
        self.check_pipeline(self.pipe)
        return self

    def use(self, pipe: Any, model: str | os.PathLike[str] | None = None) -> Editor:
        """Edit with an already built pipeline (tests, notebooks); return ``self``."""
        self.pipe = pipe
        self.model = os.fspath(model) if model is not None else str(getattr(pipe, "name_or_path", "") or "")
        self.check_pipeline(pipe)
        return self

    def pipeline_class(self) -> type:
        """The diffusers pipeline class (by the ``pipeline`` name)."""
        import diffusers

        return getattr(diffusers, self.pipeline)

    def load_kwargs(self) -> dict[str, Any]:
        """Extra ``from_pretrained`` keyword arguments."""
        return {}

    def check_pipeline(self, pipe: Any) -> None:
        """Refuse a pipeline that cannot work (a broken tokenizer, the wrong UNet): one-line DataError."""
        from .._edit_setup import check_tokenizer

        if getattr(pipe, "tokenizer", None) is not None:
            check_tokenizer(pipe.tokenizer)

    # ------------------------------------------------------------------------------------------ sweeping

    def size_multiple(self) -> int:
        """Image sides must be multiples of this (default: the VAE factor)."""
        return int(getattr(self.pipe, "vae_scale_factor", 8))

    def prepare(self, image: Image.Image | np.ndarray, size: int | Sequence[int] | None = None) -> Image.Image:
        """The exact picture the editor sees (step 0 of the sequence): resized to ``size``, sides rounded down."""
        return prepare_edit_image(image, size=size, multiple=self.size_multiple())

    def sweep(self, image: Image.Image | np.ndarray, instruction: str, scales: Sequence[float] | np.ndarray, *,
              seed: int = 0, steps: int | None = None, size: int | Sequence[int] | None = None,
              batch_size: int = 8, progress: Progress | None = None) -> np.ndarray:
        """uint8 frames ``[len(scales), H, W, 3]``: ``image`` (prepared at ``size``) edited once per scale.

        At most ``batch_size`` scales are denoised together (the memory bound of a batched editor).
        """
        if self.pipe is None:
            raise UsageError(f"{self.name}: load a model first (Editor.load)")
        if not instruction or not instruction.strip():
            raise UsageError("the edit instruction is empty")
        if isinstance(batch_size, bool) or int(batch_size) != batch_size or batch_size < 1:
            raise UsageError(f"batch size must be an integer >= 1, got {batch_size!r}")
        s = self.check_scales(scales)
        n_steps = int(steps if steps is not None else self.default_steps)
        if n_steps < 1:
            raise UsageError(f"steps must be >= 1, got {steps!r}")
        pil = self.prepare(image, size)
        frames = self.edit(pil, instruction, s, seed=int(seed), steps=n_steps, batch_size=int(batch_size),
                           counter=Counter(progress, self.progress_total(s.size, n_steps)))
        frames = np.asarray(frames)
        if frames.dtype != np.uint8:
            frames = float_to_uint8(frames)
        if frames.shape != (s.size, pil.height, pil.width, 3):
            raise DataError(f"{self.name}: the editor returned frames of shape {frames.shape}, expected "
                            f"{(s.size, pil.height, pil.width, 3)}")
        return frames

    def check_scales(self, scales: Sequence[float] | np.ndarray) -> np.ndarray:
        """Scales as float64, finite, strictly increasing and all above ``minimum``."""
        from .._edit_setup import validate_scales

        return validate_scales(scales, minimum=self.minimum, name=f"{self.description}s")

    def for_image(self, image: str) -> None:
        """Called with the image's id before its sweep (MGIE picks that image's embeddings); nothing by default."""

    def progress_total(self, n_scales: int, steps: int) -> int:
        """Units the progress callback counts (default: denoising steps times scales)."""
        return n_scales * steps

    def edit(self, image: Image.Image, instruction: str, scales: np.ndarray, *, seed: int, steps: int,
             batch_size: int, counter: Counter) -> np.ndarray:
        """Frames for ``scales``: float in [0, 1] or uint8, ``[N, H, W, 3]`` at the size of ``image``."""
        raise NotImplementedError

    def provenance(self) -> dict[str, Any]:
        """What reproduces the frames: editor, pipeline, scheduler, dtype, device, versions and the options."""
        import diffusers

        pipe = self.pipe
        module = next((getattr(pipe, n) for n in ("unet", "transformer") if getattr(pipe, n, None) is not None),
                      None)
        attrs: dict[str, Any] = {
            "edit": self.name, "editor_class": f"{type(self).__module__}:{type(self).__qualname__}",
            "editor_model": self.model, "editor_pipeline": type(pipe).__name__,
            "scheduler": type(getattr(pipe, "scheduler", None)).__name__, "scale_name": self.scale,
            "dtype": str(getattr(module, "dtype", "")).replace("torch.", ""),
            "device": str(getattr(module, "device", "")), "batched": self.batched,
            "generator": "torch.Generator() on the CPU, manual_seed(seed), one per frame",
            "diffusers_version": diffusers.__version__, "safety_checker": False,
        }
        for field in dataclasses.fields(self.options):
            value = getattr(self.options, field.name)
            attrs[field.name] = value if isinstance(value, bool | int | float | str) else str(value)
        return attrs


# ---------------------------------------------------------------------------------------------- helpers


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def _convert(value: Any, tp: Any, key: str, where: str) -> Any:  # noqa: C901 - one branch per field type
    """``value`` (a TOML value or a command-line string) as field type ``tp``; UsageError if it does not fit."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None or (isinstance(value, str) and value.lower() == "none" and type(None) in args):
            if type(None) in args:
                return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, key, where)
            except UsageError as exc:
                errors.append(str(exc))
        raise UsageError(errors[0] if errors else f"{where}: {key}: bad value {value!r}")
    bad = UsageError(f"{where}: option {key}={value!r} must be {_type_name(tp)}")
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "1", "on", "false", "no", "0", "off"):
            return value.lower() in ("true", "yes", "1", "on")
        raise bad
    if tp is int:
        if isinstance(value, bool):
            raise bad
        if isinstance(value, int):
            return value
        try:
            return int(str(value))
        except ValueError:
            raise bad from None
    if tp is float:
        if isinstance(value, bool):
            raise bad
        try:
            out = float(value)
        except (TypeError, ValueError):
            raise bad from None
        if not np.isfinite(out):
            raise UsageError(f"{where}: option {key} must be finite, got {value!r}")
        return out
    if tp is str:
        if isinstance(value, str):
            return value
        raise bad
    return value


def make_options(cls: type[EditorOptions], values: Mapping[str, Any], *, where: str = "editor options",
                 editor: str = "") -> EditorOptions:
    """Options of ``cls`` from ``values`` (strings are converted by field type); a wrong key names the valid ones."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    for key in values:
        if key not in fields:
            valid = ", ".join(fields) or "none"
            raise UsageError(f"{where}: {editor + ' has ' if editor else ''}no option {key!r}; valid: {valid}")
    kwargs = {k: _convert(v, hints.get(k, Any), k, where) for k, v in values.items()}
    try:
        return cls(**kwargs)
    except UsageError as exc:
        raise UsageError(f"{where}: {exc}") from None


def as_pil(image: Image.Image | np.ndarray) -> Image.Image:
    """An RGB PIL image from a PIL image or a uint8 ``[H, W, 3]`` array."""
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    arr = np.asarray(image)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
        raise UsageError(f"expected an RGB uint8 image [H, W, 3], got dtype {arr.dtype} and shape {arr.shape}")
    return Image.fromarray(arr)


def prepare_edit_image(
    image: Image.Image | np.ndarray, *, size: int | Sequence[int] | None = None, multiple: int = 8
) -> Image.Image:
    """Resize to ``size = (width, height)`` (an int: square) if given, then down to multiples of ``multiple``.

    This is the exact picture the editor sees, so it is also step 0 (the unedited original) of the sequence.
    """
    pil = as_pil(image)
    if size is not None:
        wh = (int(size), int(size)) if isinstance(size, (int, np.integer)) else (int(size[0]), int(size[1]))
        if min(wh) < 1:
            raise UsageError(f"edit size must be positive, got {size!r}")
        if pil.size != wh:
            pil = pil.resize(wh, Image.Resampling.BICUBIC)
    w, h = (pil.width // multiple) * multiple, (pil.height // multiple) * multiple
    if w < multiple or h < multiple:
        raise UsageError(f"image of size {pil.width}x{pil.height} is smaller than the editor's minimum {multiple}px")
    if (w, h) != pil.size:
        pil = pil.resize((w, h), Image.Resampling.BICUBIC)
    return pil


def chunks(n: int, size: int) -> list[slice]:
    """Consecutive slices of at most ``size`` covering ``range(n)``."""
    if size < 1:
        raise UsageError(f"batch size must be >= 1, got {size}")
    return [slice(i, min(i + size, n)) for i in range(0, n, size)]


def float_to_uint8(images: np.ndarray) -> np.ndarray:
    """Float images in [0, 1] to uint8 as diffusers' ``numpy_to_pil`` does (``round(x * 255)``)."""
    return np.clip(np.rint(np.asarray(images, dtype=np.float64) * 255.0), 0, 255).astype(np.uint8)


def step_counter(counter: Counter, b: int) -> Any:
    """A stock pipeline's ``callback_on_step_end`` that counts ``b`` scale-steps per denoising step."""

    def callback(_pipe: Any, _i: int, _t: Any, _kwargs: dict[str, Any]) -> dict[str, Any]:
        counter.add(b)
        return {}

    return callback


def stock_generators(seed: int, n: int) -> list[torch.Generator]:
    """``n`` CPU generators all seeded with ``seed``: frame i sees the noise of a stock call with that seed."""
    return [torch.Generator().manual_seed(int(seed)) for _ in range(n)]


class PerSample(float):
    """A guidance scale per batch item, handed to a stock pipeline in place of its python-float scale.

    Compared as a float (its smallest value, so the pipeline's ``scale > 1`` checks pass as for every item),
    it multiplies a tensor item by item: ``scale * t`` is ``t[i] * scales[i]`` in float32, rounded once into
    ``t``'s dtype -- the arithmetic of a python float times a tensor, so each item equals a stock call.
    """

    values: torch.Tensor

    def __new__(cls, values: Sequence[float] | np.ndarray) -> PerSample:
        v = torch.as_tensor(np.asarray(values, dtype=np.float64), dtype=torch.float32)
        obj = super().__new__(cls, float(v.min()))
        obj.values = v
        return obj

    def _times(self, other: torch.Tensor) -> torch.Tensor:
        if other.ndim == 0 or other.shape[0] != self.values.numel():
            raise DataError(f"per-item guidance: a batch of {tuple(other.shape)[:1]} for {self.values.numel()} scales")
        g = self.values.to(other.device).view(-1, *([1] * (other.ndim - 1)))
        return (g * other).to(other.dtype)

    def __mul__(self, other: Any) -> Any:  # type: ignore[override]
        if isinstance(other, torch.Tensor):
            return self._times(other)
        return float(self) * other

    __rmul__ = __mul__  # type: ignore[assignment]

    @classmethod
    def __torch_function__(cls, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        """``tensor * scale`` (torch handles it before Python asks us): per item too; any other use is refused,
        so a pipeline that uses the scale otherwise fails loudly instead of silently using one value."""
        if func in (torch.Tensor.__mul__, torch.Tensor.__rmul__, torch.Tensor.mul, torch.mul) and len(args) == 2:
            a, b = args
            scale, tensor = (a, b) if isinstance(a, PerSample) else (b, a)
            if isinstance(tensor, torch.Tensor):
                return scale._times(tensor)
        raise DataError(f"a per-item guidance scale cannot be used in {getattr(func, '__name__', func)}")

    def __reduce__(self) -> Any:
        return (PerSample, (self.values.tolist(),))
