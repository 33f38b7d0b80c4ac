"""Outputs files: ``/models/<model>/<sequence>/{outputs [M, N, C], done [M], values [N]}`` plus attributes.

``write_outputs`` creates or replaces whole blocks (a rebuild into a temporary file, renamed into place);
finished checkpoints are then stored in O(their size) through shards (see ``_store``). Readers check every
field, refuse NaN/Inf in finished rows and arrays beyond the read budget, and overlay pending shards.
:func:`iter_outputs` streams a file block by block in chunks of checkpoints and output columns, so a
scorer's memory does not grow with the number of checkpoints or classes.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from epg_core._errors import DataError, UsageError
from epg_core._formats._atomic import file_lock
from epg_core._formats._common import (
    BLOCK_FIELDS,
    MODELS,
    OUTPUT_KINDS,
    OUTPUTS_FORMAT,
    RUN_OPTIONS_ATTR,
    UID_ATTR,
    BlockMeta,
    as_path,
    block_group,
    block_meta,
    check_budget,
    check_finite_outputs,
    check_finite_values,
    check_name,
    check_output_range,
    check_steps,
    dataset,
    read_attr,
    read_values,
    reading,
    str_list,
    to_jsonable,
    write_attrs,
)
from epg_core._formats._prompts import (
    PROMPT_ATTRS,
    check_prompt_fields,
    pop_prompt_attrs,
    prompt_attrs,
    read_prompt_fields,
    write_prompt_dataset,
)
from epg_core._formats._rebuild import rebuilt_outputs as _rebuilt_outputs
from epg_core._formats._store import fold_locked, overlay_pending, require_writable


@dataclass(frozen=True)
class OutputsBlock:
    """Model outputs for one (model, sequence) pair: ``outputs float32 [M checkpoints, N steps, C]``.

    ``done[m]`` says whether checkpoint ``m`` has been computed (rows of undone checkpoints are NaN);
    ``preprocessing`` is the model's preprocessing spec (a JSON-able dict) and ``attrs`` the sequence
    provenance copied from the interventions file. A block yielded by :func:`iter_outputs` is a chunk:
    ``checkpoint_start`` is the file index of its first checkpoint and ``class_indices`` the file's column
    of each of its outputs (None = all columns); chunks cannot be written back. CLIP blocks also hold
    ``prompt_outputs [M, N, P]`` (every prompt's cosine), ``prompts``, ``prompt_classes`` (each prompt's class)
    and ``logit_scale`` (see ``_io_prompts``); other blocks leave them None.
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
    checkpoint_start: int = 0
    class_indices: list[int] | None = None
    prompt_outputs: np.ndarray | None = None
    prompts: list[str] | None = None
    prompt_classes: list[str] | None = None
    logit_scale: float | None = None

    def __post_init__(self) -> None:
        check_name(self.model, "model")
        check_name(self.sequence, "sequence")
        where = f"OutputsBlock {self.model}/{self.sequence}"
        outputs = np.asarray(self.outputs)
        if outputs.ndim != 3:
            raise UsageError(f"{where}: outputs must be [M, N, C], got shape {outputs.shape}")
        m, n, c = outputs.shape
        done = np.asarray(self.done)
        if done.shape != (m,):
            raise UsageError(f"{where}: done has shape {done.shape}, expected ({m},)")
        values = np.asarray(self.values, dtype=np.float64)
        if values.shape != (n,):
            raise UsageError(f"{where}: values has shape {values.shape}, expected ({n},)")
        checkpoints = [str(s) for s in self.checkpoints]
        classes = [str(s) for s in self.classes]
        if len(checkpoints) != m:
            raise UsageError(f"{where}: {len(checkpoints)} checkpoint names for {m} checkpoints")
        if len(classes) != c:
            raise UsageError(f"{where}: {len(classes)} class names for {c} outputs")
        if self.output_kind not in OUTPUT_KINDS:
            raise UsageError(f"{where}: output_kind {self.output_kind!r} not in {OUTPUT_KINDS}")
        object.__setattr__(self, "outputs", outputs.astype(np.float32, copy=False))
        object.__setattr__(self, "done", done.astype(bool, copy=False))
        object.__setattr__(self, "values", values)
        object.__setattr__(self, "checkpoints", checkpoints)
        object.__setattr__(self, "classes", classes)
        object.__setattr__(self, "preprocessing", dict(self.preprocessing or {}))
        object.__setattr__(self, "attrs", dict(self.attrs or {}))
        if self.class_indices is not None:
            object.__setattr__(self, "class_indices", [int(i) for i in self.class_indices])
        fields = check_prompt_fields(where, outputs, classes, self.prompt_outputs, self.prompts, self.prompt_classes,
                                     self.logit_scale)
        for name, value in zip(("prompt_outputs", "prompts", "prompt_classes", "logit_scale"), fields, strict=True):
            object.__setattr__(self, name, value)


