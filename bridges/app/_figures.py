"""The explorer's figures, drawn from a :class:`View` as matplotlib ``Figure`` objects (no pyplot state, so
concurrent requests never share a figure; nothing is saved to disk: gradio sends them as PNG data)."""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from epg_bridges.report import null_words
from epg_bridges.report._common import fmt_num, fmt_p

from ._explore import View

__all__ = ["curve_figure", "null_figure", "checkpoints_figure", "strip_figure", "verdict_of", "verdict_markdown",
           "null_markdown"]

OBSERVED = "crimson"
NULL_BLUE = "#4c72b0"


def verdict_of(row: dict[str, Any]) -> str:
    """The row's verdict (``significant``, ``negligible``, ``not significant``), from ``significant`` for tables
    without a ``verdict`` column."""
    verdict = row.get("verdict")
    if isinstance(verdict, str) and verdict:
        return verdict
    return "significant" if row.get("significant") else "not significant"


def _x(view: View) -> tuple[np.ndarray, str]:
    """The property values (with the unit) when they form a proper grid, else the step index."""
    vals, n = view.info.values, len(view.info.values)
    label = view.info.prop or "property"
    if n > 1 and np.unique(vals).size == n and np.all(np.isfinite(vals)):
        return vals, f"{label} [{view.unit}]" if view.unit else label
    return np.arange(n, dtype=np.float64), "step"


def _flips(row: dict[str, Any]) -> str:
    n = int(row["flips"])
    return f"{n} prediction flip{'' if n == 1 else 's'}"


def _ylabel(view: View, output: str) -> str:
    return {"probabilities": f"p({output})", "logits": f"logit {output}", "cosine": f"cos({output})"}.get(
        view.info.output_kind, output)


def curve_figure(view: View) -> Figure:
    """The scored class along the intervention (bold), the other classes (thin), and where the prediction flips."""
    xs, xlabel = _x(view)
    fig = Figure(figsize=(6.4, 3.6), dpi=100)
    ax = fig.add_subplot()
    target = view.info.classes.index(view.output)
    for c in range(len(view.info.classes)):
        if c != target and len(view.info.classes) <= 12:
            ax.plot(xs, view.outputs[:, c], lw=0.8, color="0.7", zorder=1)
    ax.plot(xs, view.outputs[:, target], lw=2.2, color="#1f77b4", marker="o", ms=3, zorder=3,
            label=_ylabel(view, view.output))
    argmax = np.argmax(view.outputs, axis=-1)
    at = np.flatnonzero(argmax[1:] != argmax[:-1])
    for i in at:
        ax.axvline(0.5 * (xs[i] + xs[i + 1]), color=OBSERVED, lw=1.0, ls=":", zorder=2)
    handles = [Line2D([], [], color="#1f77b4", lw=2.2, label=_ylabel(view, view.output))]
    if len(view.info.classes) > 1 and len(view.info.classes) <= 12:
        handles.append(Line2D([], [], color="0.7", lw=0.8, label="other classes"))
    if len(at):
        handles.append(Line2D([], [], color=OBSERVED, lw=1.0, ls=":", label="prediction flips"))
    ax.legend(handles=handles, fontsize=7.5, loc="best", framealpha=0.85)
    row = view.row
    ax.set_title(f"{view.info.model} · {view.info.sequence} [{view.checkpoint}]\nEPG = {fmt_num(row['epg'])}, "
                 f"p = {fmt_p(row['pvalue'])}, {verdict_of(row)}, {_flips(row)}", fontsize=9)
    ax.set_xlabel(xlabel, fontsize=8.5)
    ax.set_ylabel(_ylabel(view, view.output), fontsize=8.5)
    if view.info.output_kind == "probabilities":
        ax.set_ylim(-0.03, 1.03)
    ax.tick_params(labelsize=7.5)
    ax.grid(alpha=0.25, lw=0.5)
    fig.tight_layout()
    return fig


def null_figure(view: View) -> Figure:
    """Histogram of the shuffled EPGs, the observed EPG, and the exact null mean +- SD where it exists."""
    null, stat = view.null, float(view.row["epg"])
    fig = Figure(figsize=(5.0, 3.6), dpi=100)
    ax = fig.add_subplot()
    lo, hi = float(min(null.min(), stat)), float(max(null.max(), stat))
    pad = 0.04 * (hi - lo or 1.0)
    ax.hist(null, bins=50, range=(lo - pad, hi + pad), color="0.62", label=f"{null.size:,} shuffles", zorder=2)
    if view.moments is not None:
        mean, std = view.moments
        ax.axvspan(mean - std, mean + std, color=NULL_BLUE, alpha=0.13, lw=0, label="exact null mean ± SD", zorder=0)
        ax.axvline(mean, color=NULL_BLUE, lw=1, ls="--", zorder=3)
    ax.axvline(stat, color=OBSERVED, lw=2, label=f"observed EPG {fmt_num(stat)}", zorder=4)
    decision, where = null_words(stat, null, bool(view.row["significant"])).split(": ", 1)
    ax.set_title(f"shuffle null: p = {fmt_p(view.row['pvalue'])}, {decision}\n{where}", fontsize=9,
                 color="black" if view.agrees else OBSERVED)
    ax.set_xlabel("EPG", fontsize=8.5)
    ax.set_ylabel("shuffles", fontsize=8.5)
    ax.tick_params(labelsize=7.5)
    ax.legend(fontsize=7, loc="best", framealpha=0.85)
    fig.tight_layout()
    return fig


