"""What the report draws, gathered once: per model x sequence the curves of the chosen checkpoints (the scored
output only, so memory does not grow with the number of classes), and the verdict-level score rows.

The verdict level is the ``mean_curve`` rows when the scores hold groups, else the per-sequence rows; a verdict
is read at the last checkpoint that level has for its model and group. The class of every curve is the one
the scores table names in its ``output`` column: nothing is re-derived here.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

import epg_core as E

from ._common import ReportOptions

__all__ = ["Track", "Verdict", "Study", "load_study", "ALL_CLASSES", "MAX_SHOWN_CLASSES"]

ALL_CLASSES = "all classes"
#: Classes drawn per axis in the all-classes view (those with the highest outputs).
MAX_SHOWN_CLASSES = 6


@dataclass
class Track:
    """One model x sequence: grid, provenance and the drawn outputs of the checkpoints the report needs."""

    model: str
    sequence: str
    prop: str
    image: str
    values: np.ndarray
    unit: str
    checkpoints: list[str]
    done: np.ndarray
    classes: list[str]
    output_kind: str
    output: str
    shown: list[int]
    chosen: list[int]
    curves: dict[int, np.ndarray] = field(default_factory=dict)  # checkpoint -> [N, len(shown)]
    argmax: dict[int, np.ndarray] = field(default_factory=dict)  # checkpoint -> [N] predicted class
    full: dict[int, np.ndarray] = field(default_factory=dict)  # checkpoint -> [N, C] (verdict and last ones)

    @property
    def binary(self) -> bool:
        """Two-class probabilities: the scorer symmetrises the curve and 0.5 is the decision threshold."""
        return len(self.classes) == 2 and self.output_kind == "probabilities"

    @property
    def target(self) -> int | None:
        """Column of the scored class (None in the all-classes view)."""
        return None if self.output == ALL_CLASSES else self.classes.index(self.output)


@dataclass
class Verdict:
    """One row of the verdict table: a model x group (or x sequence) at its last scored checkpoint."""

    model: str
    label: str
    by: str
    key: str
    section: str
    members: list[str]
    row: dict[str, Any]
    history: list[dict[str, Any]]
    mean_epg: dict[str, Any] | None = None


@dataclass
class Study:
    """Everything the figures and the page read."""

    path: Path
    options: ReportOptions
    rows: list[dict[str, Any]]
    tracks: dict[tuple[str, str], Track]
    verdicts: list[Verdict]
    models: list[str]
    sections: list[str]

    def section_tracks(self, section: str) -> list[Track]:
        """Tracks of one property section, by model then sequence."""
        return [t for t in self.tracks.values() if t.prop == section]

    def row_at(self, model: str, sequence: str, checkpoint: int) -> dict[str, Any] | None:
        """The per-sequence score row of ``model``/``sequence`` at checkpoint index ``checkpoint``."""
        for r in self.rows:
            if (r["aggregate"] == "none" and r["model"] == model and r["sequence"] == sequence
                    and r["checkpoint_index"] == checkpoint):
                return r
        return None


def _section_of(attrs: dict[str, Any], sequence: str) -> str:
    return str(attrs.get("property", "") or "") or sequence


def _chosen(spec: str | tuple[str, ...], names: list[str], done: np.ndarray, where: str) -> list[int]:
    """Checkpoint indices the per-sequence curves show ("last", "all", or names; unfinished ones skipped)."""
    finished = [int(i) for i in np.flatnonzero(done)]
    if spec == "last":
        return finished[-1:]
    if spec == "all":
        return finished
    missing = [n for n in spec if n not in names]
    if missing:
        raise E.UsageError(f"{where}: no checkpoint named {missing[0]!r}; it has {', '.join(names[:10])}"
                           + (", ..." if len(names) > 10 else ""))
    return [i for i in finished if names[i] in spec]


def _level(rows: list[dict[str, Any]]) -> str:
    return "mean_curve" if any(r["aggregate"] == "mean_curve" for r in rows) else "none"


def _verdicts(rows: list[dict[str, Any]], sections: dict[tuple[str, str], str]) -> list[Verdict]:
    """The verdict rows and their histories over checkpoints, in table order (section, model)."""
    level = _level(rows)
    hist: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        if r["aggregate"] == level:
            hist.setdefault((r["model"], r["sequence"]), []).append(r)
    means = {(r["model"], r["sequence"], r["checkpoint_index"]): r for r in rows if r["aggregate"] == "mean_epg"}
    out = []
    for (model, label), history in hist.items():
        history.sort(key=lambda r: r["checkpoint_index"])
        row = history[-1]
        if level == "none":
            by, key, members = "none", label, [label]
        else:
            parts = group_parts(label)
            by, key = ",".join(parts), " · ".join(parts.values())
            members = list(dict.fromkeys(r["sequence"] for r in rows if r["aggregate"] == "none"
                                         and r["model"] == model
                                         and all(str(r.get(k, "")) == v for k, v in parts.items())))
        secs = {sections.get((model, s), s) for s in members}
        section = secs.pop() if len(secs) == 1 else f"{by} {key}"
        out.append(Verdict(model, label, by, key, section, members, row, history,
                           means.get((model, label, row["checkpoint_index"]))))
    return out


def group_parts(name: str) -> dict[str, str]:
    """The keys of a group row's ``sequence`` name: "property=background,label=cat" -> {property: background,
    label: cat} (a value may itself hold commas or '=')."""
    pieces = re.split(r",(?=(?:property|image|label)=)", name)
    return dict(p.split("=", 1) for p in pieces if "=" in p)


def _shown(track_classes: list[str], output: str, full_last: np.ndarray | None) -> list[int]:
    if output != ALL_CLASSES:
        return [track_classes.index(output)]
    if full_last is None or len(track_classes) <= MAX_SHOWN_CLASSES:
        return list(range(len(track_classes)))
    return sorted(int(i) for i in np.argsort(-full_last.max(axis=0))[:MAX_SHOWN_CLASSES])


def _selected(block: E.OutputsBlock, select: E.Selection) -> E.OutputsBlock:
    """The block restricted to the selected checkpoints (renumbered as the scores number them)."""
    mask = select.checkpoint_mask(block.model, block.checkpoints)
    if mask.all():
        return block
    keep = np.flatnonzero(mask)
    prompts = None if block.prompt_outputs is None else block.prompt_outputs[keep]
    return replace(block, outputs=block.outputs[keep], done=np.asarray(block.done)[keep],
                   checkpoints=[block.checkpoints[i] for i in keep], prompt_outputs=prompts)


def load_study(path: str | os.PathLike[str], rows: list[dict[str, Any]], options: ReportOptions,
               interventions_units: dict[str, str] | None = None, select: E.Selection | None = None) -> Study:
    """Read every selected block once (one at a time) and keep what the figures need; ``rows`` are the scores."""
    path = Path(path)
    select = select or E.Selection()
    units = interventions_units or {}
    outputs_of: dict[tuple[str, str], str] = {}
    for r in rows:
        if r["aggregate"] == "none":
            outputs_of.setdefault((r["model"], r["sequence"]), r["output"])
    pairs = [(m, s) for m, s in E.list_outputs(path) if select.keeps(m, s)]
    metas: dict[tuple[str, str], E.OutputsBlock] = {}
    for model, seq in pairs:
        (meta,) = E.read_outputs(path, model, seq, checkpoints=slice(0, 0))
        metas[(model, seq)] = meta
    sections = {k: _section_of(m.attrs, k[1]) for k, m in metas.items()}
    verdicts = _verdicts(rows, sections)
    needed: dict[tuple[str, str], set[int]] = {}
    for v in verdicts:
        for s in v.members:
            needed.setdefault((v.model, s), set()).add(int(v.row["checkpoint_index"]))
    tracks: dict[tuple[str, str], Track] = {}
    for model, seq in metas:
        if (model, seq) not in outputs_of:
            continue  # nothing finished: nothing scored, nothing to draw
        (block,) = E.read_outputs(path, model, seq)
        block = _selected(block, select)
        done = np.asarray(block.done, bool)
        chosen = _chosen(options.checkpoints, block.checkpoints, done, f"{path}: model {model!r}")
        last = int(np.flatnonzero(done)[-1])
        keep = sorted(set(chosen) | {last} | needed.get((model, seq), set()))
        output = outputs_of[(model, seq)]
        out64 = {i: np.asarray(block.outputs[i], np.float64) for i in keep}
        shown = _shown(block.classes, output, out64[last])
        unit = str(block.attrs.get("unit", "") or units.get(seq, ""))
        image = str(block.attrs.get("image", "") or seq)
        track = Track(model, seq, sections[(model, seq)], image, np.asarray(block.values, np.float64), unit,
                      list(block.checkpoints), done, list(block.classes), block.output_kind, output, shown, chosen)
        for i in keep:
            track.curves[i] = out64[i][:, shown]
            track.argmax[i] = np.argmax(out64[i], axis=-1)
            if i in needed.get((model, seq), set()) or i == last:
                track.full[i] = out64[i]
        tracks[(model, seq)] = track
    models = list(dict.fromkeys(m for m, _ in pairs))
    order = list(dict.fromkeys(sections[k] for k in metas if k in tracks))
    order = list(dict.fromkeys([*order, *(v.section for v in verdicts)]))
    verdicts.sort(key=lambda v: (order.index(v.section), models.index(v.model), v.label))
    return Study(path, options, rows, tracks, verdicts, models, order)


def verdict_curve(study: Study, verdict: Verdict) -> tuple[np.ndarray, np.ndarray | None, int | None]:
    """The curve the scorer tested for ``verdict`` (mean of the members' outputs for a group; binary probabilities
    symmetrised), its grid (None = unit steps) and the class axis (-1 for whole vectors)."""
    ck = int(verdict.row["checkpoint_index"])
    order = list(study.tracks)  # the file's order, which the scorer sums in
    members = sorted((study.tracks[(verdict.model, s)] for s in verdict.members),
                     key=lambda t: order.index((t.model, t.sequence)))
    total = np.zeros_like(members[0].full[ck])
    for t in members:
        total += t.full[ck]
    out = total / len(members) if verdict.by != "none" else members[0].full[ck]
    first = members[0]
    grid = first.values if study.options.score.spacing == "values" else None
    if first.target is None:
        return out, grid, -1
    if first.binary:
        return (out[:, first.target] + (1.0 - out[:, 1 - first.target])) / 2.0, grid, None
    return out[:, first.target], grid, None
