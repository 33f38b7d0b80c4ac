"""Every built-in editor equals its stock diffusers pipeline called once per scale (tiny random pipelines).

The oracle is the stock pipeline (``pipe(..., <scale>=g, generator=torch.Generator().manual_seed(seed))``) called
once per scale with the same seed, steps and size; the editor's batched sweep must give the same uint8 frames
(<= 1 level), and different scales must give different frames (so the equality is not vacuous).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from epg_bridges.interventions import Editor, get_editor, make_editor
from epg_bridges.interventions.editors import PerSample, editor_names
from epg_bridges.testing import tiny_random_pipeline
from epg_core import DataError, UsageError

SEED, STEPS, INSTRUCTION = 7, 2, "make it a cat"


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> Any:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _small_qwen_condition(monkeypatch: pytest.MonkeyPatch) -> None:
    """Qwen-Image-Edit conditions on the picture resized to 1024x1024 pixels: 64x64 keeps the test fast (the
    stock call and the editor run the same patched pipeline code)."""
    import diffusers.pipelines.qwenimage.pipeline_qwenimage_edit as qie

    original = qie.calculate_dimensions
    monkeypatch.setattr(qie, "calculate_dimensions", lambda _area, ratio: original(64 * 64, ratio))


@pytest.fixture(scope="module")
def picture() -> Image.Image:
    return Image.fromarray(np.random.default_rng(5).integers(0, 256, size=(32, 32, 3), dtype=np.uint8))


def _embeddings(tmp: Path) -> Path:
    g = torch.Generator().manual_seed(3)
    path = tmp / "mgie.npz"
    np.savez(path, prompt_embeds=torch.randn(1, 8, 16, generator=g).numpy(),
             negative_prompt_embeds=torch.randn(1, 8, 16, generator=g).numpy())
    return path


def _uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(np.asarray(x, np.float64) * 255), 0, 255).astype(np.uint8)


def _stock(method: str, pipe: Any, image: Image.Image, g: float, options: dict[str, Any]) -> np.ndarray:
    """One stock pipeline call (the oracle)."""
    gen = torch.Generator().manual_seed(SEED)
    common: dict[str, Any] = {"num_inference_steps": STEPS, "generator": gen, "output_type": "np"}
    hw = {"height": image.height, "width": image.width}
    if method == "instruct-pix2pix":
        out = pipe(INSTRUCTION, image=image, guidance_scale=g, image_guidance_scale=1.5, **common)
    elif method == "mgie":
        from epg_bridges.interventions.editors.mgie import load_embeddings

        e = load_embeddings(options["embeddings"])
        out = pipe(image=image, prompt_embeds=e["prompt_embeds"], negative_prompt_embeds=e["negative_prompt_embeds"],
                   guidance_scale=g, image_guidance_scale=1.5, **common)
    elif method == "ledits++":
        pipe.invert(image=image, num_inversion_steps=STEPS, skip=0.15, generator=gen)
        out = pipe(editing_prompt=[INSTRUCTION], edit_guidance_scale=g, output_type="np")
    elif method == "cosxl":
        out = pipe(prompt=INSTRUCTION, image=image, guidance_scale=g, image_guidance_scale=1.5, **hw, **common)
    elif method == "qwen-image-edit":
        out = pipe(prompt=INSTRUCTION, image=image, true_cfg_scale=g, negative_prompt=" ", **hw, **common)
    elif method == "flux-kontext":
        out = pipe(prompt=INSTRUCTION, image=image, guidance_scale=g, max_area=image.height * image.width,
                   _auto_resize=False, **hw, **common)
    else:
        raise AssertionError(method)
    return _uint8(out.images[0])


CASES = {  # method -> (scales, options)
    "instruct-pix2pix": ([1.5, 4.0, 9.0], {"image_guidance_scale": 1.5}),
    "mgie": ([1.5, 4.0, 9.0], {"image_guidance_scale": 1.5}),
    "ledits++": ([2.0, 6.0, 12.0], {}),
    "cosxl": ([1.5, 4.0, 9.0], {"image_guidance_scale": 1.5}),
    "qwen-image-edit": ([2.0, 30.0, 100.0], {}),  # a random MMDiT hardly reads the prompt: large scales
    "flux-kontext": ([1.5, 4.0, 9.0], {}),
}


@pytest.mark.parametrize("method", list(CASES))
def test_editor_equals_the_stock_pipeline_per_scale(method: str, picture: Image.Image, tmp_path: Path) -> None:
    assert method in editor_names()
    scales, options = CASES[method]
    if method == "mgie":
        options = {**options, "embeddings": str(_embeddings(tmp_path))}
    pipe = tiny_random_pipeline(method)
    editor = make_editor(method, options).use(pipe)
    calls: list[tuple[int, int]] = []
    frames = editor.sweep(picture, INSTRUCTION, scales, seed=SEED, steps=STEPS, batch_size=2,
                          progress=lambda d, t: calls.append((d, t)))
    assert frames.dtype == np.uint8 and frames.shape == (len(scales), 32, 32, 3)
    assert calls[-1][0] == calls[-1][1]  # the progress reaches its total
    stock = np.stack([_stock(method, pipe, picture, g, options) for g in scales])
    diff = np.abs(frames.astype(int) - stock.astype(int))
    assert diff.max() <= 1, f"{method}: largest difference {diff.max()} levels"
    assert np.abs(stock[0].astype(int) - stock[-1].astype(int)).max() > 2  # the scale matters
    again = editor.sweep(picture, INSTRUCTION, scales[:1], seed=SEED, steps=STEPS, batch_size=1)
    assert np.abs(again[0].astype(int) - frames[0].astype(int)).max() <= 1  # batch composition does not matter


def test_options_are_checked_by_the_editors_dataclass() -> None:
    with pytest.raises(UsageError, match=r"no option 'image_guidance'; valid: image_guidance_scale") as info:
        make_editor("instruct-pix2pix", {"image_guidance": "2"})
    assert "\n" not in str(info.value)
    assert make_editor("ledits++", {"reverse_editing_direction": "yes", "skip": "0.2"}).options == \
        get_editor("ledits++").Options(skip=0.2, reverse_editing_direction=True)  # type: ignore[call-arg]
    with pytest.raises(UsageError, match="skip must lie in"):
        make_editor("ledits++", {"skip": "1.5"})
    with pytest.raises(UsageError, match="must be float"):
        make_editor("cosxl", {"image_guidance_scale": "much"})
    with pytest.raises(UsageError, match="--embeddings"):
        make_editor("mgie")
    with pytest.raises(UsageError, match="unknown editing method 'pix2pix'"):
        make_editor("pix2pix")
    with pytest.raises(UsageError, match="not a subclass"):
        make_editor("pathlib:Path")
    with pytest.raises(UsageError, match="cannot import"):
        make_editor("no_such_module_xyz:Editor")


def test_per_item_scale_multiplies_item_by_item() -> None:
    s = PerSample([2.0, 3.0])
    t = torch.ones(2, 3, dtype=torch.float16)
    assert float(s) == 2.0 and s > 1.0
    assert torch.equal(s * t, torch.tensor([[2.0] * 3, [3.0] * 3], dtype=torch.float16))
    assert torch.equal(t * s, s * t)
    with pytest.raises(DataError):
        _ = s * torch.ones(3, 1)


def test_mgie_embeddings_are_checked(picture: Image.Image, tmp_path: Path) -> None:
    bad = tmp_path / "bad.npz"
    np.savez(bad, prompt_embeds=np.zeros((1, 8, 5), np.float32))
    editor = make_editor("mgie", {"embeddings": str(bad)}).use(tiny_random_pipeline("mgie"))
    with pytest.raises(DataError, match="width 5, the UNet expects 16"):
        editor.sweep(picture, "x", [2.0], steps=1)
    empty = tmp_path / "empty.npz"
    np.savez(empty, other=np.zeros(3))
    with pytest.raises(DataError, match="no 'prompt_embeds'"):
        make_editor("mgie", {"embeddings": str(empty)}).use(tiny_random_pipeline("mgie")).sweep(picture, "x", [2.0])


def test_editor_base_is_the_extension_point() -> None:
    assert all(issubclass(get_editor(n), Editor) for n in editor_names())


@pytest.mark.parametrize(("method", "per_scale"), [("instruct-pix2pix", 3), ("cosxl", 3), ("flux-kontext", 1),
                                                   ("qwen-image-edit", 1)])
def test_at_most_batch_size_scales_are_denoised_at_once(method: str, per_scale: int, picture: Image.Image) -> None:
    """The denoiser never sees more than ``batch_size`` scales (times the pipeline's guidance copies: three for
    InstructPix2Pix-style CFG; one for Kontext, whose distilled guidance needs no doubling; Qwen's true CFG runs
    its negative branch as a second call of the same batch)."""
    pipe = tiny_random_pipeline(method)
    denoiser = getattr(pipe, "unet", None) or pipe.transformer
    seen: list[int] = []
    handle = denoiser.register_forward_pre_hook(
        lambda _m, args, kwargs: seen.append(int((args[0] if args else kwargs["hidden_states"]).shape[0])),
        with_kwargs=True)
    try:
        make_editor(method).use(pipe).sweep(picture, INSTRUCTION, [1.5, 2.0, 3.0, 4.0, 5.0], seed=SEED, steps=1,
                                            batch_size=2)
    finally:
        handle.remove()
    assert max(seen) == 2 * per_scale and min(seen) == per_scale  # batches of 2, 2, then 1


def test_qwen_image_edit_loads_a_folder_without_torchvision(picture: Image.Image, tmp_path: Path) -> None:
    """A Qwen-Image-Edit folder laid out as released (processor/ holds the tokenizer and the image processor's
    config) loads with the PIL image processor and edits as the pipeline it was saved from."""
    import json

    pipe = tiny_random_pipeline("qwen-image-edit")
    folder = tmp_path / "qwen"
    for name in ("transformer", "vae", "scheduler", "text_encoder", "tokenizer"):
        getattr(pipe, name).save_pretrained(folder / name)
    pipe.processor.tokenizer.save_pretrained(folder / "processor")
    pipe.processor.image_processor.save_pretrained(folder / "processor")
    index = {k: v for k, v in dict(pipe.config).items() if not k.startswith("_")}
    index["processor"] = ["transformers", "Qwen2VLProcessor"]
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "QwenImageEditPipeline", **index}))
    loaded = make_editor("qwen-image-edit").load(folder, device="cpu")
    ours = make_editor("qwen-image-edit").use(pipe)
    a = loaded.sweep(picture, INSTRUCTION, [2.0, 30.0], seed=SEED, steps=1, batch_size=2)
    b = ours.sweep(picture, INSTRUCTION, [2.0, 30.0], seed=SEED, steps=1, batch_size=2)
    assert np.abs(a.astype(int) - b).max() <= 1


def test_bench_edit_has_one_row_per_editor() -> None:
    from epg_bench.bench_edit import editors_table, run_editors

    result = run_editors(editors=["instruct-pix2pix", "flux-kontext"], n_scales=2, steps=1, repeats=1)
    assert [r["editor"] for r in result["rows"]] == ["instruct-pix2pix", "flux-kontext"]
    assert all(r["max_uint8_diff"] <= 1 and r["speedup"] > 0 for r in result["rows"])
    assert "| flux-kontext | yes |" in editors_table(result)
