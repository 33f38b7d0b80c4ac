"""PNG plots and a static index.html for an outputs file: the evidence behind the scores.

Behaviour curves with the decision threshold and flips (paper Figs. 1 and 3), null distributions with the
observed EPG (Fig. 9), EPG over checkpoints with flipping checkpoints marked (Figs. 5-6), and strips of the
intervention images. Statistics come from ``epg_core``; this module only draws.
"""

from __future__ import annotations

import html
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

import epg_core as E  # noqa: E402
from epg_core import OutputsBlock, ScoreOptions, atomic_path, write_bytes_atomic  # noqa: E402
from epg_core._scoring import resolve_target  # noqa: E402

from ..interventions import write_contact_sheet  # noqa: E402

__all__ = ["build_report", "plot_curves", "plot_null", "plot_epg_over_checkpoints"]


def _save(fig: Figure, path: Path) -> Path:
    """Save a figure atomically (temporary file renamed into place)."""
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    finally:
        plt.close(fig)
    return path


def _slug(*parts: str) -> str:
    return "_".join("".join(ch if ch.isalnum() or ch in "-._" else "-" for ch in p) for p in parts)


def _last_done(block: OutputsBlock) -> int | None:
    done = np.nonzero(block.done)[0]
    return int(done[-1]) if len(done) else None


def _axis(block: OutputsBlock, spacing: str) -> tuple[np.ndarray, str]:
    if spacing == "values":
        return np.asarray(block.values), str(block.attrs.get("property", "property value"))
    return np.arange(block.outputs.shape[1]), "intervention step"


def plot_curves(blocks: list[OutputsBlock], opts: ScoreOptions, path: Path) -> Path:
    """Output of the explained class along the intervention, one line per model (last finished checkpoint)."""
    fig, ax = plt.subplots(figsize=(7, 4))
    threshold = None
    for block in blocks:
        i = _last_done(block)
        if i is None:
            continue
        out = np.asarray(block.outputs[i], np.float64)
        target = resolve_target(opts.target, block.classes, out[0])
        xs, xlabel = _axis(block, opts.spacing)
        label = f"{block.model} [{block.checkpoints[i]}]" if len(block.checkpoints) > 1 else block.model
        (line,) = ax.plot(xs, out[:, target], lw=1.6, label=f"{label}: p({block.classes[target]})")
        flip_at = np.nonzero(np.asarray(E.flip_points(out)))[0] if out.shape[1] > 1 else np.array([], int)
        for f in flip_at:
            ax.axvline(0.5 * (xs[f] + xs[f + 1]), color=line.get_color(), ls=":", lw=1)
        if len(flip_at):
            ax.plot(0.5 * (xs[flip_at] + xs[flip_at + 1]), out[flip_at, target], "v", color=line.get_color(), ms=7)
        if block.output_kind == "probabilities":
            threshold = 1.0 / out.shape[1] if out.shape[1] > 2 else 0.5
    if threshold is not None:
        ax.axhline(threshold, color="k", lw=0.8, ls="--", label=f"decision threshold {threshold:.2g}")
        ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel(xlabel if blocks else "step")
    ax.set_ylabel(blocks[0].output_kind if blocks else "output")
    ax.set_title(f"Behaviour along the intervention: {blocks[0].sequence}  (▼ / dotted: prediction flips)")
    ax.legend(fontsize=7, loc="best")
    ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_null(block: OutputsBlock, opts: ScoreOptions, path: Path) -> tuple[Path, dict[str, Any]]:
    """Null distribution of the EPG under shuffles with the observed value (paper Fig. 9)."""
    i = _last_done(block)
    if i is None:
        raise ValueError(f"{block.model}/{block.sequence}: no finished checkpoint to draw")
    out = np.asarray(block.outputs[i], np.float64)
    target = resolve_target(opts.target, block.classes, out[0])
    grid = np.asarray(block.values, np.float64) if opts.spacing == "values" else None
    res = E.permutation_test(out[:, target], grid, n_permutations=opts.n_permutations, alternative=opts.alternative,
                             seed=opts.seed, alpha=opts.alpha, return_null=True)
    assert res.null is not None  # return_null=True
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.hist(res.null, bins=60, color="0.6", label=f"EPG of {res.n_permutations} shuffles")
    ax.axvline(float(res.statistic), color="crimson", lw=2, label=f"observed EPG = {float(res.statistic):.4g}")
    verdict = "significant" if bool(res.significant) else "not significant"
    ax.set_title(f"{block.model} / {block.sequence} [{block.checkpoints[i]}]: p = {float(res.pvalue):.3g} "
                 f"({opts.alternative}, {verdict} at {opts.alpha})", fontsize=9)
    ax.set_xlabel("EPG")
    ax.set_ylabel("count")
    ax.legend(fontsize=8)
    return _save(fig, path), {"pvalue": float(res.pvalue), "statistic": float(res.statistic)}


