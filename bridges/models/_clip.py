"""CLIP zero-shot models: the image tower to ONNX, prompt embeddings beside it, per-class and per-prompt cosines.

:func:`export_clip` turns a transformers ``CLIPModel`` folder plus a prompts file into ``clip.onnx`` (image
tower and projection; the usual spec ``clip.onnx.json``) and ``clip.onnx.text.npz`` (every prompt's unit text
embedding, its class, the prompt texts and ``logit_scale``). The prompts file is TOML::

    [classes]
    cat = ["a photo of a cat", "a blurry photo of a cat"]
    dog = ["a photo of a dog"]

With it, an image's output for a class is the mean over that class's prompts of the cosine between image and
prompt embeddings (the paper's value, Sec. 4.4: not the cosine with the mean prompt embedding, which is
scaled by 1/|mean|); every prompt's cosine is kept as ``prompt_outputs`` ``[M, N, P]``
(:func:`predict_clip`).
"""

from __future__ import annotations

import io
import json
import os
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from epg_core import DataError, OutputsBlock, UsageError, write_bytes_atomic, write_outputs

from .._progress import Counter, Progress
from ._inputs import InputSource, collect_inputs
from ._preprocessing import Notice, default_notice
from ._runner import OnnxRunner
from ._spec import Preprocessing, read_spec

__all__ = ["ClipText", "ClipExport", "read_prompts", "text_path", "load_clip_text", "export_clip", "predict_clip",
           "prompt_block", "CLIP_MEAN", "CLIP_STD"]

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
_TEXT_SUFFIX = ".text.npz"


