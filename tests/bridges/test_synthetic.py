"""Designed gradual edits: value 0 is the identity, monotone where they should be, the patch opacity is the value."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from epg_bridges.interventions import (
    KINDS,
    background,
    blend_patch,
    brighten_background,
    brightness,
    darken_background,
    default_values,
    gaussian_weight,
    hsv_to_rgb,
    hue_shift,
    patch_position,
    rgb_to_hsv,
    rotate,
    synthetic_sequence,
)
from epg_core import (
    MAX_READ_BYTES,
    DataError,
    UsageError,
    append_interventions,
    list_sequences,
    read_interventions,
    write_interventions,
)


@pytest.fixture()
def image() -> np.ndarray:
    """A mid-grey-ish random RGB image (no saturated pixels, so every edit can move every pixel)."""
    rng = np.random.default_rng(0)
    return rng.integers(40, 216, size=(33, 47, 3), dtype=np.uint8)


def _border(img: np.ndarray, width: int = 3) -> np.ndarray:
    """The pixels within ``width`` of the image edge."""
    mask = np.ones(img.shape[:2], dtype=bool)
    mask[width:-width, width:-width] = False
    return img[mask].astype(np.float64)


def _patch() -> np.ndarray:
    """A colourful 8x10 patch far from the image's grey values."""
    p = np.zeros((8, 10, 3), dtype=np.uint8)
    p[..., 0] = 255
    p[::2, :, 2] = 255
    return p


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_value_zero_returns_the_original_exactly(kind: str, image: np.ndarray) -> None:
    params = {"patch": _patch(), "position": (3, 4)} if kind == "patch" else {}
    out = KINDS[kind].func(image, 0.0, **params)
    assert out.dtype == np.uint8 and out.shape == image.shape
    assert np.array_equal(out, image)
    assert out is not image


def test_gaussian_weight_is_zero_at_the_centre_and_grows_outwards() -> None:
    w = gaussian_weight((21, 31), sigma=0.5)
    assert w[10, 15] == pytest.approx(0.0, abs=1e-12)
    assert w[0, 0] == pytest.approx(1 - np.exp(-2 / (2 * 0.25)))
    assert np.allclose(w, w[::-1, ::-1])  # centred
    row = w[10, 15:]
    assert np.all(np.diff(row) > 0)


def test_mean_border_brightness_falls_as_darkening_grows(image: np.ndarray) -> None:
    values = np.linspace(0, 1, 11)
    border = [_border(darken_background(image, v)).mean() for v in values]
    assert np.all(np.diff(border) < 0)
    out = darken_background(image, 1.0)
    # far pixels change most: the corners are nearly black, the centre is untouched
    assert out[0, 0].max() < 0.05 * image[0, 0].max() + 1
    assert np.array_equal(out[16, 23], image[16, 23])


def test_brightening_raises_the_border_and_the_signed_form_agrees(image: np.ndarray) -> None:
    border = [_border(brighten_background(image, v)).mean() for v in np.linspace(0, 1, 6)]
    assert np.all(np.diff(border) > 0)
    assert np.array_equal(background(image, 0.4), brighten_background(image, 0.4))
    assert np.array_equal(background(image, -0.4), darken_background(image, 0.4))
    with pytest.raises(ValueError, match="darkening amount"):
        darken_background(image, -0.1)
    with pytest.raises(ValueError, match="background value"):
        background(image, 1.5)


def test_brightness_is_monotone_and_saturates(image: np.ndarray) -> None:
    means = [brightness(image, v).mean() for v in np.linspace(-1, 1, 9)]
    assert np.all(np.diff(means) > 0)
    assert np.all(brightness(image, 1.0) == 255)
    assert np.all(brightness(image, -1.0) == 0)


