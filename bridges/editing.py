"""Gradual diffusion edits: sweep an instruction-based editor over its guidance scale (paper Sec. 3, source 1).

Two editors from diffusers, both loaded from local files only (a local pipeline folder or a hub id already in
the Hugging Face cache; nothing is downloaded):

- InstructPix2Pix (``StableDiffusionInstructPix2PixPipeline``): the text guidance scale is swept, the image
  guidance scale and the seed stay fixed, so only the guidance scale changes between steps. Several scales run
  in ONE batched denoising loop with a per-sample guidance-scale vector; every sample starts from the same
  initial noise and sees the same scheduler noise as the stock pipeline called with
  ``generator=torch.Generator().manual_seed(seed)`` (one CPU generator per sample, all seeded alike), so the
  batched sweep reproduces the stock per-scale calls (tested to 1e-4).
- LEDITS++ (``LEditsPPPipelineStableDiffusion``): the image is inverted ONCE, then the edit guidance scale is
  swept in a loop of stock calls re-using that inversion. It is not batched: the stock attention store splits
  its batch dimension as if it were ordered (head, sample) while it is ordered (sample, head), so a batch of
  several scales would mix the cross-attention masks of different samples and no longer equal per-scale calls.

Step 0 of every sequence is the unedited original at the edit resolution (recorded as ``includes_original``).
fp16 on CUDA, fp32 on CPU. The safety checker is not loaded: it replaces flagged images with black frames,
which would break a gradual sequence (the authors' reference code disables it too).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import tempfile
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image

from epg_core import InterventionSequence

__all__ = [
    "METHODS",
    "Method",
    "default_guidance_scales",
    "validate_scales",
    "select_device",
    "check_tokenizer",
    "load_pipeline",
    "tiny_tokenizer",
    "tiny_random_pipeline",
    "prepare_edit_image",
    "pix2pix_sweep",
    "ledits_sweep",
    "edit_sequence",
]

Method = Literal["instruct-pix2pix", "ledits++"]
METHODS: tuple[str, ...] = ("instruct-pix2pix", "ledits++")

#: Per method: the value of the unedited step 0 (guidance off), the smallest allowed scale (exclusive),
#: the default number of denoising / inversion steps (the diffusers defaults) and the property name.
_METHOD_INFO: dict[str, dict[str, Any]] = {
    "instruct-pix2pix": {"original_value": 1.0, "minimum": 1.0, "steps": 100, "property": "text guidance scale"},
    "ledits++": {"original_value": 0.0, "minimum": 0.0, "steps": 30, "property": "edit guidance scale"},
}

_HOW_TO_PROVIDE = (
    "give --model a local diffusers pipeline folder (with model_index.json, e.g. from "
    "`huggingface-cli download timbrooks/instruct-pix2pix --local-dir DIR` on a machine with internet) "
    "or a hub id already in the Hugging Face cache (HF_HOME); epg never downloads models"
)
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.\-]*/[\w.\-]+")

Progress = Callable[[int], Any]


# ------------------------------------------------------------------------------------ scales, device


def _check_method(method: str) -> str:
    """Validate the editor name."""
    if method not in METHODS:
        raise ValueError(f"unknown editing method {method!r}; choose one of {', '.join(METHODS)}")
    return method


def default_guidance_scales(n: int = 100, stop: float = 15.0, *, start: float = 1.0) -> np.ndarray:
    """``n`` scales evenly spaced in ``(start, stop]``, i.e. ``linspace(start, stop, n + 1)[1:]``.

    ``start`` itself is left out: diffusers switches text guidance off at exactly 1.0 (InstructPix2Pix) and
    an edit guidance scale of 0 does nothing (LEDITS++); that unedited anchor is step 0 of the sequence.
    """
    if n < 1:
        raise ValueError(f"need at least one guidance scale, got n={n}")
    if not stop > start:
        raise ValueError(f"the largest guidance scale must exceed {start:g}, got {stop!r}")
    return np.linspace(float(start), float(stop), int(n) + 1)[1:]


def validate_scales(
    scales: Sequence[float] | np.ndarray, *, minimum: float = 1.0, name: str = "guidance scales"
) -> np.ndarray:
    """Scales as float64 ``[N]``: finite, all ``> minimum`` and strictly increasing, else a one-line ValueError."""
    s = np.asarray(scales, dtype=np.float64)
    if s.ndim != 1 or s.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D sequence, got shape {s.shape}")
    if not np.all(np.isfinite(s)):
        raise ValueError(f"{name} must be finite, got {s[~np.isfinite(s)][0]!r}")
    if np.any(s <= minimum):
        raise ValueError(
            f"{name} must all be > {minimum:g} (guidance is off at {minimum:g}), got {float(s[s <= minimum][0]):g}"
        )
    bad = np.flatnonzero(np.diff(s) <= 0)
    if bad.size:
        i = int(bad[0])
        raise ValueError(f"{name} must be strictly increasing, got {s[i]:g} then {s[i + 1]:g} at position {i + 1}")
    return s


def select_device(device: str | torch.device | None = None) -> tuple[torch.device, torch.dtype]:
    """Device (``None``/``"auto"``: CUDA if available, else CPU) and its dtype: fp16 on CUDA, fp32 on CPU."""
    if device is None or str(device) == "auto":
        dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        try:
            dev = torch.device(device)
        except (RuntimeError, TypeError):
            raise ValueError(f"unknown torch device {device!r}") from None
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device {device!r} requested but CUDA is not available")
    return dev, (torch.float16 if dev.type == "cuda" else torch.float32)


# --------------------------------------------------------------------------------------------- loading


def check_tokenizer(tokenizer: Any, *, probe: str = "a photo of a cat") -> None:
    """Refuse a silently broken tokenizer (e.g. one loaded without its vocabulary files).

    Such a tokenizer has only its special tokens and maps every word to the unknown token, so every
    instruction would become the same empty prompt. Raises a one-line ValueError.
    """
    if tokenizer is None:
        raise ValueError("the pipeline has no tokenizer")
    try:
        size = len(tokenizer)
        ids = list(tokenizer(probe).input_ids)
    except Exception as exc:  # noqa: BLE001 - any failure here means an unusable tokenizer
        raise ValueError(f"the tokenizer cannot encode text ({type(exc).__name__}: {exc})") from None
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    unk = getattr(tokenizer, "unk_token_id", None)
    if unk is not None:
        special.add(unk)
    words = [i for i in ids if i not in special]
    if size <= len(special) + 1 or not words:
        raise ValueError(
            f"the tokenizer is broken (vocabulary of {size} tokens; {probe!r} encodes to special tokens only): "
            "are its vocab.json/merges.txt or tokenizer.json missing from the model's tokenizer folder?"
        )


def _resolve_model(model: str | os.PathLike[str]) -> str:
    """A local pipeline folder (checked) or a hub id to look up in the local cache; ValueError otherwise."""
    name = os.fspath(model)
    path = Path(name).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ValueError(f"model path is not a folder: {path}; {_HOW_TO_PROVIDE}")
        if not (path / "model_index.json").is_file():
            raise ValueError(f"model folder has no model_index.json (not a diffusers pipeline): {path}")
        return str(path)
    if name.startswith((".", "/", "~")) or not _HUB_ID.fullmatch(name):
        raise ValueError(f"model path does not exist: {name}; {_HOW_TO_PROVIDE}")
    return name


@contextlib.contextmanager
def _quiet_libraries() -> Iterator[None]:
    """Silence diffusers' / transformers' logs, loading progress bars and FutureWarnings for a while.

    Loading prints accelerate hints, deprecation notices (``torch_dtype``), a torchvision fallback notice and
    two progress bars per component; none of it helps the user, whose own progress bar covers the sweep.
    """
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    loggers = [logging.getLogger(n) for n in ("diffusers", "transformers")]
    levels = [lg.level for lg in loggers]
    bars = [diffusers_logging.is_progress_bar_enabled(), transformers_logging.is_progress_bar_enabled()]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)
        if bars[0]:
            diffusers_logging.enable_progress_bar()
        if bars[1]:
            transformers_logging.enable_progress_bar()


def _pipeline_class(method: str) -> type:
    """The diffusers pipeline class of an editing method."""
    from diffusers import LEditsPPPipelineStableDiffusion, StableDiffusionInstructPix2PixPipeline

    return {"instruct-pix2pix": StableDiffusionInstructPix2PixPipeline, "ledits++": LEditsPPPipelineStableDiffusion}[
        _check_method(method)
    ]


def load_pipeline(
    model: str | os.PathLike[str],
    *,
    method: Method = "instruct-pix2pix",
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
) -> Any:
    """Load an editing pipeline from local files only (local folder or cached hub id), on ``device``.

    Fails fast with a one-line ValueError that says how to provide a model when it is missing, and refuses a
    pipeline whose tokenizer is broken. fp16 on CUDA and fp32 on CPU unless ``dtype`` is given.
    """
    _check_method(method)
    source = _resolve_model(model)
    dev, default_dtype = select_device(device)
    with _quiet_libraries():
        cls = _pipeline_class(method)
        try:
            pipe = cls.from_pretrained(
                source, local_files_only=True, torch_dtype=dtype or default_dtype,
                safety_checker=None, requires_safety_checker=False,
            )
        except Exception as exc:  # noqa: BLE001 - loader errors vary (OSError, ValueError, hub errors)
            raise ValueError(_load_error(model, source, method, exc)) from None
    check_tokenizer(pipe.tokenizer)
    pipe = pipe.to(dev)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _load_error(model: str | os.PathLike[str], source: str, method: str, exc: Exception) -> str:
    """One-line message for a failed load: a hub id missing from the cache, or a local folder that is broken."""
    if not Path(source).exists():
        from huggingface_hub import constants

        return (f"model {source!r} is not a local folder and not in the Hugging Face cache ({constants.HF_HUB_CACHE}); "
                f"{_HOW_TO_PROVIDE}")
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return f"cannot load {method} model from {_name_of(model)} ({type(exc).__name__}: {first})"


def _name_of(model: str | os.PathLike[str]) -> str:
    """A model argument as a plain string (for messages and provenance)."""
    return os.fspath(model)


# ----------------------------------------------------------------------------------- tiny pipelines


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2 / CLIP byte-to-printable-character table (the base alphabet of byte-level BPE)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("\xa1"), ord("\xac") + 1))
    bs += list(range(ord("\xae"), ord("\xff") + 1))
    cs = bs[:]
    extra = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + extra)
            extra += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


def tiny_tokenizer(model_max_length: int = 77) -> Any:
    """A byte-level CLIP tokenizer with a small vocabulary, built from vocab/merges files in a temp folder."""
    from transformers import CLIPTokenizer

    chars = list(_bytes_to_unicode().values())
    vocab: dict[str, int] = {}
    for c in chars:
        vocab[c] = len(vocab)
    for c in chars:
        vocab[c + "</w>"] = len(vocab)
    merges = [("a", "t</w>"), ("c", "at</w>"), ("o", "g</w>"), ("d", "og</w>"), ("e", "d</w>")]
    for a, b in merges:
        vocab.setdefault(a + b, len(vocab))
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    with tempfile.TemporaryDirectory() as tmp:
        vocab_file, merges_file = Path(tmp) / "vocab.json", Path(tmp) / "merges.txt"
        vocab_file.write_text(json.dumps(vocab), encoding="utf-8")
        merges_file.write_text("#version: 0.2\n" + "\n".join(f"{a} {b}" for a, b in merges) + "\n", encoding="utf-8")
        tokenizer = CLIPTokenizer(str(vocab_file), str(merges_file), model_max_length=model_max_length)
    check_tokenizer(tokenizer)
    return tokenizer


def tiny_random_pipeline(method: Method = "instruct-pix2pix", *, seed: int = 0, device: str = "cpu") -> Any:
    """A tiny random-weight editing pipeline (real diffusers code, nonsense images) for tests and benchmarks.

    VAE downsamples by 2; InstructPix2Pix gets an 8-channel UNet and the Euler-ancestral scheduler of the real
    model (stochastic, so it exercises the per-sample generators); LEDITS++ a 4-channel UNet with cross
    attention down to 1/4 of the latent size (its attention masks need it) and the SDE-DPM-Solver++ scheduler.
    Image sides must be multiples of 2 (InstructPix2Pix) or 32 (LEDITS++).
    """
    _check_method(method)
    tokenizer = tiny_tokenizer()
    with _quiet_libraries():
        from diffusers import (
            AutoencoderKL,
            DPMSolverMultistepScheduler,
            EulerAncestralDiscreteScheduler,
            UNet2DConditionModel,
        )
        from transformers import CLIPTextConfig, CLIPTextModel

        torch.manual_seed(seed)
        if method == "instruct-pix2pix":
            unet = UNet2DConditionModel(
                block_out_channels=(16, 32), layers_per_block=1, sample_size=16, in_channels=8, out_channels=4,
                down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
                cross_attention_dim=16, attention_head_dim=4, norm_num_groups=8,
            )
            scheduler: Any = EulerAncestralDiscreteScheduler(
                beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear"
            )
        else:
            unet = UNet2DConditionModel(
                block_out_channels=(16, 32, 32), layers_per_block=1, sample_size=16, in_channels=4, out_channels=4,
                down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
                up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
                cross_attention_dim=16, attention_head_dim=4, norm_num_groups=8,
            )
            scheduler = DPMSolverMultistepScheduler(algorithm_type="sde-dpmsolver++", solver_order=2, steps_offset=1)
        torch.manual_seed(seed + 1)
        vae = AutoencoderKL(
            block_out_channels=[16, 32], in_channels=3, out_channels=3,
            down_block_types=["DownEncoderBlock2D", "DownEncoderBlock2D"],
            up_block_types=["UpDecoderBlock2D", "UpDecoderBlock2D"],
            latent_channels=4, norm_num_groups=8, sample_size=32,
        )
        torch.manual_seed(seed + 2)
        text_encoder = CLIPTextModel(CLIPTextConfig(
            bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id, hidden_size=16, intermediate_size=32, num_attention_heads=2,
            num_hidden_layers=2, vocab_size=len(tokenizer), max_position_embeddings=tokenizer.model_max_length,
        ))
        pipe = _pipeline_class(method)(
            vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
            safety_checker=None, feature_extractor=None, requires_safety_checker=False,
        )
    pipe = pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    return pipe


# -------------------------------------------------------------------------------------------- sweeps


def _as_pil(image: Image.Image | np.ndarray) -> Image.Image:
    """An RGB PIL image from a PIL image or a uint8 ``[H, W, 3]`` array."""
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    arr = np.asarray(image)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"expected an RGB uint8 image [H, W, 3], got dtype {arr.dtype} and shape {arr.shape}")
    return Image.fromarray(arr)


def _size_multiple(pipe: Any, method: str) -> int:
    """Image sides must be multiples of this: the VAE factor (InstructPix2Pix) or 32 (LEDITS++ requires it)."""
    factor = int(getattr(pipe, "vae_scale_factor", 8))
    return max(factor, 32) if method == "ledits++" else factor


def prepare_edit_image(
    image: Image.Image | np.ndarray, *, size: int | Sequence[int] | None = None, multiple: int = 8
) -> Image.Image:
    """Resize to ``size = (width, height)`` (an int: square) if given, then down to multiples of ``multiple``.

    This is the exact picture the editor sees, so it is also step 0 (the unedited original) of the sequence.
    """
    pil = _as_pil(image)
    if size is not None:
        wh = (int(size), int(size)) if isinstance(size, (int, np.integer)) else (int(size[0]), int(size[1]))
        if min(wh) < 1:
            raise ValueError(f"edit size must be positive, got {size!r}")
        if pil.size != wh:
            pil = pil.resize(wh, Image.Resampling.BICUBIC)
    w, h = (pil.width // multiple) * multiple, (pil.height // multiple) * multiple
    if w < multiple or h < multiple:
        raise ValueError(f"image of size {pil.width}x{pil.height} is smaller than the editor's minimum {multiple}px")
    if (w, h) != pil.size:
        pil = pil.resize((w, h), Image.Resampling.BICUBIC)
    return pil


def _chunks(n: int, size: int) -> list[slice]:
    """Consecutive slices of at most ``size`` covering ``range(n)``."""
    if size < 1:
        raise ValueError(f"batch size must be >= 1, got {size}")
    return [slice(i, min(i + size, n)) for i in range(0, n, size)]


def _repeat_blocks(x: torch.Tensor, b: int) -> torch.Tensor:
    """``[k, ...]`` -> ``[k * b, ...]`` with each of the k blocks repeated ``b`` times (block-major order)."""
    return x.repeat_interleave(b, dim=0)


@torch.no_grad()
def pix2pix_sweep(
    pipe: Any,
    image: Image.Image | np.ndarray,
    instruction: str,
    guidance_scales: Sequence[float] | np.ndarray,
    *,
    image_guidance_scale: float = 2.5,
    num_inference_steps: int = 100,
    seed: int = 0,
    batch_size: int = 8,
    progress: Progress | None = None,
) -> np.ndarray:
    """Edit ``image`` once per text guidance scale, ``batch_size`` scales per denoising loop.

    Returns float32 ``[N, H, W, 3]`` in ``[0, 1]``, equal (up to float rounding) to the stock calls
    ``pipe(instruction, image=image, guidance_scale=g, image_guidance_scale=..., num_inference_steps=...,
    generator=torch.Generator().manual_seed(seed), output_type="np")`` for each ``g``. The prompt and the
    image are encoded once; the per-sample text scale is a ``[B, 1, 1, 1]`` vector in the guidance formula.
    ``image`` should already have sides that are multiples of the VAE factor (see :func:`prepare_edit_image`).
    """
    scales = validate_scales(guidance_scales, minimum=1.0, name="text guidance scales")
    if not image_guidance_scale >= 1.0:
        raise ValueError(f"image guidance scale must be >= 1 (guidance is off below 1), got {image_guidance_scale!r}")
    if num_inference_steps < 1:
        raise ValueError(f"num_inference_steps must be >= 1, got {num_inference_steps}")
    pil = _as_pil(image)
    device = pipe._execution_device
    prompt_embeds = pipe._encode_prompt(instruction, device, 1, True)  # [text, uncond, uncond]
    dtype = prompt_embeds.dtype
    pixels = pipe.image_processor.preprocess(pil)
    image_latents = pipe.prepare_image_latents(pixels, 1, 1, dtype, device, True)  # [image, image, zeros]
    height = image_latents.shape[-2] * pipe.vae_scale_factor
    width = image_latents.shape[-1] * pipe.vae_scale_factor
    n_latent = pipe.vae.config.latent_channels
    if n_latent + image_latents.shape[1] != pipe.unet.config.in_channels:
        raise ValueError(f"the UNet expects {pipe.unet.config.in_channels} input channels, "
                         f"not {n_latent} + {image_latents.shape[1]}: is this an InstructPix2Pix model?")
    out = np.empty((scales.size, height, width, 3), dtype=np.float32)
    for sl in _chunks(scales.size, batch_size):
        out[sl] = _pix2pix_batch(
            pipe, prompt_embeds, image_latents, scales[sl], float(image_guidance_scale),
            num_inference_steps, seed, (height, width), progress,
        )
    return out


def _pix2pix_batch(
    pipe: Any,
    prompt_embeds: torch.Tensor,
    image_latents: torch.Tensor,
    scales: np.ndarray,
    image_guidance_scale: float,
    num_inference_steps: int,
    seed: int,
    hw: tuple[int, int],
    progress: Progress | None,
) -> np.ndarray:
    """One batched denoising loop for ``len(scales)`` text guidance scales (the stock loop, vectorised)."""
    b = int(scales.size)
    device, dtype = prompt_embeds.device, prompt_embeds.dtype
    generators = [torch.Generator().manual_seed(int(seed)) for _ in range(b)]
    pipe.scheduler.set_timesteps(num_inference_steps, device=device)
    timesteps = pipe.scheduler.timesteps
    latents = pipe.prepare_latents(b, pipe.vae.config.latent_channels, hw[0], hw[1], dtype, device, generators)
    embeds = _repeat_blocks(prompt_embeds, b)  # [text*b, uncond*b, uncond*b]
    cond = _repeat_blocks(image_latents, b)  # [image*b, image*b, zeros*b]
    extra = pipe.prepare_extra_step_kwargs(generators, 0.0)
    # float32 scales, product rounded back to the model dtype: the same arithmetic as the stock pipeline's
    # python-float scale (computed in float32, rounded once) also in fp16 on CUDA
    g = torch.as_tensor(scales, dtype=torch.float32, device=device).view(b, 1, 1, 1)
    for t in timesteps:
        model_input = pipe.scheduler.scale_model_input(torch.cat([latents] * 3), t)
        model_input = torch.cat([model_input, cond], dim=1)
        noise = pipe.unet(model_input, t, encoder_hidden_states=embeds, return_dict=False)[0]
        text, img, uncond = noise.chunk(3)
        noise = uncond + (g * (text - img)).to(dtype) + image_guidance_scale * (img - uncond)
        latents = pipe.scheduler.step(noise, t, latents, **extra, return_dict=False)[0]
        if progress is not None:
            progress(1)
    decoded = pipe.vae.decode(latents / pipe.vae.config.scaling_factor, return_dict=False)[0]
    return pipe.image_processor.postprocess(decoded, output_type="np", do_denormalize=[True] * b)


@torch.no_grad()
def ledits_sweep(
    pipe: Any,
    image: Image.Image | np.ndarray,
    editing_prompt: str,
    edit_guidance_scales: Sequence[float] | np.ndarray,
    *,
    num_inversion_steps: int = 30,
    skip: float = 0.15,
    source_prompt: str = "",
    source_guidance_scale: float = 3.5,
    edit_threshold: float = 0.9,
    reverse_editing_direction: bool = False,
    seed: int = 0,
    progress: Progress | None = None,
) -> np.ndarray:
    """LEDITS++: invert ``image`` once (noise from ``seed``), then one stock edit call per edit guidance scale.

    Returns float32 ``[N, H, W, 3]`` in ``[0, 1]``. Not batched (see the module docstring): the loop re-uses
    the inversion, which is what a per-scale sweep costs beyond the edit calls themselves.
    """
    scales = validate_scales(edit_guidance_scales, minimum=0.0, name="edit guidance scales")
    if num_inversion_steps < 1:
        raise ValueError(f"num_inversion_steps must be >= 1, got {num_inversion_steps}")
    if not 0.0 <= skip < 1.0:
        raise ValueError(f"skip must lie in [0, 1), got {skip!r}")
    pil = _as_pil(image)
    if pil.width % 32 or pil.height % 32:
        raise ValueError(f"LEDITS++ needs image sides that are multiples of 32, got {pil.width}x{pil.height}")
    with _quiet_libraries():
        pipe.invert(
            image=pil, source_prompt=source_prompt, source_guidance_scale=source_guidance_scale,
            num_inversion_steps=int(num_inversion_steps), skip=float(skip),
            generator=torch.Generator().manual_seed(int(seed)),
        )
    if progress is not None:
        progress(int(num_inversion_steps))

    def _step_done(_pipe: Any, _i: int, _t: Any, _kwargs: dict[str, Any]) -> dict[str, Any]:
        if progress is not None:
            progress(1)
        return {}

    images = []
    for g in scales:
        result = pipe(
            editing_prompt=[editing_prompt], edit_guidance_scale=[float(g)], edit_threshold=[float(edit_threshold)],
            reverse_editing_direction=[bool(reverse_editing_direction)], output_type="np",
            callback_on_step_end=_step_done,
        )
        images.append(np.asarray(result.images[0], dtype=np.float32))
    return np.stack(images)


# ------------------------------------------------------------------------------------- whole sequence


def _float_to_uint8(images: np.ndarray) -> np.ndarray:
    """Float images in [0, 1] to uint8 as diffusers' ``numpy_to_pil`` does (``round(x * 255)``)."""
    return np.clip(np.rint(np.asarray(images, dtype=np.float64) * 255.0), 0, 255).astype(np.uint8)


