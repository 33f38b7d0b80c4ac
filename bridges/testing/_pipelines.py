"""Tiny random-weight editing pipelines (real diffusers code, nonsense images) for tests and benchmarks."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import torch

from ..interventions import Method, check_method, check_tokenizer, pipeline_class, quiet_libraries

__all__ = ["tiny_tokenizer", "tiny_random_pipeline"]


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


def tiny_random_pipeline(method: Method = "instruct-pix2pix", *, seed: int = 0, device: str = "cpu") -> Any:
    """A tiny random-weight editing pipeline (real diffusers code, nonsense images) for tests and benchmarks.

    VAE downsamples by 2; InstructPix2Pix gets an 8-channel UNet and the Euler-ancestral scheduler of the real
    model (stochastic, so it exercises the per-sample generators); LEDITS++ a 4-channel UNet with cross
    attention down to 1/4 of the latent size (its attention masks need it) and the SDE-DPM-Solver++ scheduler.
    Image sides must be multiples of 2 (InstructPix2Pix) or 32 (LEDITS++).
    """
    check_method(method)
    tokenizer = tiny_tokenizer()
    with quiet_libraries():
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
            # diffusers annotates these as 1-tuples; any sequence works
            block_out_channels=[16, 32], in_channels=3, out_channels=3,  # pyright: ignore[reportArgumentType]
            down_block_types=["DownEncoderBlock2D", "DownEncoderBlock2D"],  # pyright: ignore[reportArgumentType]
            up_block_types=["UpDecoderBlock2D", "UpDecoderBlock2D"],  # pyright: ignore[reportArgumentType]
            latent_channels=4, norm_num_groups=8, sample_size=32,
        )
        torch.manual_seed(seed + 2)
        text_encoder = CLIPTextModel(CLIPTextConfig(
            bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id, hidden_size=16, intermediate_size=32, num_attention_heads=2,
            num_hidden_layers=2, vocab_size=len(tokenizer), max_position_embeddings=tokenizer.model_max_length,
        ))
        pipe = pipeline_class(method)(
            vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
            safety_checker=None, feature_extractor=None, requires_safety_checker=False,
        )
    pipe = pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    return pipe
