"""Captured sequences: an ordered folder of frames (e.g. a turntable, one image per degree) -> InterventionSequence.

Frames are sorted naturally (``frame_10`` after ``frame_9``), converted to RGB and resized to one common size
(the given one, or the first frame's). Property values come from an optional CSV with one value per frame (a
header row is allowed); without a CSV the frame index is the property.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from epg_core import InterventionSequence

__all__ = [
    "IMAGE_SUFFIXES",
    "natural_key",
    "list_frames",
    "load_image",
    "read_values_csv",
    "frames_sequence",
]

IMAGE_SUFFIXES: frozenset[str] = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm"})

_DIGITS = re.compile(r"(\d+)")


def natural_key(name: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key that compares digit runs as numbers: ``frame_9 < frame_10`` (case-insensitive otherwise)."""
    parts = _DIGITS.split(name)
    return tuple((0, int(p)) if p.isdigit() else (1, p.lower()) for p in parts if p != "")


def list_frames(folder: str | Path) -> list[Path]:
    """Image files directly inside ``folder`` in natural order; ValueError if there are none."""
    root = Path(folder)
    if not root.is_dir():
        raise ValueError(f"frames folder does not exist or is not a folder: {root}")
    files = [p for p in root.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    if not files:
        raise ValueError(f"no image files ({', '.join(sorted(IMAGE_SUFFIXES))}) in folder {root}")
    return sorted(files, key=lambda p: natural_key(p.name))


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


def _parse_float(cell: str) -> float | None:
    """A CSV cell as a float, or None if it is not a number."""
    try:
        return float(cell.strip())
    except ValueError:
        return None


def read_values_csv(
    path: str | Path, n_frames: int | None = None, *, column: str | int | None = None
) -> tuple[np.ndarray, str | None]:
    """Read one property value per row from a CSV; return the values and the header name (if there is a header).

    ``column`` selects a column by header name or 0-based index; by default the last column (so both
    ``value`` and ``filename,value`` layouts work). A first row whose cell is not a number is a header.
    With ``n_frames``, a different number of value rows raises a one-line ValueError.
    """
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"values CSV does not exist: {p}")
    try:
        with p.open(newline="", encoding="utf-8-sig") as fh:
            rows = [r for r in csv.reader(fh) if any(c.strip() for c in r)]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ValueError(f"cannot read values CSV {p}: {type(exc).__name__}") from None
    if not rows:
        raise ValueError(f"values CSV is empty: {p}")
    col = _csv_column(rows[0], column, p)
    header: str | None = None
    if col < len(rows[0]) and _parse_float(rows[0][col]) is None:
        header = rows[0][col].strip()
        rows = rows[1:]
    values = np.empty(len(rows), dtype=np.float64)
    for i, row in enumerate(rows):
        cell = row[col] if col < len(row) else ""
        v = _parse_float(cell)
        if v is None or not np.isfinite(v):
            raise ValueError(f"values CSV {p}: row {i + 1 + (header is not None)} has no finite number in column {col}: {cell!r}")
        values[i] = v
    if n_frames is not None and values.size != n_frames:
        raise ValueError(f"values CSV {p} has {values.size} value rows but there are {n_frames} frames")
    return values, header


def _csv_column(first_row: list[str], column: str | int | None, path: Path) -> int:
    """Index of the value column: by header name, by index, or the last column."""
    if column is None:
        return len(first_row) - 1
    if isinstance(column, int) or (isinstance(column, str) and column.lstrip("-").isdigit()):
        idx = int(column)
        idx = idx if idx >= 0 else len(first_row) + idx
        if not 0 <= idx < len(first_row):
            raise ValueError(f"values CSV {path} has no column {column} (it has {len(first_row)})")
        return idx
    names = [c.strip() for c in first_row]
    if column not in names:
        raise ValueError(f"values CSV {path} has no column named {column!r} (header: {', '.join(names)})")
    return names.index(column)


def frames_sequence(
    folder: str | Path,
    *,
    values_csv: str | Path | None = None,
    column: str | int | None = None,
    size: int | Sequence[int] | None = None,
    property: str | None = None,
    unit: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> InterventionSequence:
    """Read an ordered folder of frames into an InterventionSequence (natural order, one common size).

    ``size`` is ``(width, height)`` (or an int for a square); by default the first frame's size. Values come
    from ``values_csv`` (one per frame) or are the frame indices 0..N-1. ``property``/``unit`` name them
    (defaults: the CSV header or ``"value"``; ``"frame index"`` without a CSV).
    """
    files = list_frames(folder)
    values: np.ndarray
    header: str | None = None
    if values_csv is not None:
        values, header = read_values_csv(values_csv, len(files), column=column)
    else:
        values = np.arange(len(files), dtype=np.float64)
    first = load_image(files[0], size=size)
    wh = (first.shape[1], first.shape[0])
    images = np.empty((len(files), first.shape[0], first.shape[1], 3), dtype=np.uint8)
    images[0] = first
    if progress is not None:
        progress(1)
    for i, f in enumerate(files[1:], start=1):
        images[i] = load_image(f, size=wh)
        if progress is not None:
            progress(1)
    attrs: dict[str, Any] = {
        "source": "frames",
        "property": property or (header if header else ("value" if values_csv is not None else "frame index")),
        "unit": unit if unit is not None else "",
        "includes_original": False,
        "folder": str(Path(folder).resolve()),
        "frame_files": [f.name for f in files],
        "width": wh[0],
        "height": wh[1],
    }
    if values_csv is not None:
        attrs["values_csv"] = str(Path(values_csv).resolve())
    return InterventionSequence(images=images, values=values, attrs=attrs)
