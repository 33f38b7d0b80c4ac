"""Shared pieces of the HDF5 formats: constants, attribute encoding, opening and field validation.

Every check here answers with one line naming the file and the field, e.g.
``outputs.h5: /models/m/s/values has 1 step; a curve needs at least 2``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from epg_core._errors import DataError, MissingFileError, UsageError
from epg_core._formats._atomic import file_lock

INTERVENTIONS_FORMAT = "epg-interventions"
OUTPUTS_FORMAT = "epg-outputs"
FORMAT_VERSION = 2  # v2 adds block ids, run options, `property`/`image` on every sequence; reads v1
OUTPUT_KINDS = ("probabilities", "logits", "cosine")

JSON_KEYS_ATTR = "__json_keys__"  # names of attributes stored as JSON strings
UID_ATTR = "epg_block_id"  # identifies one block, so a shard never lands in a block that replaced its own
RUN_OPTIONS_ATTR = "run_options"  # on /models/<model>: the options of the run that made the blocks
MODELS = "models"
SCORES = "scores"
BLOCK_FIELDS = ("checkpoints", "classes", "output_kind", "preprocessing")


def _physical_memory() -> int:
    try:
        return int(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return 8 << 30


# The most bytes one read may allocate (override with EPG_MAX_READ_BYTES); a file claiming more is refused.
MAX_READ_BYTES = int(os.environ.get("EPG_MAX_READ_BYTES", 0)) or _physical_memory() // 2


def as_path(path: str | os.PathLike[str]) -> Path:
    return Path(os.fspath(path))


@contextmanager
def reading(path: str | os.PathLike[str], expected: str) -> Iterator[h5py.File]:
    """An epg HDF5 file of kind ``expected`` opened for reading under the file's shared lock (readers never see
    a half-folded file)."""
    p = as_path(path)
    with file_lock(p, exclusive=False), open_checked(p, expected) as handle:
        yield handle


def check_name(name: str, what: str) -> None:
    """Group names must be non-empty and free of '/' (they become HDF5 path components)."""
    if not isinstance(name, str) or not name or "/" in name or name in (".", ".."):
        raise UsageError(f"invalid {what} name {name!r}: must be a non-empty string without '/'")


def to_jsonable(value: Any) -> Any:
    """Numpy arrays and scalars to plain Python, recursively (for JSON attributes)."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def write_attrs(obj: h5py.HLObject, attrs: Mapping[str, Any]) -> None:
    """Store scalars natively and everything else (lists, dicts, None, arrays) as JSON strings."""
    json_keys = []
    for key, value in attrs.items():
        if key == JSON_KEYS_ATTR:
            continue
        value = to_jsonable(value)
        if isinstance(value, (bool, int, float, str)) and not (isinstance(value, int) and abs(value) >= 2**63):
            obj.attrs[key] = value
        else:
            try:
                obj.attrs[key] = json.dumps(value)
            except TypeError as exc:
                raise UsageError(f"attribute {key!r} is not JSON-serialisable: {exc}") from None
            json_keys.append(key)
    if json_keys:
        obj.attrs[JSON_KEYS_ATTR] = json.dumps(json_keys)


def read_attrs(obj: h5py.HLObject, path: Path, skip: Iterable[str] = ()) -> dict[str, Any]:
    """Inverse of :func:`write_attrs` (numpy scalars back to Python scalars); bad JSON is a DataError."""
    json_keys = _json_keys(obj, path)
    skipped = set(skip) | {JSON_KEYS_ATTR}
    try:
        items = list(obj.attrs.items())
    except (OSError, ValueError, TypeError) as exc:
        raise DataError(f"{path}: {obj.name} has unreadable attributes ({exc})") from None
    return {key: _decoded(obj, path, key, value, json_keys) for key, value in items if key not in skipped}


def read_attr(obj: h5py.HLObject, path: Path, key: str) -> Any:
    """One attribute as :func:`read_attrs` gives it (None when absent), without reading the others."""
    try:
        value = obj.attrs.get(key)
    except (OSError, ValueError, TypeError) as exc:
        raise DataError(f"{path}: {obj.name} attribute {key!r} is unreadable ({exc})") from None
    return None if value is None else _decoded(obj, path, key, value, _json_keys(obj, path))


def _json_keys(obj: h5py.HLObject, path: Path) -> set[str]:
    try:
        return set(json.loads(_text(obj.attrs.get(JSON_KEYS_ATTR, "[]"))))
    except (ValueError, TypeError):
        raise DataError(f"{path}: {obj.name} attribute {JSON_KEYS_ATTR} is not a JSON list") from None


