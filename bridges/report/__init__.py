"""Presentation: a static HTML report that answers a study, with its PNG figures (the ``report`` extra).

``build_report(outputs, out_dir, ReportOptions(...), interventions=[...])`` scores the outputs (or takes the
scores), then writes a verdict table per property x model, mean behaviour curves with a band over images,
per-sequence small multiples, null distributions that agree with the table's p-values, EPG over checkpoints,
EPG against prediction flips and intervention strips into ``out_dir/index.html``.
"""

from __future__ import annotations

from ._build import build_report as build_report
from ._common import ReportOptions as ReportOptions
from ._common import plot_name as plot_name
from ._figures import null_words as null_words

__all__ = ["build_report", "ReportOptions", "plot_name", "null_words"]