# --------------------------------------------------------------------------- writing


def _check_block_for_writing(block: OutputsBlock) -> None:
    where = f"OutputsBlock {block.model}/{block.sequence}"
    if block.checkpoint_start != 0 or block.class_indices is not None:
        raise UsageError(f"{where} is a chunk read by iter_outputs; write whole blocks")
    if block.outputs.shape[0] < 1:
        raise UsageError(f"{where} has no checkpoints")
    if block.outputs.shape[2] < 1:
        raise UsageError(f"{where} has no output columns")
    check_steps(where, "values", block.outputs.shape[1])
    check_finite_values(where, "values", block.values)
    check_finite_outputs(where, "outputs", block.outputs, block.done, block.checkpoints, block.classes)
    check_output_range(where, "outputs", block.output_kind, np.asarray(block.outputs), np.asarray(block.done, bool))
    if block.prompt_outputs is not None:
        check_finite_outputs(where, "prompt_outputs", block.prompt_outputs, block.done, block.checkpoints,
                             block.prompts or [])


def write_outputs(
    path: str | os.PathLike[str],
    blocks: Iterable[OutputsBlock],
    *,
    run_options: Mapping[str, Any] | None = None,
) -> Path:
    """Create or replace the given (model, sequence) blocks in an outputs file, keeping the others.

    Atomic: the new content is built in a temporary copy that replaces ``path`` only when complete
    (pending shards are folded first, so nothing finished is lost). ``run_options`` (classes, output kind,
    size, preprocessing, ...) are stored on each written model's group for :func:`check_run_options`.
    """
    path = as_path(path)
    blocks = list(blocks)
    seen: set[tuple[str, str]] = set()
    for block in blocks:
        if not isinstance(block, OutputsBlock):
            raise UsageError(f"write_outputs expects OutputsBlock items, got {type(block).__name__}")
        if (block.model, block.sequence) in seen:
            raise UsageError(f"write_outputs got block {block.model}/{block.sequence} twice")
        seen.add((block.model, block.sequence))
        _check_block_for_writing(block)
    options = json.dumps(to_jsonable(dict(run_options))) if run_options is not None else None
    with file_lock(path):
        require_writable(path)
        if path.exists():
            fold_locked(path)
        with _rebuilt_outputs(path, skip=lambda m, s: (m, s) in seen) as handle:
            models = handle.require_group(MODELS)
            for block in blocks:
                _write_block(models, block)
                if options is not None:
                    models[block.model].attrs[RUN_OPTIONS_ATTR] = options
    return path


def _write_block(models: h5py.Group, block: OutputsBlock) -> None:
    """A new block with preallocated datasets (so folding shards only ever overwrites raw data)."""
    model_group = models.get(block.model)
    if not isinstance(model_group, h5py.Group):
        model_group = models.create_group(block.model, track_order=True)
    if block.sequence in model_group:
        del model_group[block.sequence]
    group = model_group.create_group(block.sequence)
    _, n, c = block.outputs.shape
    group.create_dataset("outputs", data=block.outputs, chunks=(1, n, c))
    group.create_dataset("done", data=block.done)
    group.create_dataset("values", data=block.values)
    write_prompt_dataset(group, block)
    provenance = {k: v for k, v in block.attrs.items() if k not in (*BLOCK_FIELDS, UID_ATTR, *PROMPT_ATTRS)}
    provenance.setdefault("property", "value")
    provenance.setdefault("image", block.sequence)
    fields = {**provenance, "checkpoints": list(block.checkpoints), "classes": list(block.classes),
              "output_kind": block.output_kind, "preprocessing": block.preprocessing, **prompt_attrs(block)}
    write_attrs(group, {**fields, UID_ATTR: _block_id(block, fields)})


def _block_id(block: OutputsBlock, fields: dict[str, Any]) -> str:
    """A deterministic id of a block's content (the same run writes the same file, bit for bit)."""
    digest = hashlib.sha1(json.dumps([block.model, block.sequence, to_jsonable(fields)], sort_keys=True,
                                     default=str).encode("utf-8"))
    for array in (block.values, block.done, block.outputs, block.prompt_outputs):
        if array is not None:
            digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()[:16]


# --------------------------------------------------------------------------- reading


def _models_group(handle: h5py.File, path: Path) -> h5py.Group:
    group = handle.get(MODELS)
    if not isinstance(group, h5py.Group):
        raise DataError(f"{path}: no /{MODELS} group (no outputs written yet)")
    return group