def plot_epg_over_checkpoints(rows: list[dict[str, Any]], model: str, path: Path) -> Path:
    """EPG per checkpoint for each sequence; filled = significant, red ring = the prediction flips there."""
    fig, ax = plt.subplots(figsize=(7, 3.8))
    for seq in dict.fromkeys(r["sequence"] for r in rows):
        rs = [r for r in rows if r["sequence"] == seq]
        xs = np.arange(len(rs))
        ys = np.array([r["epg"] for r in rs])
        (line,) = ax.plot(xs, ys, lw=1.2, label=seq)
        sig = np.array([r["significant"] for r in rs])
        ax.scatter(xs[sig], ys[sig], color=line.get_color(), s=18, zorder=3)
        ax.scatter(xs[~sig], ys[~sig], facecolors="none", edgecolors=line.get_color(), s=18, zorder=3)
        fl = np.array([r["flips"] > 0 for r in rs])
        ax.scatter(xs[fl], ys[fl], facecolors="none", edgecolors="red", s=60, lw=1.2, zorder=4)
    names = [r["checkpoint"] for r in rows if r["sequence"] == rows[0]["sequence"]]
    step = max(1, len(names) // 10)
    ax.set_xticks(np.arange(len(names))[::step], names[::step], rotation=45, ha="right", fontsize=7)
    ax.set_ylabel("EPG")
    ax.set_title(f"{model}: EPG over checkpoints (filled: significant; red ring: prediction flips)", fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def _html(out_dir: Path, sections: list[tuple[str, list[Path]]], rows: list[dict[str, Any]], max_rows: int) -> Path:
    """One static page with every plot and the scores table."""
    cols = list(rows[0]) if rows else []
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)

    def cell(v: Any) -> str:
        return f"{v:.4g}" if isinstance(v, float) else html.escape(str(v))

    body = "".join("<tr>" + "".join(f"<td>{cell(r[c])}</td>" for c in cols) + "</tr>" for r in rows[:max_rows])
    more = f"<p>{len(rows) - max_rows} more rows in the CSV.</p>" if len(rows) > max_rows else ""
    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>epg report</title>",
             "<style>body{font-family:sans-serif;margin:2em;max-width:1200px}img{max-width:100%;"
             "border:1px solid #ddd;margin:4px}table{border-collapse:collapse;font-size:12px}"
             "td,th{border:1px solid #ccc;padding:2px 6px}th{background:#eee}</style></head><body>",
             "<h1>epg report</h1><p>EPG: expected property gradient magnitude; p: shuffle test. "
             "Inspect the interventions by eye before trusting a score.</p>"]
    for title, images in sections:
        if images:
            parts.append(f"<h2>{html.escape(title)}</h2>")
            parts += [f"<img src='{html.escape(p.name)}' alt='{html.escape(p.stem)}'>" for p in images]
    parts += [f"<h2>Scores</h2><table><tr>{head}</tr>{body}</table>{more}</body></html>"]
    return write_bytes_atomic(out_dir / "index.html", "\n".join(parts).encode("utf-8"))


def build_report(
    outputs_path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    options: ScoreOptions | None = None,
    interventions_path: str | os.PathLike[str] | None = None,
    rows: list[dict[str, Any]] | None = None,
    max_null_plots: int = 8,
    max_table_rows: int = 500,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Write every plot and ``index.html`` into ``out_dir``; return their paths."""
    options = options if options is not None else ScoreOptions()
    say = progress or (lambda _msg: None)
    rows = rows if rows is not None else E.score_outputs(outputs_path, options)  # validates the file first
    blocks = E.read_outputs(outputs_path)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sequences = list(dict.fromkeys(b.sequence for b in blocks))
    curves = []
    for seq in sequences:
        say(f"curves {seq}")
        curves.append(plot_curves([b for b in blocks if b.sequence == seq], options, out / f"curves_{_slug(seq)}.png"))
    nulls = []
    for block in [b for b in blocks if _last_done(b) is not None][:max_null_plots]:
        say(f"null {block.model}/{block.sequence}")
        nulls.append(plot_null(block, options, out / f"null_{_slug(block.model, block.sequence)}.png")[0])
    over = []
    for model in dict.fromkeys(b.model for b in blocks):
        model_rows = [r for r in rows if r["model"] == model]
        if len({r["checkpoint"] for r in model_rows}) > 1:
            over.append(plot_epg_over_checkpoints(model_rows, model, out / f"epg_over_checkpoints_{_slug(model)}.png"))
    strips = []
    if interventions_path is not None:
        for name, seq in E.read_interventions(interventions_path).items():
            strips.append(write_contact_sheet(seq, out / f"strip_{_slug(name)}.png", n=8, thumb=96))
    sections = [("Interventions", strips), ("Behaviour curves", curves),
                ("EPG over checkpoints", over), ("Null distributions", nulls)]
    index = _html(out, sections, rows, max_table_rows)
    return {"index": index, "curves": curves, "nulls": nulls, "over_checkpoints": over, "strips": strips}
