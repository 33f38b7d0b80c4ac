"""Shared pieces of the report: options, file names that never collide, number formats, saving figures."""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

import epg_core as E  # noqa: E402

__all__ = ["ReportOptions", "plot_name", "fmt_p", "fmt_num", "save", "DASH", "MODEL_COLORS", "model_color"]

#: What an empty cell shows (never ``nan``).
DASH = "–"
#: One colour per model, stable across every figure of the page.
MODEL_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf",
                "#7f7f7f", "#bcbd22")
DPI = 100


@dataclass(frozen=True)
class ReportOptions:
    """What the report shows and how the scores behind it are computed.

    ``score``: the options to score with (the table and the null plots use exactly these). ``checkpoints``:
    which checkpoints the per-sequence curves show: "last" (the last finished), "all", or a list of names.
    ``max_null_plots``: null distributions drawn (verdict rows in table order). ``strip_frames``: frames per
    intervention strip. ``max_columns``: images per row of the small multiples. ``max_table_rows``: rows of the
    full scores table on the page (all of them are in the CSV).
    """

    score: E.ScoreOptions = field(default_factory=E.ScoreOptions)
    checkpoints: str | tuple[str, ...] = "last"
    max_null_plots: int = 24
    strip_frames: int = 6
    max_columns: int = 6
    max_table_rows: int = 300
    title: str = "epg report"

    def checked(self) -> ReportOptions:
        """The options with ``checkpoints`` normalised; a UsageError naming the first bad value."""
        ck: Any = self.checkpoints
        if isinstance(ck, str):
            if ck not in ("last", "all"):
                ck = tuple(n.strip() for n in ck.split(",") if n.strip())
                if not ck:
                    raise E.UsageError("checkpoints must be 'last', 'all' or checkpoint names")
        else:
            ck = tuple(str(n) for n in ck)
            if not ck:
                raise E.UsageError("checkpoints must be 'last', 'all' or a non-empty list of names")
        for name, least in (("max_null_plots", 0), ("max_table_rows", 0), ("strip_frames", 1), ("max_columns", 1)):
            if int(getattr(self, name)) < least:
                raise E.UsageError(f"{name} must be >= {least}, got {getattr(self, name)}")
        return ReportOptions(**{**self.__dict__, "checkpoints": ck, "score": self.score.checked()})


def plot_name(kind: str, *parts: str) -> str:
    """``kind_slug_hash.png``: a readable slug plus a hash of the exact parts, so names that differ only in
    punctuation or case ("a.b" and "a-b") never share a file."""
    slug = re.sub(r"[^A-Za-z0-9]+", "-", "-".join(parts)).strip("-").lower()[:48] or "x"
    digest = hashlib.sha1("\x1f".join((kind, *parts)).encode("utf-8")).hexdigest()[:8]
    return f"{kind}_{slug}_{digest}.png"


def fmt_num(value: Any, digits: int = 3) -> str:
    """A number with ``digits`` significant digits; missing or non-finite values as a dash."""
    if value is None or isinstance(value, str):
        return DASH if not value else str(value)
    v = float(value)
    if not math.isfinite(v):
        return DASH
    if v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e5):
        return f"{v:.{max(digits - 1, 1)}e}"
    return f"{v:.{digits}g}"


def fmt_p(value: Any) -> str:
    """A p- or q-value as the table and the null plots both print it."""
    if value is None or not math.isfinite(float(value)):
        return DASH
    v = float(value)
    return f"{v:.2e}" if 0 < v < 1e-3 else f"{v:.3g}"


def model_color(models: list[str], model: str) -> str:
    """The colour of ``model`` (its position among all models of the page)."""
    return MODEL_COLORS[models.index(model) % len(MODEL_COLORS)] if model in models else "#333333"


def save(fig: Figure, path: Path) -> Path:
    """Save a figure as PNG atomically (temporary file renamed into place) and close it."""
    try:
        with E.atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=DPI, format="png")
    finally:
        plt.close(fig)
    return path
