"""Tiny random-weight editing pipelines (real diffusers code, nonsense images) for tests and benchmarks."""

from __future__ import annotations

import contextlib
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from ..interventions import check_tokenizer, quiet_libraries

__all__ = ["tiny_tokenizer", "tiny_random_pipeline", "TINY_EDITORS", "tiny_t5_tokenizer", "tiny_qwen_tokenizer",
           "stock_edit", "small_qwen_condition"]

#: the editors whose tiny pipeline ``tiny_random_pipeline`` builds
TINY_EDITORS = ("instruct-pix2pix", "ledits++", "cosxl", "mgie", "qwen-image-edit", "flux-kontext")


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
    return {b: chr(c) for b, c in zip(bs, cs, strict=True)}


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


def tiny_t5_tokenizer(max_length: int = 32) -> Any:
    """A T5 (sentencepiece unigram) tokenizer with a tiny vocabulary built in memory."""
    from transformers import T5Tokenizer

    pieces = ["<pad>", "</s>", "<unk>", "\u2581", *[f"\u2581{w}" for w in ("a", "make", "it", "cat", "dog", "the")],
              *list("abcdefghijklmnopqrstuvwxyz")]
    tok = T5Tokenizer(vocab=[(p, -float(i)) for i, p in enumerate(pieces)], extra_ids=0, model_max_length=max_length)
    check_tokenizer(tok)
    return tok


