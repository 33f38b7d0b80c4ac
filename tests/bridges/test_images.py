"""``load_image``: every Pillow mode converted the documented way, checked against NumPy arithmetic on the raw pixels.

The oracles never go through Pillow's conversions: they start from the array written to the file (or, for the
48-bit PNG, from bytes this test encodes itself) and apply the rule of ``epg_bridges._images`` by hand.
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import epg_bridges._images as images_module
from epg_bridges.interventions import load_image
from epg_core import DataError, UsageError

RNG = np.random.default_rng(7)


def _rescale16(v: np.ndarray) -> np.ndarray:
    """round(v * 255 / 65535) in integers (no ties: 65535 = 255 * 257 with 257 odd)."""
    return ((v.astype(np.int64) * 255 + 32767) // 65535).astype(np.uint8)


def _stretch(v: np.ndarray) -> np.ndarray:
    x = v.astype(np.float64)
    return np.rint((x - x.min()) * 255.0 / (x.max() - x.min())).astype(np.uint8)


def _grey_rgb(g: np.ndarray) -> np.ndarray:
    return np.repeat(g[..., None], 3, axis=-1)


def _luma(rgb: np.ndarray) -> np.ndarray:
    """ITU-R 601-2 luma, what mode "L" means."""
    x = rgb.astype(np.float64)
    return x[..., 0] * 0.299 + x[..., 1] * 0.587 + x[..., 2] * 0.114


def _save(tmp_path: Path, name: str, image: Image.Image, **kwargs: object) -> Path:
    path = tmp_path / name
    image.save(path, **kwargs)  # type: ignore[arg-type]
    return path


# --------------------------------------------------------------------------- 16/32-bit and float grey


@pytest.mark.parametrize(("mode", "suffix", "dtype"), [("I;16", ".png", "<u2"), ("I;16", ".tif", "<u2"),
                                                       ("I;16B", ".tif", ">u2")])
def test_16_bit_grey_is_rescaled_not_clipped(tmp_path: Path, mode: str, suffix: str, dtype: str) -> None:
    raw = RNG.integers(0, 65536, size=(12, 17)).astype(dtype)
    raw[0, :3] = [0, 65535, 257 * 100]
    path = _save(tmp_path, f"g16{suffix}", Image.frombytes(mode, (17, 12), raw.tobytes()))
    with Image.open(path) as im:
        assert im.mode.startswith("I;16")  # the file really is 16-bit
    want = _rescale16(raw)
    np.testing.assert_array_equal(load_image(path, mode="L"), want)
    np.testing.assert_array_equal(load_image(path), _grey_rgb(want))
    rgba = load_image(path, mode="RGBA")
    np.testing.assert_array_equal(rgba[..., :3], _grey_rgb(want))
    assert np.all(rgba[..., 3] == 255)
    assert load_image(path, mode="L")[0, :3].tolist() == [0, 255, 100]
    assert (load_image(path, mode="L") == 255).mean() < 0.05  # the v1 bug: 98% white


def test_a_dark_16_bit_image_stays_dark(tmp_path: Path) -> None:
    raw = np.full((8, 8), 5000, np.uint16)  # 5000 / 65535 of full scale: clipping made this pure white
    path = _save(tmp_path, "dark.png", Image.fromarray(raw))
    assert np.all(load_image(path, mode="L") == 19)  # round(5000 * 255 / 65535) = 19


def test_32_bit_integer_grey(tmp_path: Path) -> None:
    in_range = RNG.integers(0, 65536, size=(6, 7)).astype("<i4")
    path = _save(tmp_path, "i32.tif", Image.frombytes("I", (7, 6), in_range.tobytes()))
    np.testing.assert_array_equal(load_image(path, mode="L"), _rescale16(in_range))
    wide = RNG.integers(-100_000, 200_000, size=(6, 7)).astype("<i4")
    path = _save(tmp_path, "wide.tif", Image.frombytes("I", (7, 6), wide.tobytes()))
    got = load_image(path, mode="L").astype(int)
    assert np.abs(got - _stretch(wide).astype(int)).max() <= 1
    assert got.min() == 0 and got.max() == 255


def test_float_grey(tmp_path: Path) -> None:
    unit = RNG.random((6, 7)).astype("<f4")
    path = _save(tmp_path, "f.tif", Image.frombytes("F", (7, 6), unit.tobytes()))
    np.testing.assert_array_equal(load_image(path, mode="L"), np.rint(unit.astype(np.float64) * 255).astype(np.uint8))
    wide = (RNG.random((6, 7)) * 1000 - 300).astype("<f4")
    path = _save(tmp_path, "fw.tif", Image.frombytes("F", (7, 6), wide.tobytes()))
    assert np.abs(load_image(path, mode="L").astype(int) - _stretch(wide).astype(int)).max() <= 1
    bad = unit.copy()
    bad[2, 3] = np.nan
    path = _save(tmp_path, "nan.tif", Image.frombytes("F", (7, 6), bad.tobytes()))
    with pytest.raises(DataError, match=r"nan\.tif: float image holds NaN or Inf pixels"):
        load_image(path)


def _png48(path: Path, rgb16: np.ndarray, alpha: np.ndarray | None = None) -> Path:
    """A 16-bit-per-channel PNG encoded by hand (colour type 2, or 6 with alpha), no Pillow involved."""
    h, w, _ = rgb16.shape
    planes = rgb16 if alpha is None else np.concatenate([rgb16, alpha[..., None]], axis=-1)
    rows = b"".join(b"\0" + planes[y].astype(">u2").tobytes() for y in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", w, h, 16, 2 if alpha is None else 6, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows))
                     + chunk(b"IEND", b""))
    return path


def test_48_bit_rgb_png_keeps_its_range(tmp_path: Path) -> None:
    raw = RNG.integers(0, 65536, size=(9, 11, 3)).astype(np.uint16)
    got = load_image(_png48(tmp_path / "rgb48.png", raw)).astype(int)
    assert np.abs(got - _rescale16(raw).astype(int)).max() <= 1  # Pillow keeps the high byte: v >> 8
    np.testing.assert_array_equal(got, raw >> 8)


def test_64_bit_rgba_png_is_composited(tmp_path: Path) -> None:
    raw = RNG.integers(0, 65536, size=(5, 6, 3)).astype(np.uint16)
    alpha = np.where(RNG.random((5, 6)) < 0.5, 0, 65535).astype(np.uint16)
    got = load_image(_png48(tmp_path / "rgba64.png", raw, alpha))
    opaque = alpha == 65535
    np.testing.assert_array_equal(got[opaque], (raw >> 8)[opaque])
    assert np.all(got[~opaque] == 0)  # onto the black background


# --------------------------------------------------------------------------- palette, CMYK, alpha, grey, 1-bit


def _palette_image(n: int = 6) -> tuple[np.ndarray, np.ndarray, Image.Image]:
    palette = RNG.integers(0, 256, size=(n, 3), dtype=np.uint8)
    index = RNG.integers(0, n, size=(10, 13), dtype=np.uint8)
    image = Image.fromarray(index, "P")
    image.putpalette(palette.ravel().tolist())
    return palette, index, image


def test_palette_image(tmp_path: Path) -> None:
    palette, index, image = _palette_image()
    for suffix in (".png", ".gif", ".bmp"):
        path = _save(tmp_path, f"p{suffix}", image)
        np.testing.assert_array_equal(load_image(path), palette[index], err_msg=suffix)


def test_palette_with_transparency(tmp_path: Path) -> None:
    palette, index, image = _palette_image()
    path = _save(tmp_path, "pt.png", image, transparency=2)
    clear = index == 2
    rgb = load_image(path)
    np.testing.assert_array_equal(rgb[~clear], palette[index][~clear])
    assert np.all(rgb[clear] == 0)  # composited onto BACKGROUND (black)
    rgba = load_image(path, mode="RGBA")
    np.testing.assert_array_equal(rgba[..., :3], palette[index])
    np.testing.assert_array_equal(rgba[..., 3], np.where(clear, 0, 255))


def test_cmyk(tmp_path: Path) -> None:
    cmyk = RNG.integers(0, 256, size=(7, 9, 4), dtype=np.uint8)
    path = _save(tmp_path, "c.tif", Image.fromarray(cmyk, "CMYK"))
    c, k = cmyk[..., :3].astype(np.float64), cmyk[..., 3:].astype(np.float64)
    want = (255 - c) * (255 - k) / 255
    assert np.abs(load_image(path).astype(float) - want).max() <= 1.0


def test_rgba_composited_or_kept(tmp_path: Path) -> None:
    rgba = RNG.integers(0, 256, size=(8, 10, 4), dtype=np.uint8)
    path = _save(tmp_path, "a.png", Image.fromarray(rgba, "RGBA"))
    want = rgba[..., :3].astype(np.float64) * rgba[..., 3:].astype(np.float64) / 255  # over black
    assert np.abs(load_image(path).astype(float) - want).max() <= 1.0
    np.testing.assert_array_equal(load_image(path, mode="RGBA"), rgba)
    assert np.abs(load_image(path, mode="L").astype(float) - _luma(want)).max() <= 1.5  # composited, then luma


def test_grey_with_alpha(tmp_path: Path) -> None:
    la = RNG.integers(0, 256, size=(6, 5, 2), dtype=np.uint8)
    path = _save(tmp_path, "la.png", Image.fromarray(la, "LA"))
    want = la[..., 0].astype(np.float64) * la[..., 1] / 255
    assert np.abs(load_image(path).astype(float) - _grey_rgb(want)).max() <= 1.0
    rgba = load_image(path, mode="RGBA")
    np.testing.assert_array_equal(rgba[..., :3], _grey_rgb(la[..., 0]))
    np.testing.assert_array_equal(rgba[..., 3], la[..., 1])


def test_grey_and_one_bit(tmp_path: Path) -> None:
    grey = RNG.integers(0, 256, size=(6, 5), dtype=np.uint8)
    np.testing.assert_array_equal(load_image(_save(tmp_path, "g.png", Image.fromarray(grey))), _grey_rgb(grey))
    bits = RNG.random((6, 16)) < 0.5
    path = _save(tmp_path, "b.png", Image.fromarray(bits))
    with Image.open(path) as im:
        assert im.mode == "1"
    np.testing.assert_array_equal(load_image(path, mode="L"), np.where(bits, 255, 0))


# --------------------------------------------------------------------------- EXIF orientation


@pytest.mark.parametrize(("orientation", "upright"), [
    (1, lambda a: a), (2, lambda a: a[:, ::-1]), (3, lambda a: a[::-1, ::-1]), (4, lambda a: a[::-1]),
    (5, lambda a: np.swapaxes(a, 0, 1)), (6, lambda a: np.rot90(a, k=-1)),
    (7, lambda a: np.swapaxes(a, 0, 1)[::-1, ::-1]), (8, lambda a: np.rot90(a, k=1)),
])
def test_exif_rotated_photos_are_turned_upright(tmp_path: Path, orientation: int, upright: object) -> None:
    raw = RNG.integers(0, 256, size=(5, 8, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = _save(tmp_path, "exif.png", Image.fromarray(raw), exif=exif)
    got = load_image(path)
    np.testing.assert_array_equal(got, upright(raw))  # type: ignore[operator]
    assert got.shape == ((8, 5, 3) if orientation >= 5 else (5, 8, 3))


# --------------------------------------------------------------------------- refused before allocating


def _bomb(path: Path, width: int, height: int) -> Path:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))
    return path


@pytest.mark.parametrize(("width", "height"), [(10_000, 10_000), (200_000, 200_000), (2**31 - 1, 2)])
def test_bombs_are_refused_from_the_header(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, width: int,
                                           height: int) -> None:
    def no_decoding(self: Image.Image) -> None:
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(Image.Image, "load", no_decoding)
    path = _bomb(tmp_path / "bomb.png", width, height)
    with pytest.raises(DataError, match=r"bomb\.png: .*exceeds") as err:
        load_image(path)
    assert "\n" not in str(err.value)


def test_the_pixel_limit_and_the_memory_check(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _save(tmp_path, "small.png", Image.fromarray(np.zeros((20, 30, 3), np.uint8)))
    monkeypatch.setenv("EPG_MAX_IMAGE_PIXELS", "500")
    with pytest.raises(DataError, match=r"small\.png: 30x20 = 600 pixels exceeds the limit of 500"):
        load_image(path)
    monkeypatch.delenv("EPG_MAX_IMAGE_PIXELS")
    monkeypatch.setattr(images_module, "_available_memory", lambda: 4096)
    with pytest.raises(DataError, match=r"small\.png: 30x20 pixels would need about .* GiB of memory"):
        load_image(path)
    monkeypatch.undo()
    with pytest.raises(UsageError, match=r"^requested size 20000x20000 = 400,000,000 pixels exceeds the limit"):
        load_image(path, size=20_000)
    assert load_image(path).shape == (20, 30, 3)


@pytest.mark.parametrize(("data", "match"), [
    (b"", "cannot identify image format"),
    (b"plain text\n", "cannot identify image format"),
    (None, "truncated"),  # a truncated PNG
])
def test_unreadable_files_are_one_line_data_errors(tmp_path: Path, data: bytes | None, match: str) -> None:
    path = tmp_path / "x.png"
    if data is None:
        buf = io.BytesIO()
        Image.fromarray(RNG.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(buf, format="PNG")
        data = buf.getvalue()[:200]
    path.write_bytes(data)
    with pytest.raises(DataError, match=r"x\.png: not an image file \(.*" + match) as err:
        load_image(path)
    assert "\n" not in str(err.value)
    with pytest.raises(DataError, match="image file not found"):
        load_image(tmp_path / "missing.png")
    with pytest.raises(DataError, match="not a file"):
        load_image(tmp_path)
    with pytest.raises(UsageError, match="image mode must be RGB, RGBA or L"):
        load_image(path, mode="CMYK")