def test_hue_shift_rotates_colours_and_keeps_grey() -> None:
    img = np.zeros((2, 2, 3), dtype=np.uint8)
    img[0, 0] = (255, 0, 0)
    img[0, 1] = (0, 255, 0)
    img[1, :] = (128, 128, 128)
    out = hue_shift(img, 120.0)
    assert tuple(out[0, 0]) == (0, 255, 0)
    assert tuple(out[0, 1]) == (0, 0, 255)
    assert np.array_equal(out[1], img[1])
    assert np.array_equal(hue_shift(img, 360.0), img)


def test_patch_opacity_at_its_pixels_equals_the_value(image: np.ndarray) -> None:
    patch = _patch()
    x, y = 5, 7
    for value in (0.1, 0.25, 0.5, 0.8, 1.0):
        out = blend_patch(image, value, patch=patch, position=(x, y))
        region_in = image[y : y + 8, x : x + 10].astype(np.float64)
        region_out = out[y : y + 8, x : x + 10].astype(np.float64)
        diff = patch.astype(np.float64) - region_in
        strong = np.abs(diff) >= 40
        alpha = (region_out - region_in)[strong] / diff[strong]
        # rounding to uint8 moves a pixel by at most 0.5, so alpha is within 0.5 / |diff|
        assert np.all(np.abs(alpha - value) <= 0.5 / np.abs(diff[strong]) + 1e-12)
        outside = np.ones(image.shape[:2], dtype=bool)
        outside[y : y + 8, x : x + 10] = False
        assert np.array_equal(out[outside], image[outside])


def test_patch_mask_shapes_the_blend(image: np.ndarray) -> None:
    patch = _patch()
    mask = np.zeros((8, 10), dtype=bool)
    mask[2:6, 3:7] = True
    out = blend_patch(image, 1.0, patch=patch, mask=mask, position=(0, 0))
    assert np.array_equal(out[2:6, 3:7], patch[2:6, 3:7])
    assert np.array_equal(out[:2, :10], image[:2, :10])
    rgba = np.concatenate([patch, (mask * 255).astype(np.uint8)[..., None]], axis=2)
    assert np.array_equal(blend_patch(image, 1.0, patch=rgba, position=(0, 0)), out)


def test_random_patch_position_is_seeded_and_inside(image: np.ndarray) -> None:
    positions = {patch_position(image.shape, (8, 10), None, seed) for seed in range(20)}
    assert len(positions) > 1
    for px, py in positions:
        assert 0 <= px <= 47 - 10 and 0 <= py <= 33 - 8
    assert patch_position(image.shape, (8, 10), None, 3) == patch_position(image.shape, (8, 10), None, 3)
    with pytest.raises(ValueError, match="does not fit"):
        patch_position(image.shape, (40, 10), None, 0)
    with pytest.raises(ValueError, match="outside"):
        blend_patch(image, 0.5, patch=_patch(), position=(40, 0))


def test_rotation_by_90_degrees_is_counter_clockwise() -> None:
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, size=(16, 16, 3), dtype=np.uint8)
    assert np.array_equal(rotate(img, 90.0), np.rot90(img, k=1))
    assert np.array_equal(rotate(img, 360.0), img)
    out = rotate(img, 45.0, fill=(255, 0, 0))
    assert tuple(out[0, 0]) == (255, 0, 0)


def test_bad_images_and_values_are_one_line_usage_errors(image: np.ndarray) -> None:
    with pytest.raises(UsageError, match="RGB uint8"):
        brightness(image.astype(np.float32), 0.1)
    with pytest.raises(UsageError, match="patch opacity"):
        blend_patch(image, 1.5, patch=_patch(), position=(0, 0))
    with pytest.raises(UsageError, match="unknown synthetic edit"):
        synthetic_sequence(image, "sharpen", [0, 1])
    with pytest.raises(UsageError, match="needs a patch"):
        synthetic_sequence(image, "patch", [0, 1])
    with pytest.raises(UsageError, match="finite"):
        synthetic_sequence(image, "hue", [0, np.nan])
    assert not issubclass(UsageError, DataError)