def tiny_qwen_tokenizer() -> Any:
    """A byte-level Qwen2 tokenizer (no merges) with the chat and vision special tokens of Qwen2.5-VL."""
    from transformers import Qwen2Tokenizer

    vocab = {c: i for i, c in enumerate(_bytes_to_unicode().values())}
    tok = Qwen2Tokenizer(vocab=vocab, merges=[])
    tok.add_special_tokens({"additional_special_tokens": [
        "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]})
    check_tokenizer(tok)
    return tok


def tiny_random_pipeline(method: str = "instruct-pix2pix", *, seed: int = 0, device: str = "cpu") -> Any:
    """A tiny random-weight editing pipeline (real diffusers code, nonsense images) for tests and benchmarks.

    ``method``: one of :data:`TINY_EDITORS` (``mgie`` is an InstructPix2Pix pipeline). InstructPix2Pix's VAE
    downsamples by 2; see each builder for its sizes.
    """
    builders = {"instruct-pix2pix": _sd_pipeline, "mgie": _sd_pipeline, "ledits++": _sd_pipeline,
                "cosxl": _cosxl_pipeline, "qwen-image-edit": _qwen_pipeline, "flux-kontext": _flux_kontext_pipeline}
    if method not in builders:
        from epg_core import UsageError

        raise UsageError(f"no tiny pipeline for {method!r}; use one of {', '.join(builders)}")
    with quiet_libraries():
        pipe = builders[method]("ledits++" if method == "ledits++" else "instruct-pix2pix", seed)
    pipe = pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _tiny_vae(seed: int) -> Any:
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    return AutoencoderKL(
        # diffusers annotates these as 1-tuples; any sequence works
        block_out_channels=[16, 32], in_channels=3, out_channels=3,  # pyright: ignore[reportArgumentType]
        down_block_types=["DownEncoderBlock2D", "DownEncoderBlock2D"],  # pyright: ignore[reportArgumentType]
        up_block_types=["UpDecoderBlock2D", "UpDecoderBlock2D"],  # pyright: ignore[reportArgumentType]
        latent_channels=4, norm_num_groups=8, sample_size=32,
    )


def _clip_text(tokenizer: Any, seed: int, hidden: int = 16, projection: bool = False) -> Any:
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(seed)
    config = CLIPTextConfig(
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, hidden_size=hidden, intermediate_size=32, num_attention_heads=2,
        num_hidden_layers=2, vocab_size=len(tokenizer), max_position_embeddings=tokenizer.model_max_length,
        projection_dim=hidden,
    )
    return CLIPTextModelWithProjection(config) if projection else CLIPTextModel(config)


def _sd_pipeline(method: str, seed: int) -> Any:
    """InstructPix2Pix (8-channel UNet, Euler-ancestral as the real model: stochastic, so it exercises the
    per-item generators) or LEDITS++ (4-channel UNet with cross attention down to 1/4 of the latent size, as
    its attention masks need; SDE-DPM-Solver++). Sides: multiples of 2 (InstructPix2Pix) or 32 (LEDITS++)."""
    from diffusers import (
        DPMSolverMultistepScheduler,
        EulerAncestralDiscreteScheduler,
        LEditsPPPipelineStableDiffusion,
        StableDiffusionInstructPix2PixPipeline,
        UNet2DConditionModel,
    )

    tokenizer = tiny_tokenizer()
    torch.manual_seed(seed)
    if method == "instruct-pix2pix":
        unet = UNet2DConditionModel(
            block_out_channels=(16, 32), layers_per_block=1, sample_size=16, in_channels=8, out_channels=4,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            cross_attention_dim=16, attention_head_dim=4, norm_num_groups=8,
        )
        scheduler: Any = EulerAncestralDiscreteScheduler(beta_start=0.00085, beta_end=0.012,
                                                         beta_schedule="scaled_linear")
        cls: Any = StableDiffusionInstructPix2PixPipeline
    else:
        unet = UNet2DConditionModel(
            block_out_channels=(16, 32, 32), layers_per_block=1, sample_size=16, in_channels=4, out_channels=4,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
            cross_attention_dim=16, attention_head_dim=4, norm_num_groups=8,
        )
        scheduler = DPMSolverMultistepScheduler(algorithm_type="sde-dpmsolver++", solver_order=2, steps_offset=1)
        cls = LEditsPPPipelineStableDiffusion
    vae = _tiny_vae(seed + 1)
    text_encoder = _clip_text(tokenizer, seed + 2)
    return cls(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
               safety_checker=None, feature_extractor=None, requires_safety_checker=False)


def _cosxl_pipeline(_method: str, seed: int) -> Any:
    """SDXL InstructPix2Pix with two text encoders (16 + 16 wide), micro-conditioning, the CosXL EDM scheduler
    and ``is_cosxl_edit``; sides: multiples of 2."""
    from diffusers import EDMEulerScheduler, StableDiffusionXLInstructPix2PixPipeline, UNet2DConditionModel

    tok, tok2 = tiny_tokenizer(), tiny_tokenizer()
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(16, 32), layers_per_block=1, sample_size=16, in_channels=8, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4), use_linear_projection=True,  # pyright: ignore[reportArgumentType]
        addition_embed_type="text_time", addition_time_embed_dim=8,
        transformer_layers_per_block=(1, 1),  # pyright: ignore[reportArgumentType]
        projection_class_embeddings_input_dim=6 * 8 + 16, cross_attention_dim=32, norm_num_groups=8,
    )
    scheduler: Any = EDMEulerScheduler(sigma_min=0.002, sigma_max=120.0, sigma_data=1.0, prediction_type="v_prediction",
                                  sigma_schedule="exponential")
    return StableDiffusionXLInstructPix2PixPipeline(
        vae=_tiny_vae(seed + 1), text_encoder=_clip_text(tok, seed + 2), text_encoder_2=_clip_text(tok2, seed + 3,
                                                                                                   projection=True),
        tokenizer=tok, tokenizer_2=tok2, unet=unet, scheduler=scheduler,
        force_zeros_for_empty_prompt=True, is_cosxl_edit=True,
    )


def _qwen_pipeline(_method: str, seed: int) -> Any:
    """Qwen-Image-Edit: a 2-layer MMDiT, the Qwen 3-D VAE (factor 8), a 2-layer Qwen2.5-VL text encoder with a
    byte-level tokenizer and the PIL image processor (transformers' default one needs torchvision)."""
    from diffusers import (
        AutoencoderKLQwenImage,
        FlowMatchEulerDiscreteScheduler,
        QwenImageEditPipeline,
        QwenImageTransformer2DModel,
    )
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration
    from transformers.models.qwen2_vl import Qwen2VLImageProcessorPil

    from ..interventions.editors.qwen_image_edit import video_free_processor

    tok = tiny_qwen_tokenizer()
    ids = {t: tok.convert_tokens_to_ids(t) for t in ("<|vision_start|>", "<|vision_end|>", "<|image_pad|>",
                                                     "<|video_pad|>")}
    torch.manual_seed(seed)
    transformer = QwenImageTransformer2DModel(
        patch_size=2, in_channels=16, out_channels=4, num_layers=2, attention_head_dim=16, num_attention_heads=3,
        joint_attention_dim=16, guidance_embeds=False, axes_dims_rope=(8, 4, 4),
    )
    torch.manual_seed(seed + 1)
    vae = AutoencoderKLQwenImage(base_dim=4 * 6, z_dim=4, dim_mult=[1, 2, 4, 4], num_res_blocks=1,
                                 temperal_downsample=[False, True, True], latents_mean=[0.0] * 4,
                                 latents_std=[1.0] * 4)
    torch.manual_seed(seed + 2)
    config_cls: Any = Qwen2_5_VLConfig  # its keyword arguments are not all in its signature
    config = config_cls(
        text_config={"hidden_size": 16, "intermediate_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2,
                     "num_key_value_heads": 2, "vocab_size": len(tok),
                     "rope_scaling": {"mrope_section": [1, 1, 2], "rope_type": "default", "type": "default"},
                     "rope_theta": 1000000.0},
        vision_config={"depth": 2, "hidden_size": 16, "intermediate_size": 16, "num_heads": 2,
                       "out_hidden_size": 16},
        hidden_size=16, vocab_size=len(tok), vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"], image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"], vision_token_id=ids["<|image_pad|>"],
    )
    text_encoder = Qwen2_5_VLForConditionalGeneration(config)
    processor = video_free_processor(Qwen2VLImageProcessorPil(min_pixels=28 * 28 * 4, max_pixels=28 * 28 * 16), tok)
    return QwenImageEditPipeline(transformer=transformer, vae=vae, scheduler=FlowMatchEulerDiscreteScheduler(),
                                 text_encoder=text_encoder, tokenizer=tok, processor=processor)


