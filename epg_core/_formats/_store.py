"""Storing finished checkpoints: one small shard per (model, checkpoint), folded into the outputs file.

Storing a checkpoint costs O(its outputs), never a rewrite of the outputs file:

1. :func:`write_shard` checks the rows against the block in the outputs file and writes them to
   ``<outputs>.shards/<model hash>-<index>-<sequences hash>.npz`` (temporary name, fsync, rename), so a
   finished checkpoint is durable the moment the call returns, whatever happens next.
2. :func:`fold_shards` writes pending shards into the outputs file in place (the blocks' datasets are
   preallocated, so only raw data changes: rows first, flush, then ``done[m] = True``, flush) and removes
   them. Folding is idempotent: a kill mid-fold leaves the shard, and folding it again writes the same bytes.
3. Readers overlay pending shards (:func:`overlay_pending`), so nothing finished is ever invisible.

Every write holds the outputs file's lock (``<outputs>.lock``); a second writer waits, then fails with a
clear message. A shard records the id of the block it was computed for: if that block has been replaced
since (a ``--restart``), the shard is dropped instead of landing in the wrong block. Executors that run
checkpoints elsewhere (Ray) call :func:`write_shard` from each worker and :func:`fold_shards` in the driver.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from epg_core._errors import DataError, StoreError, UsageError
from epg_core._formats._atomic import _fsync_dir, atomic_path, file_lock, is_write_failure, shard_dir, write_failure
from epg_core._formats._common import (
    MODELS,
    OUTPUTS_FORMAT,
    UID_ATTR,
    BlockMeta,
    as_path,
    block_group,
    block_meta,
    check_finite_outputs,
    check_format,
    check_name,
    open_checked,
)
from epg_core._formats._h5_write import h5_write

SHARD_FORMAT = "epg-shard"
_SHARD_EXT = ".npz"


def _model_key(model: str) -> str:
    return hashlib.sha1(model.encode("utf-8")).hexdigest()[:16]


def _shard_name(model: str, index: int, sequences: list[str]) -> str:
    seqs = hashlib.sha1(json.dumps(sequences).encode("utf-8")).hexdigest()[:8]
    return f"{_model_key(model)}-{index:08d}-{seqs}{_SHARD_EXT}"


def pending_shards(path: str | os.PathLike[str], model: str | None = None) -> list[Path]:
    """The finished shards of an outputs file not folded yet (of one model, or all), in name order."""
    folder = shard_dir(as_path(path))
    prefix = _model_key(model) + "-" if model is not None else ""
    try:
        names = sorted(e.name for e in os.scandir(folder) if e.is_file(follow_symlinks=False))
    except (FileNotFoundError, NotADirectoryError):
        return []
    except OSError as exc:
        raise DataError(f"{folder}: cannot list the pending shards ({exc.strerror or exc})") from None
    return [folder / n for n in names if n.endswith(_SHARD_EXT) and n.startswith(prefix) and ".tmp-" not in n]


def _checked_rows(
    path: Path, model: str, index: int | np.integer, rows: Mapping[str, np.ndarray]
) -> tuple[int, list[str], list[str], list[np.ndarray], list[str]]:
    """Check ``rows`` against the blocks of the outputs file; return (index, names, uids, arrays, checkpoints)."""
    check_name(model, "model")
    if not isinstance(rows, Mapping) or not rows:
        raise UsageError(f"{path}: no rows to store for model {model!r}")
    names, uids, arrays, checkpoints = [], [], [], []
    with open_checked(path, OUTPUTS_FORMAT) as handle:
        for seq_name, data in rows.items():
            meta = block_meta(block_group(handle, path, model, seq_name), path, model, seq_name)
            if "prompts" in meta.attrs:  # see _io_prompts: prompt outputs are stored with whole blocks only
                raise UsageError(f"{path}: {model}/{seq_name} holds CLIP prompt outputs; store it whole with "
                                 "write_outputs")
            m, n, c = meta.shape
            if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or not -m <= index < m:
                raise UsageError(f"{path}: checkpoint index {index} out of range for {m} checkpoints")
            index = int(index) % m
            array = np.asarray(data)
            if array.shape != (n, c):
                raise UsageError(f"{path}: rows for {model}/{seq_name} have shape {array.shape}, expected ({n}, {c})")
            if array.dtype.kind not in "fiu":
                raise UsageError(f"{path}: rows for {model}/{seq_name} must be real numbers, got {array.dtype}")
            array = array.astype(np.float32)
            check_finite_outputs(path, f"the rows for {model}/{seq_name}", array[None], np.ones(1, bool),
                                 [meta.checkpoints[index]], meta.classes)
            names.append(seq_name)
            uids.append(meta.uid)
            arrays.append(array)
            checkpoints.append(meta.checkpoints[index])
    return int(index), names, uids, arrays, checkpoints


def write_shard(
    path: str | os.PathLike[str],
    model: str,
    index: int | np.integer,
    rows: Mapping[str, np.ndarray],
    *,
    lock_timeout: float | None = None,
) -> Path:
    """Store checkpoint ``index``'s ``[N, C]`` outputs of each named sequence as a shard; return its path.

    The outputs file must hold the blocks (``write_outputs`` creates them). The shard is durable when this
    returns; it becomes part of the outputs file at the next :func:`fold_shards` and is visible to
    readers before that. Writing the same (model, checkpoint, sequences) again replaces the shard.
    """
    path = as_path(path)
    with file_lock(path, timeout=lock_timeout):
        require_writable(path)
        index, names, uids, arrays, checkpoints = _checked_rows(path, model, index, rows)
        meta = {"format": SHARD_FORMAT, "version": 1, "model": model, "index": index, "sequences": names,
                "uids": uids, "checkpoint": checkpoints[0]}
        payload: dict[str, Any] = {"meta": np.array(json.dumps(meta))}
        payload.update({f"rows_{i}": a for i, a in enumerate(arrays)})
        target = shard_dir(path) / _shard_name(model, index, names)
        try:
            with atomic_path(target, lock=False) as tmp, open(tmp, "wb") as fh:
                np.savez(fh, **payload)
        except OSError as exc:  # a StoreError naming the shard, or a raw error of the writer
            reason = exc.reason if isinstance(exc, StoreError) else None
            reason = reason or exc.strerror or str(exc)
            raise StoreError(f"{path}: cannot store checkpoint {checkpoints[0]!r} of model {model!r} ({reason}); "
                             "the outputs file is intact") from None
    return target


def _shard_meta(shard: Path, archive: Any) -> dict[str, Any]:
    try:
        meta = json.loads(str(archive["meta"][()]))
        assert meta["format"] == SHARD_FORMAT and isinstance(meta["index"], int)
        assert len(meta["sequences"]) == len(meta["uids"])
    except (KeyError, ValueError, TypeError, AssertionError):
        raise DataError(f"{shard}: not an epg shard (bad meta)") from None
    return meta


def _open_shard(shard: Path) -> Any:
    try:
        return np.load(shard, allow_pickle=False)
    except FileNotFoundError:
        return None  # folded by another process meanwhile
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise DataError(f"{shard}: unreadable shard ({exc})") from None


def _shard_rows(shard: Path, archive: Any, i: int) -> np.ndarray:
    try:
        return np.asarray(archive[f"rows_{i}"], dtype=np.float32)
    except (KeyError, ValueError, OSError, zipfile.BadZipFile) as exc:
        raise DataError(f"{shard}: unreadable rows_{i} ({exc})") from None


def fold_shards(path: str | os.PathLike[str], *, lock_timeout: float | None = None) -> int:
    """Fold every pending shard into the outputs file in place and remove it; return how many were folded.

    Idempotent and safe to interrupt: a shard is removed only after its rows and ``done`` flag are
    flushed. Shards of blocks that no longer exist (replaced by a restart) are dropped. When another
    program holds the HDF5 file open, the shards stay pending (readers still see them) and 0 is returned.
    """
    path = as_path(path)
    with file_lock(path, timeout=lock_timeout):
        return fold_locked(path)


def fold_locked(path: Path) -> int:
    """:func:`fold_shards` for a caller that already holds the lock."""
    shards = pending_shards(path)
    if not shards:
        _remove_empty_shard_dir(path)
        return 0
    if not path.exists():
        raise DataError(f"{path}: file not found, but {len(shards)} shard(s) wait in {shard_dir(path)}")
    if not os.access(path, os.W_OK) or not path.stat().st_mode & 0o222:
        raise StoreError(f"{path}: file is read-only; {len(shards)} finished checkpoint(s) wait in "
                         f"{shard_dir(path)}")
    done_with: list[Path] = []
    folded = 0
    try:
        with h5_write(path, "r+", durable=True) as handle:
            check_format(handle, path, OUTPUTS_FORMAT)
            for shard in shards:
                status = _fold_one(handle, shard)
                if status != "gone":
                    done_with.append(shard)
                folded += status == "folded"
    except StoreError:
        raise
    except OSError as exc:
        if is_write_failure(exc):
            raise write_failure(path, exc) from None
        raise DataError(f"{path}: not an HDF5 file (or corrupt)") from None
    for shard in done_with:
        shard.unlink(missing_ok=True)
    _fsync_dir(shard_dir(path))
    _remove_empty_shard_dir(path)
    return folded


def _fold_one(handle: h5py.File, shard: Path) -> str:
    """Write one shard into the open file (rows, flush, done, flush).

    Returns "folded", "stale" (its block was replaced or removed since: drop it) or "gone" (folded by
    another process meanwhile).
    """
    archive = _open_shard(shard)
    if archive is None:
        return "gone"
    with archive:
        meta = _shard_meta(shard, archive)
        index, targets = meta["index"], []
        for i, (seq, uid) in enumerate(zip(meta["sequences"], meta["uids"], strict=True)):
            group = handle.get(f"{MODELS}/{meta['model']}/{seq}") if "/" not in meta["model"] + seq else None
            if not isinstance(group, h5py.Group) or str(group.attrs.get(UID_ATTR, "")) != uid:
                return "stale"
            rows = _shard_rows(shard, archive, i)
            outputs, done = group.get("outputs"), group.get("done")
            if not isinstance(outputs, h5py.Dataset) or not isinstance(done, h5py.Dataset) or outputs.ndim != 3 \
                    or outputs.shape[1:] != rows.shape or not 0 <= index < min(outputs.shape[0], done.shape[0]):
                return "stale"
            targets.append((outputs, done, rows))
    for outputs, _, rows in targets:
        outputs[index] = rows
    handle.flush()
    for _, done, _ in targets:
        done[index] = True
    handle.flush()
    return "folded"


def _remove_empty_shard_dir(path: Path) -> None:
    try:
        shard_dir(path).rmdir()
    except OSError:
        pass


def overlay_pending(
    path: Path, meta: BlockMeta, outputs: np.ndarray, done: np.ndarray, start: int, steps: slice,
    columns: np.ndarray | None,
) -> None:
    """Copy pending shards' rows of block ``meta`` for checkpoints ``start .. start + len(done)`` in place.

    ``steps`` and ``columns`` say which steps and output columns ``outputs`` holds (None = all columns).
    """
    stop = start + len(done)
    for shard in pending_shards(path, meta.model):
        archive = _open_shard(shard)
        if archive is None:
            continue
        with archive:
            info = _shard_meta(shard, archive)
            index = info["index"]
            if info["model"] != meta.model or not start <= index < stop or meta.sequence not in info["sequences"]:
                continue
            i = info["sequences"].index(meta.sequence)
            if info["uids"][i] != meta.uid:
                continue
            rows = _shard_rows(shard, archive, i)
            if rows.shape != meta.shape[1:]:
                continue
            rows = rows[steps]
            outputs[index - start] = rows if columns is None else rows[:, columns]
            done[index - start] = True


def set_checkpoint_outputs(
    path: str | os.PathLike[str],
    model: str,
    index: int | np.integer,
    rows: Mapping[str, np.ndarray],
) -> None:
    """Store checkpoint ``index``'s ``[N, C]`` outputs for each named sequence and mark it done.

    Costs O(the rows), whatever the size of the file: the rows become a shard (durable at once, see
    :func:`write_shard`) that is then folded into the file in place. A kill at any moment loses nothing
    stored; a full disk raises :class:`StoreError` and leaves the file as it was.
    """
    path = as_path(path)
    with file_lock(path):
        write_shard(path, model, index, rows)
        fold_locked(path)


def require_writable(path: Path) -> None:
    """Refuse to write into an existing read-only file (before anything is written)."""
    if path.exists() and (not os.access(path, os.W_OK) or not path.stat().st_mode & 0o222):
        raise StoreError(f"{path}: file is read-only; refusing to replace it")
