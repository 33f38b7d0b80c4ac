"""The ``epg-attributions`` HDF5 format (v1): local explanations of the stored steps of every sequence.

Layout: root attributes ``format = "epg-attributions"``, ``format_version = 1``; ``/models/<model>`` holds the
run's options as JSON (``run_options``: architecture, preprocessing, classes, explained output) and one group per
checkpoint, one per sequence below it, and one dataset per method: ``float32 [S, H, W]`` (S stored steps, the
model input's size) with attributes ``method``, ``options`` (JSON), ``target`` (class name), ``target_index``,
``steps`` (step indices into the sequence), ``values`` (the property values there) and ``seed``.

Every write stores one whole checkpoint at once: the file is copied beside itself, extended, fsynced and renamed
into place under the file's lock (``epg_core.atomic_path``), so a killed run loses at most the checkpoint it was
computing, and a second writer waits for the first.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

import epg_core as E
from epg_core import DataError, MissingFileError, UsageError

__all__ = ["ATTRIBUTIONS_FORMAT", "ATTRIBUTIONS_VERSION", "Attribution", "AttributionKey", "read_attributions",
           "list_attributions", "write_attributions", "check_attributions_target", "read_run_record",
           "is_attributions_file", "check_writable"]

ATTRIBUTIONS_FORMAT = "epg-attributions"
ATTRIBUTIONS_VERSION = 1
_MODELS = "models"


@dataclass(frozen=True)
class AttributionKey:
    """Where one attribution lives and how it was made (everything but the maps)."""

    model: str
    checkpoint: str
    sequence: str
    method: str
    options: str
    target: str
    target_index: int
    steps: tuple[int, ...]
    seed: int

    def same_request(self, other: AttributionKey) -> bool:
        """Whether ``other`` asks for exactly what this one holds (options, target, steps and, if used, seed)."""
        return (self.options, self.target, self.steps, self.seed) == \
            (other.options, other.target, other.steps, other.seed)


@dataclass(frozen=True)
class Attribution:
    """One method's maps ``float32 [S, H, W]`` for the stored steps of one sequence under one checkpoint."""

    key: AttributionKey
    maps: np.ndarray
    values: np.ndarray


def _check_names(*names: tuple[str, str]) -> None:
    for name, what in names:
        if not name or "/" in name or name in (".", ".."):
            raise UsageError(f"invalid {what} name {name!r}: must be a non-empty string without '/'")


def _text(value: Any) -> Any:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _open(path: Path) -> h5py.File:
    """An existing attributions file opened for reading; one-line DataError for anything else."""
    if not path.is_file():
        raise (DataError if path.exists() else MissingFileError)(f"{path}: file not found")
    try:
        handle = h5py.File(path, "r")
    except OSError:
        raise DataError(f"{path}: not an HDF5 file (or corrupt)") from None
    found = _text(handle.attrs.get("format"))
    version = handle.attrs.get("format_version")
    if found != ATTRIBUTIONS_FORMAT:
        handle.close()
        raise DataError(f"{path}: not an {ATTRIBUTIONS_FORMAT} file (format attribute is {found!r})")
    try:
        number = int(version)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        number = -1
    if number != ATTRIBUTIONS_VERSION:
        handle.close()
        raise DataError(f"{path}: unsupported {ATTRIBUTIONS_FORMAT} format_version {_text(version)!r} "
                        f"(this epg reads {ATTRIBUTIONS_VERSION})")
    return handle


def _int(value: Any) -> int:
    return int(np.asarray(value).item())


def _key(dset: h5py.Dataset, path: Path, model: str, checkpoint: str, sequence: str, method: str) -> AttributionKey:
    where = f"{path}: /{_MODELS}/{model}/{checkpoint}/{sequence}/{method}"
    try:
        steps = tuple(int(s) for s in np.asarray(dset.attrs["steps"]).ravel())
        key = AttributionKey(model, checkpoint, sequence, str(_text(dset.attrs["method"])),
                             str(_text(dset.attrs["options"])), str(_text(dset.attrs["target"])),
                             _int(dset.attrs["target_index"]), steps, _int(dset.attrs.get("seed", 0)))
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(f"{where}: missing or malformed attribute ({exc})") from None
    if dset.ndim != 3 or dset.shape[0] != len(steps):
        raise DataError(f"{where}: expected maps [len(steps)={len(steps)}, H, W], got shape {dset.shape}")
    return key


def _walk(handle: h5py.File, path: Path) -> Iterable[tuple[h5py.Dataset, tuple[str, str, str, str]]]:
    models = handle.get(_MODELS)
    if not isinstance(models, h5py.Group):
        return
    for model, mgroup in models.items():
        if not isinstance(mgroup, h5py.Group):
            raise DataError(f"{path}: /{_MODELS}/{model} is not a group")
        for checkpoint, cgroup in mgroup.items():
            if not isinstance(cgroup, h5py.Group):
                continue
            for sequence, sgroup in cgroup.items():
                if not isinstance(sgroup, h5py.Group):
                    raise DataError(f"{path}: /{_MODELS}/{model}/{checkpoint}/{sequence} is not a group")
                for method, dset in sgroup.items():
                    if not isinstance(dset, h5py.Dataset):
                        raise DataError(f"{path}: /{_MODELS}/{model}/{checkpoint}/{sequence}/{method} is not a "
                                        "dataset")
                    yield dset, (model, checkpoint, sequence, method)


