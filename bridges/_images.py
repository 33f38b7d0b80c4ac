"""Image files shared by every stage: reading one image as uint8 RGB, and natural file order.

:func:`load_image` is the one image reader of epg. It converts every Pillow mode the same documented way:

- 16-bit and 32-bit grey (``I;16``, ``I;16B``, ``I;16L``, ``I`` with values in 0..65535) is *rescaled*
  to 0..255 (``round(v * 255 / 65535)``), never clipped; ``I`` with values outside 0..65535 and float
  images (``F``) outside ``[0, 1]`` are stretched linearly from their min..max to 0..255; ``F`` within
  ``[0, 1]`` is multiplied by 255; NaN/Inf pixels are refused. 48/64-bit RGB(A) files are decoded by
  Pillow to their high byte (``v >> 8``, within 1 of the rescale);
- palette (``P``, ``PA``, with or without transparency), CMYK, YCbCr, 1-bit and grey become RGB;
- transparency (``LA``, ``RGBA``, palette transparency) is composited onto :data:`BACKGROUND` (black) for
  ``mode="RGB"``/``"L"``, and kept for ``mode="RGBA"``;
- photos carrying an EXIF orientation are turned upright first (``ImageOps.exif_transpose``).

Decompression bombs (more than :func:`max_image_pixels` pixels) and images whose arrays would not fit in
the memory available are refused from the header, before any pixel is decoded. Every failure is one line
naming the file (:class:`epg_core.DataError`; a bad argument is :class:`epg_core.UsageError`).

Private to ``epg_bridges``: the public names are re-exported by ``epg_bridges.interventions``.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from epg_core import DataError, MissingFileError, UsageError

__all__ = ["IMAGE_SUFFIXES", "BACKGROUND", "natural_key", "load_image", "max_image_pixels"]

IMAGE_SUFFIXES: frozenset[str] = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm"})
#: Colour that transparent pixels are composited onto when an image is read as RGB or grey.
BACKGROUND: tuple[int, int, int] = (0, 0, 0)

_DIGITS = re.compile(r"(\d+)")
_WIDE_GREY = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I", "F"})
_BYTES_PER_PIXEL = 16  # generous bound on the bytes one pixel needs while decoding and converting


def natural_key(name: str) -> tuple[tuple[int, int, str], ...]:
    """Sort key that compares digit runs as numbers: ``frame_9 < frame_10`` (case-insensitive otherwise).

    Used for frames and checkpoint lists alike; the digit run itself breaks ties (``e01`` before ``e1``).
    """
    return tuple((0, int(p), p) if p.isdigit() else (1, 0, p.lower()) for p in _DIGITS.split(name) if p)


def max_image_pixels() -> int:
    """Most pixels an image may have (``EPG_MAX_IMAGE_PIXELS``, default Pillow's bomb limit, ~89 M)."""
    text = os.environ.get("EPG_MAX_IMAGE_PIXELS", "")
    try:
        return max(1, int(text)) if text else int(Image.MAX_IMAGE_PIXELS or 89_478_485)
    except ValueError:
        raise UsageError(f"EPG_MAX_IMAGE_PIXELS must be an integer, got {text!r}") from None


def _available_memory() -> int:
    """Bytes of memory available to a new allocation (``MemAvailable``; a large number where unknown)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 1 << 62


def _size(size: int | Sequence[int] | None) -> tuple[int, int] | None:
    """Normalise a size argument to ``(width, height)``; an int means a square."""
    if size is None:
        return None
    if isinstance(size, (int, np.integer)):
        w = h = int(size)
    else:
        if len(size) != 2:
            raise UsageError(f"size must be an int or (width, height), got {size!r}")
        w, h = int(size[0]), int(size[1])
    if w < 1 or h < 1:
        raise UsageError(f"size must be positive, got {size!r}")
    return w, h


def _check_pixels(where: str, w: int, h: int, error: type[DataError] | type[UsageError]) -> None:
    """Refuse ``w x h`` pixels above the bomb limit or beyond the memory available (before allocating).

    ``where`` starts the message: ``"<file>:"`` for an image file, ``"requested size"`` for a size argument.
    """
    limit = max_image_pixels()
    bomb = " (a decompression bomb?)" if error is DataError else ""
    if w * h > limit:
        raise error(f"{where} {w}x{h} = {w * h:,} pixels exceeds the limit of {limit:,}{bomb}; "
                    "set EPG_MAX_IMAGE_PIXELS to allow more")
    need, have = w * h * _BYTES_PER_PIXEL, _available_memory()
    if need > have:
        raise error(f"{where} {w}x{h} pixels would need about {need / 2**30:.1f} GiB of memory; "
                    f"{have / 2**30:.1f} GiB is available")


def load_image(
    path: str | Path, *, size: int | Sequence[int] | None = None, mode: str = "RGB"
) -> np.ndarray:
    """Read an image file as uint8, resized (bicubic) to ``size = (width, height)`` if given.

    ``mode`` is ``"RGB"`` (``[H, W, 3]``, transparency composited onto :data:`BACKGROUND`), ``"RGBA"``
    (``[H, W, 4]``, e.g. a patch whose alpha is its mask) or ``"L"`` (``[H, W]`` grey, e.g. a mask). Modes
    are converted as the module doc says. Unreadable, missing or oversized files raise a one-line
    :class:`epg_core.DataError` naming the path.
    """
    if mode not in ("RGB", "RGBA", "L"):
        raise UsageError(f"image mode must be RGB, RGBA or L, got {mode!r}")
    wh = _size(size)
    p = Path(path)
    if wh is not None:
        _check_pixels("requested size", wh[0], wh[1], UsageError)
    if not p.exists():
        raise MissingFileError(f"{p}: image file not found")
    if not p.is_file():
        raise DataError(f"{p}: not a file (an image file was expected)")
    pic = _read(p, mode)
    if wh is not None and pic.size != wh:
        pic = pic.resize(wh, Image.Resampling.BICUBIC)
    return np.asarray(pic, dtype=np.uint8).copy()


def _read(p: Path, mode: str) -> Image.Image:
    """Open, check the size from the header, decode and convert one file; every failure is a DataError."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(p) as im:
                _check_pixels(f"{p}:", im.width, im.height, DataError)
                im.load()
                upright = ImageOps.exif_transpose(im) or im
                return _convert(upright, mode, str(p))
    except DataError:
        raise
    except Image.DecompressionBombError as exc:
        raise DataError(f"{p}: refused: {_first(exc)}") from None
    except UnidentifiedImageError:
        raise DataError(f"{p}: not an image file (cannot identify image format)") from None
    except (OSError, SyntaxError, ValueError, EOFError, MemoryError) as exc:
        raise DataError(f"{p}: not an image file ({_first(exc)})") from None


def _first(exc: BaseException) -> str:
    lines = [ln for ln in str(exc).splitlines() if ln.strip()]
    return lines[0].strip() if lines else type(exc).__name__


def _convert(im: Image.Image, mode: str = "RGB", where: str = "image") -> Image.Image:
    """Convert a decoded PIL image of any mode to 8-bit ``mode`` (``RGB``, ``RGBA`` or ``L``), as documented above."""
    if im.mode in _WIDE_GREY:
        im = Image.fromarray(_rescale_wide(np.asarray(im), im.mode, where), "L")
    elif im.mode == "1":
        im = im.convert("L")
    elif im.mode in ("P", "PA"):
        alpha = im.mode == "PA" or "transparency" in im.info
        im = im.convert("RGBA" if alpha else "RGB")
    elif im.mode in ("La", "RGBa"):
        im = im.convert("RGBA" if im.mode == "RGBa" else "LA")
    elif im.mode not in ("L", "LA", "RGB", "RGBA"):
        try:
            im = im.convert("RGB")  # CMYK, YCbCr, RGBX, HSV ...
        except ValueError:
            raise DataError(f"{where}: unsupported colour mode {im.mode}") from None
    if mode == "RGBA":
        return im.convert("RGBA")
    if im.mode in ("LA", "RGBA"):
        rgba = im.convert("RGBA")
        base = Image.new("RGBA", rgba.size, (*BACKGROUND, 255))
        im = Image.alpha_composite(base, rgba).convert("RGB")
    return im.convert(mode)


def _rescale_wide(values: np.ndarray, mode: str, where: str) -> np.ndarray:
    """16/32-bit integer or float grey -> uint8 0..255 (rescaled, never clipped; see the module doc)."""
    if mode == "F":
        x = values.astype(np.float64)
        if not np.all(np.isfinite(x)):
            raise DataError(f"{where}: float image holds NaN or Inf pixels")
        low, high = (float(x.min()), float(x.max())) if x.size else (0.0, 1.0)
        if low >= 0.0 and high <= 1.0:
            return np.rint(x * 255.0).astype(np.uint8)
        return _stretch(x, low, high)
    x = values.astype(np.int64)
    low, high = (int(x.min()), int(x.max())) if x.size else (0, 0)
    if mode != "I" or (low >= 0 and high <= 65535):
        return ((x * 255 + 32767) // 65535).astype(np.uint8)  # round(v * 255 / 65535), exact in integers
    return _stretch(x.astype(np.float64), float(low), float(high))


def _stretch(x: np.ndarray, low: float, high: float) -> np.ndarray:
    """Linear map of ``low..high`` onto 0..255 (a constant image becomes 0)."""
    if high <= low:
        return np.zeros(x.shape, np.uint8)
    return np.rint((x - low) * (255.0 / (high - low))).astype(np.uint8)
