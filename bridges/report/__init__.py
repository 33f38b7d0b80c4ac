"""Presentation: PNG plots and a static HTML report of an outputs file (the ``report`` extra: matplotlib)."""

from __future__ import annotations

from ._report import build_report as build_report
from ._report import plot_curves as plot_curves
from ._report import plot_epg_over_checkpoints as plot_epg_over_checkpoints
from ._report import plot_null as plot_null

__all__ = ["build_report", "plot_curves", "plot_epg_over_checkpoints", "plot_null"]
