"""The study's interventions stage: every ``[[interventions]]`` entry made by ``make_interventions``.

Designed kinds take ``size``, ``values`` / ``range`` + ``n_steps`` and the edit's own keys; ``kind = "edit"``
takes ``method``, ``model``, ``instruction``, ``scales`` (a list, or ``{min, max, n}``: n values from min to
max), ``steps``, ``seed``, ``size``, ``batch_size``, ``device`` and ``options = {KEY = VALUE}`` (the editor's
``-O`` options); ``kind = "frames"`` takes ``folders`` (a glob or list of frame folders), ``values_csv``,
``column``, ``size``, ``unit``. Paths are relative to the study file. A sequence is kept when the one stored has
the fingerprint this entry would give it (so a killed run resumes and a rerun computes nothing); a changed or
removed one is dropped before the missing ones are made.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

import epg_core as E

from ._spec import DESIGNED, InterventionSpec, Study, _expand
from ._state import State

__all__ = ["EDIT_KEYS", "FRAMES_KEYS", "make_args", "wanted", "run_interventions"]

EDIT_KEYS = ("method", "model", "instruction", "scales", "n_scales", "max_scale", "steps", "seed", "size",
             "batch_size", "device", "options")
FRAMES_KEYS = ("folders", "values_csv", "column", "size", "unit")


def _error(study: Study, i: int, msg: str) -> E.UsageError:
    return E.UsageError(f"{study.path}: [[interventions]] #{i}: {msg}")


def _size(value: Any, study: Study, i: int) -> tuple[int, int] | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return (value, value)
    if (isinstance(value, list) and len(value) == 2 and all(isinstance(v, int) and not isinstance(v, bool) and v > 0
                                                            for v in value)):
        return (value[0], value[1])
    raise _error(study, i, f"'size' must be N or [WIDTH, HEIGHT] (positive integers), got {value!r}")


def _local(base: Path, value: str) -> str:
    """A path relative to the study file when it exists there, else the value as given (e.g. a hub id)."""
    candidate = Path(value).expanduser()
    candidate = candidate if candidate.is_absolute() else base / candidate
    return str(candidate) if candidate.exists() else value


def _edit(study: Study, i: int, opts: Mapping[str, Any], base: Path) -> Any:
    from ..interventions import EditSpec

    unknown = sorted(set(opts) - set(EDIT_KEYS))
    if unknown:
        raise _error(study, i, f"unknown key {unknown[0]!r} for kind 'edit'; use kind, property, "
                               f"{', '.join(EDIT_KEYS)}")
    for key in ("model", "instruction"):
        if not isinstance(opts.get(key), str) or not opts[key]:
            raise _error(study, i, f"kind 'edit' needs '{key}' (a non-empty string)")
    scales = opts.get("scales")
    if isinstance(scales, dict):
        if set(scales) != {"min", "max", "n"} or not isinstance(scales["n"], int) or scales["n"] < 1:
            raise _error(study, i, "'scales' must be a list of numbers or {min = A, max = B, n = N}")
        scales = np.linspace(float(scales["min"]), float(scales["max"]), int(scales["n"])).tolist()
    elif scales is not None and not (isinstance(scales, list) and scales and all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in scales)):
        raise _error(study, i, "'scales' must be a list of numbers or {min = A, max = B, n = N}")
    options = opts.get("options", {})
    if not isinstance(options, dict):
        raise _error(study, i, "'options' must be a table {KEY = VALUE} of the editor's options")
    options = {k: (_local(base, v) if k == "embeddings" and isinstance(v, str) else v) for k, v in options.items()}
    options = {k: (str(base / v) if isinstance(v, str) and "{image}" in v and not Path(v).is_absolute() else v)
               for k, v in options.items()}
    ints = {k: opts[k] for k in ("steps", "seed", "batch_size", "n_scales") if k in opts}
    for key, value in ints.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < (0 if key == "seed" else 1):
            raise _error(study, i, f"'{key}' must be an integer >= {0 if key == 'seed' else 1}, got {value!r}")
    try:
        return EditSpec(method=str(opts.get("method", "instruct-pix2pix")), model=_local(base, opts["model"]),
                        instruction=opts["instruction"], scales=tuple(float(s) for s in scales) if scales else None,
                        n_scales=int(opts.get("n_scales", 100)), max_scale=opts.get("max_scale"),
                        steps=opts.get("steps"), seed=int(opts.get("seed", 0)), size=_size(opts.get("size"), study, i),
                        batch_size=int(opts.get("batch_size", 8)), options=options,
                        device=str(opts.get("device", "auto")))
    except TypeError as exc:
        raise _error(study, i, str(exc)) from None


def _designed(study: Study, i: int, spec: InterventionSpec, base: Path) -> dict[str, Any]:
    from ..interventions import default_values, load_image

    opts = dict(spec.options)
    size = _size(opts.pop("size", None), study, i)
    values, span = opts.pop("values", None), opts.pop("range", None)
    n_steps = int(opts.pop("n_steps", 50))
    if values is not None:
        grid = np.asarray(values, np.float64)
    elif span is not None:
        grid = np.linspace(float(span[0]), float(span[1]), n_steps)
    else:
        grid = default_values(spec.kind, n_steps)
    if spec.kind == "patch" and isinstance(opts.get("patch"), str):
        opts["patch"] = load_image(base / opts["patch"], mode="RGBA")
    return {"values": grid, "size": size, **opts}


def make_args(study: Study, index: int) -> tuple[str, list[Path], Any, list[dict[str, Any]]]:
    """``make_interventions``'s kind, sources, options and per-source attributes for entry ``index`` (1-based)."""
    spec = study.interventions[index - 1]
    base = study.path.resolve().parent
    labels: Mapping[str, str] = getattr(study, "labels", {}) or {}
    if spec.kind == "frames":
        unknown = sorted(set(spec.options) - set(FRAMES_KEYS))
        if unknown:
            raise _error(study, index, f"unknown key {unknown[0]!r} for kind 'frames'; use kind, property, "
                                       f"{', '.join(FRAMES_KEYS)}")
        raw = spec.options.get("folders")
        patterns = [raw] if isinstance(raw, str) else raw
        if not isinstance(patterns, list) or not patterns or not all(isinstance(p, str) for p in patterns):
            raise _error(study, index, "kind 'frames' needs 'folders' (a glob or a list of frame folders)")
        folders = [p for pattern in patterns for p in _expand(base, pattern, None) if p.is_dir()]
        if not folders:
            raise _error(study, index, f"'folders': no folder matches {patterns[0]!r}")
        csv = spec.options.get("values_csv")
        options = {"values_csv": str(base / csv) if isinstance(csv, str) else None,
                   "column": spec.options.get("column"), "size": _size(spec.options.get("size"), study, index),
                   "unit": spec.options.get("unit")}
        return "frames", folders, options, [{"label": labels[f.name]} if f.name in labels else {} for f in folders]
    images = list(study.images)
    extra = [{"label": labels[p.stem]} if p.stem in labels else {} for p in images]
    if spec.kind == "edit":
        return "edit", images, _edit(study, index, spec.options, base), extra
    if spec.kind in DESIGNED:
        return spec.kind, images, _designed(study, index, spec, base), extra
    raise _error(study, index, f"unknown kind {spec.kind!r}")


