"""How a model runs on the inputs (:class:`RunOptions`, shared by predict, sweep, attribute and studies) and the
preprocessing a run ends up with; a module of its own so that predict and the torch-side setup both import it
without importing each other."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from epg_core import OUTPUT_KINDS, UsageError

from ._preprocessing import Notice, contradictions, default_notice, read_classes_file, resolve_preprocessing
from ._runner import DEFAULT_ATOL, PROMPT_AVERAGES
from ._spec import Preprocessing

__all__ = ["OutputKind", "PromptAverage", "RunOptions", "run_preprocessing"]

#: What a model's outputs are (checked at run time too: values come from study files and the command line).
OutputKind = Literal["probabilities", "logits", "cosine"]
#: How K prompts per class combine for CLIP: the mean over prompts of the cosine (the paper's), or the cosine
#: with the normalised mean prompt embedding.
PromptAverage = Literal["cosine", "embedding"]


@dataclass(frozen=True)
class RunOptions:
    """How a model runs on the inputs (shared by :func:`predict` and :func:`sweep`).

    ``architecture``: the ``--arch`` string its model family takes (``families/``): ``convmixer``, ``hf`` (a
    transformers model folder), ``timm:NAME``, ``torchvision:NAME``, ``package.module:function``, a family
    registered with ``register_model_family`` or ``package.module:Class`` of a ``ModelFamily`` (a ``str``, not a
    ``Literal``: families are plug-ins; unused for an ``.onnx`` model); ``arch_kwargs`` override the checkpoint's
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
    output_kind: OutputKind = "probabilities"
    text_embeddings: str | os.PathLike[str] | np.ndarray | None = field(default=None, compare=False)
    sequences: Sequence[str] | None = None
    batch_size: int = 32
    threads: int = 1
    atol: float = DEFAULT_ATOL
    no_ema: bool = False
    classes_file: str | os.PathLike[str] | None = None
    preprocessing_options: Mapping[str, Any] | None = None
    prompt_average: PromptAverage = "cosine"

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
