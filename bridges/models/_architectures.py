"""Models and checkpoints: the ConvMixer of the paper, ``module:function`` factories, safe checkpoint loading.

Checkpoints are always read with ``torch.load(..., weights_only=True)`` (no arbitrary unpickling). Accepted
shapes: a plain state_dict, or a dict holding ``state_dict`` (or ``model_state_dict``) and optionally
``paras`` (architecture keyword arguments, as in the paper's reference checkpoints). An exported ``.onnx``
file is recognised by :func:`is_onnx_path` and handled by the runner directly (no torch model needed).

Every problem with a checkpoint (wrong architecture, missing tensor, corrupt file) is a one-line
``ValueError`` naming the file.
"""

from __future__ import annotations

import importlib
import os
import pickle
import re
import warnings
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn

from ._checkpoints import is_onnx_path

__all__ = [
    "Residual",
    "conv_mixer",
    "ConvMixer",
    "Checkpoint",
    "BUILTIN_ARCHITECTURES",
    "load_checkpoint",
    "resolve_factory",
    "infer_convmixer_paras",
    "architecture_kwargs",
    "check_state_dict",
    "build_model",
    "load_weights",
]

class Residual(nn.Module):
    """``fn(x) + x``; the attribute name ``fn`` is part of the reference state_dict keys."""

    def __init__(self, fn: nn.Module) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x) + x


def conv_mixer(
    dim: int,
    depth: int,
    kernel_size: int = 9,
    patch_size: int = 7,
    n_classes: int = 1000,
    in_channels: int = 3,
) -> nn.Sequential:
    """ConvMixer (Trockman & Kolter, 2022) as the ``nn.Sequential`` whose keys match the paper's checkpoints.

    Layout: patch-embedding conv, GELU, BatchNorm; ``depth`` blocks of [Residual(depthwise conv, GELU,
    BatchNorm), pointwise conv, GELU, BatchNorm]; adaptive average pool, flatten, linear.
    """
    blocks = [
        nn.Sequential(
            Residual(nn.Sequential(
                nn.Conv2d(dim, dim, kernel_size, groups=dim, padding="same"),
                nn.GELU(),
                nn.BatchNorm2d(dim),
            )),
            nn.Conv2d(dim, dim, kernel_size=1),
            nn.GELU(),
            nn.BatchNorm2d(dim),
        )
        for _ in range(depth)
    ]
    return nn.Sequential(
        nn.Conv2d(in_channels, dim, kernel_size=patch_size, stride=patch_size),
        nn.GELU(),
        nn.BatchNorm2d(dim),
        *blocks,
        nn.AdaptiveAvgPool2d((1, 1)),
        nn.Flatten(),
        nn.Linear(dim, n_classes),
    )


ConvMixer = conv_mixer  # the name used by the reference code

BUILTIN_ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {"convmixer": conv_mixer}


@dataclass(frozen=True)
class Checkpoint:
    """A loaded checkpoint: tensors by name, optional architecture kwargs (``paras``) and where it came from."""

    path: Path
    state_dict: dict[str, torch.Tensor]
    paras: dict[str, Any] = field(default_factory=dict)


def load_checkpoint(path: str | os.PathLike[str]) -> Checkpoint:
    """Read a checkpoint safely (``weights_only=True``) and normalise its layout.

    A ``module.`` prefix on every key (``nn.DataParallel``) is stripped.
    """
    path = Path(path)
    if not path.exists():
        raise ValueError(f"{path}: checkpoint not found")
    if is_onnx_path(path):
        raise ValueError(f"{path}: an .onnx file holds no torch weights; pass it to `epg predict` directly")
    obj = _torch_load(path)
    state, paras = _split_checkpoint(obj, path)
    return Checkpoint(path=path, state_dict=state, paras=paras)


def _torch_load(path: Path) -> Any:
    """``torch.load`` with weights only; every failure becomes one line naming the file."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. "Detected pickle protocol 4": the error below says enough
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        message = str(exc)
        found = re.search(r"Unsupported global: GLOBAL (\S+)", message)
        if found:
            raise ValueError(f"{path}: checkpoint refused by weights_only loading (it pickles the Python object "
                             f"{found.group(1)}, which could run arbitrary code)") from None
        detail = re.search(r"WeightsUnpickler error:\s*([^\n]+)", message)
        reason = detail.group(1).strip() if detail else "not a torch checkpoint"
        raise ValueError(f"{path}: corrupt or unreadable checkpoint ({reason[:160]})") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError, KeyError, IndexError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"{path}: corrupt or unreadable checkpoint ({first[:160]})") from None


def _split_checkpoint(obj: Any, path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Accept a plain state_dict or ``{"state_dict": ..., "paras": ...}``; return (tensors, paras)."""
    if not isinstance(obj, Mapping):
        raise ValueError(f"{path}: checkpoint holds a {type(obj).__name__}, "
                         "expected a state_dict or a dict with 'state_dict'")
    paras: dict[str, Any] = {}
    for key in ("state_dict", "model_state_dict"):
        if key in obj and isinstance(obj[key], Mapping):
            raw_paras = obj.get("paras", {})
            if not isinstance(raw_paras, Mapping):
                raise ValueError(f"{path}: 'paras' is a {type(raw_paras).__name__}, "
                                 "expected a dict of keyword arguments")
            paras = dict(raw_paras)
            obj = obj[key]
            break
    state = {str(k): v for k, v in obj.items()}
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad or not state:
        what = f"non-tensor entry {bad[0]!r}" if bad else "no tensors"
        raise ValueError(f"{path}: not a state_dict ({what})")
    if all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state, paras