def _flux_kontext_pipeline(_method: str, seed: int) -> Any:
    """FLUX.1 Kontext: a 1+1-layer MMDiT with the guidance embedding, a CLIP (pooled) and a T5 text encoder with
    tokenizers built in memory, a 1-channel VAE that does not downsample; sides: multiples of 2."""
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxKontextPipeline, FluxTransformer2DModel
    from transformers import T5Config, T5EncoderModel

    tok, tok2 = tiny_tokenizer(), tiny_t5_tokenizer()
    torch.manual_seed(seed)
    transformer = FluxTransformer2DModel(
        patch_size=1, in_channels=4, num_layers=1, num_single_layers=1, attention_head_dim=16, num_attention_heads=2,
        joint_attention_dim=32, pooled_projection_dim=32, axes_dims_rope=(4, 4, 8), guidance_embeds=True,
    )
    text_encoder = _clip_text(tok, seed + 1, hidden=32)
    torch.manual_seed(seed + 2)
    text_encoder_2 = T5EncoderModel(T5Config(vocab_size=len(tok2), d_model=32, d_kv=8, d_ff=37, num_layers=2,
                                             num_heads=4))
    torch.manual_seed(seed + 3)
    vae = AutoencoderKL(
        sample_size=32, in_channels=3, out_channels=3, block_out_channels=(4,), layers_per_block=1, latent_channels=1,
        norm_num_groups=1, use_quant_conv=False, use_post_quant_conv=False, shift_factor=0.0609,
        scaling_factor=1.5035,
    )
    cls: Any = FluxKontextPipeline  # image_encoder and feature_extractor are optional (IP-Adapter only)
    return cls(scheduler=FlowMatchEulerDiscreteScheduler(), vae=vae, text_encoder=text_encoder, tokenizer=tok,
               text_encoder_2=text_encoder_2, tokenizer_2=tok2, transformer=transformer, image_encoder=None,
               feature_extractor=None)


def stock_edit(method: str, pipe: Any, image: Any, instruction: str, scale: float, *, seed: int, steps: int,
               options: dict[str, Any] | None = None) -> Any:
    """One stock diffusers call of ``method``'s pipeline at one scale (the per-scale loop editors are compared
    with): float ``[H, W, 3]`` in [0, 1]. ``options``: the editor's options the call needs (image guidance,
    embeddings)."""
    opts = dict(options or {})
    gen = torch.Generator().manual_seed(int(seed))
    common: dict[str, Any] = {"num_inference_steps": steps, "generator": gen, "output_type": "np"}
    hw = {"height": image.height, "width": image.width}
    if method == "instruct-pix2pix":
        out = pipe(instruction, image=image, guidance_scale=scale,
                   image_guidance_scale=opts.get("image_guidance_scale", 2.5), **common)
    elif method == "mgie":
        from ..interventions.editors.mgie import load_embeddings

        e = load_embeddings(opts["embeddings"])
        out = pipe(image=image, prompt_embeds=e["prompt_embeds"],
                   negative_prompt_embeds=e.get("negative_prompt_embeds"), guidance_scale=scale,
                   image_guidance_scale=opts.get("image_guidance_scale", 1.5), **common)
    elif method == "ledits++":
        pipe.invert(image=image, num_inversion_steps=steps, skip=0.15, generator=gen)
        out = pipe(editing_prompt=[instruction], edit_guidance_scale=scale, output_type="np")
    elif method == "cosxl":
        out = pipe(prompt=instruction, image=image, guidance_scale=scale,
                   image_guidance_scale=opts.get("image_guidance_scale", 1.5), **hw, **common)
    elif method == "qwen-image-edit":
        out = pipe(prompt=instruction, image=image, true_cfg_scale=scale, negative_prompt=" ", **hw, **common)
    elif method == "flux-kontext":
        out = pipe(prompt=instruction, image=image, guidance_scale=scale, max_area=image.height * image.width,
                   _auto_resize=False, **hw, **common)
    else:
        raise ValueError(f"no stock call for {method!r}")
    return out.images[0]


@contextlib.contextmanager
def small_qwen_condition(side: int = 64) -> Iterator[None]:
    """Qwen-Image-Edit conditions on the picture resized to ~1024x1024 pixels; ``side`` x ``side`` while active
    (tiny pipelines in tests and CPU benchmarks: the stock call and the editor run the same patched code)."""
    import diffusers.pipelines.qwenimage.pipeline_qwenimage_edit as qie

    original = qie.calculate_dimensions
    qie.calculate_dimensions = lambda _area, ratio: original(side * side, ratio)
    try:
        yield
    finally:
        qie.calculate_dimensions = original