def test_progress_reports_done_and_total(image: np.ndarray) -> None:
    calls: list[tuple[int, int]] = []
    synthetic_sequence(image, "hue", [0, 10, 20], progress=lambda done, total: calls.append((done, total)))
    assert calls == [(0, 3), (1, 3), (2, 3), (3, 3)]


def test_a_sequence_too_big_for_memory_is_refused_before_allocating() -> None:
    small = np.zeros((10, 10, 3), np.uint8)
    n = MAX_READ_BYTES // small.size + 1  # one image more than the budget holds
    with pytest.raises(UsageError, match="GiB, more than the budget"):
        synthetic_sequence(small, "hue", np.zeros(n))


def test_synthetic_sequence_records_provenance_and_round_trips(image: np.ndarray, tmp_path) -> None:
    values = default_values("patch", 5)
    seq = synthetic_sequence(image, "patch", values, patch=_patch(), seed=4, attrs={"patch_file": "p.png"})
    assert seq.images.shape == (5, *image.shape)
    assert np.array_equal(seq.values, [0, 0.25, 0.5, 0.75, 1.0])
    assert np.array_equal(seq.images[0], image)
    x, y = patch_position(image.shape, (8, 10), None, 4)
    assert (seq.attrs["patch_x"], seq.attrs["patch_y"]) == (x, y)
    assert seq.attrs["source"] == "synthetic" and seq.attrs["edit"] == "patch"
    assert seq.attrs["includes_original"] is True and seq.attrs["property"] == "patch"  # the kind: group key
    assert seq.attrs["description"] == "patch opacity"
    # every step blends at the same (seeded) place
    assert np.array_equal(seq.images[-1], blend_patch(image, 1.0, patch=_patch(), position=(x, y)))
    path = write_interventions(tmp_path / "s.h5", {"cat-patch": seq})
    back = read_interventions(path)["cat-patch"]
    assert np.array_equal(back.images, seq.images) and np.array_equal(back.values, seq.values)
    assert back.attrs["patch_file"] == "p.png" and back.attrs["unit"] == "fraction"


def test_darkening_sequence_is_not_flagged_original_when_it_starts_elsewhere(image: np.ndarray) -> None:
    seq = synthetic_sequence(image, "background", [-1.0, 0.0, 1.0], sigma=0.3)
    assert seq.attrs["includes_original"] is False
    assert seq.attrs["sigma"] == 0.3
    assert np.array_equal(seq.images[1], image)


def _params(kind: str) -> dict[str, Any]:
    return {"patch": _patch(), "position": (3, 4)} if kind == "patch" else {}


@pytest.mark.parametrize("n", [2, 3, 50])
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_default_grid_starts_with_the_original_bit_for_bit(kind: str, n: int, image: np.ndarray) -> None:
    """Step 0 of every kind's default grid is value 0 and the input's pixels exactly (the scoring's default class
    comes from step 0), for odd and even step counts alike."""
    values = default_values(kind, n)
    low, high = KINDS[kind].default_range
    assert values.size == n and values[0] == 0.0 and low == 0.0 and values[-1] == high
    assert np.all(np.diff(values) > 0) or np.all(np.diff(values) < 0)  # a strictly monotonic grid
    seq = synthetic_sequence(image, kind, values, **_params(kind))
    assert seq.images[0].tobytes() == image.tobytes()
    assert seq.attrs["includes_original"] is True
    assert not np.array_equal(seq.images[-1], image)  # ... and the grid really edits


def test_signed_kinds_default_to_darkening_from_the_original(image: np.ndarray) -> None:
    """background and brightness run 0 -> -1: from the original towards black, as the paper darkens."""
    for kind in ("background", "brightness"):
        seq = synthetic_sequence(image, kind, default_values(kind, 6))
        means = seq.images.reshape(6, -1).astype(np.float64).mean(axis=1)
        assert np.all(np.diff(means) < 0), kind
    np.testing.assert_array_equal(default_values("brightness", 5), [0, -0.25, -0.5, -0.75, -1])
    np.testing.assert_array_equal(default_values("brightness", 3, stop=1.0), [0, 0.5, 1])  # brightening
    np.testing.assert_array_equal(default_values("hue", 3, start=90.0), [90, 135, 180])
    with pytest.raises(UsageError, match="differ"):
        default_values("brightness", 4, start=-1.0)
    with pytest.raises(UsageError, match="at least 2 steps"):
        default_values("hue", 1)


