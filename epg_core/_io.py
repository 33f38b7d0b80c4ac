"""HDF5 formats of epg: interventions files, outputs files and the scores table.

Every writer goes through a temporary file in the destination directory that is fsynced and then
``os.replace``-d into place, so an interrupted run leaves either the old file or the new one, never a
half-written file. Readers check the root attributes ``format`` / ``format_version`` and answer a wrong
file kind, a missing file or a missing group with a one-line ``ValueError`` naming the path.

Only numpy, h5py and the standard library are used here, so the files are readable without torch.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from epg_core._atomic import atomic_path as _atomic_target

__all__ = [
    "INTERVENTIONS_FORMAT",
    "OUTPUTS_FORMAT",
    "FORMAT_VERSION",
    "OUTPUT_KINDS",
    "InterventionSequence",
    "OutputsBlock",
    "write_interventions",
    "read_interventions",
    "list_sequences",
    "iter_intervention_images",
    "write_outputs",
    "read_outputs",
    "list_outputs",
    "set_checkpoint_outputs",
    "write_scores",
    "read_scores",
]

INTERVENTIONS_FORMAT = "epg-interventions"
OUTPUTS_FORMAT = "epg-outputs"
FORMAT_VERSION = 1
OUTPUT_KINDS = ("probabilities", "logits", "cosine")

_JSON_KEYS_ATTR = "__json_keys__"  # names of attributes stored as JSON strings
_MODELS = "models"
_SCORES = "scores"
_BLOCK_FIELDS = ("checkpoints", "classes", "output_kind", "preprocessing")


# --------------------------------------------------------------------------- data classes


@dataclass(frozen=True)
class InterventionSequence:
    """One ordered intervention sequence: images ``uint8 [N, H, W, 3]`` and property values ``float64 [N]``.

    ``images`` may have zero rows (shape ``(0, H, W, 3)``) to mean "images not loaded" — that is what
    ``read_interventions(..., images=False)`` returns; such a sequence cannot be written back.
    ``attrs`` holds the provenance (``source``, ``property``, ``unit``, ``includes_original``, ...).
    """

    images: np.ndarray
    values: np.ndarray
    attrs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        images = np.asarray(self.images)
        values = np.asarray(self.values)
        if images.dtype != np.uint8:
            raise ValueError(f"InterventionSequence images must be uint8, got {images.dtype}")
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"InterventionSequence images must be [N, H, W, 3], got shape {images.shape}")
        if values.ndim != 1:
            raise ValueError(f"InterventionSequence values must be 1-D [N], got shape {values.shape}")
        if not np.issubdtype(values.dtype, np.number) or np.issubdtype(values.dtype, np.complexfloating):
            raise ValueError(f"InterventionSequence values must be real numbers, got {values.dtype}")
        if images.shape[0] not in (0, values.shape[0]):
            raise ValueError(
                f"InterventionSequence has {images.shape[0]} images but {values.shape[0]} values"
            )
        if not isinstance(self.attrs, Mapping):
            raise ValueError(f"InterventionSequence attrs must be a mapping, got {type(self.attrs).__name__}")
        object.__setattr__(self, "images", images)
        object.__setattr__(self, "values", values.astype(np.float64, copy=False))
        object.__setattr__(self, "attrs", dict(self.attrs))

    @property
    def n_steps(self) -> int:
        """Number of steps N (also when the images were not loaded)."""
        return int(self.values.shape[0])

    @property
    def images_loaded(self) -> bool:
        """False for a sequence read with ``images=False``."""
        return self.images.shape[0] == self.values.shape[0]


@dataclass(frozen=True)
class OutputsBlock:
    """Model outputs for one (model, sequence) pair: ``outputs float32 [M checkpoints, N steps, C]``.

    ``done[m]`` says whether checkpoint ``m`` has been computed (rows of undone checkpoints are NaN);
    ``preprocessing`` is the model's preprocessing spec (a JSON-able dict) and ``attrs`` the sequence
    provenance copied from the interventions file.
    """

    model: str
    sequence: str
    outputs: np.ndarray
    done: np.ndarray
    checkpoints: list[str]
    classes: list[str]
    values: np.ndarray
    output_kind: str = "probabilities"
    preprocessing: dict[str, Any] = field(default_factory=dict)
    attrs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_name(self.model, "model")
        _check_name(self.sequence, "sequence")
        outputs = np.asarray(self.outputs)
        if outputs.ndim != 3:
            raise ValueError(f"OutputsBlock {self.model}/{self.sequence}: outputs must be [M, N, C], "
                             f"got shape {outputs.shape}")
        m, n, c = outputs.shape
        done = np.asarray(self.done)
        if done.shape != (m,):
            raise ValueError(f"OutputsBlock {self.model}/{self.sequence}: done has shape {done.shape}, expected ({m},)")
        values = np.asarray(self.values, dtype=np.float64)
        if values.shape != (n,):
            raise ValueError(f"OutputsBlock {self.model}/{self.sequence}: values has shape {values.shape}, "
                             f"expected ({n},)")
        checkpoints = [str(s) for s in self.checkpoints]
        classes = [str(s) for s in self.classes]
        if len(checkpoints) != m:
            raise ValueError(f"OutputsBlock {self.model}/{self.sequence}: {len(checkpoints)} checkpoint names "
                             f"for {m} checkpoints")
        if len(classes) != c:
            raise ValueError(f"OutputsBlock {self.model}/{self.sequence}: {len(classes)} class names for {c} outputs")
        if self.output_kind not in OUTPUT_KINDS:
            raise ValueError(f"OutputsBlock {self.model}/{self.sequence}: output_kind {self.output_kind!r} "
                             f"not in {OUTPUT_KINDS}")
        object.__setattr__(self, "outputs", outputs.astype(np.float32, copy=False))
        object.__setattr__(self, "done", done.astype(bool, copy=False))
        object.__setattr__(self, "values", values)
        object.__setattr__(self, "checkpoints", checkpoints)
        object.__setattr__(self, "classes", classes)
        object.__setattr__(self, "preprocessing", dict(self.preprocessing or {}))
        object.__setattr__(self, "attrs", dict(self.attrs or {}))


# --------------------------------------------------------------------------- small helpers


def _check_name(name: str, what: str) -> None:
    """Group names must be non-empty and free of '/' (they become HDF5 path components)."""
    if not isinstance(name, str) or not name or "/" in name or name in (".", ".."):
        raise ValueError(f"invalid {what} name {name!r}: must be a non-empty string without '/'")


def _to_jsonable(value: Any) -> Any:
    """Numpy arrays and scalars to plain Python, recursively (for JSON attributes)."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Mapping):
        return {str(k): _to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def _write_attrs(obj: h5py.HLObject, attrs: Mapping[str, Any]) -> None:
    """Store scalars natively and everything else (lists, dicts, None, arrays) as JSON strings."""
    json_keys = []
    for key, value in attrs.items():
        if key == _JSON_KEYS_ATTR:
            continue
        value = _to_jsonable(value)
        if isinstance(value, (bool, int, float, str)) and not (isinstance(value, int) and abs(value) >= 2**63):
            obj.attrs[key] = value
        else:
            try:
                obj.attrs[key] = json.dumps(value)
            except TypeError as exc:
                raise ValueError(f"attribute {key!r} is not JSON-serialisable: {exc}") from None
            json_keys.append(key)
    if json_keys:
        obj.attrs[_JSON_KEYS_ATTR] = json.dumps(json_keys)


def _read_attrs(obj: h5py.HLObject, skip: Iterable[str] = ()) -> dict[str, Any]:
    """Inverse of :func:`_write_attrs` (numpy scalars back to Python scalars)."""
    json_keys = set(json.loads(obj.attrs.get(_JSON_KEYS_ATTR, "[]")))
    skipped = set(skip) | {_JSON_KEYS_ATTR}
    out: dict[str, Any] = {}
    for key, value in obj.attrs.items():
        if key in skipped:
            continue
        if isinstance(value, bytes):
            value = value.decode()
        if key in json_keys:
            value = json.loads(value)
        elif isinstance(value, np.generic):
            value = value.item()
        elif isinstance(value, np.ndarray):
            value = value.tolist()
        out[key] = value
    return out


def _open_checked(path: Path, expected: str, mode: str = "r") -> h5py.File:
    """Open an existing epg HDF5 file of kind ``expected``; one-line ValueError otherwise."""
    if not path.exists():
        raise ValueError(f"{path}: file not found")
    if not path.is_file():
        raise ValueError(f"{path}: not a file")
    try:
        handle = h5py.File(path, mode)
    except OSError:
        raise ValueError(f"{path}: not an HDF5 file (or corrupt)") from None
    try:
        _check_format(handle, path, expected)
    except BaseException:
        handle.close()
        raise
    return handle


def _check_format(handle: h5py.File, path: Path, expected: str) -> None:
    """Compare the root attributes with the expected kind and the supported version."""
    found = handle.attrs.get("format")
    if isinstance(found, bytes):
        found = found.decode()
    if found != expected:
        raise ValueError(f"{path}: not an {expected} file (format attribute is {found!r})")
    version = handle.attrs.get("format_version")
    if version is None or int(version) > FORMAT_VERSION:
        raise ValueError(f"{path}: unsupported {expected} format_version {version!r} "
                         f"(this epg reads up to {FORMAT_VERSION})")


def _new_file(tmp: Path, kind: str) -> h5py.File:
    """Create a fresh epg file of ``kind`` that keeps insertion order of its groups."""
    handle = h5py.File(tmp, "w", track_order=True)
    handle.attrs["format"] = kind
    handle.attrs["format_version"] = FORMAT_VERSION
    return handle


def _as_path(path: str | os.PathLike[str]) -> Path:
    return Path(os.fspath(path))


# --------------------------------------------------------------------------- interventions


def write_interventions(
    path: str | os.PathLike[str],
    sequences: Mapping[str, InterventionSequence],
    *,
    attrs: Mapping[str, Any] | None = None,
) -> Path:
    """Write (replace) an interventions file with one group per sequence, atomically; return its path.

    ``images`` are stored chunked per image with gzip compression, ``values`` as float64, the sequence
    ``attrs`` as group attributes (non-scalars JSON-encoded); ``attrs`` goes on the root.
    """
    path = _as_path(path)
    if not sequences:
        raise ValueError(f"{path}: no sequences to write")
    for name, seq in sequences.items():
        _check_name(name, "sequence")
        if not isinstance(seq, InterventionSequence):
            raise ValueError(f"sequence {name!r} is a {type(seq).__name__}, expected InterventionSequence")
        if not seq.images_loaded:
            raise ValueError(f"sequence {name!r} has no images loaded (read with images=False); cannot write it")
    with _atomic_target(path, copy_existing=False) as tmp:
        with _new_file(tmp, INTERVENTIONS_FORMAT) as handle:
            _write_attrs(handle, dict(attrs or {}))
            for name, seq in sequences.items():
                _write_sequence(handle, name, seq)
    return path


def _write_sequence(handle: h5py.File, name: str, seq: InterventionSequence) -> None:
    group = handle.create_group(name)
    n, h, w, _ = seq.images.shape
    group.create_dataset("images", data=seq.images, chunks=(1, h, w, 3), compression="gzip",
                         compression_opts=4)
    group.create_dataset("values", data=seq.values)
    _write_attrs(group, seq.attrs)


def list_sequences(path: str | os.PathLike[str]) -> list[str]:
    """Names of the sequences in an interventions file, in the order they were written."""
    path = _as_path(path)
    with _open_checked(path, INTERVENTIONS_FORMAT) as handle:
        return [k for k, v in handle.items() if isinstance(v, h5py.Group)]


def _sequence_group(handle: h5py.File, path: Path, name: str) -> h5py.Group:
    group = handle.get(name)
    if not isinstance(group, h5py.Group) or "images" not in group or "values" not in group:
        raise ValueError(f"{path}: no intervention sequence {name!r}")
    return group


def read_interventions(
    path: str | os.PathLike[str],
    names: Iterable[str] | None = None,
    *,
    images: bool = True,
) -> dict[str, InterventionSequence]:
    """Read sequences (all, or ``names``) into memory.

    With ``images=False`` only values and provenance are read: each sequence's ``images`` is then an
    empty ``uint8 (0, H, W, 3)`` array that still tells the image size (see
    :attr:`InterventionSequence.images_loaded`); stream the pixels with :func:`iter_intervention_images`.
    """
    path = _as_path(path)
    with _open_checked(path, INTERVENTIONS_FORMAT) as handle:
        wanted = list(names) if names is not None else [k for k, v in handle.items() if isinstance(v, h5py.Group)]
        out: dict[str, InterventionSequence] = {}
        for name in wanted:
            group = _sequence_group(handle, path, name)
            dset = group["images"]
            pixels = dset[()] if images else np.zeros((0, *dset.shape[1:]), dtype=np.uint8)
            out[name] = InterventionSequence(images=pixels, values=group["values"][()], attrs=_read_attrs(group))
        return out


def iter_intervention_images(
    path: str | os.PathLike[str], name: str, batch_size: int
) -> Iterator[np.ndarray]:
    """Yield the images of sequence ``name`` in order, as ``uint8 [<=batch_size, H, W, 3]`` batches."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    path = _as_path(path)
    with _open_checked(path, INTERVENTIONS_FORMAT) as handle:
        dset = _sequence_group(handle, path, name)["images"]
        for start in range(0, dset.shape[0], batch_size):
            yield dset[start:start + batch_size]


# --------------------------------------------------------------------------- outputs


def write_outputs(path: str | os.PathLike[str], blocks: Iterable[OutputsBlock]) -> Path:
    """Create or replace the given (model, sequence) blocks in an outputs file, keeping the others.

    Atomic: the new content is built in a temporary copy that replaces ``path`` only when complete.
    """
    path = _as_path(path)
    blocks = list(blocks)
    for block in blocks:
        if not isinstance(block, OutputsBlock):
            raise ValueError(f"write_outputs expects OutputsBlock items, got {type(block).__name__}")
    replaced = {(b.model, b.sequence) for b in blocks}
    with _rebuilt_outputs(path, skip=lambda m, s: (m, s) in replaced) as handle:
        models = handle.require_group(_MODELS)
        for block in blocks:
            _write_block(models, block)
    return path


@contextmanager
def _rebuilt_outputs(
    path: Path, *, skip: Callable[[str, str], bool], keep_scores: bool = True
) -> Iterator[h5py.File]:
    """Yield a fresh outputs file (temporary, renamed onto ``path`` on success) holding the old content.

    The old file's root attributes, ``/scores`` (if ``keep_scores``) and every block for which
    ``skip(model, sequence)`` is false are copied; rebuilding instead of deleting in place keeps
    the file from growing with dead space when blocks are replaced.
    """
    old = _open_checked(path, OUTPUTS_FORMAT) if path.exists() else None
    try:
        with _atomic_target(path, copy_existing=False) as tmp:
            with _new_file(tmp, OUTPUTS_FORMAT) as handle:
                models = handle.create_group(_MODELS, track_order=True)
                if old is not None:
                    _copy_outputs_content(old, handle, models, skip, keep_scores)
                yield handle
    finally:
        if old is not None:
            old.close()


def _copy_outputs_content(
    old: h5py.File, new: h5py.File, models: h5py.Group, skip: Callable[[str, str], bool], keep_scores: bool
) -> None:
    for key, value in old.attrs.items():
        if key not in ("format", "format_version"):
            new.attrs[key] = value
    if keep_scores and _SCORES in old:
        old.copy(old[_SCORES], new, name=_SCORES)
    old_models = old.get(_MODELS)
    if not isinstance(old_models, h5py.Group):
        return
    for model_name, model_group in old_models.items():
        target = models.create_group(model_name, track_order=True)
        for seq_name, group in model_group.items():
            if not skip(model_name, seq_name):
                old.copy(group, target, name=seq_name)


def _write_block(models: h5py.Group, block: OutputsBlock) -> None:
    model_group = models.get(block.model)
    if model_group is None:
        model_group = models.create_group(block.model, track_order=True)
    if block.sequence in model_group:
        del model_group[block.sequence]
    group = model_group.create_group(block.sequence)
    m, n, c = block.outputs.shape
    group.create_dataset("outputs", data=block.outputs, chunks=(1, max(n, 1), max(c, 1)) if m and n and c else None)
    group.create_dataset("done", data=block.done)
    group.create_dataset("values", data=block.values)
    provenance = {k: v for k, v in block.attrs.items() if k not in _BLOCK_FIELDS}
    _write_attrs(group, {**provenance, "checkpoints": list(block.checkpoints), "classes": list(block.classes),
                         "output_kind": block.output_kind, "preprocessing": block.preprocessing})


def _models_group(handle: h5py.File, path: Path) -> h5py.Group:
    group = handle.get(_MODELS)
    if not isinstance(group, h5py.Group):
        raise ValueError(f"{path}: no /{_MODELS} group (no outputs written yet)")
    return group


def list_outputs(path: str | os.PathLike[str]) -> list[tuple[str, str]]:
    """The (model, sequence) pairs stored in an outputs file, in the order they were written."""
    path = _as_path(path)
    with _open_checked(path, OUTPUTS_FORMAT) as handle:
        models = handle.get(_MODELS)
        if not isinstance(models, h5py.Group):
            return []
        return [(m, s) for m, group in models.items() for s in group]


def read_outputs(
    path: str | os.PathLike[str],
    model: str | None = None,
    sequence: str | None = None,
    *,
    checkpoints: slice | None = None,
) -> list[OutputsBlock]:
    """Read the outputs blocks (optionally of one model and/or one sequence).

    ``checkpoints`` selects a slice of the checkpoint axis (outputs, done and names together), so a sweep
    larger than memory can be streamed in chunks of checkpoints.
    """
    path = _as_path(path)
    if checkpoints is not None and not isinstance(checkpoints, slice):
        raise ValueError(f"checkpoints must be a slice or None, got {type(checkpoints).__name__}")
    sel = checkpoints if checkpoints is not None else slice(None)
    with _open_checked(path, OUTPUTS_FORMAT) as handle:
        models = _models_group(handle, path)
        model_names = [model] if model is not None else list(models)
        blocks: list[OutputsBlock] = []
        for model_name in model_names:
            model_group = models.get(model_name)
            if not isinstance(model_group, h5py.Group):
                raise ValueError(f"{path}: no model {model_name!r} (have {list(models)})")
            seq_names = [sequence] if sequence is not None else list(model_group)
            for seq_name in seq_names:
                group = model_group.get(seq_name)
                if not isinstance(group, h5py.Group):
                    raise ValueError(f"{path}: model {model_name!r} has no sequence {seq_name!r}")
                blocks.append(_read_block(group, model_name, seq_name, sel))
        return blocks


def _read_block(group: h5py.Group, model: str, sequence: str, sel: slice) -> OutputsBlock:
    attrs = _read_attrs(group)
    names = list(attrs.pop("checkpoints"))
    return OutputsBlock(
        model=model,
        sequence=sequence,
        outputs=group["outputs"][sel],
        done=group["done"][sel],
        checkpoints=names[sel],
        classes=list(attrs.pop("classes")),
        values=group["values"][()],
        output_kind=attrs.pop("output_kind"),
        preprocessing=attrs.pop("preprocessing") or {},
        attrs=attrs,
    )


def set_checkpoint_outputs(
    path: str | os.PathLike[str],
    model: str,
    index: int,
    rows: Mapping[str, np.ndarray],
) -> None:
    """Store checkpoint ``index``'s ``[N, C]`` outputs for each named sequence and mark it done.

    Atomic: the file is copied to a temporary file beside it, modified, fsynced and renamed into place,
    so a kill at any moment leaves the file either before or after this checkpoint.
    """
    path = _as_path(path)
    with _open_checked(path, OUTPUTS_FORMAT) as handle:
        model_group = _models_group(handle, path).get(model)
        if not isinstance(model_group, h5py.Group):
            raise ValueError(f"{path}: no model {model!r}")
        for seq_name, data in rows.items():
            group = model_group.get(seq_name)
            if not isinstance(group, h5py.Group):
                raise ValueError(f"{path}: model {model!r} has no sequence {seq_name!r}")
            m, n, c = group["outputs"].shape
            if not -m <= index < m:
                raise ValueError(f"{path}: checkpoint index {index} out of range for {m} checkpoints")
            if np.shape(data) != (n, c):
                raise ValueError(f"{path}: rows for {model}/{seq_name} have shape {np.shape(data)}, expected ({n}, {c})")
    with _atomic_target(path, copy_existing=True) as tmp:
        with h5py.File(tmp, "r+") as handle:
            model_group = handle[_MODELS][model]
            for seq_name, data in rows.items():
                group = model_group[seq_name]
                group["outputs"][index] = np.asarray(data, dtype=np.float32)
                group["done"][index] = True


# --------------------------------------------------------------------------- scores


def _column_dtype(name: str, values: list[Any]) -> np.dtype:
    """Infer one column's dtype: bool, int64, float64 (None -> NaN) or a UTF-8 string."""
    present = [v for v in values if v is not None]
    if present and all(isinstance(v, (bool, np.bool_)) for v in present) and len(present) == len(values):
        return np.dtype(bool)
    numeric = all(isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))
                  for v in present)
    if numeric and present:
        if len(present) == len(values) and all(isinstance(v, (int, np.integer)) for v in present):
            return np.dtype(np.int64)
        return np.dtype(np.float64)
    return h5py.string_dtype("utf-8")


