"""ONNX Runtime runner: provider choice, sessions, preprocessing, output kinds and input collection.

The model spec (preprocessing + class names) lives in a JSON file beside each exported model
(``model.onnx.json``) and is copied into every outputs file, so outputs can be reproduced.
"""

from __future__ import annotations

import functools
import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import onnx
import onnxruntime as ort
from PIL import Image

from epg_core import InterventionSequence, iter_intervention_images, read_interventions
from epg_core._atomic import write_bytes_atomic

from .frames import load_image

__all__ = [
    "OUTPUT_KINDS",
    "Preprocessing",
    "ModelSpec",
    "spec_path",
    "write_spec",
    "read_spec",
    "load_image",
    "select_provider",
    "make_session",
    "postprocess",
    "load_text_embeddings",
    "OnnxRunner",
    "InputSource",
    "collect_inputs",
    "default_classes",
]

LOG = logging.getLogger("epg_bridges")
OUTPUT_KINDS = ("probabilities", "logits", "cosine")
_RESIZE_FILTERS = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC,
                   "nearest": Image.Resampling.NEAREST, "lanczos": Image.Resampling.LANCZOS}
_HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf")


# --------------------------------------------------------------------------- preprocessing spec


@dataclass(frozen=True)
class Preprocessing:
    """How uint8 RGB images become the model input: resize, scale to [0, 1], mean/std, channel order.

    Defaults are the paper's ConvMixer (128x128, mean = std = 0.5, i.e. inputs in [-1, 1]).
    ``size`` is (height, width); ``channel_order`` "RGB" or "BGR"; the layout is always NCHW.
    """

    size: tuple[int, int] = (128, 128)
    resize: str = "bilinear"
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    channel_order: str = "RGB"
    layout: str = "NCHW"
    scale: str = "0-1"  # pixel values divided by 255 before mean/std

    def __post_init__(self) -> None:
        size = tuple(int(s) for s in self.size)
        if len(size) != 2 or min(size) < 1:
            raise ValueError(f"preprocessing size must be (height, width) >= 1, got {self.size}")
        mean, std = tuple(float(m) for m in self.mean), tuple(float(s) for s in self.std)
        if len(mean) != 3 or len(std) != 3:
            raise ValueError(f"preprocessing mean and std need 3 values each, got {self.mean} and {self.std}")
        if min(std) <= 0:
            raise ValueError(f"preprocessing std must be positive, got {self.std}")
        if self.resize not in _RESIZE_FILTERS:
            raise ValueError(f"preprocessing resize {self.resize!r} not in {sorted(_RESIZE_FILTERS)}")
        if self.channel_order not in ("RGB", "BGR"):
            raise ValueError(f"preprocessing channel_order must be 'RGB' or 'BGR', got {self.channel_order!r}")
        if self.layout != "NCHW" or self.scale != "0-1":
            raise ValueError(f"unsupported preprocessing layout/scale {self.layout!r}/{self.scale!r} (NCHW, 0-1)")
        object.__setattr__(self, "size", size)
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "std", std)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict (lists, not tuples)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Preprocessing:
        """Inverse of :meth:`to_dict`; unknown keys are an error (a typo must not pass silently)."""
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown preprocessing keys {unknown} (known: {sorted(known)})")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})

    def apply(self, images: np.ndarray) -> np.ndarray:
        """uint8 ``[B, H, W, 3]`` RGB images -> float32 ``[B, 3, h, w]`` model input."""
        images = np.asarray(images)
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"images must be uint8 [B, H, W, 3], got {images.dtype} {images.shape}")
        h, w = self.size
        if images.shape[1:3] != (h, w):
            images = np.stack([_resize(img, (h, w), self.resize) for img in images]) if len(images) else \
                np.zeros((0, h, w, 3), np.uint8)
        x = images.astype(np.float32) / np.float32(255.0)
        x = (x - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)
        if self.channel_order == "BGR":
            x = x[..., ::-1]
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2), dtype=np.float32)

    def random_batch(self, batch: int, seed: int = 0) -> np.ndarray:
        """A random batch of model inputs with the value range real images would have."""
        rng = np.random.default_rng(seed)
        pixels = rng.integers(0, 256, size=(batch, *self.size, 3), dtype=np.uint8)
        return self.apply(pixels)


