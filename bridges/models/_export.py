"""Export torch models to a single ONNX file with a dynamic batch axis, verified against torch eager.

The exporter is ``torch.onnx.export(dynamo=True, optimize=False)``: without the graph optimiser the ONNX
initializers keep the state_dict names one-to-one (BatchNorm folding and friends would rename or merge
them), which is what the checkpoint sweep relies on to swap weights by name. Models the dynamo exporter
cannot trace (transformers' Swin, say) fall back to the TorchScript exporter (``dynamo=False``, opset 17,
no constant folding); which one made a model is recorded in its ``epg_exporter`` metadata. Every export is
run by torch and ONNX Runtime on the same random batch and refused if they differ by more than ``atol``.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import onnx
import torch
from torch import nn

from epg_core import DataError, UsageError, write_bytes_atomic

from ._runner import DEFAULT_ATOL, make_session, parity_tolerance
from ._spec import ModelSpec, Preprocessing, write_spec

__all__ = ["ExportResult", "export_model", "exporter_of", "torch_outputs", "verify_export", "export_onnx"]

INPUT_NAME = "images"
OUTPUT_NAME = "outputs"


@dataclass(frozen=True)
class ExportResult:
    """What :func:`export_onnx` wrote and how closely ONNX Runtime matched torch."""

    onnx_path: Path
    spec_path: Path
    max_abs_diff: float
    spec: ModelSpec


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Silence the exporter's warnings and log chatter (torchvision ops missing, deprecations)."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._dynamo", "torch.fx",
                                              "onnxscript", "torch._export", "torch.__trace")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL)  # a failed dynamo trace logs the whole graph at ERROR; the fallback follows
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


EXPORTER_KEY = "epg_exporter"
LEGACY_OPSET = 17


def _first(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:200]


def export_model(model: nn.Module, preprocessing: Preprocessing, *, opset: int | None = None) -> onnx.ModelProto:
    """Export ``model`` (eval mode) to an in-memory ONNX model with input ``images`` ``[batch, 3, h, w]``.

    Tries the dynamo exporter, then the TorchScript one; the proto's metadata ``epg_exporter`` says which.
    """
    model = model.eval()
    example = torch.from_numpy(preprocessing.random_batch(2, seed=0))
    torch_outputs(model, example[:1].numpy(), threads=0)  # a model that cannot run at this size fails here, in one line
    kwargs: dict[str, Any] = {"opset_version": opset} if opset else {}
    try:
        with _quiet_exporter(), torch.no_grad():
            program = torch.onnx.export(
                model, (example,), dynamo=True, optimize=False, external_data=False, verbose=False,
                input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                dynamic_shapes=({0: torch.export.Dim("batch")},), **kwargs,
            )
        if program is None:
            raise RuntimeError("the exporter returned no program")
        proto, exporter = program.model_proto, "dynamo"
    except Exception as exc:  # noqa: BLE001 - the exporter raises many private types
        try:
            proto, exporter = _legacy_export(model, example, opset or LEGACY_OPSET), "torchscript"
        except Exception as legacy:  # noqa: BLE001
            raise DataError(f"ONNX export failed: dynamo exporter: {_first(exc)}; TorchScript exporter: "
                            f"{_first(legacy)}") from None
    entry = proto.metadata_props.add()
    entry.key, entry.value = EXPORTER_KEY, exporter
    return proto


def _legacy_export(model: nn.Module, example: torch.Tensor, opset: int) -> onnx.ModelProto:
    """The TorchScript exporter, initializers kept by name (no constant folding), dynamic batch."""
    buffer = io.BytesIO()
    with _quiet_exporter(), torch.no_grad():
        torch.onnx.export(model, (example,), cast(Any, buffer), dynamo=False, opset_version=opset,
                          do_constant_folding=False, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                          dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}})
    return onnx.load_from_string(buffer.getvalue())


def exporter_of(proto: onnx.ModelProto) -> str:
    """``dynamo`` or ``torchscript`` (what :func:`export_model` recorded; ``unknown`` otherwise)."""
    return next((p.value for p in proto.metadata_props if p.key == EXPORTER_KEY), "unknown")


def torch_outputs(model: nn.Module, x: np.ndarray, *, threads: int = 1, batch_size: int = 64) -> np.ndarray:
    """Torch eager outputs (first output, float32) for preprocessed inputs ``x``."""
    if threads > 0:
        torch.set_num_threads(threads)
    parts = []
    with torch.no_grad():
        for start in range(0, len(x), batch_size):
            try:
                out = model(torch.from_numpy(np.ascontiguousarray(x[start:start + batch_size])))
            except (RuntimeError, ValueError, IndexError) as exc:  # e.g. a kernel larger than the input
                raise UsageError(f"the model cannot run on inputs of shape {list(x.shape[1:])} ({_first(exc)}); "
                                 "check --size") from None
            out = getattr(out, "logits", out)
            out = out[0] if isinstance(out, (tuple, list)) else out
            parts.append(out.detach().float().cpu().numpy().reshape(out.shape[0], -1))
    return np.concatenate(parts)


def verify_export(
    model: nn.Module,
    onnx_model: onnx.ModelProto | bytes | str | os.PathLike[str],
    x: np.ndarray,
    *,
    atol: float = DEFAULT_ATOL,
    threads: int = 1,
    what: str = "the export",
) -> float:
    """Run torch and ORT on ``x``; return the largest difference or raise a one-line ValueError above ``atol``."""
    session = make_session(onnx_model, threads=threads)
    ort_out = session.run(None, {session.get_inputs()[0].name: x})[0]
    ort_out = np.asarray(ort_out, np.float32).reshape(len(x), -1)
    ref = torch_outputs(model, x, threads=threads)
    if ort_out.shape != ref.shape:
        raise DataError(f"ONNX Runtime output shape {ort_out.shape} differs from torch {ref.shape}; refusing {what}")
    diff = float(np.max(np.abs(ort_out - ref))) if ort_out.size else 0.0
    tolerance = parity_tolerance(atol, ref)
    if not np.isfinite(diff) or diff > tolerance:
        raise DataError(f"ONNX Runtime disagrees with torch eager by {diff:.3g} (> {tolerance:.3g}: atol {atol:g} "
                        f"x the output scale) on a random batch; refusing {what}")
    return diff


def export_onnx(
    model: nn.Module,
    path: str | os.PathLike[str],
    *,
    preprocessing: Preprocessing,
    classes: list[str] | None = None,
    info: Mapping[str, Any] | None = None,
    atol: float = DEFAULT_ATOL,
    threads: int = 1,
    seed: int = 0,
    verify_batch: int = 4,
) -> ExportResult:
    """Export ``model`` to ``path`` (one file) plus its spec ``path.json``; refuse it if ORT != torch.

    The file is written to a temporary name and renamed only after verification, so a refused export
    leaves any existing ``path`` untouched.
    """
    path = Path(path)
    if threads > 0:
        torch.set_num_threads(threads)
    proto = export_model(model, preprocessing)
    data = proto.SerializeToString()
    diff = verify_export(model, data, preprocessing.random_batch(verify_batch, seed=seed), atol=atol,
                         threads=threads, what=f"to write {path}")
    spec = ModelSpec(preprocessing=preprocessing, classes=list(classes) if classes else None,
                     input_name=INPUT_NAME, output_name=OUTPUT_NAME,
                     info={**dict(info or {}), "max_abs_diff_vs_torch": diff, "atol": atol,
                           "exporter": f"torch {torch.__version__} {exporter_of(proto)}, optimize=False",
                           "opset": _opset(proto)})
    write_bytes_atomic(path, data)
    return ExportResult(onnx_path=path, spec_path=write_spec(path, spec), max_abs_diff=diff, spec=spec)


def _opset(proto: onnx.ModelProto) -> int:
    return next((int(o.version) for o in proto.opset_import if o.domain in ("", "ai.onnx")), 0)