def _decoded(obj: h5py.HLObject, path: Path, key: str, value: Any, json_keys: set[str]) -> Any:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if key in json_keys:
        try:
            return json.loads(value)
        except (ValueError, TypeError):
            raise DataError(f"{path}: {obj.name} attribute {key!r} is not valid JSON") from None
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def _text(value: Any) -> Any:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def open_checked(path: Path, expected: str, mode: str = "r") -> h5py.File:
    """Open an existing epg HDF5 file of kind ``expected``; one-line DataError otherwise."""
    if not path.exists():
        raise MissingFileError(f"{path}: file not found")
    if not path.is_file():
        raise DataError(f"{path}: not a file")
    try:
        handle = h5py.File(path, mode)
    except OSError as exc:
        if mode != "r" and "lock" not in str(exc).lower():
            raise DataError(f"{path}: cannot open for writing ({str(exc).splitlines()[0]})") from None
        raise DataError(f"{path}: not an HDF5 file (or corrupt)") from None
    try:
        check_format(handle, path, expected)
    except BaseException:
        handle.close()
        raise
    return handle


def check_format(handle: h5py.File, path: Path, expected: str) -> None:
    """Compare the root attributes with the expected kind and the supported version."""
    found = _text(handle.attrs.get("format"))
    if found != expected:
        raise DataError(f"{path}: not an {expected} file (format attribute is {found!r})")
    version = handle.attrs.get("format_version")
    try:
        number = int(version)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        number = -1
    if not 1 <= number <= FORMAT_VERSION:
        shown = repr(_text(version)) if number == -1 else str(number)
        raise DataError(f"{path}: unsupported {expected} format_version {shown} "
                        f"(this epg reads 1 to {FORMAT_VERSION})")
    if expected == OUTPUTS_FORMAT:
        _check_outputs_tree(handle, path)


def _check_outputs_tree(handle: h5py.File, path: Path) -> None:
    """/models, each model and each of its sequences must be HDF5 groups (a dataset there is a damaged file)."""
    models = handle.get(MODELS, getclass=True)
    if models is None:
        return
    if models is not h5py.Group:
        raise DataError(f"{path}: /{MODELS} is a dataset, not a group of models")
    group: Any = handle[MODELS]
    for name in group:
        if group.get(name, getclass=True) is not h5py.Group:
            raise DataError(f"{path}: /{MODELS}/{name} is a dataset, not a model group")
        model: Any = group[name]
        for seq in model:
            if model.get(seq, getclass=True) is not h5py.Group:
                raise DataError(f"{path}: /{MODELS}/{name}/{seq} is a dataset, not a sequence group")


def check_budget(path: Path, field: str, shape: tuple[int, ...], itemsize: int) -> None:
    """Refuse a read whose array would exceed :data:`MAX_READ_BYTES` (files can claim any shape)."""
    size = int(itemsize)
    for dim in shape:
        size *= int(dim)
    if size > MAX_READ_BYTES:
        raise DataError(f"{path}: {field} claims shape {tuple(int(d) for d in shape)} ({size / 2**30:.3g} GiB), "
                        f"more than the read budget of {MAX_READ_BYTES / 2**30:.3g} GiB; read it in chunks")


def dataset(group: h5py.Group, path: Path, name: str) -> h5py.Dataset:
    """The dataset ``name`` of ``group``, or a DataError naming the missing field."""
    try:
        obj = group.get(name)
    except (OSError, KeyError, ValueError):
        obj = None
    if not isinstance(obj, h5py.Dataset):
        raise DataError(f"{path}: {group.name}/{name} is missing" if obj is None
                        else f"{path}: {group.name}/{name} is not a dataset")
    return obj


def real_kind(dset: h5py.Dataset) -> bool:
    return dset.dtype.kind in "fiu"


def read_values(group: h5py.Group, path: Path, n_expected: int | None = None) -> np.ndarray:
    """Read and check a sequence's property values: finite reals, 1-D, at least 2 steps."""
    dset = dataset(group, path, "values")
    field = f"{group.name}/values"
    if dset.ndim != 1 or not real_kind(dset):
        raise DataError(f"{path}: {field} must be 1-D real numbers, got {dset.dtype} shape {dset.shape}")
    n = int(dset.shape[0])
    check_steps(path, field, n)
    if n_expected is not None and n != n_expected:
        raise DataError(f"{path}: {field} has {n} steps but the data has {n_expected}")
    check_budget(path, field, dset.shape, 8)
    values = np.asarray(dset[()], dtype=np.float64)
    check_finite_values(path, field, values)
    return values


def check_steps(path: Path | str, field: str, n: int) -> None:
    if n < 2:
        raise DataError(f"{path}: {field} has {n} step{'s' if n != 1 else ''}; a curve needs at least 2")


def check_finite_values(path: Path | str, field: str, values: np.ndarray) -> None:
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        kind = "NaN" if np.isnan(values[bad[0]]) else "Inf"
        raise DataError(f"{path}: {field} has {kind} at step {int(bad[0])} ({bad.size} non-finite in all)")


def str_list(value: Any, path: Path, field: str, length: int) -> list[str]:
    """An attribute that must be a list of ``length`` strings."""
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise DataError(f"{path}: {field} must be a list of names, got {type(value).__name__}")
    if len(value) != length:
        raise DataError(f"{path}: {field} has {len(value)} names for {length} entries")
    return value