def _resize(image: np.ndarray, size: tuple[int, int], method: str) -> np.ndarray:
    h, w = size
    return np.asarray(Image.fromarray(image).resize((w, h), _RESIZE_FILTERS[method]), dtype=np.uint8)


@dataclass(frozen=True)
class ModelSpec:
    """What a model file needs besides its graph: preprocessing, class names, and export provenance."""

    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    classes: list[str] | None = None
    input_name: str = "images"
    output_name: str = "outputs"
    info: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"format": "epg-model-spec", "format_version": 1, "preprocessing": self.preprocessing.to_dict(),
                "classes": self.classes, "input_name": self.input_name, "output_name": self.output_name,
                "info": self.info}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelSpec:
        if data.get("format") != "epg-model-spec":
            raise ValueError(f"not an epg model spec (format {data.get('format')!r})")
        return cls(preprocessing=Preprocessing.from_dict(data.get("preprocessing", {})),
                   classes=data.get("classes"), input_name=data.get("input_name", "images"),
                   output_name=data.get("output_name", "outputs"), info=dict(data.get("info", {})))


def spec_path(model_path: str | os.PathLike[str]) -> Path:
    """Where the spec of ``model.onnx`` lives: ``model.onnx.json`` beside it."""
    model_path = Path(model_path)
    return model_path.with_name(model_path.name + ".json")


def write_spec(model_path: str | os.PathLike[str], spec: ModelSpec) -> Path:
    """Write the spec JSON beside the model, atomically."""
    target = spec_path(model_path)
    write_bytes_atomic(target, (json.dumps(spec.to_dict(), indent=2) + "\n").encode())
    return target


def read_spec(model_path: str | os.PathLike[str]) -> ModelSpec | None:
    """The spec beside ``model_path``, or None if there is none."""
    target = spec_path(model_path)
    if not target.exists():
        return None
    try:
        return ModelSpec.from_dict(json.loads(target.read_text()))
    except (json.JSONDecodeError, ValueError, TypeError) as exc:
        raise ValueError(f"{target}: invalid model spec ({str(exc).splitlines()[0]})") from None


# --------------------------------------------------------------------------- images


# --------------------------------------------------------------------------- providers and sessions


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
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {device!r}")
    provider = "CPUExecutionProvider"
    if device != "cpu" and _cuda_really_works():
        provider = "CUDAExecutionProvider"
    elif device == "cuda":
        raise ValueError("device 'cuda' requested but CUDAExecutionProvider does not initialise here")
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
            raise ValueError(f"{source}: ONNX model not found")
    try:
        return ort.InferenceSession(source, options, providers=providers)
    except Exception as exc:  # noqa: BLE001 - ORT raises several private exception types
        name = source if isinstance(source, str) else "in-memory model"
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"{name}: not a loadable ONNX model ({first[:200]})") from None


# --------------------------------------------------------------------------- outputs


def load_text_embeddings(path: str | os.PathLike[str]) -> np.ndarray:
    """Text embeddings for cosine outputs from a ``.npy`` file: ``[C, D]`` or ``[C, K, D]`` (K descriptions).

    With K descriptions per class the unit-normalised descriptions are averaged (the CLIP prompt-ensemble
    of the paper); the result is ``[C, D]`` with unit rows.
    """
    path = Path(path)
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ValueError(f"{path}: cannot read text embeddings as a .npy array ({first})") from None
    if array.ndim not in (2, 3) or not np.issubdtype(array.dtype, np.floating):
        raise ValueError(f"{path}: text embeddings must be float [C, D] or [C, K, D], got {array.dtype} {array.shape}")
    array = _unit(array.astype(np.float64))
    if array.ndim == 3:
        array = _unit(array.mean(axis=1))
    return array


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
            raise ValueError("output kind 'cosine' needs a text-embedding matrix (--text-embeddings FILE.npy)")
        if text_embeddings.shape[-1] != raw.shape[-1]:
            raise ValueError(f"image embeddings have dimension {raw.shape[-1]} but text embeddings "
                             f"{text_embeddings.shape[-1]}")
        return (_unit(raw) @ _unit(np.asarray(text_embeddings, np.float64)).T).astype(np.float32)
    raise ValueError(f"output kind {kind!r} not in {OUTPUT_KINDS}")


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
            raise ValueError(f"output kind {output_kind!r} not in {OUTPUT_KINDS}")
        if output_kind == "cosine" and text_embeddings is None:
            raise ValueError("output kind 'cosine' needs a text-embedding matrix (--text-embeddings FILE.npy)")
        if batch_size < 1:
            raise ValueError(f"batch size must be >= 1, got {batch_size}")
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
            return self.session.run(None, {self.input_name: batch})[0]
        except Exception as exc:  # noqa: BLE001 - ORT raises private exception types
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ValueError(f"ONNX Runtime failed on an input of shape {list(batch.shape)} "
                             f"(check --size against the model): {first[:200]}") from None

    def outputs(self, x: np.ndarray) -> np.ndarray:
        """Outputs of ``self.output_kind`` ``[B, C]`` for preprocessed inputs."""
        return postprocess(self.raw(x), self.output_kind, self.text_embeddings)