def edit_sequence(
    image: Image.Image | np.ndarray,
    instruction: str,
    *,
    pipe: Any | None = None,
    model: str | os.PathLike[str] | None = None,
    method: Method = "instruct-pix2pix",
    guidance_scales: Sequence[float] | np.ndarray | None = None,
    image_guidance_scale: float = 2.5,
    num_inference_steps: int | None = None,
    seed: int = 0,
    batch_size: int = 8,
    size: int | Sequence[int] | None = None,
    device: str | torch.device | None = None,
    quiet: bool = False,
    skip: float = 0.15,
    edit_threshold: float = 0.9,
    reverse_editing_direction: bool = False,
) -> InterventionSequence:
    """A gradual edit of ``image`` by ``instruction``: step 0 is the original, steps 1..N the guidance sweep.

    Give a loaded ``pipe`` or a ``model`` (local folder / cached hub id, loaded with :func:`load_pipeline` on
    ``device``); with both, ``model`` only names the editor in the provenance. ``guidance_scales`` default to :func:`default_guidance_scales` (100 values in
    (1, 15] for InstructPix2Pix, in (0, 15] for LEDITS++). Step 0 holds the unedited image at the edit
    resolution with value 1.0 (InstructPix2Pix: text guidance off) or 0.0 (LEDITS++: no edit guidance).
    ``num_inference_steps`` defaults to diffusers' defaults (100 denoising steps; 30 LEDITS++ inversion
    steps). ``skip``, ``edit_threshold`` and ``reverse_editing_direction`` apply to LEDITS++ only.
    """
    from tqdm.auto import tqdm

    _check_method(method)
    info = _METHOD_INFO[method]
    if not instruction or not instruction.strip():
        raise ValueError("the edit instruction is empty")
    if pipe is None:
        if model is None:
            raise ValueError(f"give a model to edit with; {_HOW_TO_PROVIDE}")
        pipe = load_pipeline(model, method=method, device=device)
    scales = validate_scales(
        default_guidance_scales(start=info["minimum"]) if guidance_scales is None else guidance_scales,
        minimum=info["minimum"], name=f"{info['property']}s",
    )
    steps = int(num_inference_steps or info["steps"])
    if batch_size < 1:
        raise ValueError(f"batch size must be >= 1, got {batch_size}")
    pil = prepare_edit_image(image, size=size, multiple=_size_multiple(pipe, method))
    total = steps * scales.size + (steps if method == "ledits++" else 0)
    with tqdm(total=total, disable=quiet, desc=f"{method} sweep", unit="step", leave=False) as bar:
        if method == "instruct-pix2pix":
            edits = pix2pix_sweep(
                pipe, pil, instruction, scales, image_guidance_scale=image_guidance_scale,
                num_inference_steps=steps, seed=seed, batch_size=batch_size, progress=bar.update,
            )
        else:
            edits = ledits_sweep(
                pipe, pil, instruction, scales, num_inversion_steps=steps, skip=skip,
                edit_threshold=edit_threshold, reverse_editing_direction=reverse_editing_direction,
                seed=seed, progress=bar.update,
            )
    original = np.asarray(pil, dtype=np.uint8)
    images = np.concatenate([original[None], _float_to_uint8(edits)], axis=0)
    values = np.concatenate([[info["original_value"]], scales])
    attrs = _edit_attrs(pipe, model, method, instruction, scales, image_guidance_scale, steps, seed, batch_size,
                        pil.size, skip, edit_threshold, reverse_editing_direction)
    return InterventionSequence(images=images, values=values, attrs=attrs)


