"""Evidence figures: null distributions that agree with the table's p-value (paper Fig. 9), EPG over checkpoints
with the flipping checkpoints marked (Fig. 6), mean EPG against prediction flips across models (Fig. 5), and
intervention strips with their property values."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

import epg_core as E

from ._common import fmt_num, fmt_p, model_color, plot_name, save
from ._study import Study, Verdict, verdict_curve

__all__ = ["NullCheck", "null_words", "plot_null", "plot_over_checkpoints", "plot_epg_vs_flips", "plot_strip"]


@dataclass(frozen=True)
class NullCheck:
    """A drawn null distribution: its file, the re-run p-value and whether it equals the table's."""

    path: Path
    verdict: Verdict
    pvalue: float
    table_pvalue: float
    agrees: bool


def null_words(statistic: float, null: np.ndarray, significant: bool, gradient: bool = True) -> str:
    """The decision and where the observed statistic sits among the shuffles, in words that match the picture
    (an EPG below its shuffles is smoother; another statistic is just below or above them)."""
    k = len(null)
    below_n = int(np.sum(null > statistic))
    above_n = int(np.sum(null < statistic))
    below, above = ("smoother", "rougher") if gradient else ("below", "above")
    decision = "significant" if significant else "not significant"
    if below_n == k:
        where = f"{below} than all {k:,} shuffles" if gradient else f"below all {k:,} shuffles"
    elif above_n == k:
        where = f"{above} than all {k:,} shuffles" if gradient else f"above all {k:,} shuffles"
    elif below_n >= above_n:
        where = f"{below} than {below_n:,} of {k:,} shuffles" if gradient else f"below {below_n:,} of {k:,} shuffles"
    else:
        where = f"{above} than {above_n:,} of {k:,} shuffles" if gradient else f"above {above_n:,} of {k:,} shuffles"
    return f"{decision}: {where}"


def _moments(y: np.ndarray, grid: np.ndarray | None, class_axis: int | None) -> tuple[float, float] | None:
    """Exact null mean and SD, or None where they do not exist (non-uniform grids, other stencils)."""
    try:
        m = E.permutation_moments(y, grid, class_axis=class_axis)
    except (ValueError, E.EpgError):
        return None
    mean, std = float(np.asarray(m.mean)), float(np.asarray(m.std))
    return (mean, std) if np.isfinite(mean) and np.isfinite(std) else None


def plot_null(study: Study, verdict: Verdict, out_dir: Path) -> NullCheck:
    """Histogram of the shuffled statistic (EPG unless the scores test another) of the verdict's curve, re-run
    with the table's options."""
    o = study.options.score
    y, grid, class_axis = verdict_curve(study, verdict)
    res = E.permutation_test(y, grid, n_permutations=o.n_permutations, alternative=o.alternative, seed=o.seed,
                             alpha=o.alpha, return_null=True, class_axis=class_axis, precision=o.precision,
                             statistic=o.statistic, **dict(o.statistic_options))
    assert res.null is not None
    null = np.asarray(res.null, np.float64).ravel()
    stat, p = float(np.asarray(res.statistic)), float(np.asarray(res.pvalue))
    row = verdict.row
    # the null is drawn with all K shuffles; a sequential table's p-value comes from fewer (n_used), so only
    # its decision is compared (they differ with probability <= risk)
    same_p = p == float(row["pvalue"]) or o.method == "sequential"
    agrees = same_p and (p < o.alpha) == (float(row["pvalue"]) < o.alpha)
    name = "EPG" if o.statistic == "epg" else o.statistic
    fig, ax = plt.subplots(figsize=(3.5, 2.6))
    lo, hi = float(min(null.min(), stat)), float(max(null.max(), stat))
    pad = 0.04 * (hi - lo or 1.0)
    ax.hist(null, bins=50, range=(lo - pad, hi + pad), color="0.62", label=f"{len(null):,} shuffles", zorder=2)
    moments = _moments(y, grid, class_axis) if o.statistic == "epg" else None  # exact moments: EPG's
    if moments is not None:
        mean, std = moments
        ax.axvspan(mean - std, mean + std, color="#4c72b0", alpha=0.13, lw=0, label="exact null mean ± SD", zorder=0)
        ax.axvline(mean, color="#4c72b0", lw=1, ls="--", zorder=3)
    ax.axvline(stat, color="crimson", lw=2, label=f"observed {name} {fmt_num(stat)}")
    words = null_words(stat, null, bool(row["significant"]), gradient=o.statistic == "epg")
    head = f"{verdict.model} · {verdict.key} [{row['checkpoint']}]"
    pq = f"p = {fmt_p(row['pvalue'])}" + (f", q = {fmt_p(row['qvalue'])}" if row.get("correction") == "bh" else "")
    decision, where = words.split(": ", 1)
    ax.set_title(f"{head}\n{pq}, {decision}\n{where}", fontsize=7.5, color="black" if agrees else "crimson")
    if not agrees:
        ax.text(0.5, 0.5, f"re-run p = {fmt_p(p)} differs from the table", transform=ax.transAxes, ha="center",
                color="crimson", fontsize=8)
    ax.set_xlabel(name, fontsize=7.5)
    ax.set_ylabel("shuffles", fontsize=7.5)
    ax.tick_params(labelsize=6.5)
    ax.legend(fontsize=6, loc="best", framealpha=0.85)
    fig.tight_layout()
    path = save(fig, out_dir / plot_name("null", verdict.model, verdict.label, str(row["checkpoint"])))
    return NullCheck(path, verdict, p, float(row["pvalue"]), agrees)


