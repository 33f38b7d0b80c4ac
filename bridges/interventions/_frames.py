"""Captured sequences: an ordered folder of frames (e.g. a turntable, one image per degree) -> InterventionSequence.

Frames are sorted naturally (``frame_10`` after ``frame_9``), converted to RGB and resized to one common size
(the given one, or the first frame's). Property values come from an optional CSV with one value per frame (a
header row is allowed); without a CSV the frame index is the property.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from epg_core import DataError, InterventionSequence, MissingFileError

from .._images import IMAGE_SUFFIXES, load_image, natural_key
from .._progress import Counter, Progress
from ._synthetic import check_fits

__all__ = ["list_frames", "read_values_csv", "frames_sequence"]


def list_frames(folder: str | Path) -> list[Path]:
    """Image files directly inside ``folder`` in natural order; DataError if there are none."""
    root = Path(folder)
    if not root.is_dir():
        raise (DataError if root.exists() else MissingFileError)(
            f"frames folder does not exist or is not a folder: {root}")
    files = [p for p in root.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    if not files:
        raise DataError(f"no image files ({', '.join(sorted(IMAGE_SUFFIXES))}) in folder {root}")
    return sorted(files, key=lambda p: natural_key(p.name))


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
    With ``n_frames``, a different number of value rows raises a one-line DataError.
    """
    p = Path(path)
    if not p.is_file():
        raise DataError(f"values CSV does not exist: {p}")
    try:
        with p.open(newline="", encoding="utf-8-sig") as fh:
            rows = [r for r in csv.reader(fh) if any(c.strip() for c in r)]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"cannot read values CSV {p}: {type(exc).__name__}") from None
    if not rows:
        raise DataError(f"values CSV is empty: {p}")
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
            raise DataError(f"values CSV {p}: row {i + 1 + (header is not None)} has no finite number "
                             f"in column {col}: {cell!r}")
        values[i] = v
    if n_frames is not None and values.size != n_frames:
        raise DataError(f"values CSV {p} has {values.size} value rows but there are {n_frames} frames")
    return values, header


def _csv_column(first_row: list[str], column: str | int | None, path: Path) -> int:
    """Index of the value column: by header name, by index, or the last column."""
    if column is None:
        return len(first_row) - 1
    if isinstance(column, int) or (isinstance(column, str) and column.lstrip("-").isdigit()):
        idx = int(column)
        idx = idx if idx >= 0 else len(first_row) + idx
        if not 0 <= idx < len(first_row):
            raise DataError(f"values CSV {path} has no column {column} (it has {len(first_row)})")
        return idx
    names = [c.strip() for c in first_row]
    if column not in names:
        raise DataError(f"values CSV {path} has no column named {column!r} (header: {', '.join(names)})")
    return names.index(column)


def frames_sequence(
    folder: str | Path,
    *,
    values_csv: str | Path | None = None,
    column: str | int | None = None,
    size: int | Sequence[int] | None = None,
    property: str | None = None,
    unit: str | None = None,
    attrs: Mapping[str, Any] | None = None,
    progress: Progress | None = None,
) -> InterventionSequence:
    """Read an ordered folder of frames into an InterventionSequence (natural order, one common size).

    ``size`` is ``(width, height)`` (or an int for a square); by default the first frame's size. Values come
    from ``values_csv`` (one per frame) or are the frame indices 0..N-1. ``property``/``unit`` name them
    (defaults: the CSV header or ``"value"``; ``"frame-index"`` without a CSV). ``image`` (the source id) is the
    folder's name. ``attrs`` adds provenance and overrides these defaults. ``progress(done, total)`` counts frames.
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
    check_fits(len(files), first.shape[0], first.shape[1], f"frames in {folder}")
    images = np.empty((len(files), first.shape[0], first.shape[1], 3), dtype=np.uint8)
    images[0] = first
    counter = Counter(progress, len(files), 1)
    for i, f in enumerate(files[1:], start=1):
        images[i] = load_image(f, size=wh)
        counter.add()
    seq_attrs: dict[str, Any] = {
        "source": "frames",
        "property": property or (header if header else ("value" if values_csv is not None else "frame-index")),
        "image": Path(folder).resolve().name or "frames",
        "unit": unit if unit is not None else "",
        "includes_original": False,
        "folder": str(Path(folder).resolve()),
        "frame_files": [f.name for f in files],
        "width": wh[0],
        "height": wh[1],
    }
    if values_csv is not None:
        seq_attrs["values_csv"] = str(Path(values_csv).resolve())
    seq_attrs.update({k: v for k, v in (attrs or {}).items() if v is not None})
    return InterventionSequence(images=images, values=values, attrs=seq_attrs)
