"""Checkpoint sweeps by weight swap, and single-model prediction, into the outputs HDF5 format.

A sweep exports the architecture once, then for each checkpoint replaces the ONNX initializers by name
(refusing checkpoints whose tensors do not map one-to-one onto them), checks the first swapped checkpoint
against torch eager, and stores every checkpoint's outputs as soon as they are done with
``epg_core.set_checkpoint_outputs`` (atomic). Rerunning an interrupted sweep skips finished checkpoints.

No statistics here: scoring is ``epg_core``'s job.
"""

from __future__ import annotations

import glob
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torch import nn
from tqdm import tqdm

from epg_core import OutputsBlock, list_outputs, read_outputs, set_checkpoint_outputs, write_outputs

from .models import Checkpoint, architecture_kwargs, build_model, is_onnx_path, load_checkpoint, load_weights
from .onnx_export import DEFAULT_ATOL, export_model, torch_outputs, verify_export
from .runner import (
    InputSource,
    OnnxRunner,
    Preprocessing,
    collect_inputs,
    default_classes,
    load_text_embeddings,
    read_spec,
    select_provider,
)

__all__ = [
    "LIST_SUFFIXES",
    "natural_key",
    "natural_sorted",
    "find_checkpoints",
    "checkpoint_names",
    "WeightSwapper",
    "SweepResult",
    "PredictResult",
    "sweep",
    "predict",
]

LIST_SUFFIXES = (".txt", ".list", ".lst")
_UNUSED_BUFFER_SUFFIXES = ("num_batches_tracked",)  # integer BatchNorm counters, unused in eval mode


# --------------------------------------------------------------------------- checkpoint lists


def natural_key(text: str) -> list[Any]:
    """Sort key that orders digit runs numerically: epoch_9 < epoch_10."""
    return [(0, int(part), part) if part.isdigit() else (1, 0, part.lower()) for part in re.split(r"(\d+)", text)]


def natural_sorted(items: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """Paths sorted naturally by their full path string."""
    return sorted((Path(p) for p in items), key=lambda p: natural_key(str(p)))


def find_checkpoints(spec: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]) -> list[Path]:
    """Checkpoint paths from a glob, a list file (``.txt``/``.list``/``.lst``, one path a line, ``#`` comments,
    relative to the list file) or an explicit sequence; naturally sorted, duplicates refused."""
    if isinstance(spec, (str, os.PathLike)):
        spec_path = Path(spec)
        if spec_path.suffix.lower() in LIST_SUFFIXES:
            paths = _read_list_file(spec_path)
        elif spec_path.exists():
            paths = [spec_path]
        else:
            paths = [Path(p) for p in glob.glob(os.fspath(spec), recursive=True) if not Path(p).is_dir()]
            if not paths:
                raise ValueError(f"no checkpoints match {os.fspath(spec)!r}")
    else:
        paths = [Path(p) for p in spec]
        if not paths:
            raise ValueError("no checkpoints given")
    for path in paths:
        if not path.exists():
            raise ValueError(f"{path}: checkpoint not found")
    ordered = natural_sorted(paths)
    dupes = {str(p) for p in ordered if ordered.count(p) > 1}
    if dupes:
        raise ValueError(f"checkpoint listed twice: {sorted(dupes)[0]}")
    return ordered


def _read_list_file(path: Path) -> list[Path]:
    if not path.is_file():
        raise ValueError(f"{path}: checkpoint list file not found")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise ValueError(f"{path}: checkpoint list is not a UTF-8 text file") from None
    entries = [ln.strip() for ln in lines if ln.strip() and not ln.strip().startswith("#")]
    if not entries:
        raise ValueError(f"{path}: checkpoint list is empty")
    return [p if p.is_absolute() else path.parent / p for p in map(Path, entries)]


