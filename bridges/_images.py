"""Image files shared by every stage: reading one image as uint8 RGB, and natural file order.

Private to ``epg_bridges``: the public names are re-exported by ``epg_bridges.interventions``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

__all__ = ["IMAGE_SUFFIXES", "natural_key", "load_image"]

IMAGE_SUFFIXES: frozenset[str] = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm"})

_DIGITS = re.compile(r"(\d+)")


def natural_key(name: str) -> tuple[tuple[int, int, str], ...]:
    """Sort key that compares digit runs as numbers: ``frame_9 < frame_10`` (case-insensitive otherwise).

    Used for frames and checkpoint lists alike; the digit run itself breaks ties (``e01`` before ``e1``).
    """
    return tuple((0, int(p), p) if p.isdigit() else (1, 0, p.lower()) for p in _DIGITS.split(name) if p)


def _size(size: int | Sequence[int] | None) -> tuple[int, int] | None:
    """Normalise a size argument to ``(width, height)``; an int means a square."""
    if size is None:
        return None
    if isinstance(size, (int, np.integer)):
        w = h = int(size)
    else:
        if len(size) != 2:
            raise ValueError(f"size must be an int or (width, height), got {size!r}")
        w, h = int(size[0]), int(size[1])
    if w < 1 or h < 1:
        raise ValueError(f"size must be positive, got {size!r}")
    return w, h


def load_image(
    path: str | Path, *, size: int | Sequence[int] | None = None, mode: str = "RGB"
) -> np.ndarray:
    """Read an image file as uint8, resized (bicubic) to ``size = (width, height)`` if given.

    ``mode`` is ``"RGB"`` (``[H, W, 3]``, transparency composited onto black), ``"RGBA"`` (``[H, W, 4]``, e.g. a
    patch whose alpha is its mask) or ``"L"`` (``[H, W]`` grey, e.g. a mask). Unreadable or missing files raise
    a one-line ValueError naming the path.
    """
    if mode not in ("RGB", "RGBA", "L"):
        raise ValueError(f"image mode must be RGB, RGBA or L, got {mode!r}")
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"{p}: image file not found")
    try:
        with Image.open(p) as im:
            im.load()
            pic = _to_rgb(im) if mode == "RGB" else im.convert(mode)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        reason = "cannot identify image format" if isinstance(exc, UnidentifiedImageError) else \
            (str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        raise ValueError(f"{p}: not an image file ({reason})") from None
    wh = _size(size)
    if wh is not None and pic.size != wh:
        pic = pic.resize(wh, Image.Resampling.BICUBIC)
    return np.asarray(pic, dtype=np.uint8).copy()


def _to_rgb(im: Image.Image) -> Image.Image:
    """Convert any PIL mode to RGB; transparent pixels are composited onto black."""
    if im.mode in ("RGBA", "LA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        base = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        return Image.alpha_composite(base, rgba).convert("RGB")
    return im.convert("RGB")