def write_scores(path: str | os.PathLike[str], rows: list[dict[str, Any]]) -> None:
    """Store a tidy table (one dict per row, same keys) as the compound dataset ``/scores``, atomically.

    The table goes into the outputs file ``path`` (created as an outputs file if missing); an existing
    ``/scores`` is replaced. Columns are bool, int64, float64 (``None`` -> NaN) or strings.
    """
    path = _as_path(path)
    columns = list(rows[0]) if rows else []
    for i, row in enumerate(rows):
        if list(row) != columns:
            raise ValueError(f"scores row {i} has columns {list(row)}, expected {columns}")
    dtype = np.dtype([(c, _column_dtype(c, [r[c] for r in rows])) for c in columns]) if columns else None
    table = _scores_array(rows, dtype) if dtype is not None else None
    with _rebuilt_outputs(path, skip=lambda m, s: False, keep_scores=False) as handle:
        if table is None:
            dset = handle.create_dataset(_SCORES, shape=(0,), dtype=np.uint8)
        else:
            dset = handle.create_dataset(_SCORES, data=table)
        dset.attrs["columns"] = json.dumps(columns)


def _scores_array(rows: list[dict[str, Any]], dtype: np.dtype) -> np.ndarray:
    table = np.zeros(len(rows), dtype=dtype)
    for name in dtype.names or ():
        kind = dtype[name]
        column = [r[name] for r in rows]
        if kind == np.float64:
            table[name] = [np.nan if v is None else float(v) for v in column]
        elif kind.kind == "O":
            table[name] = ["" if v is None else str(v) for v in column]
        else:
            table[name] = column
    return table


def read_scores(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Read the ``/scores`` table written by :func:`write_scores` as a list of dicts (Python scalars)."""
    path = _as_path(path)
    with _open_checked(path, OUTPUTS_FORMAT) as handle:
        dset = handle.get(_SCORES)
        if not isinstance(dset, h5py.Dataset):
            raise ValueError(f"{path}: no /{_SCORES} table")
        columns = json.loads(dset.attrs.get("columns", "[]"))
        if not columns:
            return []
        table = dset[()]
    rows = []
    for record in table:
        row = {}
        for name in columns:
            value = record[name]
            if isinstance(value, bytes):
                value = value.decode("utf-8")
            elif isinstance(value, np.generic):
                value = value.item()
            row[name] = value
        rows.append(row)
    return rows
