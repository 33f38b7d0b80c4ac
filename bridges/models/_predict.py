"""Single-model prediction into the outputs HDF5 format; an ``.onnx`` file runs without torch.

A checkpoint (not ``.onnx``) is exported in memory and verified against torch eager first; torch is imported
only then. :class:`RunOptions` (how a model is run: architecture, preprocessing, classes, output kind, ...) is
shared by :func:`predict` and :func:`sweep`, and so are the helpers here.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from epg_core import OUTPUT_KINDS, DataError, OutputsBlock, UsageError, write_outputs

from .._progress import Counter, Progress
from ._checkpoints import is_onnx_path
from ._clip import predict_clip
from ._inputs import InputSource, collect_inputs
from ._preprocessing import (
    Notice,
    contradictions,
    default_notice,
    read_classes_file,
    resolve_classes,
    resolve_preprocessing,
)
from ._runner import (
    DEFAULT_ATOL,
    PROMPT_AVERAGES,
    OnnxRunner,
    load_text_embeddings,
    prepare_text_embeddings,
    select_provider,
)
from ._spec import ModelSpec, Preprocessing, read_spec, spec_path

__all__ = ["PredictResult", "RunOptions", "predict"]


@dataclass(frozen=True)
class RunOptions:
    """How a model runs on the inputs (shared by :func:`predict` and :func:`sweep`).

    ``architecture``: ``convmixer``, ``hf`` (a transformers model folder), ``timm:NAME``, ``torchvision:NAME``
    or ``package.module:function`` (unused for an ``.onnx`` model); ``arch_kwargs`` override the checkpoint's
    ``paras``; ``no_ema`` takes a timm checkpoint's raw weights instead of its EMA ones; ``model_name`` is the
    model's group in the outputs file (default: the model file's stem for predict, the architecture for a sweep).

    Preprocessing: what the model carries (the spec beside an ``.onnx`` file, an HF folder's image-processor
    config, a checkpoint's ``preprocessing`` entry, timm/torchvision metadata) is used, see
    :func:`resolve_preprocessing`. ``preprocessing_options`` holds only the fields the user gave (the CLI's
    options; they replace the carried ones, each contradiction said in one notice line); ``preprocessing`` is a
    complete :class:`Preprocessing` that replaces the carried one (one notice line when they differ). A model
    that carries none needs at least a size (ConvMixer: the paper's 128 px, with a notice).

    ``classes`` (or ``classes_file``, one name a line) name the outputs, else the model's own (``id2label``, the
    spec), else ``class_i``; ``output_kind`` is probabilities, logits or cosine (with ``text_embeddings``, an
    array or a ``.npy`` path, ``[C, D]`` or ``[C, K, D]``; a CLIP export carries its own); ``prompt_average`` says
    how K prompts per class combine: ``cosine`` (default, the paper's: the mean over prompts of the cosine) or
    ``embedding`` (the cosine with the normalised mean prompt embedding); ``sequences`` selects sequences of the
    interventions files (None: all); ``atol`` is the largest allowed |ONNX Runtime - torch eager| of the export
    check per unit of output scale.
    """

    architecture: str = "convmixer"
    arch_kwargs: Mapping[str, Any] | None = None
    model_name: str | None = None
    preprocessing: Preprocessing | None = None
    classes: Sequence[str] | None = None
    output_kind: str = "probabilities"
    text_embeddings: str | os.PathLike[str] | np.ndarray | None = field(default=None, compare=False)
    sequences: Sequence[str] | None = None
    batch_size: int = 32
    threads: int = 1
    atol: float = DEFAULT_ATOL
    no_ema: bool = False
    classes_file: str | os.PathLike[str] | None = None
    preprocessing_options: Mapping[str, Any] | None = None
    prompt_average: str = "cosine"

    def __post_init__(self) -> None:
        if self.classes is not None and self.classes_file is not None:
            raise UsageError("give class names either as a list (--classes) or as a file (--classes-file), not both")
        if self.preprocessing is not None and self.preprocessing_options:
            raise UsageError("give either a complete preprocessing or preprocessing options, not both")
        if self.output_kind not in OUTPUT_KINDS:
            raise UsageError(f"output kind must be one of {', '.join(OUTPUT_KINDS)}, got {self.output_kind!r}")
        if self.prompt_average not in PROMPT_AVERAGES:
            raise UsageError(f"prompt average must be one of {', '.join(PROMPT_AVERAGES)}, got {self.prompt_average!r}")
        if int(self.batch_size) < 1:
            raise UsageError(f"batch size must be >= 1, got {self.batch_size}")
        if int(self.threads) < 0:
            raise UsageError(f"threads must be >= 0, got {self.threads}")
        if not float(self.atol) >= 0:
            raise UsageError(f"atol must be >= 0, got {self.atol}")
        if self.classes is not None and (len(set(self.classes)) != len(self.classes) or not all(self.classes)):
            raise UsageError(f"class names must be distinct and non-empty, got {list(self.classes)}")

    def record(self, preprocessing: Preprocessing, classes: Sequence[str]) -> dict[str, Any]:
        """The options stored with the outputs (``run_options``), so a rerun with other ones is refused."""
        h, w = preprocessing.size
        return {"classes": list(classes), "output_kind": self.output_kind, "size": f"{w}x{h}",
                "preprocessing": preprocessing.to_dict(), "architecture": self.architecture, "no_ema": self.no_ema}

    def given_classes(self, notice: Notice | None = None) -> list[str] | None:
        """The class names the user gave (``classes``, or read from ``classes_file``), else None."""
        if self.classes is not None:
            return [str(c) for c in self.classes]
        if self.classes_file is not None:
            return read_classes_file(self.classes_file, notice)
        return None


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


def run_preprocessing(
    opts: RunOptions,
    carried: Preprocessing | None,
    *,
    source: str,
    fallback: Preprocessing | None = None,
    fallback_from: str = "its config",
    notice: Notice | None = None,
) -> Preprocessing:
    """The preprocessing a run uses: ``opts.preprocessing`` if given (a notice when it differs from the carried
    one), else :func:`resolve_preprocessing` of the carried one with ``opts.preprocessing_options``."""
    if opts.preprocessing is not None:
        differ = contradictions(carried, opts.preprocessing) if carried is not None else ""
        if differ:
            (notice or default_notice)(f"{source}: {differ}")
        return opts.preprocessing
    return resolve_preprocessing(carried, opts.preprocessing_options, source=source, fallback=fallback,
                                 fallback_from=fallback_from, notice=notice)


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