def resolve_factory(architecture: str) -> Callable[..., nn.Module]:
    """A builtin name (``convmixer``) or ``package.module:function`` returning an ``nn.Module``."""
    if architecture.lower() in BUILTIN_ARCHITECTURES:
        return BUILTIN_ARCHITECTURES[architecture.lower()]
    if ":" not in architecture:
        raise ValueError(f"unknown architecture {architecture!r}: use one of {sorted(BUILTIN_ARCHITECTURES)} "
                         "or 'module:function'")
    module_name, _, func_name = architecture.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"architecture {architecture!r}: cannot import module {module_name!r} ({exc})") from None
    factory = getattr(module, func_name, None)
    if not callable(factory):
        raise ValueError(f"architecture {architecture!r}: {module_name} has no callable {func_name!r}")
    return cast(Callable[..., nn.Module], factory)  # checked to return an nn.Module by build_model


_BLOCK_KEY = re.compile(r"^(\d+)\.0\.fn\.0\.weight$")


def infer_convmixer_paras(state: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """Recover ConvMixer keyword arguments from a state_dict's tensor shapes (for plain state_dicts)."""
    try:
        stem = state["0.weight"]
        blocks = sorted(int(m.group(1)) for k in state if (m := _BLOCK_KEY.match(k)))
        head = state[f"{3 + len(blocks) + 2}.weight"]
        kernel = state[f"{blocks[0]}.0.fn.0.weight"].shape[-1] if blocks else 9
    except KeyError as exc:
        raise ValueError(f"state_dict does not look like a ConvMixer (no tensor {exc.args[0]!r})") from None
    return {"dim": int(stem.shape[0]), "depth": len(blocks), "kernel_size": int(kernel),
            "patch_size": int(stem.shape[-1]), "n_classes": int(head.shape[0]), "in_channels": int(stem.shape[1])}


def architecture_kwargs(
    architecture: str, checkpoint: Checkpoint, overrides: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Keyword arguments for the factory: checkpoint ``paras`` (or, for a ConvMixer, shapes), then overrides."""
    kwargs = dict(checkpoint.paras)
    if not kwargs and architecture.lower() == "convmixer":
        try:
            kwargs = infer_convmixer_paras(checkpoint.state_dict)
        except ValueError as exc:
            raise ValueError(f"{checkpoint.path}: wrong architecture: {exc}") from None
    kwargs.update(overrides or {})
    return kwargs


def check_state_dict(model: nn.Module, state: Mapping[str, torch.Tensor], source: str | os.PathLike[str]) -> None:
    """Compare a checkpoint's tensor names and shapes with ``model``; one-line ValueError on any mismatch.

    Unexpected tensors or different shapes mean the wrong architecture; a checkpoint whose names are a
    strict subset of the model's is missing tensors.
    """
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if unexpected:
        raise ValueError(f"{source}: wrong architecture: {len(unexpected)} tensor(s) the model does not have, "
                         f"e.g. {unexpected[0]!r}"
                         + (f" ({len(missing)} expected tensor(s) absent)" if missing else ""))
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise ValueError(f"{source}: missing tensor {missing[0]!r}{more}")
    for key, tensor in expected.items():
        if tuple(state[key].shape) != tuple(tensor.shape):
            raise ValueError(f"{source}: wrong architecture: tensor {key!r} has shape {tuple(state[key].shape)}, "
                             f"the model expects {tuple(tensor.shape)}")


def build_model(
    architecture: str,
    checkpoint: Checkpoint | str | os.PathLike[str],
    overrides: Mapping[str, Any] | None = None,
) -> nn.Module:
    """Instantiate ``architecture`` with the checkpoint's kwargs, load its tensors strictly, set eval mode."""
    ckpt = checkpoint if isinstance(checkpoint, Checkpoint) else load_checkpoint(checkpoint)
    factory = resolve_factory(architecture)
    kwargs = architecture_kwargs(architecture, ckpt, overrides)
    try:
        model = factory(**kwargs)
    except TypeError as exc:
        raise ValueError(f"{ckpt.path}: wrong architecture: {architecture} does not accept {kwargs} ({exc})") from None
    if not isinstance(model, nn.Module):
        raise ValueError(f"architecture {architecture!r} returned a {type(model).__name__}, not a torch nn.Module")
    load_weights(model, ckpt.state_dict, ckpt.path)
    return model.eval()


def load_weights(model: nn.Module, state: Mapping[str, torch.Tensor], source: str | os.PathLike[str]) -> None:
    """``check_state_dict`` then ``load_state_dict(strict=True)``."""
    check_state_dict(model, state, source)
    model.load_state_dict(state, strict=True)