def default_classes(n: int, given: Sequence[str] | None = None) -> list[str]:
    """``given`` if its length fits, else ``class_0 ... class_{n-1}``."""
    if given:
        if len(given) != n:
            raise ValueError(f"{len(given)} class names given ({', '.join(given)}) but the model has {n} outputs")
        return [str(c) for c in given]
    return [f"class_{i}" for i in range(n)]


# --------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class InputSource:
    """Images to run: intervention sequences from an HDF5 file or one sequence of image files.

    ``sequences`` holds values and provenance (images not loaded); pixels are read, streamed in
    batches from HDF5, by :meth:`preprocessed`.
    """

    sequences: dict[str, InterventionSequence]
    h5_path: Path | None = None
    files: tuple[Path, ...] = ()

    def preprocessed(self, name: str, preprocessing: Preprocessing, batch_size: int = 64) -> np.ndarray:
        """All images of ``name`` as model input ``float32 [N, 3, h, w]`` (HDF5 pixels streamed in batches).

        Image files are preprocessed one by one, so files of different sizes are each resized once.
        """
        if name not in self.sequences:
            raise ValueError(f"no input sequence {name!r} (have {list(self.sequences)})")
        if self.h5_path is not None:
            parts = [preprocessing.apply(b) for b in iter_intervention_images(self.h5_path, name, batch_size)]
        else:
            parts = [preprocessing.apply(load_image(p)[None]) for p in self.files]
        h, w = preprocessing.size
        return np.concatenate(parts) if parts else np.zeros((0, 3, h, w), np.float32)


def _is_hdf5(path: Path) -> bool:
    if path.suffix.lower() in _HDF5_SUFFIXES:
        return True
    try:
        return path.is_file() and h5py.is_hdf5(path)
    except OSError:
        return False


def collect_inputs(
    inputs: Sequence[str | os.PathLike[str]],
    *,
    sequences: Sequence[str] | None = None,
    sequence_name: str = "images",
) -> InputSource:
    """One interventions file (all sequences, or ``sequences``), or image files forming one sequence.

    Image files keep the given order; their values are 0..N-1 and provenance ``source="frames"``.
    Every image file is opened and verified here, so a non-image fails before any work is done.
    """
    paths = [Path(p) for p in inputs]
    if not paths:
        raise ValueError("no inputs given: pass an interventions .h5 file or image files")
    h5 = [p for p in paths if _is_hdf5(p)]
    if h5:
        if len(paths) != 1:
            raise ValueError(f"give either one interventions file or image files, not both/several: {h5[0]}")
        seqs = read_interventions(paths[0], sequences, images=False)
        return InputSource(sequences=seqs, h5_path=paths[0])
    if sequences:
        raise ValueError("sequence names select sequences of an interventions file; none was given")
    first = load_image(paths[0])
    for path in paths[1:]:
        load_image(path)
    attrs = {"source": "frames", "property": "index", "unit": "", "includes_original": False,
             "files": [str(p) for p in paths]}
    seq = InterventionSequence(images=np.zeros((0, *first.shape), np.uint8),
                               values=np.arange(len(paths), dtype=np.float64), attrs=attrs)
    return InputSource(sequences={sequence_name: seq}, files=tuple(paths))