@pytest.mark.parametrize("kind, values, flagged", [
    ("hue", [360.0, 10.0], True),  # a whole turn is the identity
    ("rotation", [-720.0, 90.0], True),
    ("hue", [10.0, 0.0], False),  # the original at the last step is not step 0
    ("brightness", [-0.0, -0.5], True),
    ("darken-background", [1e-9, 1.0], False),  # rounds to the same pixels, but is not the identity edit
])
def test_includes_original_exactly_when_step_0_is_the_identity(kind: str, values: list[float], flagged: bool,
                                                               image: np.ndarray) -> None:
    seq = synthetic_sequence(image, kind, values)
    assert seq.attrs["includes_original"] is flagged
    if flagged:
        assert seq.images[0].tobytes() == image.tobytes()


def test_property_and_image_attributes_round_trip_through_write_and_append(image: np.ndarray, tmp_path) -> None:
    first = synthetic_sequence(image, "darken-background", default_values("darken-background", 3),
                               attrs={"property": "background", "image": "cat_001"})
    second = synthetic_sequence(image, "hue", [0, 90], attrs={"image": "cat_002"})
    assert (first.attrs["property"], first.attrs["image"]) == ("background", "cat_001")
    assert (second.attrs["property"], second.attrs["description"]) == ("hue", "hue shift")
    path = write_interventions(tmp_path / "s.h5", {"cat_001-background": first})
    append_interventions(path, {"cat_002-hue": second})
    assert list_sequences(path) == ["cat_001-background", "cat_002-hue"]
    back = read_interventions(path, images=False)
    for name, seq in (("cat_001-background", first), ("cat_002-hue", second)):
        assert back[name].attrs == seq.attrs
        np.testing.assert_array_equal(back[name].values, seq.values)
    with pytest.raises(DataError, match="already holds sequence 'cat_002-hue'"):
        append_interventions(path, {"cat_002-hue": second})
    assert list_sequences(path) == ["cat_001-background", "cat_002-hue"]


@settings(max_examples=30, deadline=None)
@given(
    img=arrays(np.uint8, st.tuples(st.integers(3, 12), st.integers(3, 12), st.just(3))),
    a=st.floats(0, 1),
    b=st.floats(0, 1),
)
def test_darkening_never_brightens_a_pixel(img: np.ndarray, a: float, b: float) -> None:
    lo, hi = sorted((a, b))
    weaker, stronger = darken_background(img, lo), darken_background(img, hi)
    assert np.all(stronger.astype(int) <= weaker.astype(int))
    assert np.all(weaker.astype(int) <= img.astype(int))


@settings(max_examples=40, deadline=None)
@given(arrays(np.uint8, (6, 7, 3)), st.floats(-720, 720))
def test_hsv_conversions_equal_matplotlib(pixels: np.ndarray, degrees: float) -> None:
    """The NumPy HSV round trip is matplotlib's, bit for bit (greys, ties between channels and black included)."""
    from matplotlib.colors import hsv_to_rgb as mpl_hsv_to_rgb
    from matplotlib.colors import rgb_to_hsv as mpl_rgb_to_hsv

    rgb = pixels.astype(np.float64) / 255.0
    rgb[0, :3] = [[0.5, 0.5, 0.5], [0.0, 0.0, 0.0], [1.0, 1.0, 0.2]]
    hsv = rgb_to_hsv(rgb)
    np.testing.assert_array_equal(hsv, mpl_rgb_to_hsv(rgb))
    hsv[..., 0] = (hsv[..., 0] + degrees / 360.0) % 1.0
    np.testing.assert_array_equal(hsv_to_rgb(hsv), mpl_hsv_to_rgb(hsv))
