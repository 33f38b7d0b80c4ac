"""Checkpoint sweeps by weight swap into the outputs HDF5 format.

A sweep exports the architecture once, then for each checkpoint replaces the ONNX initializers by name
(refusing checkpoints whose tensors do not map one-to-one onto them), checks the first swapped checkpoint
against torch eager, and stores every checkpoint's outputs as soon as they are done with
``epg_core.set_checkpoint_outputs`` (atomic). Rerunning an interrupted sweep skips finished checkpoints.

No statistics here: scoring is ``epg_core``'s job.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from epg_core import OutputsBlock, list_outputs, read_outputs, set_checkpoint_outputs, write_outputs

from ._architectures import Checkpoint, architecture_kwargs, build_model, load_checkpoint, load_weights
from ._checkpoints import checkpoint_names, find_checkpoints, is_onnx_path
from ._export import export_model, torch_outputs, verify_export
from ._inputs import InputSource, collect_inputs
from ._predict import n_outputs, prepared_inputs, provenance, text_matrix
from ._runner import DEFAULT_ATOL, OnnxRunner, default_classes, select_provider
from ._spec import Preprocessing
from ._weight_swap import WeightSwapper

__all__ = ["SweepResult", "sweep"]


@dataclass(frozen=True)
class SweepResult:
    """What a sweep did: the outputs file, checkpoint names, which indices it computed and which it skipped."""

    path: Path
    model: str
    checkpoints: list[str]
    computed: list[int]
    skipped: list[int]
    provider: str | None
    seconds: float
    swap_check_diff: float | None = None
    sequences: list[str] = field(default_factory=list)


def _existing_done(
    out: Path, model_name: str, names: list[str], seq_names: list[str], restart: bool
) -> np.ndarray | None:
    """Done flags of a compatible earlier run of this sweep, or None when there is none (or ``restart``)."""
    if restart or not out.exists():
        return None
    pairs = [p for p in list_outputs(out) if p[0] == model_name]
    if not pairs:
        return None
    have = sorted(s for _, s in pairs)
    if have != sorted(seq_names):
        raise ValueError(f"{out}: model {model_name!r} already holds sequences {have}, this sweep has "
                         f"{sorted(seq_names)}; use --restart or another --model-name/--out")
    blocks = read_outputs(out, model_name)
    for block in blocks:
        if block.checkpoints != names:
            raise ValueError(f"{out}: model {model_name!r} was swept over other checkpoints "
                             f"({len(block.checkpoints)} starting {block.checkpoints[:1]}); use --restart or "
                             "another --model-name/--out")
    return np.logical_and.reduce([b.done for b in blocks])


def _check_compatible(out: Path, model_name: str, fresh: list[OutputsBlock]) -> None:
    """An earlier run must have stored the same values, classes, kind and preprocessing to be resumed."""
    for new in fresh:
        old = read_outputs(out, model_name, new.sequence)[0]
        for attr in ("classes", "output_kind", "preprocessing"):
            if getattr(old, attr) != getattr(new, attr):
                raise ValueError(f"{out}: {model_name}/{new.sequence} was written with {attr} "
                                 f"{getattr(old, attr)!r}, this sweep uses {getattr(new, attr)!r}; use --restart")
        if not np.array_equal(old.values, new.values):
            raise ValueError(f"{out}: {model_name}/{new.sequence} was written for other property values; use --restart")


def sweep(
    checkpoints: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    inputs: Sequence[str | os.PathLike[str]] | InputSource,
    out: str | os.PathLike[str],
    *,
    architecture: str = "convmixer",
    arch_kwargs: Mapping[str, Any] | None = None,
    model_name: str | None = None,
    preprocessing: Preprocessing | None = None,
    classes: Sequence[str] | None = None,
    output_kind: str = "probabilities",
    text_embeddings: str | os.PathLike[str] | np.ndarray | None = None,
    sequences: Sequence[str] | None = None,
    batch_size: int = 32,
    threads: int = 1,
    atol: float = DEFAULT_ATOL,
    quiet: bool = False,
    restart: bool = False,
    on_checkpoint: Callable[[int, str], None] | None = None,
) -> SweepResult:
    """Outputs of every checkpoint (one architecture) on the inputs, by one export and weight swaps.

    Resumable: checkpoints already marked done in ``out`` (same model name, checkpoint list, sequences,
    classes, values, kind and preprocessing) are skipped. ``on_checkpoint(index, name)`` is called after
    each checkpoint is stored. A bad checkpoint stops the sweep with a one-line ValueError; everything
    stored before it stays.
    """
    start = time.perf_counter()
    out = Path(out)
    if threads > 0:
        torch.set_num_threads(threads)
    paths = find_checkpoints(checkpoints)
    if any(is_onnx_path(p) for p in paths):
        raise ValueError(f"{next(p for p in paths if is_onnx_path(p))}: a sweep swaps torch weights; "
                         "give checkpoints, not .onnx files")
    names = checkpoint_names(paths)
    model_name = model_name or architecture.rsplit(":", 1)[-1]
    prep = preprocessing or Preprocessing()
    text = text_matrix(text_embeddings)
    source = inputs if isinstance(inputs, InputSource) else collect_inputs(inputs, sequences=sequences)
    done = _existing_done(out, model_name, names, list(source.sequences), restart)
    todo = [i for i in range(len(paths)) if done is None or not done[i]]
    skipped = [i for i in range(len(paths)) if i not in todo]
    if not todo:
        return SweepResult(out, model_name, names, [], skipped, None, time.perf_counter() - start,
                           sequences=list(source.sequences))

    # The first checkpoint of the list fixes the architecture (also when resuming), so a wrong checkpoint
    # later in the list is reported as such instead of becoming the reference.
    first = load_checkpoint(paths[0])
    kwargs = architecture_kwargs(architecture, first, arch_kwargs)
    model = build_model(architecture, first, arch_kwargs)
    proto = export_model(model, prep)
    verify_export(model, proto, prep.random_batch(2), atol=atol, threads=threads, what="the sweep's export")
    swapper = WeightSwapper(proto, model)
    _, prepared = prepared_inputs(source, None, prep)
    provider = select_provider()
    raw_dim = int(torch_outputs(model, next(iter(prepared.values()))[:1]).shape[-1])
    n_out = n_outputs(output_kind, raw_dim, text)
    class_names = default_classes(n_out, classes)

    attrs = provenance(source, architecture, kwargs)
    fresh = [OutputsBlock(model=model_name, sequence=s,
                          outputs=np.full((len(paths), len(x), n_out), np.nan, np.float32),
                          done=np.zeros(len(paths), bool), checkpoints=names, classes=class_names,
                          values=source.sequences[s].values, output_kind=output_kind, preprocessing=prep.to_dict(),
                          attrs=attrs[s])
             for s, x in prepared.items()]
    if done is None:
        write_outputs(out, fresh)
    else:
        _check_compatible(out, model_name, fresh)

    computed: list[int] = []
    check_diff: float | None = None
    bar = tqdm(total=len(paths), initial=len(skipped), desc=f"sweep {model_name}", unit="ckpt", disable=quiet)
    try:
        for index in todo:
            ckpt = first if index == 0 else load_checkpoint(paths[index])
            _check_same_paras(ckpt, first)
            load_weights(model, ckpt.state_dict, ckpt.path)
            runner = OnnxRunner(swapper.model_bytes(model.state_dict()), output_kind=output_kind,
                                text_embeddings=text, threads=threads, batch_size=batch_size, provider=provider)
            if check_diff is None:
                check_diff = _check_swap(runner, model, prepared, batch_size, atol, ckpt.path, threads)
            rows = {s: runner.outputs(x) for s, x in prepared.items()}
            set_checkpoint_outputs(out, model_name, index, rows)
            computed.append(index)
            bar.update(1)
            if on_checkpoint is not None:
                on_checkpoint(index, names[index])
    finally:
        bar.close()
    return SweepResult(out, model_name, names, computed, skipped, provider, time.perf_counter() - start,
                       check_diff, list(source.sequences))


def _check_same_paras(ckpt: Checkpoint, first: Checkpoint) -> None:
    if ckpt.paras and first.paras and ckpt.paras != first.paras:
        raise ValueError(f"{ckpt.path}: wrong architecture: paras {ckpt.paras} differ from {first.path.name}'s "
                         f"{first.paras}")


def _check_swap(
    runner: OnnxRunner, model: nn.Module, prepared: Mapping[str, np.ndarray], batch_size: int, atol: float,
    path: Path, threads: int,
) -> float:
    """Compare the first swapped checkpoint's ORT outputs with torch eager on real inputs."""
    x = np.concatenate(list(prepared.values()))[:max(batch_size, 1)]
    ort_raw = np.asarray(runner.raw(x), np.float32).reshape(len(x), -1)
    ref = torch_outputs(model, x, threads=threads)
    diff = float(np.max(np.abs(ort_raw - ref))) if ref.size else 0.0
    if not np.isfinite(diff) or diff > atol:
        raise ValueError(f"{path}: swapped ONNX weights disagree with torch eager by {diff:.3g} (> {atol:g}); "
                         "refusing to sweep")
    return diff
