"""What a call of ``make_interventions`` makes: sequence names, the edit's spec, and fingerprints.

A sequence's fingerprint covers what determines its frames (kind, property, options, the source's content), not
how it is computed (device, threads, batch size): equal fingerprints mean equal sequences.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from epg_core import DataError, MissingFileError, UsageError

from ._synthetic import KINDS as DESIGNED_KINDS

__all__ = ["EditSpec", "Request", "plan_requests", "image_ids", "slug", "NAME_RULE"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+=-]*$")
NAME_RULE = "letters, digits and _.+=-, starting with a letter or digit"


# ---------------------------------------------------------------------------------------------- names


def slug(text: str, fallback: str) -> str:
    """``text`` as a valid name: runs of other characters become ``_`` (``my cat (2)`` -> ``my_cat_2``)."""
    out = re.sub(r"[^A-Za-z0-9_.+=-]+", "_", text).strip("_.+=-")
    return out or fallback


def _checked_name(value: str, option: str) -> str:
    if not _NAME.match(value):
        raise UsageError(f"{option} {value!r}: use {NAME_RULE}")
    return value


def image_ids(stems: Sequence[str]) -> list[str]:
    """One id per source from its stem (made a valid name); a repeated id gets ``-2``, ``-3``... in order."""
    ids: list[str] = []
    for stem in stems:
        base = slug(stem, "image")
        candidate, k = base, 2
        while candidate in ids:
            candidate, k = f"{base}-{k}", k + 1
        ids.append(candidate)
    return ids


# ---------------------------------------------------------------------------------------------- specs


@dataclasses.dataclass(frozen=True)
class EditSpec:
    """A diffusion edit: the editor (``method``, built-in or ``package.module:Class``) and how to sweep it.

    ``scales`` (strictly increasing) or the default grid of ``n_scales`` values up to ``max_scale`` (the
    editor's default largest scale when None). ``options`` are the editor's (``-O KEY=VALUE``). ``threads``,
    ``batch_size`` and the device (but not its dtype: fp16 on CUDA, fp32 on CPU) change nothing in the frames
    and are left out of the fingerprint.
    """

    method: str = "instruct-pix2pix"
    model: str = ""
    instruction: str = ""
    scales: tuple[float, ...] | None = None
    n_scales: int = 100
    max_scale: float | None = None
    steps: int | None = None
    seed: int = 0
    size: tuple[int, int] | None = None
    batch_size: int = 8
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    device: str = "auto"
    threads: int = 0

    def editor(self) -> Any:
        """The (unloaded) editor with its options checked."""
        from .editors import make_editor

        editor = make_editor(self.method, self.options)
        if not type(editor).name:
            setattr(editor, "name", self.method)  # noqa: B010 - the user's editor is named by its import path
        return editor

    def grid(self, editor: Any) -> np.ndarray:
        """The swept scales (checked by the editor)."""
        from ._edit_setup import default_guidance_scales

        if self.scales is not None:
            return editor.check_scales(self.scales)
        stop = float(self.max_scale if self.max_scale is not None else editor.default_max_scale)
        return editor.check_scales(default_guidance_scales(int(self.n_scales), stop, start=editor.minimum))

    def checked(self) -> tuple[Any, np.ndarray]:
        """Editor and scales, checked before anything slow; the instruction must not be empty."""
        if not self.instruction or not self.instruction.strip():
            raise UsageError("the edit instruction is empty")
        if not self.model:
            raise UsageError("give a model to edit with")
        if isinstance(self.batch_size, bool) or int(self.batch_size) < 1:
            raise UsageError(f"batch size must be an integer >= 1, got {self.batch_size!r}")
        editor = self.editor()
        return editor, self.grid(editor)

    def identity(self, editor: Any, grid: np.ndarray) -> dict[str, Any]:
        """What determines the frames (for the fingerprint)."""
        opts = {f.name: getattr(editor.options, f.name) for f in dataclasses.fields(editor.options)}
        files = {k: _file_digest(Path(v)) for k, v in opts.items()
                 if isinstance(v, str) and k == "embeddings" and v and "{image}" not in v and Path(v).is_file()}
        from ._edit_setup import select_device

        model = Path(self.model).expanduser()
        dtype = str(select_device(self.device)[1]).replace("torch.", "")  # fp16 on CUDA, fp32 on CPU: not equal
        return {"method": self.method, "model": str(model.resolve()) if model.exists() else str(self.model),
                "dtype": dtype, "instruction": self.instruction,
                "scales": [float(s) for s in grid], "steps": self.steps or type(editor).default_steps,
                "seed": int(self.seed), "size": list(self.size) if self.size else None, "options": opts,
                "files": files}


@dataclasses.dataclass(frozen=True)
class Request:
    """One sequence to make: its name, image id, source path and fingerprint."""

    name: str
    image: str
    source: Path
    fingerprint: str
    attrs: Mapping[str, Any] = dataclasses.field(default_factory=dict)


# ------------------------------------------------------------------------------------------ fingerprints


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _canonical(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return {"array": hashlib.sha256(np.ascontiguousarray(value).tobytes()).hexdigest(), "shape": value.shape,
                "dtype": str(value.dtype)}
    if isinstance(value, Mapping):
        return {str(k): _canonical(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, np.generic):
        return value.item()
    return value


def _digest(*parts: Any) -> str:
    text = json.dumps(_canonical(list(parts)), sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _source_digest(kind: str, source: Path, options: Mapping[str, Any]) -> Any:
    """The content of a source: the image's bytes, or every frame's (and the values CSV's)."""
    if kind == "frames":
        from ._frames import list_frames

        csv = options.get("values_csv")
        return [[p.name, _file_digest(p)] for p in list_frames(source)] + (
            [_file_digest(Path(csv))] if csv else [])
    if not source.is_file():
        raise (MissingFileError if not source.exists() else DataError)(f"{source}: image file not found")
    return _file_digest(source)


# ------------------------------------------------------------------------------------------------ plan


def plan_requests(kind: str, sources: Sequence[Path], *, property: str, options: Mapping[str, Any] | EditSpec,
                  name: str | None = None, stems: Sequence[str] | None = None,
                  extra_attrs: Sequence[Mapping[str, Any]] | None = None) -> list[Request]:
    """Names, ids and fingerprints of the sequences a call makes (checks names; reads sources to hash them).

    ``extra_attrs``: attributes per source stored on its sequence (e.g. a study's image labels), fingerprinted.
    """
    if kind not in (*DESIGNED_KINDS, "edit", "frames"):
        kinds = ", ".join((*DESIGNED_KINDS, "edit", "frames"))
        raise UsageError(f"unknown intervention kind {kind!r}; use one of {kinds}")
    _checked_name(property, "--property")
    seen: set[str] = set()
    for src in sources:
        key = os.path.realpath(src)
        if key in seen:
            raise UsageError(f"{src}: given twice")
        seen.add(key)
    if name is not None and len(sources) > 1:
        raise UsageError(f"--name names one sequence but {len(sources)} inputs were given; their names are "
                         "<image>-<property> (choose the property with --property)")
    if stems is None:
        stems = [(Path(s).resolve().name or "frames") if kind == "frames" else Path(s).stem for s in sources]
    ids = image_ids(stems)
    names = [_checked_name(name, "--name")] if name is not None else [f"{i}-{property}" for i in ids]
    if isinstance(options, EditSpec):
        editor, grid = options.checked()
        ident: Any = options.identity(editor, grid)
        plain: Mapping[str, Any] = {}
    else:
        ident, plain = dict(options), options
    extra = list(extra_attrs) if extra_attrs is not None else [{}] * len(sources)
    if len(extra) != len(sources):
        raise UsageError(f"{len(extra)} sets of extra attributes for {len(sources)} inputs")
    return [Request(n, i, Path(s), _digest(kind, property, ident, _source_digest(kind, Path(s), plain),
                                           *([dict(x)] if x else []), *_per_image_files(options, i)), dict(x))
            for n, i, s, x in zip(names, ids, sources, extra, strict=True)]


def _per_image_files(options: Any, image: str) -> list[str]:
    """Digests of an edit's per-image input files (an option holding ``{image}``, e.g. MGIE's embeddings)."""
    if not isinstance(options, EditSpec):
        return []
    out = []
    for value in options.options.values():
        if isinstance(value, str) and "{image}" in value:
            path = Path(value.replace("{image}", image))
            out.append(_file_digest(path) if path.is_file() else f"missing:{path}")
    return out