def _pairs(handle: h5py.File, path: Path, model: str | None, sequence: str | None) -> list[tuple[str, str]]:
    models = _models_group(handle, path)
    out = []
    for model_name in [model] if model is not None else list(models):
        model_group = models.get(model_name) if isinstance(model_name, str) and model_name else None
        if not isinstance(model_group, h5py.Group):
            raise DataError(f"{path}: no model {model_name!r} (have {list(models)})")
        for seq_name in [sequence] if sequence is not None else list(model_group):
            if not isinstance(model_group.get(seq_name) if seq_name else None, h5py.Group):
                raise DataError(f"{path}: model {model_name!r} has no sequence {seq_name!r}")
            out.append((model_name, seq_name))
    return out


def list_outputs(path: str | os.PathLike[str]) -> list[tuple[str, str]]:
    """The (model, sequence) pairs stored in an outputs file, in the order they were written."""
    with reading(path, OUTPUTS_FORMAT) as handle:
        models = handle.get(MODELS)
        if not isinstance(models, h5py.Group):
            return []
        return [(m, s) for m, group in models.items() if isinstance(group, h5py.Group)
                for s, g in group.items() if isinstance(g, h5py.Group)]


def list_checkpoints(
    path: str | os.PathLike[str], model: str, sequences: Iterable[str] | None = None
) -> dict[str, list[str]]:
    """Checkpoint names of each block of ``model`` (or of the named ``sequences``): one attribute per block.

    Reads no outputs and no other attribute, so a writer finds a checkpoint's row cheaply in any file.
    """
    p = as_path(path)
    found: dict[str, list[str]] = {}
    with reading(p, OUTPUTS_FORMAT) as handle:
        for _, seq in _pairs(handle, p, model, None) if sequences is None else [(model, s) for s in sequences]:
            group = block_group(handle, p, model, seq)
            m = int(dataset(group, p, "outputs").shape[0])
            found[seq] = str_list(read_attr(group, p, "checkpoints"), p, f"{group.name} attribute 'checkpoints'", m)
    return found


def _read_chunk(
    path: Path, group: h5py.Group, meta: BlockMeta, ckpts: slice, steps: slice, columns: list[int] | None
) -> OutputsBlock:
    """Read one checked chunk of a block (checkpoints x steps x columns), overlaid with pending shards."""
    m, n, c = meta.shape
    start, stop, _ = ckpts.indices(m)
    stop = max(start, stop)
    s0, s1, _ = steps.indices(n)
    n_cols = c if columns is None else len(columns)
    check_budget(path, f"{meta.field}/outputs[{start}:{stop}]", (stop - start, max(s1 - s0, 0), n_cols), 4)
    values = read_values(group, path, n)
    dset = dataset(group, path, "outputs")
    if columns is None:
        outputs = np.asarray(dset[start:stop, s0:s1], dtype=np.float32)
    elif columns and columns == list(range(columns[0], columns[0] + len(columns))):
        outputs = np.asarray(dset[start:stop, s0:s1, columns[0]:columns[0] + len(columns)], dtype=np.float32)
    else:
        unique = sorted(set(columns))
        raw = np.asarray(dset[start:stop, s0:s1, unique] if unique else np.zeros((stop - start, s1 - s0, 0)),
                         dtype=np.float32)
        outputs = raw[:, :, [unique.index(j) for j in columns]]
    done = np.asarray(dataset(group, path, "done")[start:stop]).astype(bool)
    overlay_pending(path, meta, outputs, done, start, slice(s0, s1), None if columns is None else np.asarray(columns))
    names = meta.checkpoints[start:stop]
    classes = meta.classes if columns is None else [meta.classes[j] for j in columns]
    check_finite_outputs(path, f"{meta.field}/outputs", outputs, done, names, classes)
    check_output_range(path, f"{meta.field}/outputs", meta.output_kind, outputs, done)
    attrs = dict(meta.attrs)
    prompts = read_prompt_fields(group, path, meta.field, meta.shape, meta.classes, pop_prompt_attrs(attrs),
                                 slice(start, stop), slice(s0, s1), done, names)
    return OutputsBlock(
        model=meta.model, sequence=meta.sequence, outputs=outputs, done=done, checkpoints=names, classes=classes,
        values=values[s0:s1] if (s0, s1) != (0, n) else values, output_kind=meta.output_kind,
        preprocessing=meta.preprocessing, attrs=attrs, checkpoint_start=start, class_indices=columns, **prompts,
    )


