"""Behaviour along the intervention: the mean over images with a band and the decision threshold per model
(paper Figs. 1c and 3), and every sequence's curves of the chosen checkpoints as small multiples.

One axis per output: curves of different classes never share an axis, except in the all-classes view where
the whole output vector is the thing scored.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.lines import Line2D

from ._common import DASH, fmt_num, fmt_p, model_color, plot_name, save
from ._study import ALL_CLASSES, Study, Track, Verdict, group_parts

__all__ = ["x_axis", "plot_behaviour", "plot_sequences", "ylabel"]


def x_axis(tracks: list[Track], prop: str) -> tuple[np.ndarray, str]:
    """The property's values and unit when all ``tracks`` share a real grid, else the step index."""
    vals = tracks[0].values
    n = len(vals)
    same = all(t.values.shape == vals.shape and np.array_equal(t.values, vals) for t in tracks)
    unit = tracks[0].unit if all(t.unit == tracks[0].unit for t in tracks) else ""
    trivial = np.array_equal(vals, np.arange(n)) and not unit
    if same and n > 1 and np.unique(vals).size == n and not trivial:
        return vals, f"{prop} [{unit}]" if unit else prop
    return np.arange(n, dtype=np.float64), "step"


def ylabel(track: Track, output: str) -> str:
    """``p(cat)``, ``logit cat`` or ``cos(cat)``, after the block's output kind."""
    kind = track.output_kind
    if output == ALL_CLASSES:
        return {"probabilities": "probability", "logits": "logit", "cosine": "cosine"}.get(kind, "output")
    return {"probabilities": f"p({output})", "logits": f"logit {output}", "cosine": f"cos({output})"}.get(
        kind, output)


def _flip_x(xs: np.ndarray, argmax: np.ndarray) -> np.ndarray:
    """Midpoints between steps where the predicted class changes."""
    at = np.flatnonzero(argmax[1:] != argmax[:-1])
    return 0.5 * (xs[at] + xs[at + 1])


def _decision(ax: Axes, track: Track, xs: np.ndarray, argmax: np.ndarray, color: str) -> None:
    """The decision threshold: 0.5 for binary probabilities, else where the argmax changes (dotted)."""
    if track.binary:
        ax.axhline(0.5, color="0.35", lw=0.8, ls="--", zorder=1)
    else:
        for x in _flip_x(xs, argmax):
            ax.axvline(x, color=color, lw=0.9, ls=":", zorder=1)


def _style(ax: Axes, track: Track) -> None:
    if track.output_kind == "probabilities":
        ax.set_ylim(-0.03, 1.03)
    ax.grid(alpha=0.25, lw=0.5)
    ax.tick_params(labelsize=7)


def _common_checkpoint(members: list[Track], verdict: Verdict | None) -> int | None:
    if verdict is not None and verdict.by != "none":
        ck = int(verdict.row["checkpoint_index"])
    else:
        ck = min(int(np.flatnonzero(t.done)[-1]) for t in members)
    return ck if all(ck in t.full for t in members) else None


def _legend_label(model: str, n: int, verdict: Verdict | None, checkpoint: str) -> str:
    label = f"{model} [{checkpoint}]" if checkpoint else model
    parts = group_parts(verdict.label) if verdict is not None and verdict.by != "none" else {}
    if "label" in parts:
        label += f" · {parts['label']} images"
    label += f" (mean of {n})" if n > 1 else ""
    if verdict is not None and verdict.by != "none":
        mark = verdict.row.get("verdict") or ("significant" if verdict.row["significant"] else "n.s.")
        mark = "n.s." if mark == "not significant" else mark
        label += f": EPG {fmt_num(verdict.row['epg'])}, p {fmt_p(verdict.row['pvalue'])}, {mark}"
    return label


LABEL_STYLES = ("-", "--", ":", "-.")


def _behaviour_groups(study: Study, section: str, panel: str, tracks: list[Track], all_classes: bool
                      ) -> list[tuple[str, Verdict | None, list[Track], str]]:
    """(model, verdict, member tracks, line style) per mean curve of the panel: one per model, or one per model
    and label when the verdicts group by label (images of different labels are never averaged together)."""
    groups: list[tuple[str, Verdict | None, list[Track], str]] = []
    for model in study.models:
        members = [t for t in tracks if t.model == model and (t.model == panel if all_classes else t.output == panel)]
        verdicts = [v for v in study.verdicts if v.by != "none" and v.model == model and v.section == section]
        if len(verdicts) <= 1:
            groups.append((model, verdicts[0] if verdicts else None, members, "-"))
            continue
        for i, v in enumerate(verdicts):
            groups.append((model, v, [t for t in members if t.sequence in v.members],
                           LABEL_STYLES[i % len(LABEL_STYLES)]))
    return groups


