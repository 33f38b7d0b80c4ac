"""The report's local-baselines section: the flip task's table and ROC curves, and the paper's Fig. 18 view.

Given an attributions file (``epg attribute``), the section shows how well EPG and each local explanation predict
that an intervention flips the prediction (``epg_bridges.baselines.flip_task_table``: the statistics are
``epg_core.flip_task``'s), the ROC curve of every score, and for chosen sequences each method's explanation of the
original image beside its explanation of the intervened image (one colour scale per method and sequence, so the
change is visible).
"""

from __future__ import annotations

import html
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

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

    rows: list[dict[str, object]]
    target: str
    n_units: int
    positives: int
    roc: Path
    maps: list[tuple[str, Path]] = field(default_factory=list)


def _roc_figure(table: object, out_dir: Path) -> Path:
    results: Mapping[str, E.FlipTaskResult] = table.results  # type: ignore[attr-defined]
    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    for name, r in results.items():
        auc = "–" if math.isnan(r.auroc) else f"{r.auroc:.2f}"
        ax.plot(r.fpr, r.tpr, lw=2.2 if name == "epg" else 1.2, color="black" if name == "epg" else None,
                label=f"{'EPG' if name == 'epg' else name} (AUROC {auc})", drawstyle="default")
    ax.plot([0, 1], [0, 1], ls=":", color="grey", lw=0.8)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title(f"predicting a flip ({int(next(iter(results.values())).positives)} of "
                 f"{int(next(iter(results.values())).n)} units flip)", fontsize=10)
    ax.legend(fontsize=7.5, loc="lower right")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    return save(fig, out_dir / plot_name("baselines_roc", "flip-task"))


def _chosen_units(units: Sequence[object], sequences: Sequence[str] | None, limit: int) -> list[object]:
    """The units to draw: the named sequences at their last attributed checkpoint, else flips and non-flips mixed."""
    last: dict[tuple[str, str], object] = {}
    for u in units:
        last[(u.model, u.sequence)] = u  # type: ignore[attr-defined]  # units come in checkpoint order
    pool = list(last.values())
    if sequences:
        picked = [u for u in pool if u.sequence in sequences]  # type: ignore[attr-defined]
        missing = [s for s in sequences if s not in {u.sequence for u in picked}]  # type: ignore[attr-defined]
        if missing:
            raise E.UsageError(f"--attribution-sequence {missing[0]!r}: no attributions of that sequence")
        return picked
    flips = [u for u in pool if u.label]  # type: ignore[attr-defined]
    steady = [u for u in pool if not u.label]  # type: ignore[attr-defined]
    mixed = [u for pair in zip(flips, steady, strict=False) for u in pair]
    rest = [u for u in pool if u not in mixed]
    return (mixed + rest)[:limit]


def _maps_figure(unit: object, attributions: Path, where: Mapping[str, Path], out_dir: Path) -> Path | None:
    from epg_bridges.baselines import METHOD_NAMES, read_attributions

    u = unit
    items = read_attributions(attributions, model=u.model, checkpoint=u.checkpoint,  # type: ignore[attr-defined]
                              sequence=u.sequence)  # type: ignore[attr-defined]
    items.sort(key=lambda i: METHOD_NAMES.index(i.key.method) if i.key.method in METHOD_NAMES else 99)
    if not items:
        return None
    steps = list(items[0].key.steps)
    pair = [0, [s for s in steps if s > 0][-1]] if any(s > 0 for s in steps) else [steps[0]]
    frames = None
    seq_file = where.get(u.sequence)  # type: ignore[attr-defined]
    if seq_file is not None:
        frames = E.read_interventions(seq_file, [u.sequence])[u.sequence].images  # type: ignore[attr-defined]
    cols = len(items) + (1 if frames is not None else 0)
    fig, axes = plt.subplots(len(pair), cols, figsize=(1.55 * cols + 0.4, 1.65 * len(pair) + 0.5), squeeze=False)
    for r, step in enumerate(pair):
        c0 = 0
        if frames is not None:
            axes[r][0].imshow(frames[step])
            axes[r][0].set_title("image" if r == 0 else "", fontsize=8)
            c0 = 1
        for c, item in enumerate(items):
            both = np.stack([item.maps[list(item.key.steps).index(s)] for s in pair])
            vmax = float(np.max(np.abs(both))) or 1.0
            ax = axes[r][c0 + c]
            ax.imshow(item.maps[list(item.key.steps).index(step)], cmap="bwr", vmin=-vmax, vmax=vmax)
            if r == 0:
                ax.set_title(item.key.method, fontsize=8)
        axes[r][0].set_ylabel("original" if step == 0 else f"step {step}", fontsize=8)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    flip = "flips" if u.label else "no flip"  # type: ignore[attr-defined]
    fig.suptitle(f"{u.model} · {u.checkpoint} · {u.sequence} ({flip})", fontsize=9)  # type: ignore[attr-defined]
    return save(fig, out_dir / plot_name("baselines_maps", u.model, u.checkpoint, u.sequence))  # type: ignore[attr-defined]


def plot_baselines(
    outputs: str | os.PathLike[str],
    attributions: str | os.PathLike[str],
    out_dir: Path,
    *,
    target: str | None = None,
    where: Mapping[str, Path] | None = None,
    sequences: Sequence[str] | None = None,
    max_sequences: int = 4,
    n_bootstrap: int = 2000,
) -> BaselinesView:
    """Draw the section's figures into ``out_dir`` (older ones of this section are removed)."""
    from epg_bridges.baselines import flip_task_table

    table = flip_task_table(outputs, attributions, target=target, n_bootstrap=n_bootstrap)
    roc = _roc_figure(table, out_dir)
    maps = []
    for unit in _chosen_units(table.units, sequences, max_sequences):
        path = _maps_figure(unit, Path(attributions), where or {}, out_dir)
        if path is not None:
            maps.append((unit.sequence, path))  # type: ignore[attr-defined]
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
