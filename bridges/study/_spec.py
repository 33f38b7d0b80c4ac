"""The study file (``epg run study.toml``): parsed and checked into plain dataclasses.

Every error names the file and the field (``study.toml: [[models]] #2 'checkpoints': no file matches
'ckpt/*.pth'``). Paths are relative to the study file's folder.
"""

from __future__ import annotations

import glob
import math
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import epg_core as E
from epg_core import MissingFileError

from .._images import IMAGE_SUFFIXES, natural_key

DESIGNED = ("background", "darken-background", "brighten-background", "brightness", "hue", "patch", "rotation")
KINDS = (*DESIGNED, "edit", "frames")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+=-]*$")
MAX_STEPS = 10_000
PREPROCESSING_KEYS = ("size", "mean", "std", "resize", "crop", "crop_pct", "interpolation", "channel_order")
RUN_KEYS = ("arch_kwargs", "threads", "batch_size", "output_kind", "no_ema", "classes_file")
MODEL_KEYS = ("name", "arch", "checkpoints", "classes", *PREPROCESSING_KEYS, *RUN_KEYS)


@dataclass(frozen=True)
class InterventionSpec:
    """One ``[[interventions]]`` entry: a property (the group key) made by one kind, with its options."""

    property: str
    kind: str
    options: dict[str, Any]


@dataclass(frozen=True)
class ModelSpec:
    """One ``[[models]]`` entry: a name, an architecture, its checkpoints and how to run them."""

    name: str
    arch: str
    checkpoints: tuple[Path, ...]
    classes: tuple[str, ...] | None
    options: dict[str, Any]


@dataclass(frozen=True)
class Study:
    """A parsed study file."""

    path: Path
    name: str
    out: Path
    images: tuple[Path, ...]
    interventions: tuple[InterventionSpec, ...]
    models: tuple[ModelSpec, ...]
    score: dict[str, Any] = field(default_factory=dict)
    report: dict[str, Any] = field(default_factory=dict)
    executor: dict[str, Any] = field(default_factory=dict)
    #: The ``label`` given per ``[[images]]`` entry (image stem -> label); unlabelled images are grouped by the
    #: class the model predicts on the original.
    labels: dict[str, str] = field(default_factory=dict)


class _Where:
    """Builds one-line errors that name the study file and the field."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def error(self, where: str, msg: str) -> E.UsageError:
        return E.UsageError(f"{self.path}: {where}: {msg}")

    def table(self, data: dict[str, Any], key: str) -> dict[str, Any]:
        value = data.get(key, {})
        if not isinstance(value, dict):
            raise self.error(f"[{key}]", "must be a table")
        return value

    def tables(self, data: dict[str, Any], key: str, required: bool = True) -> list[dict[str, Any]]:
        value = data.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            raise self.error(f"[[{key}]]", "must be an array of tables")
        if required and not value:
            raise self.error(f"[[{key}]]", "at least one entry is needed")
        return value

    def string(self, table: dict[str, Any], key: str, where: str, default: str | None = None) -> str:
        value = table.get(key, default)
        if not isinstance(value, str) or not value:
            raise self.error(where, f"'{key}' must be a non-empty string")
        return value


def _expand(base: Path, pattern: str, suffixes: frozenset[str] | None) -> list[Path]:
    """Files matching ``pattern`` (relative to ``base``), in natural order."""
    full = pattern if Path(pattern).is_absolute() else str(base / pattern)
    hits = [Path(p) for p in glob.glob(full)] if glob.has_magic(full) else [Path(full)]
    hits = [p for p in hits if p.exists() and (suffixes is None or p.is_dir() or p.suffix.lower() in suffixes)]
    return sorted(hits, key=lambda p: natural_key(p.name))


def _options(entry: dict[str, Any], skip: tuple[str, ...], w: _Where, where: str) -> dict[str, Any]:
    """The remaining keys of an entry (kind or model options), checked to be plain TOML values."""
    out = {k: v for k, v in entry.items() if k not in skip}
    for k, v in out.items():
        if isinstance(v, float) and not math.isfinite(v):
            raise w.error(where, f"'{k}' must be finite")
    steps = out.get("n_steps")
    if steps is not None and (not isinstance(steps, int) or not 2 <= steps <= MAX_STEPS):
        raise w.error(where, f"'n_steps' must be an integer in [2, {MAX_STEPS}], got {steps!r}")
    return out


def _numbers(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)


def _check_grid(opts: dict[str, Any], w: _Where, where: str) -> None:
    """``values`` (explicit property values) or ``range = [start, stop]`` with ``n_steps``; not both."""
    if "values" in opts and "range" in opts:
        raise w.error(where, "give 'values' or 'range', not both")
    values = opts.get("values")
    if values is not None and (not _numbers(values) or not 2 <= len(values) <= MAX_STEPS):
        raise w.error(where, f"'values' must be a list of 2 to {MAX_STEPS} numbers")
    span = opts.get("range")
    if span is not None and (not _numbers(span) or len(span) != 2 or span[0] == span[1]):
        raise w.error(where, "'range' must be two different numbers [start, stop]")


GRID_KEYS = ("size", "values", "range", "n_steps")  # keys every designed kind takes in a study


def kind_keys(kind: str) -> tuple[str, ...] | None:
    """The keys an ``[[interventions]]`` entry of ``kind`` may have besides kind/property (None: not checked)."""
    if kind not in DESIGNED:
        return None
    import inspect

    from ..interventions import KINDS as EDIT_KINDS

    func = EDIT_KINDS[kind].func
    own = [p.name for p in inspect.signature(func).parameters.values() if p.kind is inspect.Parameter.KEYWORD_ONLY]
    return (*GRID_KEYS, *own)


def _check_kind_keys(kind: str, opts: dict[str, Any], w: _Where, where: str) -> None:
    """A typo'd key is refused naming the keys the kind takes (it would reach the edit function otherwise)."""
    valid = kind_keys(kind)
    unknown = sorted(set(opts) - set(valid)) if valid is not None else []
    if unknown:
        raise w.error(where, f"unknown key {unknown[0]!r} for kind {kind!r}; use kind, property, "
                             f"{', '.join(valid or ())}")


