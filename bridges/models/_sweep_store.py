"""One checkpoint of a sweep, the part shared by the local loop and the Ray workers: the checks a weight swap
must pass (same architecture, ONNX Runtime equal to torch eager on real inputs) and storing its rows where the
checkpoint sits in each block now, under the outputs file's lock."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
from torch import nn

import epg_core as E
from epg_core import DataError

from ._checkpoints import Checkpoint
from ._export import torch_outputs
from ._runner import OnnxRunner, parity_tolerance

__all__ = ["check_same_paras", "check_swap", "store_checkpoint"]


def store_checkpoint(out: Path, model: str, name: str, rows: Mapping[str, np.ndarray], *,
                     fold: bool = True) -> list[Path]:
    """Store checkpoint ``name``'s rows where it sits in each block *now*, all under the outputs file's lock.

    A concurrent sweep of the same model with another checkpoint list may regrow the blocks after this run
    planned them, so the row of ``name`` is looked up by name in the blocks as they are when the rows are
    written. ``fold``: into the file at once (the local loop); else as shards for the driver to fold (workers).
    Returns the shards written (empty when folded).
    """
    shards: list[Path] = []
    with E.file_lock(out):
        lists = E.list_checkpoints(out, model, list(rows))  # attributes only: cheap at any file size
        by_index: dict[int, dict[str, np.ndarray]] = {}
        for seq, data in rows.items():
            names = lists.get(seq, [])
            if name not in names:
                raise DataError(f"{out}: {model}/{seq} no longer lists checkpoint {name!r} (replaced by another "
                                "run meanwhile); run the sweep again")
            by_index.setdefault(names.index(name), {})[seq] = data
        for index, part in by_index.items():
            if fold:
                E.set_checkpoint_outputs(out, model, index, part)
            else:
                shards.append(E.write_shard(out, model, index, part))
    return shards


def check_same_paras(ckpt: Checkpoint, first: Checkpoint) -> None:
    """Every checkpoint of a sweep has the first one's architecture keyword arguments (a swap needs them)."""
    if ckpt.paras and first.paras and ckpt.paras != first.paras:
        raise DataError(f"{ckpt.path}: wrong architecture: paras {ckpt.paras} differ from {first.path.name}'s "
                        f"{first.paras}")


def check_swap(
    runner: OnnxRunner, model: nn.Module, prepared: Mapping[str, np.ndarray], batch_size: int, atol: float,
    path: Path, threads: int,
) -> float:
    """Compare the first swapped checkpoint's ORT outputs with torch eager on real inputs."""
    x = np.concatenate(list(prepared.values()))[:max(batch_size, 1)]
    ort_raw = np.asarray(runner.raw(x), np.float32).reshape(len(x), -1)
    ref = torch_outputs(model, x, threads=threads)
    diff = float(np.max(np.abs(ort_raw - ref))) if ref.size else 0.0
    tolerance = parity_tolerance(atol, ref)
    if not np.isfinite(diff) or diff > tolerance:
        raise DataError(f"{path}: swapped ONNX weights disagree with torch eager by {diff:.3g} (> {tolerance:.3g}: "
                        f"atol {atol:g} x the output scale); refusing to sweep")
    return diff
