"""Editing set-up shared by the editors: guidance-scale grids, device choice, loading a pipeline from local files.

The editors themselves live in ``editors/`` (one file each). Nothing here downloads a model. Bad arguments raise
:class:`epg_core.UsageError`; a missing or broken model raises :class:`epg_core.DataError`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from epg_core import DataError, UsageError

from .._progress import Progress

__all__ = [
    "Progress",
    "default_guidance_scales",
    "validate_scales",
    "select_device",
    "check_tokenizer",
    "quiet_libraries",
    "load_pipeline_class",
    "HOW_TO_PROVIDE",
]

HOW_TO_PROVIDE = (
    "give --model a local diffusers pipeline folder (with model_index.json, e.g. from "
    "`huggingface-cli download timbrooks/instruct-pix2pix --local-dir DIR` on a machine with internet) "
    "or a hub id already in the Hugging Face cache (HF_HOME); epg never downloads models"
)
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.\-]*/[\w.\-]+")


def _at_least_one(name: str, value: int) -> None:
    if isinstance(value, bool) or int(value) != value or value < 1:
        raise UsageError(f"{name} must be an integer >= 1, got {value!r}")


# ------------------------------------------------------------------------------------ scales, device


def default_guidance_scales(n: int = 100, stop: float = 15.0, *, start: float = 1.0) -> np.ndarray:
    """``n`` scales evenly spaced in ``(start, stop]``, i.e. ``linspace(start, stop, n + 1)[1:]``.

    ``start`` itself is left out: diffusers switches text guidance off at exactly 1.0 (InstructPix2Pix) and
    an edit guidance scale of 0 does nothing (LEDITS++); that unedited anchor is step 0 of the sequence.
    """
    if n < 1:
        raise UsageError(f"need at least one guidance scale, got n={n}")
    if not stop > start:
        raise UsageError(f"the largest guidance scale must exceed {start:g}, got {stop!r}")
    return np.linspace(float(start), float(stop), int(n) + 1)[1:]


def validate_scales(
    scales: Sequence[float] | np.ndarray, *, minimum: float = 1.0, name: str = "guidance scales"
) -> np.ndarray:
    """Scales as float64 ``[N]``: finite, all ``> minimum`` and strictly increasing, else a one-line UsageError."""
    try:
        s = np.asarray(scales, dtype=np.float64)
    except (TypeError, ValueError):
        raise UsageError(f"{name} must be numbers, got {scales!r}") from None
    if s.ndim != 1 or s.size == 0:
        raise UsageError(f"{name} must be a non-empty 1-D sequence, got shape {s.shape}")
    if not np.all(np.isfinite(s)):
        raise UsageError(f"{name} must be finite, got {s[~np.isfinite(s)][0]!r}")
    if np.any(s <= minimum):
        raise UsageError(
            f"{name} must all be > {minimum:g} (guidance is off at {minimum:g}), got {float(s[s <= minimum][0]):g}"
        )
    bad = np.flatnonzero(np.diff(s) <= 0)
    if bad.size:
        i = int(bad[0])
        raise UsageError(f"{name} must be strictly increasing, got {s[i]:g} then {s[i + 1]:g} at position {i + 1}")
    return s


def select_device(device: str | torch.device | None = None) -> tuple[torch.device, torch.dtype]:
    """Device (``None``/``"auto"``: CUDA if available, else CPU) and its dtype: fp16 on CUDA, fp32 on CPU."""
    if device is None or str(device) == "auto":
        dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        try:
            dev = torch.device(device)
        except (RuntimeError, TypeError):
            raise UsageError(f"unknown torch device {device!r}") from None
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise UsageError(f"device {device!r} requested but CUDA is not available")
    return dev, (torch.float16 if dev.type == "cuda" else torch.float32)


# --------------------------------------------------------------------------------------------- loading


def check_tokenizer(tokenizer: Any, *, probe: str = "a photo of a cat") -> None:
    """Refuse a silently broken tokenizer (e.g. one loaded without its vocabulary files).

    Such a tokenizer has only its special tokens and maps every word to the unknown token, so every
    instruction would become the same empty prompt. Raises a one-line DataError.
    """
    if tokenizer is None:
        raise DataError("the pipeline has no tokenizer")
    try:
        size = len(tokenizer)
        ids = list(tokenizer(probe).input_ids)
    except Exception as exc:  # noqa: BLE001 - any failure here means an unusable tokenizer
        raise DataError(f"the tokenizer cannot encode text ({type(exc).__name__}: {exc})") from None
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    unk = getattr(tokenizer, "unk_token_id", None)
    if unk is not None:
        special.add(unk)
    words = [i for i in ids if i not in special]
    if size <= len(special) + 1 or not words:
        raise DataError(
            f"the tokenizer is broken (vocabulary of {size} tokens; {probe!r} encodes to special tokens only): "
            "are its vocab.json/merges.txt or tokenizer.json missing from the model's tokenizer folder?"
        )


def _resolve_model(model: str | os.PathLike[str]) -> str:
    """A local pipeline folder (checked) or a hub id to look up in the local cache; DataError otherwise."""
    name = os.fspath(model)
    path = Path(name).expanduser()
    if path.exists():
        if not path.is_dir():
            raise DataError(f"model path is not a folder: {path}; {HOW_TO_PROVIDE}")
        if not (path / "model_index.json").is_file():
            raise DataError(f"model folder has no model_index.json (not a diffusers pipeline): {path}")
        return str(path)
    if name.startswith((".", "/", "~")) or not _HUB_ID.fullmatch(name):
        raise DataError(f"model path does not exist: {name}; {HOW_TO_PROVIDE}")
    return name


@contextlib.contextmanager
def quiet_libraries() -> Iterator[None]:
    """Silence diffusers' / transformers' logs, loading progress bars and FutureWarnings for a while.

    Loading prints accelerate hints, deprecation notices (``torch_dtype``), a torchvision fallback notice and
    two progress bars per component; none of it helps the user, whose own progress bar covers the sweep.
    """
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    loggers = [logging.getLogger(n) for n in ("diffusers", "transformers")]
    levels = [lg.level for lg in loggers]
    bars = [diffusers_logging.is_progress_bar_enabled(), transformers_logging.is_progress_bar_enabled()]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)
        if bars[0]:
            diffusers_logging.enable_progress_bar()
        if bars[1]:
            transformers_logging.enable_progress_bar()


def load_pipeline_class(
    cls: type,
    model: str | os.PathLike[str],
    *,
    name: str,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    **kwargs: Any,
) -> Any:
    """Load pipeline class ``cls`` from local files only (local folder or cached hub id), on ``device``.

    Fails fast with a one-line DataError that says how to provide a model when it is missing. fp16 on CUDA and
    fp32 on CPU unless ``dtype`` is given. ``kwargs`` go to ``from_pretrained``.
    """
    source = _resolve_model(model)
    dev, default_dtype = select_device(device)
    with quiet_libraries():
        try:
            pipe = cls.from_pretrained(source, local_files_only=True, torch_dtype=dtype or default_dtype, **kwargs)
        except Exception as exc:  # noqa: BLE001 - loader errors vary (OSError, ValueError, hub errors)
            raise DataError(_load_error(model, source, name, exc)) from None
    pipe = pipe.to(dev)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _load_error(model: str | os.PathLike[str], source: str, method: str, exc: Exception) -> str:
    """One-line message for a failed load: a hub id missing from the cache, or a local folder that is broken."""
    if not Path(source).exists():
        from huggingface_hub import constants

        return (f"model {source!r} is not a local folder and not in the Hugging Face cache ({constants.HF_HUB_CACHE}); "
                f"{HOW_TO_PROVIDE}")
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return f"cannot load {method} model from {os.fspath(model)} ({type(exc).__name__}: {first})"