def _flip_total(study: Study, v: Verdict, ck: int) -> int:
    """Prediction flips of the verdict's images at checkpoint ``ck`` (summed over the group's images)."""
    return int(sum(r["flips"] for r in study.rows if r["aggregate"] == "none" and r["model"] == v.model
                   and r["sequence"] in v.members and r["checkpoint_index"] == ck))


def plot_over_checkpoints(study: Study, model: str, out_dir: Path) -> Path | None:
    """EPG of each verdict-level curve of ``model`` over its checkpoints; filled = significant, red ring = the
    prediction flips at that checkpoint (in any of the curve's images)."""
    vs = [v for v in study.verdicts if v.model == model and len(v.history) > 1][:12]
    if not vs:
        return None
    fig, ax = plt.subplots(figsize=(5.0, 3.1))
    names: dict[int, str] = {}
    finite = []
    for j, v in enumerate(vs):
        xs = np.array([r["checkpoint_index"] for r in v.history])
        ys = np.array([r["epg"] for r in v.history], np.float64)
        names.update({int(r["checkpoint_index"]): str(r["checkpoint"]) for r in v.history})
        finite += [float(y) for y in ys if np.isfinite(y)]
        sig = np.array([bool(r["significant"]) for r in v.history])
        flip = np.array([_flip_total(study, v, int(x)) > 0 for x in xs])
        color = f"C{j}"
        ax.plot(xs, ys, color=color, lw=1.3, label=v.key)
        ax.scatter(xs[sig], ys[sig], color=color, s=20, zorder=3)
        ax.scatter(xs[~sig], ys[~sig], facecolors="white", edgecolors=color, s=20, zorder=3)
        ax.scatter(xs[flip], ys[flip], facecolors="none", edgecolors="red", s=75, lw=1.3, zorder=4)
    pos = [y for y in finite if y > 0]
    if pos and max(pos) / min(pos) > 30:
        ax.set_yscale("log")
    ticks = sorted(names)
    step = max(1, len(ticks) // 10)
    ax.set_xticks(ticks[::step], [names[t] for t in ticks[::step]], rotation=35, ha="right", fontsize=6.5)
    ax.tick_params(axis="y", labelsize=6.5)
    ax.set_ylabel("EPG", fontsize=7.5)
    ax.set_title(f"{model}: EPG over checkpoints\n(filled: significant · red ring: the prediction flips)", fontsize=8)
    ax.legend(fontsize=6.5, loc="best")
    ax.grid(alpha=0.25, lw=0.5)
    fig.tight_layout()
    return save(fig, out_dir / plot_name("epg", "checkpoints", model))


def flips_and_epg(study: Study) -> list[dict[str, Any]]:
    """Per model x property: mean EPG and total prediction flips over every checkpoint and image."""
    acc: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in study.rows:
        if r["aggregate"] == "none":
            track = study.tracks.get((r["model"], r["sequence"]))
            acc.setdefault((r["model"], track.prop if track else r["sequence"]), []).append(r)
    return [{"model": m, "property": p, "epg": float(np.nanmean([r["epg"] for r in rs])),
             "flips": int(sum(r["flips"] for r in rs)), "n": len(rs)} for (m, p), rs in acc.items()]


def plot_epg_vs_flips(study: Study, out_dir: Path) -> Path | None:
    """Mean EPG against the number of prediction flips, one point per model x property (paper Fig. 5)."""
    points = flips_and_epg(study)
    if not points:
        return None
    props = list(dict.fromkeys(p["property"] for p in points))
    markers = "osD^vP*X"
    fig, ax = plt.subplots(figsize=(5.0, 3.1))
    for p in points:
        ax.scatter(p["flips"], p["epg"], color=model_color(study.models, p["model"]), s=36, alpha=0.85,
                   marker=markers[props.index(p["property"]) % len(markers)], zorder=3)
    handles: list[Any] = [Patch(color=model_color(study.models, m), label=m)
                          for m in dict.fromkeys(p["model"] for p in points)]
    handles += [Line2D([], [], color="0.45", marker=markers[j % len(markers)], ls="", label=prop)
                for j, prop in enumerate(props)]
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    pos = [p["epg"] for p in points if p["epg"] > 0]
    if pos and max(pos) / min(pos) > 30:
        ax.set_yscale("log")
    ax.set_xlabel("prediction flips (all images and checkpoints)", fontsize=7.5)
    ax.set_ylabel("mean EPG over images and checkpoints", fontsize=7.5)
    ax.set_title("Mean EPG vs prediction flips (per model × property)", fontsize=8)
    ax.tick_params(labelsize=6.5)
    ax.legend(handles=handles, fontsize=6.5, loc="best")
    ax.grid(alpha=0.25, lw=0.5)
    fig.tight_layout()
    return save(fig, out_dir / plot_name("epg", "flips"))


def plot_strip(seq: E.InterventionSequence, name: str, n_frames: int, out_dir: Path) -> Path:
    """A few evenly spaced frames of one intervention sequence, each titled with its property value."""
    n = seq.n_steps
    idx = np.unique(np.rint(np.linspace(0, n - 1, min(n_frames, n))).astype(int))
    h, w = seq.images.shape[1:3]
    unit = str(seq.attrs.get("unit", "") or "")
    fig, axes = plt.subplots(1, len(idx), figsize=(1.0 * len(idx) * max(w / h, 0.5), 1.25), squeeze=False)
    for ax, i in zip(axes[0], idx, strict=True):
        ax.imshow(seq.images[i], interpolation="nearest" if max(h, w) < 64 else "antialiased")
        ax.set_title(f"{fmt_num(seq.values[i])} {unit}".strip(), fontsize=7.5, pad=2)
        ax.axis("off")
    fig.subplots_adjust(left=0.01, right=0.99, top=0.8, bottom=0.02, wspace=0.06)
    return save(fig, out_dir / plot_name("strip", name))