def read_outputs(
    path: str | os.PathLike[str],
    model: str | None = None,
    sequence: str | None = None,
    *,
    checkpoints: slice | None = None,
) -> list[OutputsBlock]:
    """Read the outputs blocks (optionally of one model and/or one sequence), checking every field.

    ``checkpoints`` selects a slice of the checkpoint axis (outputs, done and names together); for
    bounded memory over a whole file use :func:`iter_outputs`.
    """
    path = as_path(path)
    if checkpoints is not None and (not isinstance(checkpoints, slice) or checkpoints.step not in (None, 1)):
        raise UsageError(f"checkpoints must be a slice with step 1 or None, got {checkpoints!r}")
    sel = checkpoints if checkpoints is not None else slice(None)
    with reading(path, OUTPUTS_FORMAT) as handle:
        blocks = []
        for model_name, seq_name in _pairs(handle, path, model, sequence):
            group = block_group(handle, path, model_name, seq_name)
            meta = block_meta(group, path, model_name, seq_name)
            block = _read_chunk(path, group, meta, sel, slice(None), None)
            blocks.append(_whole(block))
        return blocks


def _whole(block: OutputsBlock) -> OutputsBlock:
    """read_outputs' blocks are plain blocks (writable), also when a checkpoint slice was read."""
    return OutputsBlock(block.model, block.sequence, block.outputs, block.done, block.checkpoints, block.classes,
                        block.values, block.output_kind, block.preprocessing, block.attrs,
                        prompt_outputs=block.prompt_outputs, prompts=block.prompts,
                        prompt_classes=block.prompt_classes, logit_scale=block.logit_scale)


def _columns(path: Path, meta: BlockMeta, classes: Sequence[str | int] | None) -> list[int] | None:
    if classes is None:
        return None
    out = []
    for item in classes:
        if isinstance(item, str):
            if item not in meta.classes:
                shown = ", ".join(meta.classes[:10]) + (", ..." if len(meta.classes) > 10 else "")
                raise UsageError(f"{path}: {meta.field} has no output {item!r} (have {shown})")
            out.append(meta.classes.index(item))
        elif isinstance(item, (int, np.integer)) and not isinstance(item, bool) and 0 <= item < meta.shape[2]:
            out.append(int(item))
        else:
            raise UsageError(f"{path}: {meta.field} has no output {item!r} ({meta.shape[2]} columns)")
    return out


def iter_outputs(
    path: str | os.PathLike[str],
    model: str | None = None,
    sequence: str | None = None,
    *,
    classes: Sequence[str | int] | None = None,
    checkpoint_chunk: int = 64,
    class_chunk: int | None = None,
    steps: slice | None = None,
) -> Iterator[OutputsBlock]:
    """Stream an outputs file per (model, sequence) in chunks of checkpoints (and of output columns).

    Each yielded :class:`OutputsBlock` holds at most ``checkpoint_chunk`` checkpoints and ``class_chunk``
    columns (all when None) of the selected ``classes`` (names or column indices; None = all) and the
    ``steps`` slice (e.g. ``slice(0, 1)``: only the original image's outputs). ``checkpoint_start`` and
    ``class_indices`` tell where a chunk sits in the file. The file is locked only while a chunk is read.
    """
    path = as_path(path)
    if isinstance(checkpoint_chunk, bool) or not isinstance(checkpoint_chunk, int) or checkpoint_chunk < 1:
        raise UsageError(f"checkpoint_chunk must be an integer >= 1, got {checkpoint_chunk!r}")
    if class_chunk is not None and (isinstance(class_chunk, bool) or not isinstance(class_chunk, int)
                                    or class_chunk < 1):
        raise UsageError(f"class_chunk must be an integer >= 1 or None, got {class_chunk!r}")
    if steps is not None and (not isinstance(steps, slice) or steps.step not in (None, 1)):
        raise UsageError(f"steps must be a slice with step 1 or None, got {steps!r}")
    with reading(path, OUTPUTS_FORMAT) as handle:
        pairs = _pairs(handle, path, model, sequence)
    for model_name, seq_name in pairs:
        start = 0
        while True:
            with reading(path, OUTPUTS_FORMAT) as handle:
                group = block_group(handle, path, model_name, seq_name)
                meta = block_meta(group, path, model_name, seq_name)
                if start >= meta.shape[0]:
                    break
                columns = _columns(path, meta, classes)
                all_cols = list(range(meta.shape[2])) if columns is None else columns
                width = class_chunk or max(len(all_cols), 1)
                pieces = [all_cols[i:i + width] for i in range(0, len(all_cols), width)] or [[]]
                chunks = []
                for piece in pieces:
                    cols = None if columns is None and len(pieces) == 1 else piece
                    chunks.append(_read_chunk(path, group, meta, slice(start, start + checkpoint_chunk),
                                              steps or slice(None), cols))
            yield from chunks
            start += checkpoint_chunk
