"""Single-model prediction into the outputs HDF5 format; an ``.onnx`` file runs without torch.

A checkpoint (not ``.onnx``) is exported in memory and verified against torch eager first; torch is imported
only then. :class:`RunOptions` (how a model is run: architecture, preprocessing, classes, output kind, ...) is
shared by :func:`predict` and :func:`sweep`, and so are the helpers here.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from epg_core import DataError, OutputsBlock, UsageError, write_outputs

from .._progress import Counter, Progress
from ._checkpoints import is_onnx_path
from ._clip import predict_clip
from ._inputs import InputSource, collect_inputs
from ._preprocessing import (
    Notice,
    resolve_classes,
)
from ._run_options import RunOptions as RunOptions
from ._run_options import run_preprocessing
from ._runner import (
    OnnxRunner,
    load_text_embeddings,
    prepare_text_embeddings,
    select_provider,
)
from ._spec import ModelSpec, Preprocessing, read_spec, spec_path

__all__ = ["PredictResult", "RunOptions", "predict"]


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
    if not source.sequences:
        raise DataError(f"{source.h5_path or 'the inputs'}: no sequences to run the model on")
    return source, {name: source.preprocessed(name, preprocessing) for name in source.sequences}


def provenance(source: InputSource, architecture: str, kwargs: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Each sequence's attributes plus the model architecture, its keyword arguments and the input file."""
    extra = {"model_architecture": architecture, "model_kwargs": dict(kwargs),
             "input_file": str(source.h5_path) if source.h5_path else None}
    return {name: {**seq.attrs, **extra} for name, seq in source.sequences.items()}


def output_classes(opts: RunOptions, n: int, model_classes: Sequence[str] | None, source: str,
                   notice: Notice | None = None) -> list[str]:
    """Names of ``n`` outputs: the user's (list or file), else the model's own when ``n`` fits, else class_i.

    Cosine outputs (one per text embedding) never take the model's class names.
    """
    own = model_classes if opts.output_kind != "cosine" else None
    return resolve_classes(n, opts.classes, classes_file=opts.classes_file, model_classes=own, source=source,
                           notice=notice)


def onnx_input_size(model: str | os.PathLike[str]) -> tuple[int, int] | None:
    """The fixed (height, width) of an ``.onnx`` model's ``[batch, 3, h, w]`` input, or None."""
    import onnx

    try:
        proto = onnx.load(os.fspath(model), load_external_data=False)
        dims = proto.graph.input[0].type.tensor_type.shape.dim
    except Exception:  # noqa: BLE001 - an unreadable model fails later with its own message
        return None
    if len(dims) != 4 or not all(d.HasField("dim_value") and d.dim_value > 0 for d in dims[2:]):
        return None
    return int(dims[2].dim_value), int(dims[3].dim_value)


def text_matrix(text_embeddings: str | os.PathLike[str] | np.ndarray | None,
                prompt_average: str = "cosine") -> np.ndarray | None:
    """Text embeddings given as an array or a ``.npy`` path (None stays None): unit ``[C, D]``, or unit
    ``[C, K, D]`` whose cosines are averaged over K (``prompt_average="embedding"``: ``[C, D]``, the unit mean)."""
    if text_embeddings is None:
        return None
    if isinstance(text_embeddings, np.ndarray):
        return prepare_text_embeddings(text_embeddings, prompt_average)
    return load_text_embeddings(text_embeddings, prompt_average)


def n_outputs(kind: str, raw_dim: int, text: np.ndarray | None) -> int:
    """Number of stored outputs: one per text embedding for cosine outputs, else the model's output size."""
    return int(text.shape[0]) if kind == "cosine" and text is not None else raw_dim


# --------------------------------------------------------------------------- predict