def _interventions(data: dict[str, Any], w: _Where) -> tuple[InterventionSpec, ...]:
    specs: list[InterventionSpec] = []
    for i, entry in enumerate(w.tables(data, "interventions"), 1):
        where = f"[[interventions]] #{i}"
        kind = w.string(entry, "kind", where)
        if kind not in KINDS:
            raise w.error(where, f"unknown kind {kind!r}; use one of {', '.join(KINDS)}")
        prop = w.string(entry, "property", where, default=kind)
        if not _NAME.match(prop):
            raise w.error(where, f"property {prop!r} must be letters, digits and _.+=-")
        if any(s.property == prop for s in specs):
            raise w.error(where, f"property {prop!r} is given twice")
        opts = _options(entry, ("kind", "property"), w, where)
        _check_kind_keys(kind, opts, w, where)
        _check_grid(opts, w, where)
        specs.append(InterventionSpec(prop, kind, opts))
    return tuple(specs)


def _models(data: dict[str, Any], w: _Where, base: Path) -> tuple[ModelSpec, ...]:
    models: list[ModelSpec] = []
    for i, entry in enumerate(w.tables(data, "models"), 1):
        where = f"[[models]] #{i}"
        name = w.string(entry, "name", where)
        if not _NAME.match(name) or any(m.name == name for m in models):
            raise w.error(where, f"model name {name!r} must be unique, letters, digits and _.+=-")
        raw = entry.get("checkpoints")
        patterns = [raw] if isinstance(raw, str) else raw
        if not isinstance(patterns, list) or not patterns or not all(isinstance(p, str) for p in patterns):
            raise w.error(where, "'checkpoints' must be a glob or a list of paths")
        paths: list[Path] = []
        for pattern in patterns:
            hits = _expand(base, pattern, None)
            if not hits:
                raise w.error(where, f"'checkpoints': no file matches {pattern!r}")
            paths += hits
        unknown = sorted(set(entry) - set(MODEL_KEYS))
        if unknown:
            raise w.error(where, f"unknown key {unknown[0]!r}; use {', '.join(MODEL_KEYS)}")
        classes = entry.get("classes")
        if classes is not None and (not isinstance(classes, list) or not all(isinstance(c, str) for c in classes)):
            raise w.error(where, "'classes' must be a list of names")
        models.append(ModelSpec(name, w.string(entry, "arch", where, default="convmixer"), tuple(paths),
                                tuple(classes) if classes else None,
                                _options(entry, ("name", "arch", "checkpoints", "classes"), w, where)))
    return tuple(models)


def load_study(path: str | os.PathLike[str]) -> Study:
    """Parse and check a study file; relative paths are taken from the file's folder."""
    path = Path(path)
    w = _Where(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise MissingFileError(f"{path}: study file not found") from None
    except OSError as exc:
        raise E.DataError(f"{path}: cannot read the study file: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise E.UsageError(f"{path}: not a valid TOML file: {exc}") from None
    base = path.resolve().parent
    unknown = sorted(set(data) - {"study", "images", "interventions", "models", "score", "report", "executor"})
    if unknown:
        raise w.error(f"[{unknown[0]}]", "unknown section; use study, images, interventions, models, score, report")
    head = w.table(data, "study")
    name = w.string(head, "name", "[study]", default=path.stem)
    out = Path(w.string(head, "out", "[study]", default=f"{path.stem}-out"))
    images: list[Path] = []
    labels: dict[str, str] = {}
    for i, entry in enumerate(w.tables(data, "images"), 1):
        bad = sorted(set(entry) - {"path", "label"})
        if bad:
            raise w.error(f"[[images]] #{i}", f"unknown key {bad[0]!r}; use path, label")
        pattern = w.string(entry, "path", f"[[images]] #{i}")
        hits = _expand(base, pattern, IMAGE_SUFFIXES)
        if not hits:
            raise w.error(f"[[images]] #{i}", f"no image matches {pattern!r}")
        if "label" in entry:
            label = w.string(entry, "label", f"[[images]] #{i}")
            labels.update({h.stem: label for h in hits})
        images += [h for h in hits if h not in images]
    stems = [p.stem for p in images]
    dup = next((s for s in stems if stems.count(s) > 1), None)
    if dup is not None:
        raise w.error("[[images]]", f"two images are named {dup!r}; sequence names come from the file names")
    return Study(path, name, out if out.is_absolute() else base / out, tuple(images), _interventions(data, w),
                 _models(data, w, base), w.table(data, "score"), w.table(data, "report"), w.table(data, "executor"),
                 labels)
