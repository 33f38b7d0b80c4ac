"""Checkpoints: lists (glob, list file, folder or explicit paths), natural order, short names, and the loaded
:class:`Checkpoint` that every layout reader returns; no torch needed at import.

A Hugging Face model folder (``config.json``) is one checkpoint; a folder of such folders (one per epoch,
``checkpoint-500``, ...) or of checkpoint files is a sweep over them.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from epg_core import MissingFileError, UsageError

from .._images import natural_key
from ._spec import Preprocessing

if TYPE_CHECKING:  # this module stays importable without torch (the ``onnx`` extra)
    import torch

__all__ = ["Checkpoint", "torch_checkpoints", "ONNX_SUFFIXES", "LIST_SUFFIXES", "CHECKPOINT_SUFFIXES", "is_onnx_path",
           "is_hf_folder", "natural_sorted", "find_checkpoints", "checkpoint_names"]

ONNX_SUFFIXES = (".onnx",)
LIST_SUFFIXES = (".txt", ".list", ".lst")
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin", ".safetensors", ".tar")


def is_hf_folder(path: str | os.PathLike[str]) -> bool:
    """True for a Hugging Face ``save_pretrained`` model folder (it holds ``config.json``)."""
    return Path(path).is_dir() and (Path(path) / "config.json").is_file()


def _folder_checkpoints(folder: Path) -> list[Path]:
    """The checkpoints a folder stands for: itself (HF folder), its HF sub-folders, or its checkpoint files."""
    if is_hf_folder(folder):
        return [folder]
    children = sorted(folder.iterdir())
    hf = [c for c in children if is_hf_folder(c)]
    if hf:
        return hf
    files = [c for c in children if c.is_file() and c.suffix.lower() in CHECKPOINT_SUFFIXES]
    if not files:
        raise UsageError(f"{folder}: no checkpoints in this folder (HF model folders with config.json or "
                         f"{', '.join(CHECKPOINT_SUFFIXES)} files)")
    return files


def is_onnx_path(path: str | os.PathLike[str]) -> bool:
    """True for an exported ``.onnx`` model file name."""
    return Path(path).suffix.lower() in ONNX_SUFFIXES


def natural_sorted(items: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """Paths sorted naturally by their full path string."""
    return sorted((Path(p) for p in items), key=lambda p: natural_key(str(p)))


def find_checkpoints(spec: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]) -> list[Path]:
    """Checkpoint paths from a glob, a list file (``.txt``/``.list``/``.lst``, one path a line, ``#`` comments,
    relative to the list file) or an explicit sequence; naturally sorted, duplicates refused."""
    if isinstance(spec, (str, os.PathLike)):
        spec_path = Path(spec)
        if spec_path.suffix.lower() in LIST_SUFFIXES:
            paths = _read_list_file(spec_path)
        elif spec_path.is_dir():
            paths = _folder_checkpoints(spec_path)
        elif spec_path.exists():
            paths = [spec_path]
        else:
            paths = [Path(p) for p in glob.glob(os.fspath(spec), recursive=True)
                     if not Path(p).is_dir() or is_hf_folder(p)]
            if not paths:
                raise UsageError(f"no checkpoints match {os.fspath(spec)!r}")
    else:
        paths = [Path(p) for p in spec]
        if not paths:
            raise UsageError("no checkpoints given")
    for path in paths:
        if not path.exists():
            raise MissingFileError(f"{path}: checkpoint not found")
    ordered = natural_sorted(paths)
    dupes = {str(p) for p in ordered if ordered.count(p) > 1}
    if dupes:
        raise UsageError(f"checkpoint listed twice: {sorted(dupes)[0]}")
    return ordered


def _read_list_file(path: Path) -> list[Path]:
    if not path.is_file():
        raise UsageError(f"{path}: checkpoint list file not found")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise UsageError(f"{path}: checkpoint list is not a UTF-8 text file") from None
    entries = [ln.strip() for ln in lines if ln.strip() and not ln.strip().startswith("#")]
    if not entries:
        raise UsageError(f"{path}: checkpoint list is empty")
    return [p if p.is_absolute() else path.parent / p for p in map(Path, entries)]


def checkpoint_names(paths: Sequence[Path]) -> list[str]:
    """Short unique names: paths relative to their common folder, suffix dropped, '/' kept as ':'.

    Names come from the paths as given (made absolute, never resolved): a symlink keeps its own name
    (``best.pth -> epoch_7.pth`` is ``best``; a Hugging Face cache snapshot is not named by its blob hash).
    """
    resolved = [Path(os.path.abspath(p)) for p in paths]
    common = Path(os.path.commonpath([p.parent for p in resolved])) if resolved else Path()
    names = [str(p.relative_to(common) if p.is_dir() else p.relative_to(common).with_suffix("")).replace(os.sep, ":")
             for p in resolved]
    if len(set(names)) != len(names):
        names = [str(p.relative_to(common)).replace(os.sep, ":") for p in resolved]
    return names


@dataclass(frozen=True)
class Checkpoint:
    """A loaded checkpoint: tensors by name, architecture kwargs and what it says about running it.

    ``paras``: the epg/paper architecture keyword arguments (an HF folder's config without version fields, so
    a sweep can compare them); ``hyper_parameters``: Lightning's (filtered to
    what the architecture accepts when it is built); ``config``: an HF folder's ``config.json``;
    ``preprocessing`` and ``classes``: what the checkpoint carries (None: nothing); ``layout`` names the
    layout it was read as.
    """

    path: Path
    state_dict: dict[str, torch.Tensor]
    paras: dict[str, Any] = field(default_factory=dict)
    hyper_parameters: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] | None = None
    preprocessing: Preprocessing | None = None
    classes: list[str] | None = None
    layout: str = "state_dict"


def torch_checkpoints(checkpoints: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
                      why: str) -> tuple[list[Path], list[str]]:
    """The checkpoint files (and their short names) of a command that needs torch weights; an ``.onnx`` file is
    refused with one line saying ``why`` (sweep and attribute share this)."""
    paths = find_checkpoints(checkpoints)
    onnx = next((p for p in paths if is_onnx_path(p)), None)
    if onnx is not None:
        raise UsageError(f"{onnx}: {why}; give checkpoints, not .onnx files")
    return paths, checkpoint_names(paths)