def plot_behaviour(study: Study, section: str, out_dir: Path) -> list[Path]:
    """Mean behaviour of every model over the section's images (band: min-max), decision threshold marked:
    one figure per output (per model in the all-classes view)."""
    tracks = study.section_tracks(section)
    if not tracks:
        return []
    all_classes = tracks[0].output == ALL_CLASSES
    panels = sorted({t.model for t in tracks}, key=study.models.index) if all_classes else \
        list(dict.fromkeys(t.output for t in tracks))
    paths = [_behaviour_panel(study, section, panel, tracks, all_classes, out_dir) for panel in panels]
    return [p for p in paths if p is not None]


def _behaviour_panel(study: Study, section: str, panel: str, tracks: list[Track], all_classes: bool,
                     out_dir: Path) -> Path | None:
    xs, xlabel = x_axis(tracks, section)
    labelled = any("label" in v.by.split(",") for v in study.verdicts)
    fig, ax = plt.subplots(figsize=(5.0, 3.3))
    ref: Track | None = None
    ck_name = ""
    for model, verdict, members, style in _behaviour_groups(study, section, panel, tracks, all_classes):
        ck = _common_checkpoint(members, verdict) if members else None
        if ck is None:
            continue
        ref = members[0]
        full = np.stack([t.full[ck] for t in members])
        mean = full.mean(axis=0)
        color = model_color(study.models, model)
        cols = ref.shown if all_classes else [ref.shown[0]]
        ck_name = ref.checkpoints[ck] if len(ref.checkpoints) > 1 else ""
        for j, c in enumerate(cols):
            col = color if not all_classes else f"C{j}"
            name = _legend_label(model, len(members), verdict, ck_name) if not all_classes else ref.classes[c]
            ax.plot(xs, mean[:, c], color=col, lw=1.8, ls=style, label=name, zorder=3)
            if len(members) > 1:
                low, high = ((np.percentile(full[:, :, c], 25, axis=0), np.percentile(full[:, :, c], 75, axis=0))
                             if labelled else (full[:, :, c].min(axis=0), full[:, :, c].max(axis=0)))
                ax.fill_between(xs, low, high, color=col, alpha=0.18, lw=0, zorder=2)
        _decision(ax, ref, xs, np.argmax(mean, axis=-1), color)
        flip_x = _flip_x(xs, np.argmax(mean, axis=-1))
        if len(flip_x) and not all_classes:
            ax.plot(flip_x, np.interp(flip_x, xs, mean[:, cols[0]]), "v", color=color, ms=6, zorder=4)
    if ref is None:
        plt.close(fig)
        return None
    _style(ax, ref)
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_ylabel(ylabel(ref, panel if not all_classes else ALL_CLASSES), fontsize=8)
    if all_classes:
        title = f"{section} · {panel}{f' [{ck_name}]' if ck_name else ''}: all classes"
        key = "dashed: threshold 0.5" if ref.binary else "dotted: class changes"
    else:
        title = section
        key = "dashed: threshold 0.5 · ▼: flip" if ref.binary else "dotted/▼: class changes"
    band = "IQR per label" if labelled else "min–max over images"
    ax.set_title(f"{title}\nline: mean · band: {band} · {key}", fontsize=8.5)
    ax.legend(fontsize=6.5, loc="best", framealpha=0.85)
    fig.tight_layout()
    return save(fig, out_dir / plot_name("curves", section, panel))


def _ckpt_colors(chosen: list[int]) -> dict[int, tuple[float, float, float, float]]:
    cmap = plt.get_cmap("viridis")
    if len(chosen) == 1:
        return {}
    return {c: cmap(0.1 + 0.8 * k / (len(chosen) - 1)) for k, c in enumerate(chosen)}


