"""Contact sheet: a PNG with a few evenly spaced steps of a sequence, captioned with their property values.

The paper insists on looking at the interventions before trusting any score; this is the picture to look at.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from epg_core import DataError, InterventionSequence, UsageError, atomic_path

__all__ = ["steps_to_show", "contact_sheet_image", "write_contact_sheet"]

_PAD = 4
_CAPTION = 14


def steps_to_show(n_steps: int, n: int = 8) -> np.ndarray:
    """Indices of ``min(n, n_steps)`` evenly spaced steps, always including the first and the last."""
    if n_steps < 1:
        raise DataError(f"a sequence needs at least one step, got {n_steps}")
    if n < 1:
        raise UsageError(f"need at least one step to show, got {n}")
    k = min(n, n_steps)
    return np.unique(np.rint(np.linspace(0, n_steps - 1, k)).astype(int))


def _caption(index: int, value: float, unit: str) -> str:
    """Short caption ``#index  value unit``."""
    text = f"#{index}  {value:.4g}"
    return f"{text} {unit}" if unit else text


def contact_sheet_image(
    sequence: InterventionSequence, *, n: int = 8, thumb: int = 128, columns: int | None = None
) -> Image.Image:
    """Build the contact sheet in memory: ``n`` thumbnails (height ``thumb``) in a grid, captions beneath."""
    if not sequence.images_loaded:
        raise UsageError("the sequence has no images loaded; read it with images=True")
    if thumb < 8:
        raise UsageError(f"thumbnail height must be >= 8 pixels, got {thumb}")
    idx = steps_to_show(sequence.n_steps, n)
    h, w = sequence.images.shape[1:3]
    tw = max(1, int(round(w * thumb / h)))
    cols = int(columns) if columns else len(idx)
    if cols < 1:
        raise UsageError(f"columns must be >= 1, got {columns}")
    rows = -(-len(idx) // cols)
    cell_w, cell_h = tw + 2 * _PAD, thumb + _CAPTION + 2 * _PAD
    sheet = Image.new("RGB", (cols * cell_w, rows * cell_h), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    unit = str(sequence.attrs.get("unit", "") or "")
    for k, i in enumerate(idx):
        r, c = divmod(k, cols)
        x0, y0 = c * cell_w + _PAD, r * cell_h + _PAD
        tile = Image.fromarray(sequence.images[i]).resize((tw, thumb), Image.Resampling.BICUBIC)
        sheet.paste(tile, (x0, y0))
        draw.text((x0, y0 + thumb + 1), _caption(int(i), float(sequence.values[i]), unit), fill=(0, 0, 0), font=font)
    return sheet


def write_contact_sheet(
    sequence: InterventionSequence,
    path: str | os.PathLike[str],
    *,
    n: int = 8,
    thumb: int = 128,
    columns: int | None = None,
) -> Path:
    """Write the contact sheet PNG to ``path`` (atomically: temporary file, then rename); return the path."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet = contact_sheet_image(sequence, n=n, thumb=thumb, columns=columns)
    with atomic_path(out) as tmp:
        sheet.save(tmp, format="PNG")
    return out
