"""Single-model prediction into the outputs HDF5 format; an ``.onnx`` file runs without torch.

A checkpoint (not ``.onnx``) is exported in memory and verified against torch eager first; torch is imported
only then. Shared helpers of predict and sweep live here too.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from epg_core import OutputsBlock, write_outputs

from ._checkpoints import is_onnx_path
from ._inputs import InputSource, collect_inputs
from ._runner import DEFAULT_ATOL, OnnxRunner, default_classes, load_text_embeddings
from ._spec import Preprocessing, read_spec

__all__ = ["PredictResult", "predict"]


@dataclass(frozen=True)
class PredictResult:
    """What predict wrote: the outputs file and its blocks (one per sequence)."""

    path: Path
    model: str
    blocks: list[OutputsBlock]
    provider: str
    max_abs_diff: float | None


# --------------------------------------------------------------------------- shared helpers


def prepared_inputs(
    inputs: Sequence[str | os.PathLike[str]] | InputSource,
    sequences: Sequence[str] | None,
    preprocessing: Preprocessing,
) -> tuple[InputSource, dict[str, np.ndarray]]:
    """Collect inputs and preprocess every sequence once (kept in memory for all checkpoints)."""
    source = inputs if isinstance(inputs, InputSource) else collect_inputs(inputs, sequences=sequences)
    return source, {name: source.preprocessed(name, preprocessing) for name in source.sequences}


def provenance(source: InputSource, architecture: str, kwargs: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Each sequence's attributes plus the model architecture, its keyword arguments and the input file."""
    extra = {"model_architecture": architecture, "model_kwargs": dict(kwargs),
             "input_file": str(source.h5_path) if source.h5_path else None}
    return {name: {**seq.attrs, **extra} for name, seq in source.sequences.items()}


def text_matrix(text_embeddings: str | os.PathLike[str] | np.ndarray | None) -> np.ndarray | None:
    """Text embeddings given as an array or a ``.npy`` path (None stays None)."""
    if text_embeddings is None or isinstance(text_embeddings, np.ndarray):
        return text_embeddings
    return load_text_embeddings(text_embeddings)


def n_outputs(kind: str, raw_dim: int, text: np.ndarray | None) -> int:
    """Number of stored outputs: one per text embedding for cosine outputs, else the model's output size."""
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
    text = text_matrix(text_embeddings)
    diff: float | None = None
    kwargs: dict[str, Any] = {}
    if is_onnx_path(model):
        spec = read_spec(model)
        prep = preprocessing or (spec.preprocessing if spec else Preprocessing())
        classes = classes or (spec.classes if spec else None)
        onnx_source: str | bytes = str(model)
        arch_label = "onnx"
    else:  # a torch checkpoint: export it in memory (the only path that imports torch)
        from ._architectures import architecture_kwargs, build_model, load_checkpoint
        from ._export import export_model, verify_export

        ckpt = load_checkpoint(model)
        kwargs = architecture_kwargs(architecture, ckpt, arch_kwargs)
        torch_model = build_model(architecture, ckpt, arch_kwargs)
        prep = preprocessing or Preprocessing()
        proto = export_model(torch_model, prep)
        onnx_source = proto.SerializeToString()
        diff = verify_export(torch_model, onnx_source, prep.random_batch(2), atol=atol, threads=threads,
                             what=f"the export of {model}")
        arch_label = architecture
    source, prepared = prepared_inputs(inputs, sequences, prep)
    runner = OnnxRunner(onnx_source, output_kind=output_kind, text_embeddings=text, threads=threads,
                        batch_size=batch_size)
    name = model_name or model.stem
    attrs = provenance(source, arch_label, kwargs)
    blocks = []
    for seq_name, x in prepared.items():
        rows = runner.outputs(x)
        blocks.append(OutputsBlock(
            model=name, sequence=seq_name, outputs=rows[None], done=np.array([True]), checkpoints=[model.stem],
            classes=default_classes(rows.shape[-1], classes), values=source.sequences[seq_name].values,
            output_kind=output_kind, preprocessing=prep.to_dict(), attrs=attrs[seq_name]))
    path = write_outputs(out, blocks)
    return PredictResult(path=path, model=name, blocks=blocks, provider=runner.provider, max_abs_diff=diff)