def _cell(ax: Axes, study: Study, track: Track, xs: np.ndarray, color: str) -> None:
    """One sequence of one model: every chosen checkpoint, the threshold and the flips of the last one."""
    colors = _ckpt_colors(track.chosen)
    all_classes = track.output == ALL_CLASSES
    for i in track.chosen:
        last = i == track.chosen[-1]
        if all_classes:
            if last:
                for j, c in enumerate(track.shown):
                    ax.plot(xs, track.full[i][:, c], color=f"C{j}", lw=1.3, label=track.classes[c])
            continue
        ax.plot(xs, track.curves[i][:, 0], color=colors.get(i, color), lw=1.6 if last else 1.0,
                alpha=1.0 if last else 0.8)
    last = track.chosen[-1]
    _decision(ax, track, xs, track.argmax[last], color)
    flip_x = _flip_x(xs, track.argmax[last])
    if len(flip_x) and not all_classes:
        ax.plot(flip_x, np.interp(flip_x, xs, track.curves[last][:, 0]), "v", color="crimson", ms=5, zorder=4)
    row = study.row_at(track.model, track.sequence, last)
    if row is not None:
        negligible = row.get("verdict") == "negligible"
        mark = "✓ negligible effect" if negligible else ("✓" if row["significant"] else "✗")
        ax.text(0.02, 0.03, f"EPG {fmt_num(row['epg'])} · p {fmt_p(row['pvalue'])} {mark}", transform=ax.transAxes,
                fontsize=6.5, color="0.15", bbox={"facecolor": "white", "alpha": 0.75, "lw": 0, "pad": 1})
    _style(ax, track)


def plot_sequences(study: Study, section: str, out_dir: Path) -> list[Path]:
    """Small multiples: rows = models, columns = the section's sequences (wrapped at ``max_columns``)."""
    tracks = study.section_tracks(section)
    if not tracks:
        return []
    xs, xlabel = x_axis(tracks, section)
    seqs = list(dict.fromkeys(t.sequence for t in sorted(tracks, key=lambda t: (t.image, t.sequence))))
    models = [m for m in study.models if any(t.model == m for t in tracks)]
    width = study.options.max_columns
    paths = []
    for start in range(0, len(seqs), width):
        chunk = seqs[start:start + width]
        fig, axes = plt.subplots(len(models), len(chunk), figsize=(2.35 * len(chunk) + 0.4, 1.75 * len(models) + 0.5),
                                 squeeze=False, sharex=True)
        for r, model in enumerate(models):
            for c, seq in enumerate(chunk):
                ax = axes[r][c]
                track = study.tracks.get((model, seq))
                if track is None or not track.chosen:
                    ax.text(0.5, 0.5, "not scored", ha="center", va="center", transform=ax.transAxes, fontsize=7)
                    ax.set_xticks([])
                    ax.set_yticks([])
                    continue
                _cell(ax, study, track, xs, model_color(study.models, model))
                if r == 0:
                    ax.set_title(seq if len(seq) <= 28 else seq[:27] + "…", fontsize=7.5)
                mixed = len({t.output for t in tracks if t.model == model}) > 1  # say each cell's output
                if c == 0 or mixed:
                    ax.set_ylabel(f"{model}\n{ylabel(track, track.output)}" if c == 0 else ylabel(track, track.output),
                                  fontsize=7.5)
                if r == len(models) - 1:
                    ax.set_xlabel(xlabel, fontsize=7)
        _ckpt_legend(fig, study, [t for t in tracks if t.sequence in chunk])
        fig.tight_layout(rect=(0, 0, 1, 0.94 if _multi(tracks) else 1))
        paths.append(save(fig, out_dir / plot_name("sequences", section, str(start))))
    return paths


def _multi(tracks: list[Track]) -> bool:
    return any(len(t.chosen) > 1 for t in tracks) and tracks[0].output != ALL_CLASSES


def _ckpt_legend(fig: plt.Figure, study: Study, tracks: list[Track]) -> None:
    """Which colour is which checkpoint, when several are drawn (first, middle and last at most 7 entries)."""
    if not _multi(tracks):
        return
    t = max(tracks, key=lambda t: len(t.chosen))
    colors = _ckpt_colors(t.chosen)
    picks = t.chosen if len(t.chosen) <= 7 else [t.chosen[int(round(k))] for k in np.linspace(0, len(t.chosen) - 1, 7)]
    handles = [Line2D([], [], color=colors[i], lw=1.6) for i in picks]
    fig.legend(handles, [t.checkpoints[i] or DASH for i in picks], loc="upper center", ncol=len(picks), fontsize=7,
               frameon=False, title="checkpoint", title_fontsize=7)
