"""The report's local-baselines section: the flip task's table and ROC curves, and the paper's Fig. 18 view.

It draws what ``epg_bridges.baselines.baselines_report`` gathered (the report imports no baselines code: the CLI
or the caller passes that object to ``build_report(..., baselines=...)``): how well EPG and each local explanation
predict that an intervention flips the prediction (the statistics are ``epg_core.flip_task``'s), the ROC curve of
every score, and for a few sequences each method's explanation of the original image beside its explanation of
the intervened image (one colour scale per method and sequence, so the change is visible).
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

import epg_core as E

from ._common import plot_name, save
from ._page import png_size

__all__ = ["BaselinesView", "plot_baselines", "baselines_section"]

_PREFIX = "baselines_"


@dataclass
class BaselinesView:
    """What the section shows: the table rows, the ROC figure, the explanation figures (sequence, path)."""

    rows: list[dict[str, Any]]
    target: str
    n_units: int
    positives: int
    roc: Path
    maps: list[tuple[str, Path]] = field(default_factory=list)


def _roc_figure(results: Mapping[str, E.FlipTaskResult], out_dir: Path) -> Path:
    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    for name, r in results.items():
        auc = "–" if math.isnan(r.auroc) else f"{r.auroc:.2f}"
        ax.plot(r.fpr, r.tpr, lw=2.2 if name == "epg" else 1.2, color="black" if name == "epg" else None,
                label=f"{'EPG' if name == 'epg' else name} (AUROC {auc})")
    ax.plot([0, 1], [0, 1], ls=":", color="grey", lw=0.8)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    first = next(iter(results.values()))
    ax.set_title(f"predicting a flip ({first.positives} of {first.n} units flip)", fontsize=10)
    ax.legend(fontsize=7.5, loc="lower right")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    return save(fig, out_dir / plot_name("baselines_roc", "flip-task"))


def _maps_figure(example: Any, where: Mapping[str, Path], out_dir: Path) -> Path | None:
    """One unit: rows = original and intervened image, columns = the image and each method's map."""
    u, steps, maps = example.unit, list(example.steps), example.maps
    if not maps:
        return None
    frames = None
    if u.sequence in where:
        frames = E.read_interventions(where[u.sequence], [u.sequence])[u.sequence].images
    cols = len(maps) + (1 if frames is not None else 0)
    fig, axes = plt.subplots(len(steps), cols, figsize=(1.55 * cols + 0.4, 1.65 * len(steps) + 0.5), squeeze=False)
    for r, step in enumerate(steps):
        c0 = 0
        if frames is not None:
            axes[r][0].imshow(frames[step])
            axes[r][0].set_title("image" if r == 0 else "", fontsize=8)
            c0 = 1
        for c, (method, both) in enumerate(maps.items()):
            vmax = float(np.max(np.abs(both))) or 1.0
            ax = axes[r][c0 + c]
            ax.imshow(both[r], cmap="bwr", vmin=-vmax, vmax=vmax)
            if r == 0:
                ax.set_title(method, fontsize=8)
        axes[r][0].set_ylabel("original" if step == 0 else f"step {step}", fontsize=8)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"{u.model} · {u.checkpoint} · {u.sequence} ({'flips' if u.label else 'no flip'})", fontsize=9)
    return save(fig, out_dir / plot_name("baselines_maps", u.model, u.checkpoint, u.sequence))


def plot_baselines(data: Any, out_dir: Path, *, where: Mapping[str, Path] | None = None) -> BaselinesView:
    """Draw the section's figures from ``data`` (an ``epg_bridges.baselines.BaselinesReport``) into ``out_dir``.

    ``where``: the interventions file of each sequence (for the images beside the maps). Older figures of this
    section are removed from the folder.
    """
    table = data.table
    roc = _roc_figure(table.results, out_dir)
    maps = []
    for example in data.examples:
        path = _maps_figure(example, where or {}, out_dir)
        if path is not None:
            maps.append((example.unit.sequence, path))
    written = {roc, *(p for _, p in maps)}
    for stale in out_dir.glob(f"{_PREFIX}*.png"):
        if stale not in written:
            stale.unlink(missing_ok=True)
    return BaselinesView(table.rows(), table.target, len(table.units), sum(u.label for u in table.units), roc, maps)


def _fmt(value: object) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "–"
        return "inf" if math.isinf(value) else f"{value:.3g}"
    return html.escape(str(value))


def _img(path: Path, alt: str) -> str:
    w, h = png_size(path)
    return (f"<figure><img src='{html.escape(path.name)}' alt='{html.escape(alt)}' width='{w}' height='{h}'>"
            "</figure>")


def baselines_section(view: BaselinesView | None) -> str:
    """The section's HTML ("" without a view)."""
    if view is None:
        return ""
    head = "".join(f"<th>{h}</th>" for h in ("score", "n", "flips", "accuracy", "threshold", "AUROC", "95% CI"))
    body = "".join(
        f"<tr><td>{'EPG' if r['score'] == 'epg' else html.escape(str(r['score']))}</td><td>{r['n']}</td>"
        f"<td>{r['positives']}</td><td>{_fmt(r['accuracy'])}</td><td>{_fmt(r['threshold'])}</td>"
        f"<td>{_fmt(r['auroc'])}</td><td>[{_fmt(r['auroc_low'])}, {_fmt(r['auroc_high'])}]</td></tr>"
        for r in view.rows)
    maps = "".join(_img(p, f"local explanations of {s}: original and intervened") for s, p in view.maps)
    return (f"<section id='baselines'><h2>Local explanations and the flip task</h2>"
            f"<p class='caption'>Does the intervention flip the prediction? {view.n_units} units (model x checkpoint "
            f"x sequence), {view.positives} with a flip; class {html.escape(view.target)}. EPG scores a unit by its "
            "curve; a local explanation by the mean squared difference of its map between the original and the "
            "intervened image. Accuracy at the optimal threshold (the same search for every score; a flip is "
            "predicted where score &ge; threshold), AUROC with a 95% bootstrap interval.</p>"
            f"<div class='tablewrap'><table><tr>{head}</tr>{body}</table></div>"
            f"<div class='flex'>{_img(view.roc, 'ROC curves of the flip task')}</div>"
            f"<h3>Explanations of the original and the intervened image</h3><div class='flex'>{maps}</div></section>")
