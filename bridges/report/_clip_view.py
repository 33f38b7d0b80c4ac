"""The CLIP prompt view (paper Fig. 8): per class, the mean +- std over its prompts' cosines along the property.

Drawn for every outputs block that carries per-prompt cosines (``prompt_outputs``, written by ``predict`` of an
``epg export-clip`` model), at its last finished checkpoint. The mean line is the stored per-class output (the
mean over the class's prompts of the cosine); the band shows how much the prompts of one class disagree.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

import epg_core as E

from ._common import MODEL_COLORS, plot_name, save

__all__ = ["clip_curves", "plot_clip_prompts"]

#: At most this many CLIP blocks get a figure (one per model x sequence).
MAX_CLIP_FIGURES = 24


def clip_curves(block: E.OutputsBlock, checkpoint: int) -> dict[str, tuple[np.ndarray, np.ndarray, int]]:
    """Per class: (mean over its prompts ``[N]``, standard deviation over them ``[N]``, number of prompts)."""
    if block.prompt_outputs is None or block.prompt_classes is None:
        raise E.UsageError(f"{block.model}/{block.sequence} has no prompt outputs")
    cos = np.asarray(block.prompt_outputs[checkpoint], np.float64)  # [N, P]
    owners = np.asarray(block.prompt_classes)
    curves = {}
    for name in block.classes:
        mine = cos[:, owners == name]
        if mine.shape[1]:
            curves[name] = (mine.mean(axis=1), mine.std(axis=1), int(mine.shape[1]))
    return curves


def _last_done(block: E.OutputsBlock) -> int | None:
    done = np.flatnonzero(np.asarray(block.done, bool))
    return int(done[-1]) if done.size else None


def plot_clip_prompts(outputs_path: str | os.PathLike[str], out_dir: Path,
                      units: Mapping[str, str] | None = None, select: E.Selection | None = None) -> list[Path]:
    """One figure per CLIP block (model x sequence) of the outputs file (within ``select``); none when no block
    has prompt outputs."""
    paths: list[Path] = []
    select = select or E.Selection()
    for model, sequence in E.list_outputs(outputs_path):
        if len(paths) >= MAX_CLIP_FIGURES:
            break
        if not select.keeps(model, sequence):
            continue
        (block,) = E.read_outputs(outputs_path, model, sequence)
        mask = select.checkpoint_mask(model, block.checkpoints)
        block = dataclasses.replace(block, done=np.asarray(block.done, bool) & mask)
        checkpoint = _last_done(block)
        if block.prompt_outputs is None or checkpoint is None:
            continue
        paths.append(_figure(block, checkpoint, (units or {}).get(sequence, ""), out_dir))
    return paths


def _figure(block: E.OutputsBlock, checkpoint: int, unit: str, out_dir: Path) -> Path:
    curves = clip_curves(block, checkpoint)
    x = np.asarray(block.values, np.float64)
    fig, ax = plt.subplots(figsize=(4.6, 3.0))
    for i, (name, (mean, std, k)) in enumerate(curves.items()):
        color = MODEL_COLORS[i % len(MODEL_COLORS)]
        ax.fill_between(x, mean - std, mean + std, color=color, alpha=0.18, lw=0)
        ax.plot(x, mean, color=color, lw=1.6, marker="o", ms=2.5, label=f"{name} ({k} prompt{'s' if k != 1 else ''})")
    prop = str(block.attrs.get("property", "") or "property")
    ax.set_xlabel(f"{prop} ({unit})" if unit else prop, fontsize=8)
    ax.set_ylabel("cosine (mean ± SD over prompts)", fontsize=8)
    ax.set_title(f"{block.model} · {block.sequence} [{block.checkpoints[checkpoint]}]", fontsize=8.5)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.25, lw=0.5)
    ax.legend(fontsize=6.5, loc="best", framealpha=0.85)
    fig.tight_layout()
    return save(fig, out_dir / plot_name("clip", block.model, block.sequence, block.checkpoints[checkpoint]))