def list_attributions(path: str | os.PathLike[str]) -> list[AttributionKey]:
    """Every attribution's key (no maps read); a missing file holds none."""
    path = Path(path)
    if not path.exists():
        return []
    with _open(path) as handle:
        return [_key(dset, path, *names) for dset, names in _walk(handle, path)]


def read_attributions(
    path: str | os.PathLike[str],
    *,
    model: str | None = None,
    checkpoint: str | None = None,
    sequence: str | None = None,
    method: str | None = None,
) -> list[Attribution]:
    """The attributions of ``path`` (optionally only one model / checkpoint / sequence / method)."""
    path = Path(path)
    out = []
    with _open(path) as handle:
        for dset, names in _walk(handle, path):
            if any(want is not None and want != have
                   for want, have in zip((model, checkpoint, sequence, method), names, strict=True)):
                continue
            key = _key(dset, path, *names)
            maps = np.asarray(dset[...], dtype=np.float32)
            if not np.all(np.isfinite(maps)):
                raise DataError(f"{path}: /{_MODELS}/{'/'.join(names)} holds non-finite values")
            values = np.asarray(dset.attrs.get("values", np.full(len(key.steps), np.nan)), np.float64)
            out.append(Attribution(key, maps, values))
    return out


def read_run_record(path: str | os.PathLike[str], model: str) -> dict[str, Any]:
    """The run options stored with ``model`` ({} when the file or the model is absent)."""
    path = Path(path)
    if not path.exists():
        return {}
    with _open(path) as handle:
        group = handle.get(f"{_MODELS}/{model}")
        if not isinstance(group, h5py.Group) or "run_options" not in group.attrs:
            return {}
        try:
            return dict(json.loads(_text(group.attrs["run_options"])))
        except (ValueError, TypeError):
            raise DataError(f"{path}: /{_MODELS}/{model} has malformed run_options") from None


def is_attributions_file(path: Path) -> bool:
    """Whether ``path`` exists and is an attributions file this version reads."""
    if not path.is_file():
        return False
    try:
        _open(path).close()
    except DataError:
        return False
    return True


def check_writable(path: Path, force: bool = False) -> None:
    """Refuse an existing ``path`` that is not an attributions file (replaced only with ``force``)."""
    if path.is_dir():
        raise UsageError(f"{path}: is a folder; choose another --out")
    if path.exists() and not force:
        try:
            _open(path).close()
        except DataError as exc:
            raise UsageError(f"{exc}; refusing to replace it: choose another --out, or --force") from None


def write_attributions(
    path: str | os.PathLike[str],
    items: Iterable[Attribution],
    *,
    run_record: Mapping[str, Any] | None = None,
    drop_model: str | None = None,
    force: bool = False,
) -> Path:
    """Add (or replace) ``items`` in ``path`` atomically (see the module doc); created when absent.

    ``run_record``: the options stored with each item's model. ``drop_model``: remove that model's group first
    (a restart with other run options). ``force``: replace an existing file that is not an attributions file.
    """
    path = Path(path)
    items = list(items)
    with E.file_lock(path):
        check_writable(path, force)
        exists = is_attributions_file(path)
        with E.atomic_path(path, copy_existing=exists) as tmp:
            with h5py.File(tmp, "a" if exists else "w", track_order=None if exists else True) as handle:
                if not exists:
                    handle.attrs["format"] = ATTRIBUTIONS_FORMAT
                    handle.attrs["format_version"] = ATTRIBUTIONS_VERSION
                models = handle.require_group(_MODELS)
                if drop_model is not None and drop_model in models:
                    del models[drop_model]
                for item in items:
                    k = item.key
                    _check_names((k.model, "model"), (k.checkpoint, "checkpoint"), (k.sequence, "sequence"),
                                 (k.method, "method"))
                    mgroup = models.require_group(k.model)
                    if run_record is not None:
                        mgroup.attrs["run_options"] = json.dumps(run_record, sort_keys=True)
                    group = mgroup.require_group(k.checkpoint).require_group(k.sequence)
                    if k.method in group:
                        del group[k.method]
                    maps = np.asarray(item.maps, np.float32)
                    dset = group.create_dataset(k.method, data=maps, chunks=(1, *maps.shape[1:]) if maps.size else None,
                                                compression="gzip", compression_opts=4)
                    dset.attrs["method"] = k.method
                    dset.attrs["options"] = k.options
                    dset.attrs["target"] = k.target
                    dset.attrs["target_index"] = int(k.target_index)
                    dset.attrs["steps"] = np.asarray(k.steps, np.int64)
                    dset.attrs["values"] = np.asarray(item.values, np.float64)
                    dset.attrs["seed"] = int(k.seed)
    return path


def check_attributions_target(keys: Iterable[AttributionKey], target: str | None, path: Path) -> str:
    """The one class the attributions explain (``target`` when given: every attribution must explain it)."""
    targets = sorted({k.target for k in keys})
    if not targets:
        raise DataError(f"{path}: holds no attributions")
    if target is None:
        if len(targets) > 1:
            raise UsageError(f"{path}: attributions explain several classes ({', '.join(targets)}); choose one "
                             "with --class")
        return targets[0]
    if target not in targets:
        raise UsageError(f"{path}: no attributions explain class {target!r} (they explain {', '.join(targets)})")
    return target
