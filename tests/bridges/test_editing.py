"""Diffusion edit sweeps on tiny random pipelines (real diffusers code, offline, in-memory tokenizer).

The key claims: the batched InstructPix2Pix sweep equals the stock per-scale pipeline calls, LEDITS++ with one
inversion equals fresh stock inversions per scale, the same seed gives the same images, and the sequence holds
the original plus one image per scale.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from epg_bridges.interventions import (
    Counter,
    check_tokenizer,
    default_guidance_scales,
    edit_sequence,
    load_pipeline,
    make_editor,
    prepare_edit_image,
    select_device,
    validate_scales,
)
from epg_bridges.testing import tiny_random_pipeline
from epg_core import DataError, UsageError, read_interventions, write_interventions

STEPS = 3
SEED = 11
SCALES = [1.5, 3.0, 7.5, 14.0]
OPTS = {"image_guidance_scale": 1.5}


def pix2pix_sweep(pipe: Any, image: Any, instruction: str, scales: list[float], options: dict[str, Any] | None = None,
                  *, seed: int = 0, steps: int = STEPS, batch_size: int = 3, progress: Any = None) -> np.ndarray:
    """The InstructPix2Pix editor's float frames (before rounding to uint8)."""
    editor = make_editor("instruct-pix2pix", options or OPTS).use(pipe)
    total = len(scales) * steps
    return editor.edit(editor.prepare(image), instruction, np.asarray(scales, float), seed=seed, steps=steps,
                       batch_size=batch_size, counter=Counter(progress, total))


def ledits_sweep(pipe: Any, image: Any, prompt: str, scales: list[float], options: dict[str, Any] | None = None,
                 *, seed: int = 0, steps: int = STEPS, progress: Any = None) -> np.ndarray:
    """The LEDITS++ editor's float frames; checks like ``sweep`` (multiples of 32, scales > 0)."""
    editor = make_editor("ledits++", options).use(pipe)
    grid = editor.check_scales(scales)
    return editor.edit(as_is(image), prompt, grid, seed=seed, steps=steps, batch_size=1,
                       counter=Counter(progress, len(scales) + 1))