def _edit_attrs(
    pipe: Any, model: str | os.PathLike[str] | None, method: str, instruction: str, scales: np.ndarray,
    image_guidance_scale: float, steps: int, seed: int, batch_size: int, wh: tuple[int, int],
    skip: float, edit_threshold: float, reverse: bool,
) -> dict[str, Any]:
    """Provenance of an edit sweep (everything needed to reproduce it)."""
    import diffusers

    info = _METHOD_INFO[method]
    unet = pipe.unet
    attrs: dict[str, Any] = {
        "source": "edit",
        "edit": method,
        "property": info["property"],
        "unit": "",
        "includes_original": True,
        "original_value": info["original_value"],
        "instruction": instruction,
        "guidance_scales": [float(s) for s in scales],
        "seed": int(seed),
        "editor_model": _name_of(model) if model is not None else str(getattr(pipe, "name_or_path", "") or ""),
        "editor_pipeline": type(pipe).__name__,
        "scheduler": type(pipe.scheduler).__name__,
        "num_inference_steps": int(steps),
        "width": int(wh[0]),
        "height": int(wh[1]),
        "dtype": str(unet.dtype).replace("torch.", ""),
        "device": str(unet.device),
        "generator": "torch.Generator() on the CPU, manual_seed(seed), one per sample",
        "diffusers_version": diffusers.__version__,
        "safety_checker": False,
    }
    if method == "instruct-pix2pix":
        attrs.update(image_guidance_scale=float(image_guidance_scale), batch_size=int(batch_size), batched=True)
    else:
        attrs.update(skip=float(skip), edit_threshold=float(edit_threshold),
                     reverse_editing_direction=bool(reverse), batched=False)
    return attrs