def predict(
    model: str | os.PathLike[str],
    inputs: Sequence[str | os.PathLike[str]] | InputSource,
    out: str | os.PathLike[str],
    options: RunOptions | None = None,
    *,
    progress: Progress | None = None,
) -> PredictResult:
    """Run one model on the inputs: an ``.onnx`` file, a CLIP export, or a checkpoint (file or HF folder)
    exported in memory and verified against torch.

    Writes one outputs block per sequence (one checkpoint, named after the model file) into ``out``,
    replacing blocks of the same model and sequence and keeping the others. A CLIP export (``export_clip``: the
    ``.onnx`` file with its prompt embeddings beside it) stores per-class mean cosines and every prompt's
    cosine (:func:`predict_clip`). ``progress(done, total)`` counts sequences.
    """
    opts = options or RunOptions()
    model = Path(model)
    spec = read_spec(model) if is_onnx_path(model) else None
    if spec is not None and "clip" in spec.info:  # written by export_clip, its prompt embeddings beside it
        return _predict_clip(model, spec, inputs, out, opts, progress)
    text = text_matrix(opts.text_embeddings, opts.prompt_average)
    diff: float | None = None
    kwargs: dict[str, Any] = {}
    runner: OnnxRunner | None = None
    if is_onnx_path(model):  # the session first: a damaged file is named as such, before any option is asked for
        runner = OnnxRunner(str(model), output_kind=opts.output_kind, text_embeddings=text, threads=opts.threads,
                            batch_size=opts.batch_size)
        size = onnx_input_size(model) if spec is None else None
        prep = run_preprocessing(opts, spec.preprocessing if spec else None, source=str(model),
                                 fallback=Preprocessing(size=size) if size else None, fallback_from="its input shape")
        model_classes = spec.classes if spec else None
        onnx_source: str | bytes = str(model)
        arch_label = "onnx"
    else:  # a torch checkpoint: export it in memory (the only path that imports torch)
        from ._export import export_model, verify_export
        from ._setup import load_for_run

        loaded = load_for_run(model, opts)
        prep, kwargs, model_classes = loaded.preprocessing, loaded.kwargs, loaded.checkpoint.classes
        onnx_source = export_model(loaded.model, prep).SerializeToString()
        diff = verify_export(loaded.model, onnx_source, prep.random_batch(2), atol=opts.atol, threads=opts.threads,
                             what=f"the export of {model}")
        arch_label = opts.architecture
    source, prepared = prepared_inputs(inputs, opts.sequences, prep)
    if runner is None:
        runner = OnnxRunner(onnx_source, output_kind=opts.output_kind, text_embeddings=text, threads=opts.threads,
                            batch_size=opts.batch_size)
    name = opts.model_name or model.stem
    attrs = provenance(source, arch_label, kwargs)
    blocks = []
    names: list[str] | None = None
    counter = Counter(progress, len(prepared))
    for seq_name, x in prepared.items():
        rows = runner.outputs(x)
        if names is None and spec is not None:
            _check_spec_classes(model, spec, opts, rows.shape[-1])
        names = names or output_classes(opts, rows.shape[-1], model_classes, str(model))
        blocks.append(OutputsBlock(
            model=name, sequence=seq_name, outputs=rows[None], done=np.array([True]), checkpoints=[model.stem],
            classes=names, values=source.sequences[seq_name].values, output_kind=opts.output_kind,
            preprocessing=prep.to_dict(), attrs=attrs[seq_name]))
        counter.add()
    record = opts.record(prep, blocks[0].classes) if blocks else None
    path = write_outputs(out, blocks, run_options=record)
    return PredictResult(path=path, model=name, blocks=blocks, provider=runner.provider, max_abs_diff=diff)


def _check_spec_classes(model: Path, spec: ModelSpec, opts: RunOptions, n: int) -> None:
    """A spec that names another number of classes than the model has outputs is wrong: refuse before writing."""
    given = opts.classes is not None or opts.classes_file is not None
    if spec.classes and not given and opts.output_kind != "cosine" and len(spec.classes) != n:
        raise DataError(f"{spec_path(model)}: names {len(spec.classes)} classes but {model.name} has {n} outputs; "
                        "fix the spec or give --classes")


def _predict_clip(model: Path, spec: ModelSpec, inputs: Sequence[str | os.PathLike[str]] | InputSource,
                  out: str | os.PathLike[str], opts: RunOptions, progress: Progress | None) -> PredictResult:
    """A CLIP export: its prompts name the classes and give the text embeddings; per-prompt cosines are kept."""
    if opts.text_embeddings is not None:
        raise UsageError(f"{model}: a CLIP export carries its prompt embeddings; drop --text-embeddings")
    if opts.classes is not None or opts.classes_file is not None:
        raise UsageError(f"{model}: a CLIP export takes its class names from its prompts file; drop --classes")
    prep = run_preprocessing(opts, spec.preprocessing, source=str(model))
    blocks = predict_clip(model, inputs, out, model_name=opts.model_name, sequences=opts.sequences,
                          preprocessing=prep, batch_size=opts.batch_size, threads=opts.threads, progress=progress)
    return PredictResult(path=Path(out), model=blocks[0].model if blocks else opts.model_name or model.stem,
                         blocks=blocks, provider=select_provider(report=False), max_abs_diff=None)