@dataclass(frozen=True)
class BlockMeta:
    """What a checked outputs block group holds (everything but the outputs themselves)."""

    model: str
    sequence: str
    field: str  # "/models/<model>/<sequence>"
    shape: tuple[int, int, int]
    checkpoints: list[str]
    classes: list[str]
    output_kind: str
    preprocessing: dict[str, Any]
    attrs: dict[str, Any]
    uid: str


def block_group(handle: h5py.File, path: Path, model: str, sequence: str) -> h5py.Group:
    """The group of block (model, sequence), or a DataError naming what is missing."""
    models = handle.get(MODELS)
    if not isinstance(models, h5py.Group):
        raise DataError(f"{path}: no /{MODELS} group (no outputs written yet)")
    model_group = models.get(model) if model else None
    if not isinstance(model_group, h5py.Group):
        raise DataError(f"{path}: no model {model!r} (have {list(models)})")
    group = model_group.get(sequence) if sequence else None
    if not isinstance(group, h5py.Group):
        raise DataError(f"{path}: model {model!r} has no sequence {sequence!r}")
    return group


def block_meta(group: h5py.Group, path: Path, model: str, sequence: str) -> BlockMeta:
    """Check every field of one outputs block (datasets, dtypes, shapes, attributes) and describe it."""
    field = str(group.name)
    values = dataset(group, path, "values")
    if values.ndim != 1 or not real_kind(values):
        raise DataError(f"{path}: {field}/values must be 1-D real numbers, got {values.dtype} shape {values.shape}")
    check_steps(path, f"{field}/values", int(values.shape[0]))
    outputs = dataset(group, path, "outputs")
    if outputs.ndim != 3 or outputs.dtype.kind != "f":
        raise DataError(f"{path}: {field}/outputs must be float [M, N, C], got {outputs.dtype} shape {outputs.shape}")
    m, n, c = (int(d) for d in outputs.shape)
    if m < 1:
        raise DataError(f"{path}: {field}/outputs has no checkpoints")
    if n != values.shape[0]:
        raise DataError(f"{path}: {field}/outputs has {n} steps but values has {values.shape[0]}")
    if c < 1:
        raise DataError(f"{path}: {field}/outputs has no output columns")
    done = dataset(group, path, "done")
    if done.shape != (m,) or done.dtype.kind not in "biu":
        raise DataError(f"{path}: {field}/done must be bool [{m}], got {done.dtype} shape {done.shape}")
    attrs = read_attrs(group, path)
    for key in BLOCK_FIELDS[:3]:
        if key not in attrs:
            raise DataError(f"{path}: {field} attribute {key!r} is missing")
    checkpoints = str_list(attrs.pop("checkpoints"), path, f"{field} attribute 'checkpoints'", m)
    classes = str_list(attrs.pop("classes"), path, f"{field} attribute 'classes'", c)
    kind = attrs.pop("output_kind")
    if kind not in OUTPUT_KINDS:
        raise DataError(f"{path}: {field} attribute 'output_kind' is {kind!r}, not one of {OUTPUT_KINDS}")
    prep = attrs.pop("preprocessing", None) or {}
    if not isinstance(prep, dict):
        raise DataError(f"{path}: {field} attribute 'preprocessing' must be a mapping, got {type(prep).__name__}")
    uid = str(attrs.pop(UID_ATTR, ""))
    return BlockMeta(model, sequence, field, (m, n, c), checkpoints, classes, kind, prep, attrs, uid)


_KIND_RANGES = {"probabilities": (0.0, 1.0), "cosine": (-1.0, 1.0)}
_RANGE_SLACK = 1e-3  # float32 round-off of a softmax or a cosine


def check_output_range(path: Path | str, field: str, kind: str, outputs: np.ndarray, done: np.ndarray) -> None:
    """Refuse probabilities outside [0, 1] and cosines outside [-1, 1]: such a file's ``output_kind`` is wrong
    (logits stored as probabilities would be scored as garbage without a word)."""
    bounds = _KIND_RANGES.get(kind)
    rows = outputs[done]
    if bounds is None or rows.size == 0:
        return
    low, high = float(np.nanmin(rows)), float(np.nanmax(rows))
    if low < bounds[0] - _RANGE_SLACK or high > bounds[1] + _RANGE_SLACK:
        raise DataError(f"{path}: {field} has values from {low:.4g} to {high:.4g}, outside [{bounds[0]:g}, "
                        f"{bounds[1]:g}] for output_kind {kind!r} (logits? store them with --kind logits)")


def check_finite_outputs(
    path: Path | str, field: str, outputs: np.ndarray, done: np.ndarray, checkpoints: list[str], classes: list[str]
) -> None:
    """Refuse NaN/Inf in the outputs of a finished checkpoint (undone rows are NaN by design)."""
    rows = outputs[done]
    if rows.size == 0:
        return
    finite = np.isfinite(rows)
    if finite.all():
        return
    k, step, col = (int(i) for i in np.argwhere(~finite)[0])
    row = int(np.flatnonzero(done)[k])
    kind = "NaN" if np.isnan(rows[k, step, col]) else "Inf"
    raise DataError(f"{path}: {field} has {kind} in checkpoint {checkpoints[row]!r} at step {step}, "
                    f"output {classes[col]!r}")