def checkpoint_names(paths: Sequence[Path]) -> list[str]:
    """Short unique names: paths relative to their common folder, suffix dropped, '/' kept as ':'."""
    resolved = [p.resolve() for p in paths]
    common = Path(os.path.commonpath([p.parent for p in resolved])) if resolved else Path()
    names = [str(p.relative_to(common).with_suffix("")).replace(os.sep, ":") for p in resolved]
    if len(set(names)) != len(names):
        names = [str(p.relative_to(common)).replace(os.sep, ":") for p in resolved]
    return names


# --------------------------------------------------------------------------- weight swap


class WeightSwapper:
    """The exported ONNX model plus a one-to-one map from its initializers to state_dict keys.

    Initializers whose names are not state_dict keys are graph constants and stay as exported. Every
    floating-point state_dict tensor must be an initializer (or share storage with one, i.e. a tied weight);
    otherwise the exporter folded or renamed it and swapping by name would silently use stale weights.
    """

    def __init__(self, proto: onnx.ModelProto, model: nn.Module) -> None:
        self.proto = onnx.ModelProto()
        self.proto.CopyFrom(proto)
        self.mapping = initializer_map(self.proto, model)
        self._slots = {init.name: i for i, init in enumerate(self.proto.graph.initializer) if init.name in self.mapping}

    def model_bytes(self, state: Mapping[str, torch.Tensor]) -> bytes:
        """Serialized ONNX model with every mapped initializer replaced by ``state[name]``."""
        initializers = self.proto.graph.initializer
        for name, index in self._slots.items():
            old = initializers[index]
            array = state[self.mapping[name]].detach().cpu().numpy()
            if tuple(array.shape) != tuple(old.dims):
                raise ValueError(f"tensor {name!r} has shape {tuple(array.shape)}, the ONNX initializer {tuple(old.dims)}")
            new = numpy_helper.from_array(np.ascontiguousarray(array.astype(
                onnx.helper.tensor_dtype_to_np_dtype(old.data_type), copy=False)), name)
            initializers[index].CopyFrom(new)
        return self.proto.SerializeToString()


def initializer_map(proto: onnx.ModelProto, model: nn.Module) -> dict[str, str]:
    """``{initializer name: state_dict key}``; one-line ValueError when the map is not one-to-one."""
    state = model.state_dict(keep_vars=False)
    names = {init.name for init in proto.graph.initializer}
    mapping = {name: name for name in names if name in state}
    by_storage = {state[k].untyped_storage().data_ptr(): k for k in mapping if state[k].numel()}
    unmapped = []
    for key, tensor in state.items():
        if key in mapping:
            continue
        if not tensor.is_floating_point() and key.endswith(_UNUSED_BUFFER_SUFFIXES):
            continue
        if tensor.numel() and tensor.untyped_storage().data_ptr() in by_storage:
            continue  # tied weight: swapped through the key it shares storage with
        unmapped.append(key)
    if unmapped:
        raise ValueError(
            f"checkpoint tensors do not map one-to-one onto the ONNX initializers: {len(unmapped)} tensor(s) "
            f"such as {unmapped[0]!r} have no initializer of that name (folded or renamed by the exporter)"
        )
    if not mapping:
        raise ValueError("the exported ONNX model has no initializer named after a checkpoint tensor")
    return mapping


# --------------------------------------------------------------------------- results


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


@dataclass(frozen=True)
class PredictResult:
    """What predict wrote: the outputs file and its blocks (one per sequence)."""

    path: Path
    model: str
    blocks: list[OutputsBlock]
    provider: str
    max_abs_diff: float | None


# --------------------------------------------------------------------------- shared helpers


def _prepared_inputs(
    inputs: Sequence[str | os.PathLike[str]] | InputSource,
    sequences: Sequence[str] | None,
    preprocessing: Preprocessing,
) -> tuple[InputSource, dict[str, np.ndarray]]:
    """Collect inputs and preprocess every sequence once (kept in memory for all checkpoints)."""
    source = inputs if isinstance(inputs, InputSource) else collect_inputs(inputs, sequences=sequences)
    return source, {name: source.preprocessed(name, preprocessing) for name in source.sequences}