def wanted(study: Study) -> dict[str, tuple[InterventionSpec, Path, str]]:
    """Every sequence the study needs: name -> (spec, source, fingerprint)."""
    from ..interventions import plan_requests

    out: dict[str, tuple[InterventionSpec, Path, str]] = {}
    for i, spec in enumerate(study.interventions, 1):
        kind, sources, options, extra = make_args(study, i)
        try:
            requests = plan_requests(kind, sources, property=spec.property, options=options, extra_attrs=extra)
        except E.UsageError as exc:
            raise _error(study, i, str(exc)) from None
        for req in requests:
            if req.name in out:
                raise _error(study, i, f"sequence {req.name!r} is made twice")
            out[req.name] = (spec, req.source, req.fingerprint)
    return out


def run_interventions(study: Study, state: State, say: Callable[[str], None],
                      executor: Any = None) -> tuple[Path, list[str]]:
    """Make the sequences that are missing or whose source/options changed (each stored when done); keep the
    others; drop those the study no longer has."""
    from ..interventions import make_interventions, stored_requests

    path = study.out / "interventions.h5"
    want = wanted(study)
    stored = stored_requests(path) if path.exists() else {}
    stale = sorted(n for n, fp in stored.items() if n not in want or want[n][2] != fp)
    todo = [n for n, (_, _, fp) in want.items() if stored.get(n) != fp]
    if stale:  # changed or removed sequences: rewrite the file without them (atomic)
        say(f"removing {len(stale)} changed or removed sequence(s)")
        keep = E.read_interventions(path, [n for n in E.list_sequences(path) if n not in stale])
        E.write_interventions(path, keep)
    if todo:
        for i, spec in enumerate(study.interventions, 1):
            kind, sources, options, extra = make_args(study, i)
            try:
                make_interventions(path, kind, sources, property=spec.property, options=options, append=True,
                                   sheet_steps=None, extra_attrs=extra, executor=executor, say=say)
            except E.UsageError as exc:
                raise _error(study, i, str(exc)) from None
    state.set("interventions", {n: fp for n, (_, _, fp) in want.items()})
    return path, todo