@dataclass(frozen=True)
class ClipText:
    """Unit text embeddings ``[P, D]`` of every prompt, each prompt's class index, texts and ``logit_scale``."""

    classes: list[str]
    prompts: list[str]
    prompt_class: np.ndarray
    embeddings: np.ndarray
    logit_scale: float

    def outputs(self, image_embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Image embeddings ``[B, D]`` -> (per-class mean cosine ``[B, C]``, per-prompt cosine ``[B, P]``)."""
        img = np.asarray(image_embeddings, np.float64).reshape(len(image_embeddings), -1)
        if img.shape[1] != self.embeddings.shape[1]:
            raise DataError(f"image embeddings have dimension {img.shape[1]}, the prompts {self.embeddings.shape[1]}")
        norm = np.linalg.norm(img, axis=1, keepdims=True)
        cos = (img / np.where(norm == 0, 1.0, norm)) @ self.embeddings.astype(np.float64).T
        per_class = np.stack([cos[:, self.prompt_class == c].mean(axis=1) for c in range(len(self.classes))], axis=1)
        return per_class.astype(np.float32), cos.astype(np.float32)

    @property
    def prompt_classes(self) -> list[str]:
        return [self.classes[int(i)] for i in self.prompt_class]


@dataclass(frozen=True)
class ClipExport:
    """What :func:`export_clip` wrote."""

    onnx_path: Path
    spec_path: Path
    text_path: Path
    max_abs_diff: float
    text: ClipText


def read_prompts(path: str | os.PathLike[str]) -> dict[str, list[str]]:
    """The ``[classes]`` table of a prompts TOML file: class -> non-empty list of prompts (order kept)."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"{path}: prompts file not found") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"{path}: not a readable TOML prompts file ({str(exc).splitlines()[0]})") from None
    table = data.get("classes")
    if not isinstance(table, dict) or not table:
        raise UsageError(f"{path}: needs a [classes] table of class = [\"prompt\", ...]")
    out: dict[str, list[str]] = {}
    for name, prompts in table.items():
        prompts = [prompts] if isinstance(prompts, str) else prompts
        if not isinstance(prompts, list) or not prompts or not all(isinstance(p, str) and p.strip() for p in prompts):
            raise UsageError(f"{path}: class {name!r} needs a non-empty list of non-empty prompt strings")
        out[str(name)] = [p.strip() for p in prompts]
    return out


def text_path(onnx_path: str | os.PathLike[str]) -> Path:
    """Where the prompt embeddings of ``clip.onnx`` live: ``clip.onnx.text.npz``."""
    onnx_path = Path(onnx_path)
    return onnx_path.with_name(onnx_path.name + _TEXT_SUFFIX)


def load_clip_text(onnx_path: str | os.PathLike[str]) -> ClipText | None:
    """The prompt embeddings beside a CLIP ``.onnx`` file (None when the model is not a CLIP export)."""
    target = text_path(onnx_path)
    if not target.exists():
        return None
    try:
        with np.load(target, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"][()]))
            embeddings = np.asarray(data["embeddings"], np.float32)
            prompt_class = np.asarray(data["prompt_class"], np.int64)
        classes, prompts, scale = list(meta["classes"]), list(meta["prompts"]), float(meta["logit_scale"])
    except (OSError, KeyError, ValueError, TypeError) as exc:
        raise DataError(f"{target}: unreadable CLIP prompt embeddings ({exc})") from None
    p = len(prompts)
    if embeddings.ndim != 2 or embeddings.shape[0] != p or prompt_class.shape != (p,) or not p \
            or prompt_class.min() < 0 or prompt_class.max() >= len(classes) \
            or set(range(len(classes))) - set(prompt_class.tolist()):
        raise DataError(f"{target}: inconsistent CLIP prompt embeddings")
    return ClipText(classes, prompts, prompt_class, embeddings, scale)


def _check_tokenizer(tokenizer: Any, vocab_size: int, where: Path) -> None:
    """Refuse a tokenizer that lost its vocabulary (``from_pretrained`` of a folder without one still works)."""
    probe = "a photo of a cat"
    try:
        ids = list(tokenizer(probe).input_ids)
        size = len(tokenizer)
    except Exception as exc:  # noqa: BLE001 - any failure here means an unusable tokenizer
        raise DataError(f"{where}: the tokenizer cannot encode text ({type(exc).__name__}: {exc})") from None
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    if getattr(tokenizer, "unk_token_id", None) is not None:
        special.add(tokenizer.unk_token_id)
    if size <= len(special) + 1 or not [i for i in ids if i not in special]:
        raise DataError(f"{where}: the tokenizer is broken (vocabulary of {size} tokens; {probe!r} encodes to "
                        "special tokens only): are vocab.json/merges.txt or tokenizer.json missing?")
    if size > vocab_size:
        raise DataError(f"{where}: the tokenizer has {size} tokens but the text model only {vocab_size}")


def export_clip(
    folder: str | os.PathLike[str],
    prompts_toml: str | os.PathLike[str],
    out_onnx: str | os.PathLike[str],
    *,
    atol: float = 1e-4,
    threads: int = 1,
    notice: Notice | None = None,
    progress: Progress | None = None,
) -> ClipExport:
    """Export a transformers CLIPModel folder's image tower (+ projection) and embed every prompt of every class.

    Preprocessing comes from the folder's ``preprocessor_config.json``, else CLIP's own (shortest-side resize to
    the config's image size, centre crop, bicubic, CLIP mean/std) with a notice. The ONNX export is verified
    against torch like every export. ``progress(done, 3)`` counts the steps: model loaded, prompts embedded,
    image tower exported.
    """
    import torch
    from transformers import AutoTokenizer, CLIPConfig, CLIPModel

    from ._architectures import load_weights
    from ._export import export_onnx
    from ._layouts import load_checkpoint

    folder, out_onnx = Path(folder), Path(out_onnx)
    table = read_prompts(prompts_toml)
    counter = Counter(progress, 3)
    ckpt = load_checkpoint(folder, notice=notice)
    if ckpt.config is None or ckpt.config.get("model_type") != "clip":
        raise UsageError(f"{folder}: not a transformers CLIPModel folder (config model_type "
                         f"{(ckpt.config or {}).get('model_type')!r})")
    try:
        model: Any = CLIPModel(CLIPConfig.from_pretrained(str(folder))).float().eval()
        tokenizer = AutoTokenizer.from_pretrained(str(folder))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"{folder}: cannot build the CLIP model or its tokenizer ({first})") from None
    load_weights(model, ckpt.state_dict, folder, notice)
    _check_tokenizer(tokenizer, int(model.config.text_config.vocab_size), folder)
    counter.add()
    prep = ckpt.preprocessing
    if prep is None:
        size = int(model.config.vision_config.image_size)
        prep = Preprocessing(size=(size, size), resize="shortest", crop="center", interpolation="bicubic",
                             mean=CLIP_MEAN, std=CLIP_STD)
        (notice or default_notice)(f"{folder}: no preprocessor_config.json; using CLIP's preprocessing at {size} px")

    classes = list(table)
    prompts = [p for c in classes for p in table[c]]
    owner = np.array([i for i, c in enumerate(classes) for _ in table[c]], np.int64)
    limit = int(model.config.text_config.max_position_embeddings)
    with torch.no_grad():
        tokens = tokenizer(prompts, padding=True, truncation=True, max_length=limit, return_tensors="pt")
        pooled = model.text_model(input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"]).pooler_output
        text = model.text_projection(pooled).double()
        text = (text / text.norm(dim=-1, keepdim=True)).float().numpy()
        scale = float(model.logit_scale.exp().item())
    clip_text = ClipText(classes, prompts, owner, text, scale)
    counter.add()

    tower = _image_tower(model).eval()
    result = export_onnx(tower, out_onnx, preprocessing=prep, classes=classes, atol=atol, threads=threads,
                         info={"clip": {"text_embeddings": text_path(out_onnx).name, "prompts": len(prompts),
                                        "logit_scale": scale, "source": str(folder)},
                               "output_kind": "cosine"})
    buffer = io.BytesIO()
    meta = {"format": "epg-clip-text", "classes": classes, "prompts": prompts, "logit_scale": scale}
    np.savez(buffer, meta=np.array(json.dumps(meta)), embeddings=text, prompt_class=owner)
    write_bytes_atomic(text_path(out_onnx), buffer.getvalue())
    counter.add()
    return ClipExport(result.onnx_path, result.spec_path, text_path(out_onnx), result.max_abs_diff, clip_text)


def _image_tower(clip: Any) -> Any:
    """CLIP's vision transformer and visual projection as one module (torch is imported only here)."""
    import torch
    from torch import nn

    class ImageTower(nn.Module):
        """CLIP's vision transformer and visual projection: images -> unnormalised image embeddings."""

        def __init__(self, clip: Any) -> None:
            super().__init__()
            self.vision_model: nn.Module = clip.vision_model
            self.visual_projection: nn.Module = clip.visual_projection

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.visual_projection(self.vision_model(pixel_values=x).pooler_output)

    return ImageTower(clip)


def predict_clip(
    model: str | os.PathLike[str],
    inputs: Sequence[str | os.PathLike[str]] | InputSource,
    out: str | os.PathLike[str],
    *,
    model_name: str | None = None,
    sequences: Sequence[str] | None = None,
    preprocessing: Preprocessing | None = None,
    batch_size: int = 32,
    threads: int = 1,
    attrs: Mapping[str, Any] | None = None,
    progress: Progress | None = None,
) -> list[OutputsBlock]:
    """Run a CLIP export on the inputs; store per-class mean cosines (``cosine``) and every prompt's cosine.

    ``progress(done, total)`` counts sequences.
    """
    model = Path(model)
    text = load_clip_text(model)
    if text is None:
        raise UsageError(f"{model}: no prompt embeddings beside it ({text_path(model).name}); make it with "
                         "`epg export-clip`")
    spec = read_spec(model)
    prep = preprocessing or (spec.preprocessing if spec else None)
    if prep is None:
        raise UsageError(f"{model}: no spec beside the model; give its preprocessing")
    source = inputs if isinstance(inputs, InputSource) else collect_inputs(inputs, sequences=sequences)
    if not source.sequences:
        raise DataError(f"{source.h5_path or 'the inputs'}: no sequences to run the model on")
    runner = OnnxRunner(model, output_kind="logits", threads=threads, batch_size=batch_size)
    blocks = []
    counter = Counter(progress, len(source.sequences))
    for name, seq in source.sequences.items():
        per_class, per_prompt = text.outputs(runner.raw(source.preprocessed(name, prep)))
        blocks.append(OutputsBlock(
            model=model_name or model.stem, sequence=name, outputs=per_class[None], done=np.array([True]),
            checkpoints=[model.stem], classes=text.classes, values=seq.values, output_kind="cosine",
            preprocessing=prep.to_dict(), attrs={**seq.attrs, **dict(attrs or {}), "model_architecture": "clip"},
            prompt_outputs=per_prompt[None], prompts=text.prompts, prompt_classes=text.prompt_classes,
            logit_scale=text.logit_scale))
        counter.add()
    write_outputs(out, blocks)
    return blocks


def prompt_block(block: OutputsBlock, model: str | None = None) -> OutputsBlock:
    """A CLIP block's per-prompt cosines as an ordinary block (one output per prompt), e.g. to score them."""
    if block.prompt_outputs is None or block.prompts is None or block.prompt_classes is None:
        raise UsageError(f"{block.model}/{block.sequence} has no prompt outputs")
    names = [f"{c}: {p}" for c, p in zip(block.prompt_classes, block.prompts, strict=True)]
    return OutputsBlock(model=model or f"{block.model}.prompts", sequence=block.sequence,
                        outputs=block.prompt_outputs, done=block.done, checkpoints=block.checkpoints, classes=names,
                        values=block.values, output_kind="cosine", preprocessing=block.preprocessing,
                        attrs=block.attrs)