def checkpoints_figure(view: View) -> Figure:
    """EPG over the finished checkpoints: filled = significant, red ring = the prediction flips there, the shown
    checkpoint marked."""
    hist = view.history
    fig = Figure(figsize=(5.0, 3.6), dpi=100)
    ax = fig.add_subplot()
    xs = np.arange(len(hist))
    epgs = np.array([float(r["epg"]) for r in hist])
    ax.plot(xs, epgs, color="0.45", lw=1.2, zorder=1)
    for i, r in enumerate(hist):
        sig = bool(r["significant"])
        ax.scatter([i], [epgs[i]], s=42, zorder=3, color="#1f77b4" if sig else "white", edgecolors="#1f77b4",
                   linewidths=1.4)
        if int(r["flips"]) > 0:
            ax.scatter([i], [epgs[i]], s=120, zorder=2, facecolors="none", edgecolors=OBSERVED, linewidths=1.4)
        if r["checkpoint"] == view.checkpoint:
            ax.axvline(i, color="0.3", lw=0.8, ls="--", zorder=0)
    ax.set_xticks(xs)
    step = max(1, len(hist) // 12)
    ax.set_xticklabels([str(r["checkpoint"]) if i % step == 0 else "" for i, r in enumerate(hist)], rotation=30,
                       ha="right", fontsize=7)
    ax.set_xlabel("checkpoint", fontsize=8.5)
    ax.set_ylabel("EPG", fontsize=8.5)
    ax.set_title(f"EPG over checkpoints ({view.output})", fontsize=9)
    handles = [Line2D([], [], marker="o", ls="", color="#1f77b4", label="significant"),
               Line2D([], [], marker="o", ls="", markerfacecolor="white", color="#1f77b4", label="not significant"),
               Line2D([], [], marker="o", ls="", markerfacecolor="none", markeredgecolor=OBSERVED, markersize=10,
                      label="prediction flips")]
    ax.legend(handles=handles, fontsize=7, loc="best", framealpha=0.85)
    ax.tick_params(labelsize=7.5)
    ax.grid(alpha=0.25, lw=0.5)
    fig.tight_layout()
    return fig


def strip_figure(view: View) -> Figure | None:
    """The intervention frames with their property values (None when there are none)."""
    if view.frames is None or view.frame_values is None:
        return None
    n = len(view.frames)
    h, w = view.frames.shape[1:3]
    fig = Figure(figsize=(min(12.0, 1.5 * n * max(w / h, 0.5)), 1.9), dpi=100)
    axes = fig.subplots(1, n, squeeze=False)[0]
    unit = view.unit
    for ax, img, v in zip(axes, view.frames, view.frame_values, strict=True):
        ax.imshow(img, interpolation="nearest" if max(h, w) < 64 else "antialiased")
        ax.set_title(f"{fmt_num(v)} {unit}".strip(), fontsize=8, pad=2)
        ax.axis("off")
    fig.subplots_adjust(left=0.01, right=0.99, top=0.82, bottom=0.02, wspace=0.06)
    return fig


def verdict_markdown(view: View) -> str:
    """The scores of the shown curve in words and numbers."""
    r = view.row
    verdict = verdict_of(r)
    effect = f", effect {fmt_num(r['effect'])}" if "effect" in r else ""
    lines = [f"### {verdict}",
             f"**EPG** {fmt_num(r['epg'])} · **p** = {fmt_p(r['pvalue'])} (alpha {view.options.get('alpha')}, "
             f"{view.options.get('alternative')}, K = {int(r['n_permutations']):,}) · **flips** {int(r['flips'])}"
             f"{effect}",
             f"z = {fmt_num(r['zscore'])} · ratio = {fmt_num(r['ratio'])} · Pearson ρ = {fmt_num(r['pearson'])} · "
             f"{int(r['n_steps'])} steps · class **{view.output}** · checkpoint **{view.checkpoint}**"]
    return "\n\n".join(lines)


def null_markdown(view: View) -> str:
    """The observed value against the exact null mean +- SD (or why there is none)."""
    stat = float(view.row["epg"])
    if view.moments is None:
        exact = "exact null moments: not available for this grid"
    else:
        mean, std = view.moments
        exact = f"exact null mean ± SD (over all {len(view.curve)}! orderings): **{mean:.6g} ± {std:.6g}**"
    check = "" if view.agrees else f" · **re-run p = {fmt_p(view.rerun_pvalue)} differs from the scores**"
    return f"observed EPG **{stat:.6g}** · {exact}{check}"