def _provenance(source: InputSource, architecture: str, kwargs: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    extra = {"model_architecture": architecture, "model_kwargs": dict(kwargs),
             "input_file": str(source.h5_path) if source.h5_path else None}
    return {name: {**seq.attrs, **extra} for name, seq in source.sequences.items()}


def _text(text_embeddings: str | os.PathLike[str] | np.ndarray | None) -> np.ndarray | None:
    if text_embeddings is None or isinstance(text_embeddings, np.ndarray):
        return text_embeddings
    return load_text_embeddings(text_embeddings)


def _n_outputs(kind: str, raw_dim: int, text: np.ndarray | None) -> int:
    return int(text.shape[0]) if kind == "cosine" and text is not None else raw_dim


# --------------------------------------------------------------------------- predict


def predict(
    model: str | os.PathLike[str],
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
) -> PredictResult:
    """Run one model (``.onnx`` file, or a checkpoint exported in memory and verified) on the inputs.

    Writes one outputs block per sequence (one checkpoint, named after the model file) into ``out``,
    replacing blocks of the same model and sequence and keeping the others.
    """
    model = Path(model)
    text = _text(text_embeddings)
    diff: float | None = None
    kwargs: dict[str, Any] = {}
    if is_onnx_path(model):
        spec = read_spec(model)
        prep = preprocessing or (spec.preprocessing if spec else Preprocessing())
        classes = classes or (spec.classes if spec else None)
        onnx_source: str | bytes = str(model)
        arch_label = "onnx"
    else:
        ckpt = load_checkpoint(model)
        kwargs = architecture_kwargs(architecture, ckpt, arch_kwargs)
        torch_model = build_model(architecture, ckpt, arch_kwargs)
        prep = preprocessing or Preprocessing()
        proto = export_model(torch_model, prep)
        onnx_source = proto.SerializeToString()
        diff = verify_export(torch_model, onnx_source, prep.random_batch(2), atol=atol, threads=threads,
                             what=f"the export of {model}")
        arch_label = architecture
    source, prepared = _prepared_inputs(inputs, sequences, prep)
    runner = OnnxRunner(onnx_source, output_kind=output_kind, text_embeddings=text, threads=threads,
                        batch_size=batch_size)
    name = model_name or model.stem
    provenance = _provenance(source, arch_label, kwargs)
    blocks = []
    for seq_name, x in prepared.items():
        rows = runner.outputs(x)
        blocks.append(OutputsBlock(
            model=name, sequence=seq_name, outputs=rows[None], done=np.array([True]), checkpoints=[model.stem],
            classes=default_classes(rows.shape[-1], classes), values=source.sequences[seq_name].values,
            output_kind=output_kind, preprocessing=prep.to_dict(), attrs=provenance[seq_name]))
    path = write_outputs(out, blocks)
    return PredictResult(path=path, model=name, blocks=blocks, provider=runner.provider, max_abs_diff=diff)


# --------------------------------------------------------------------------- sweep


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
    text = _text(text_embeddings)
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
    _, prepared = _prepared_inputs(source, None, prep)
    provider = select_provider()
    raw_dim = int(torch_outputs(model, next(iter(prepared.values()))[:1]).shape[-1])
    n_out = _n_outputs(output_kind, raw_dim, text)
    class_names = default_classes(n_out, classes)

    fresh = [OutputsBlock(model=model_name, sequence=s, outputs=np.full((len(paths), len(x), n_out), np.nan, np.float32),
                          done=np.zeros(len(paths), bool), checkpoints=names, classes=class_names,
                          values=source.sequences[s].values, output_kind=output_kind, preprocessing=prep.to_dict(),
                          attrs=attrs)
             for (s, x), attrs in zip(prepared.items(), _provenance(source, architecture, kwargs).values())]
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

