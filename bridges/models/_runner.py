"""ONNX Runtime runner: provider choice, sessions, output kinds (probabilities, logits, cosine)."""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from epg_core import DataError, MissingFileError, UsageError

__all__ = [
    "DEFAULT_ATOL",
    "PROMPT_AVERAGES",
    "parity_tolerance",
    "prepare_text_embeddings",
    "OUTPUT_KINDS",
    "select_provider",
    "make_session",
    "postprocess",
    "load_text_embeddings",
    "OnnxRunner",
    "default_classes",
]

LOG = logging.getLogger("epg_bridges")
OUTPUT_KINDS = ("probabilities", "logits", "cosine")
DEFAULT_ATOL = 1e-4  # largest allowed |ONNX Runtime - torch eager| for an export or a weight swap, per unit scale


def parity_tolerance(atol: float, reference: np.ndarray) -> float:
    """The allowed |ONNX Runtime - torch eager|: ``atol`` times the output scale ``max(1, max |reference|)``, so
    float32 round-off of large logits (about 1e-7 relative) never fails an export while small outputs keep
    ``atol`` as it is."""
    scale = float(np.max(np.abs(reference))) if np.size(reference) else 1.0
    return float(atol) * max(1.0, scale if np.isfinite(scale) else 1.0)


@functools.cache
def _cuda_really_works() -> bool:
    """True if CUDAExecutionProvider is installed and a session really initialises with it."""
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return False
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Identity", ["x"], ["y"])], "probe",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])],
    )
    probe = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)])
    try:
        session = ort.InferenceSession(probe.SerializeToString(),
                                       providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
    except Exception:  # noqa: BLE001 - any CUDA initialisation failure means "use the CPU"
        return False
    return session.get_providers()[0] == "CUDAExecutionProvider"


_REPORTED: set[str] = set()


def select_provider(device: str = "auto", *, report: bool = True) -> str:
    """``CUDAExecutionProvider`` when asked for (``auto``/``cuda``) and it really works, else CPU.

    The choice is reported once per process through the ``epg_bridges`` logger (INFO); the CLI also
    shows it in its result tables. ``report=False`` skips the log record.
    """
    if device not in ("auto", "cpu", "cuda"):
        raise UsageError(f"device must be 'auto', 'cpu' or 'cuda', got {device!r}")
    provider = "CPUExecutionProvider"
    if device != "cpu" and _cuda_really_works():
        provider = "CUDAExecutionProvider"
    elif device == "cuda":
        raise UsageError("device 'cuda' requested but CUDAExecutionProvider does not initialise here")
    if report and provider not in _REPORTED:
        _REPORTED.add(provider)
        LOG.info("ONNX Runtime provider: %s", provider)
    return provider


def make_session(
    model: str | os.PathLike[str] | bytes | onnx.ModelProto,
    *,
    threads: int = 1,
    provider: str | None = None,
) -> ort.InferenceSession:
    """An ORT session on ``provider`` (default: :func:`select_provider`) with ``threads`` intra-op threads."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = max(int(threads), 0)
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    provider = provider or select_provider()
    providers = [provider] if provider == "CPUExecutionProvider" else [provider, "CPUExecutionProvider"]
    source = model.SerializeToString() if isinstance(model, onnx.ModelProto) else model
    if not isinstance(source, bytes):
        source = os.fspath(source)
        if not Path(source).is_file():
            raise MissingFileError(f"{source}: ONNX model not found")
    try:
        return ort.InferenceSession(source, options, providers=providers)
    except Exception as exc:  # noqa: BLE001 - ORT raises several private exception types
        name = source if isinstance(source, str) else "in-memory model"
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{name}: not a valid ONNX model ({first[:200]})") from None


# --------------------------------------------------------------------------- outputs


#: How K prompts per class combine: the mean over prompts of the cosine (the paper's, Sec. 4.4, as
#: ``epg export-clip`` stores it), or the cosine with the normalised mean prompt embedding (only when asked).
PROMPT_AVERAGES = ("cosine", "embedding")


def prepare_text_embeddings(array: np.ndarray, prompt_average: str = "cosine") -> np.ndarray:
    """Unit rows ``[C, D]``, or ``[C, K, D]`` for the mean-of-cosines (``prompt_average="cosine"``, default);
    ``"embedding"`` turns ``[C, K, D]`` into the unit mean embedding ``[C, D]``."""
    if prompt_average not in PROMPT_AVERAGES:
        raise UsageError(f"prompt average must be one of {', '.join(PROMPT_AVERAGES)}, got {prompt_average!r}")
    array = _unit(np.asarray(array, np.float64))
    if array.ndim == 3 and prompt_average == "embedding":
        array = _unit(array.mean(axis=1))
    return array


def load_text_embeddings(path: str | os.PathLike[str], prompt_average: str = "cosine") -> np.ndarray:
    """Text embeddings for cosine outputs from a ``.npy`` file: ``[C, D]`` or ``[C, K, D]`` (K prompts).

    With K prompts per class an output is, by default, the mean over the prompts of the cosine (the paper's
    definition, as ``epg export-clip`` stores it); ``prompt_average="embedding"`` takes the cosine with the
    normalised mean prompt embedding instead (see :func:`prepare_text_embeddings`).
    """
    path = Path(path)
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"{path}: cannot read text embeddings as a .npy array ({first})") from None
    if array.ndim not in (2, 3) or not np.issubdtype(array.dtype, np.floating):
        raise DataError(f"{path}: text embeddings must be float [C, D] or [C, K, D], got {array.dtype} {array.shape}")
    return prepare_text_embeddings(array, prompt_average)


def _unit(x: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.where(norm == 0, 1.0, norm)


def postprocess(raw: np.ndarray, kind: str, text_embeddings: np.ndarray | None = None) -> np.ndarray:
    """Model outputs ``[B, C]`` -> float32 outputs of ``kind`` (softmax probabilities, logits, cosine)."""
    raw = np.asarray(raw, dtype=np.float64).reshape(len(raw), -1)
    if kind == "logits":
        return raw.astype(np.float32)
    if kind == "probabilities":
        shifted = raw - raw.max(axis=-1, keepdims=True)
        exp = np.exp(shifted)
        return (exp / exp.sum(axis=-1, keepdims=True)).astype(np.float32)
    if kind == "cosine":
        if text_embeddings is None:
            raise UsageError("output kind 'cosine' needs a text-embedding matrix (--text-embeddings FILE.npy)")
        if text_embeddings.shape[-1] != raw.shape[-1]:
            raise DataError(f"image embeddings have dimension {raw.shape[-1]} but text embeddings "
                             f"{text_embeddings.shape[-1]}")
        text = _unit(np.asarray(text_embeddings, np.float64))
        if text.ndim == 3:  # [C, K, D]: the mean over each class's prompts of the cosine
            cos = _unit(raw) @ text.reshape(-1, text.shape[-1]).T
            return cos.reshape(len(raw), text.shape[0], text.shape[1]).mean(axis=-1).astype(np.float32)
        return (_unit(raw) @ text.T).astype(np.float32)
    raise UsageError(f"output kind {kind!r} not in {OUTPUT_KINDS}")


class OnnxRunner:
    """Batched inference of one ONNX model with ORT, turning model outputs into the chosen output kind."""

    def __init__(
        self,
        model: str | os.PathLike[str] | bytes | onnx.ModelProto,
        *,
        output_kind: str = "probabilities",
        text_embeddings: np.ndarray | None = None,
        threads: int = 1,
        batch_size: int = 32,
        provider: str | None = None,
    ) -> None:
        if output_kind not in OUTPUT_KINDS:
            raise UsageError(f"output kind {output_kind!r} not in {OUTPUT_KINDS}")
        if output_kind == "cosine" and text_embeddings is None:
            raise UsageError("output kind 'cosine' needs a text-embedding matrix (--text-embeddings FILE.npy)")
        if batch_size < 1:
            raise UsageError(f"batch size must be >= 1, got {batch_size}")
        self.session = make_session(model, threads=threads, provider=provider)
        self.provider = self.session.get_providers()[0]
        self.input_name = self.session.get_inputs()[0].name
        self.output_kind = output_kind
        self.text_embeddings = text_embeddings
        self.batch_size = int(batch_size)

    def raw(self, x: np.ndarray) -> np.ndarray:
        """The model's first output for preprocessed inputs ``[B, 3, h, w]``, in batches."""
        parts = [self._run(np.ascontiguousarray(x[i:i + self.batch_size])) for i in range(0, len(x), self.batch_size)]
        return np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)

    def _run(self, batch: np.ndarray) -> np.ndarray:
        try:
            return np.asarray(self.session.run(None, {self.input_name: batch})[0])
        except Exception as exc:  # noqa: BLE001 - ORT raises private exception types
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise DataError(f"ONNX Runtime failed on an input of shape {list(batch.shape)} "
                             f"(check --size against the model): {first[:200]}") from None

    def outputs(self, x: np.ndarray) -> np.ndarray:
        """Outputs of ``self.output_kind`` ``[B, C]`` for preprocessed inputs."""
        return postprocess(self.raw(x), self.output_kind, self.text_embeddings)


def default_classes(n: int, given: Sequence[str] | None = None) -> list[str]:
    """``given`` if its length fits, else ``class_0 ... class_{n-1}``."""
    if given:
        if len(given) != n:
            raise UsageError(f"{len(given)} class names given ({', '.join(given)}) but the model has {n} outputs")
        return [str(c) for c in given]
    return [f"class_{i}" for i in range(n)]