def as_is(image: Any) -> Image.Image:
    return image if isinstance(image, Image.Image) else Image.fromarray(image)


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> Any:
    """One intra-op thread: the tiny models gain nothing from more, and a busy 2-core machine loses a lot."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def ip2p() -> Any:
    return tiny_random_pipeline("instruct-pix2pix", seed=0)


@pytest.fixture(scope="module")
def ledits() -> Any:
    return tiny_random_pipeline("ledits++", seed=0)


@pytest.fixture(scope="module")
def picture() -> Image.Image:
    rng = np.random.default_rng(5)
    return Image.fromarray(rng.integers(0, 256, size=(32, 32, 3), dtype=np.uint8))


def _stock_pix2pix(pipe: Any, image: Image.Image, scales: list[float], seed: int = SEED) -> np.ndarray:
    """The reference: one stock pipeline call per guidance scale, each with a freshly seeded generator."""
    return np.stack([
        pipe("make it a cat", image=image, guidance_scale=g, image_guidance_scale=1.5, num_inference_steps=STEPS,
             generator=torch.Generator().manual_seed(seed), output_type="np").images[0]
        for g in scales
    ])


def test_default_scales_follow_the_paper() -> None:
    s = default_guidance_scales()
    assert s.shape == (100,)
    assert s[0] > 1.0 and s[0] == pytest.approx(1.14) and s[-1] == 15.0
    assert np.all(np.diff(s) > 0)
    assert np.array_equal(validate_scales(s), s)


@pytest.mark.parametrize(
    ("scales", "match"),
    [([1.0, 2.0], "must all be > 1"), ([2.0, 2.0], "strictly increasing"), ([3.0, 2.0], "strictly increasing"),
     ([], "non-empty"), ([1.5, float("nan")], "finite")],
)
def test_bad_scales_are_one_line_errors(scales: list[float], match: str) -> None:
    with pytest.raises(UsageError, match=match) as info:
        validate_scales(scales)
    assert "\n" not in str(info.value)


def test_batched_sweep_equals_stock_per_scale_calls(ip2p: Any, picture: Image.Image) -> None:
    calls: list[tuple[int, int]] = []
    batched = pix2pix_sweep(ip2p, picture, "make it a cat", SCALES, OPTS, seed=SEED,
                            progress=lambda done, total: calls.append((done, total)))  # chunks of 3 and 1
    total = STEPS * len(SCALES)  # a batch of 3 advances 3 scale-steps per denoising step, then a batch of 1
    assert calls == [(0, total), *[(3 * i, total) for i in range(1, STEPS + 1)],
                     *[(3 * STEPS + i, total) for i in range(1, STEPS + 1)]]
    stock = _stock_pix2pix(ip2p, picture, SCALES)
    assert batched.shape == stock.shape == (4, 32, 32, 3)
    assert np.abs(batched - stock).max() < 1e-4
    # the guidance scale matters, so the equality above is not vacuous
    assert np.abs(stock[0] - stock[-1]).max() > 0.05


def test_same_seed_same_images_and_batch_size_does_not_matter(ip2p: Any, picture: Image.Image) -> None:
    a = pix2pix_sweep(ip2p, picture, "make it a cat", SCALES[:3], OPTS, seed=SEED)
    b = pix2pix_sweep(ip2p, picture, "make it a cat", SCALES[:3], OPTS, seed=SEED)
    one = pix2pix_sweep(ip2p, picture, "make it a cat", SCALES[:3], OPTS, seed=SEED, batch_size=1)
    assert np.array_equal(a, b)
    assert np.abs(a - one).max() < 1e-4
    other = pix2pix_sweep(ip2p, picture, "make it a cat", SCALES[:3], OPTS, seed=SEED + 1)
    assert np.abs(a - other).max() > 0.05


def test_edit_sequence_holds_the_original_and_one_image_per_scale(ip2p: Any, picture: Image.Image,
                                                                  tmp_path: Path) -> None:
    big = picture.resize((37, 35))  # not a multiple of the VAE factor: cropped down by resizing
    seq = edit_sequence(np.asarray(big), "make it a cat", editor=make_editor("instruct-pix2pix", OPTS).use(ip2p),
                        scales=SCALES, seed=SEED, steps=STEPS, batch_size=2)
    assert seq.images.shape == (len(SCALES) + 1, 34, 36, 3)
    assert np.array_equal(seq.values, [1.0, *SCALES])
    expected_original = np.asarray(prepare_edit_image(big, multiple=ip2p.vae_scale_factor))
    assert np.array_equal(seq.images[0], expected_original)
    assert seq.attrs["includes_original"] is True and seq.attrs["source"] == "edit"
    assert seq.attrs["guidance_scales"] == SCALES and seq.attrs["seed"] == SEED
    assert seq.attrs["image_guidance_scale"] == 1.5 and seq.attrs["num_inference_steps"] == STEPS
    # the stored edits are the stock pipeline's images, rounded as diffusers rounds them to uint8
    stock = _stock_pix2pix(ip2p, Image.fromarray(expected_original), SCALES[-1:])
    assert np.abs(seq.images[-1].astype(int) - np.rint(stock[0] * 255).astype(int)).max() <= 1
    path = write_interventions(tmp_path / "edit.h5", {"cat": seq})
    back = read_interventions(path)["cat"]
    assert back.images.shape[0] == len(SCALES) + 1
    assert np.array_equal(back.values[1:], SCALES) and back.attrs["guidance_scales"] == SCALES
    assert back.attrs["instruction"] == "make it a cat"


def test_ledits_sweep_reuses_one_inversion_and_equals_stock_calls(ledits: Any, picture: Image.Image) -> None:
    scales = [2.0, 6.0, 12.0]
    calls: list[tuple[int, int]] = []
    ours = ledits_sweep(ledits, picture, "cat", scales, seed=SEED,
                        progress=lambda done, total: calls.append((done, total)))
    assert calls == [(i, len(scales) + 1) for i in range(len(scales) + 2)]  # the inversion, then each scale
    stock = []
    for g in scales:  # the stock recipe, with a fresh inversion for every scale
        ledits.invert(image=picture, num_inversion_steps=STEPS, skip=0.15,
                      generator=torch.Generator().manual_seed(SEED))
        stock.append(ledits(editing_prompt=["cat"], edit_guidance_scale=g, output_type="np").images[0])
    stock_arr = np.stack(stock)
    assert ours.shape == (3, 32, 32, 3)
    assert np.abs(ours - stock_arr).max() < 1e-4
    assert np.abs(stock_arr[0] - stock_arr[-1]).max() > 0.01
    again = ledits_sweep(ledits, picture, "cat", scales, seed=SEED)
    assert np.array_equal(ours, again)


def test_ledits_sequence_starts_at_zero_guidance(ledits: Any, picture: Image.Image) -> None:
    editor = make_editor("ledits++").use(ledits)
    seq = edit_sequence(picture.resize((40, 70)), "cat", editor=editor, steps=2, scales=[1.0, 5.0], seed=1)
    assert seq.images.shape == (3, 64, 32, 3)  # sides rounded down to multiples of 32
    assert np.array_equal(seq.values, [0.0, 1.0, 5.0])
    assert seq.attrs["batched"] is False and seq.attrs["property"] == "edit guidance scale"
    with pytest.raises(UsageError, match="multiples of 32"):
        ledits_sweep(ledits, picture.resize((40, 40)), "cat", [1.0], steps=2)
    with pytest.raises(UsageError, match="must all be > 0"):
        edit_sequence(picture, "cat", editor=editor, scales=[0.0, 1.0])


@pytest.mark.parametrize("make, match", [
    (lambda: make_editor("instruct-pix2pix", {"image_guidance_scale": 0.5}), "image_guidance_scale must be >= 1"),
    (lambda: make_editor("ledits++", {"skip": 1.0}), r"skip must lie in \[0, 1\)"),
    (lambda: make_editor("ledits++", {"edit_threshold": 1.5}), "edit_threshold"),
    (lambda: make_editor("ledits++", {"num_inversion_steps": 2}), "no option 'num_inversion_steps'"),
])
def test_bad_editor_options_are_refused_on_construction(make: Any, match: str) -> None:
    with pytest.raises(UsageError, match=match):
        make()


def test_broken_tokenizer_is_refused(tmp_path: Path) -> None:
    from transformers import CLIPTokenizer

    broken = CLIPTokenizer.from_pretrained(str(tmp_path))  # no vocabulary files: silently "works"
    assert len(broken) <= 3
    with pytest.raises(DataError, match="tokenizer is broken"):
        check_tokenizer(broken)
    check_tokenizer(tiny_random_pipeline("instruct-pix2pix").tokenizer)  # a real vocabulary passes


def test_missing_models_fail_fast_with_instructions(tmp_path: Path) -> None:
    t0 = time.perf_counter()
    with pytest.raises(DataError, match="does not exist.*local diffusers pipeline folder") as info:
        load_pipeline(tmp_path / "no-such-model")
    assert "\n" not in str(info.value)
    with pytest.raises(DataError, match="Hugging Face cache"):
        load_pipeline("epg-test-org/definitely-not-cached-model")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no model_index.json"):
        load_pipeline(tmp_path / "empty")
    assert time.perf_counter() - t0 < 30  # no network retries


def test_saved_pipeline_loads_from_local_files(ip2p: Any, picture: Image.Image, tmp_path: Path) -> None:
    ip2p.save_pretrained(tmp_path / "tiny")
    loaded = load_pipeline(tmp_path / "tiny", device="cpu")
    assert loaded.unet.dtype == torch.float32
    a = pix2pix_sweep(ip2p, picture, "make it a cat", [2.0, 5.0], seed=SEED, steps=2, batch_size=2)
    b = pix2pix_sweep(loaded, picture, "make it a cat", [2.0, 5.0], seed=SEED, steps=2, batch_size=2)
    assert np.abs(a - b).max() < 1e-5
    for name in ("vocab.json", "merges.txt", "tokenizer.json"):
        (tmp_path / "tiny" / "tokenizer" / name).unlink(missing_ok=True)
    with pytest.raises(DataError, match="tokenizer is broken"):
        load_pipeline(tmp_path / "tiny", device="cpu")


def test_cpu_runs_in_float32() -> None:
    device, dtype = select_device("cpu")
    assert device.type == "cpu" and dtype == torch.float32
    with pytest.raises(UsageError, match="unknown torch device"):
        select_device("gpu-please")
