"""The explorer's data, with no user interface: the blocks of an outputs file, one curve's scores on demand, its
shuffle null and exact null moments, and its intervention frames.

Scoring calls :func:`epg_core.score_outputs` on one model x sequence (a :class:`epg_core.Selection`), in memory:
the rows are exactly the ones ``epg score --class C`` writes for that curve, and nothing is written anywhere.
The null drawn is the shuffle test re-run with the row's options; its p-value is checked against the row's.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import epg_core as E

from ._source import AppSource

__all__ = ["PREDICTED", "BlockInfo", "Explorer", "View", "stored_options"]

#: The class choice that lets the scorer take the class predicted on the original image (``--class`` omitted).
PREDICTED = "(predicted on the original)"
#: Options of ``ScoreOptions`` that the stored scores table records per row (and the explorer can follow).
STORED = ("n_permutations", "alternative", "seed", "spacing", "min_effect")
#: Scored curves kept in memory (model x sequence x class).
CACHE_SIZE = 64

Tick = Callable[[int, int], None]


@dataclass(frozen=True)
class BlockInfo:
    """One model x sequence of the outputs file: names, grid and provenance (no outputs)."""

    model: str
    sequence: str
    checkpoints: list[str]
    done: np.ndarray
    classes: list[str]
    values: np.ndarray
    output_kind: str
    attrs: dict[str, Any]

    @property
    def finished(self) -> list[str]:
        """Names of the finished checkpoints (the ones that have scores), in the file's order."""
        return [c for c, d in zip(self.checkpoints, self.done, strict=True) if d]

    @property
    def unit(self) -> str:
        return str(self.attrs.get("unit", "") or "")

    @property
    def prop(self) -> str:
        return str(self.attrs.get("property", "") or "")


@dataclass
class View:
    """Everything the page shows for one model x sequence x checkpoint x class."""

    info: BlockInfo
    checkpoint: str
    output: str
    row: dict[str, Any]
    history: list[dict[str, Any]]
    outputs: np.ndarray  # [N, C] at the checkpoint
    curve: np.ndarray  # [N] the curve the shuffle test saw
    null: np.ndarray  # [K] the shuffled EPGs
    rerun_pvalue: float
    moments: tuple[float, float] | None
    frames: np.ndarray | None = None  # [F, H, W, 3] uint8
    frame_values: np.ndarray | None = None
    frames_note: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    unit: str = ""  # of the property values (the block's, else the interventions')

    @property
    def agrees(self) -> bool:
        """Whether the re-run shuffle test gives the row's p-value (it must: same options, same draws)."""
        return self.rerun_pvalue == float(self.row["pvalue"])

    def summary(self) -> dict[str, Any]:
        """The numbers of the view as plain JSON (what ``gradio_client`` gets back)."""
        mean, std = self.moments if self.moments is not None else (None, None)
        row = {k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in self.row.items()}
        return {"row": row, "null_mean": mean, "null_std": std, "n_shuffles": int(self.null.size),
                "rerun_pvalue": self.rerun_pvalue, "rerun_agrees": self.agrees,
                "epg_over_checkpoints": [{"checkpoint": r["checkpoint"], "epg": r["epg"], "pvalue": r["pvalue"],
                                          "significant": r["significant"], "flips": r["flips"]}
                                         for r in self.history],
                "options": self.options}


def stored_options(outputs: Path) -> dict[str, Any]:
    """The settings of the scores stored in ``outputs`` (``/scores``) that every per-curve row shares, so the
    explorer can agree with the report; {} when there are none."""
    try:
        rows = [r for r in E.read_scores(outputs) if r.get("aggregate", "none") == "none"]
    except E.EpgError:
        return {}
    found: dict[str, Any] = {}
    for key in STORED:
        values = {r.get(key) for r in rows}
        if len(values) == 1 and None not in values:
            found[key] = values.pop()
    return found


def stored_outputs(outputs: Path) -> dict[tuple[str, str], str]:
    """The class each model x sequence was scored for in the stored scores (the default class of the page)."""
    try:
        rows = E.read_scores(outputs)
    except E.EpgError:
        return {}
    return {(str(r["model"]), str(r["sequence"])): str(r["output"]) for r in rows
            if r.get("aggregate", "none") == "none" and "output" in r}


def tested_curve(outputs: np.ndarray, classes: list[str], output_kind: str, output: str) -> np.ndarray:
    """The curve the scorer tests for class ``output``: its column of ``outputs [N, C]``; binary probabilities
    symmetrised as the scorer does (``(p_t + 1 - p_o) / 2``). The re-run p-value checks that the two agree."""
    t = classes.index(output)
    if len(classes) == 2 and output_kind == "probabilities":
        return (outputs[:, t] + (1.0 - outputs[:, 1 - t])) / 2.0
    return outputs[:, t].copy()


class Explorer:
    """Reads an outputs file's blocks once, scores curves on demand (cached), and builds :class:`View` s."""

    def __init__(self, source: AppSource, options: E.ScoreOptions | None = None, strip_frames: int = 8) -> None:
        self.source = source
        self.options = dataclasses.replace(options or E.ScoreOptions(), group_by="none", all_classes=False,
                                           use_fdr=False, target=None).checked()
        self.strip_frames = int(strip_frames)
        self.blocks: dict[tuple[str, str], BlockInfo] = {}
        for model, seq in E.list_outputs(source.outputs):
            (meta,) = E.read_outputs(source.outputs, model, seq, checkpoints=slice(0, 0))
            # names and finished flags of every checkpoint: read with one output of the original image each
            chunks = list(E.iter_outputs(source.outputs, model, seq, classes=[0], steps=slice(0, 1),
                                         checkpoint_chunk=1 << 20))
            names = [str(c) for b in chunks for c in b.checkpoints]
            done = np.concatenate([np.asarray(b.done, bool) for b in chunks])
            self.blocks[(model, seq)] = BlockInfo(model, seq, names, done, list(meta.classes),
                                                  np.asarray(meta.values, np.float64), meta.output_kind,
                                                  dict(meta.attrs))
        self.defaults = stored_outputs(source.outputs)
        self._frames_of: dict[str, Path] = {}
        for path in source.interventions:
            for name in E.list_sequences(path):
                self._frames_of.setdefault(name, path)
        self._cache: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
        self._lock = threading.Lock()

    # ----------------------------------------------------------------------------------------------- choices

    def models(self) -> list[str]:
        """Models with at least one finished checkpoint somewhere."""
        return list(dict.fromkeys(m for (m, _), b in self.blocks.items() if b.done.any()))

    def sequences(self, model: str) -> list[str]:
        """The model's sequences with a finished checkpoint."""
        return [s for (m, s), b in self.blocks.items() if m == model and b.done.any()]

    def info(self, model: str, sequence: str) -> BlockInfo:
        try:
            return self.blocks[(model, sequence)]
        except KeyError:
            raise E.UsageError(f"{self.source.outputs}: no outputs for model {model!r} and sequence "
                               f"{sequence!r}") from None

    def class_choices(self, model: str, sequence: str) -> list[str]:
        return [PREDICTED, *self.info(model, sequence).classes]

    def default_class(self, model: str, sequence: str) -> str:
        """The class the stored scores explain for this curve, else the predicted one."""
        stored = self.defaults.get((model, sequence))
        return stored if stored in self.info(model, sequence).classes else PREDICTED

    def normalise(self, model: str | None, sequence: str | None, checkpoint: str | None,
                  output: str | None) -> tuple[str, str, str, str]:
        """A valid selection close to the given one: an unknown or stale choice falls back to the first model,
        the model's first sequence, the last finished checkpoint and the default class."""
        models = self.models()
        if not models:
            raise E.DataError(f"{self.source.outputs}: no finished checkpoint to explore")
        model = model if model in models else models[0]
        seqs = self.sequences(model)
        sequence = sequence if sequence in seqs else seqs[0]
        info = self.info(model, sequence)
        checkpoint = checkpoint if checkpoint in info.finished else info.finished[-1]
        choices = self.class_choices(model, sequence)
        output = output if output in choices else self.default_class(model, sequence)
        return model, sequence, checkpoint, output

    # ------------------------------------------------------------------------------------------------ scores

    def score(self, model: str, sequence: str, output: str, progress: Tick | None = None) -> list[dict[str, Any]]:
        """Scores of every finished checkpoint of one curve (``epg score``'s rows), computed once and cached."""
        key = (model, sequence, output)
        with self._lock:
            if key in self._cache:
                return self._cache[key]
        info = self.info(model, sequence)
        total = len(info.finished)
        done = [0]

        def tick(n: int) -> None:
            done[0] += n
            if progress is not None:
                progress(done[0], total)

        if progress is not None:
            progress(0, total)
        opts = dataclasses.replace(self.options, target=None if output == PREDICTED else output)
        select = E.Selection(models={model: None}, sequences=frozenset({sequence}))
        rows = [r for r in E.score_outputs(self.source.outputs, opts, select=select, progress=tick)
                if r["aggregate"] == "none" and r["sequence"] == sequence]
        with self._lock:
            if len(self._cache) >= CACHE_SIZE:
                self._cache.pop(next(iter(self._cache)))
            self._cache[key] = rows
        return rows

    def frames(self, sequence: str) -> tuple[np.ndarray | None, np.ndarray | None, str, str]:
        """Up to ``strip_frames`` evenly spaced frames of the sequence, their values and unit, or a note why none."""
        path = self._frames_of.get(sequence)
        if path is None:
            if not self.source.interventions:
                return None, None, "", "no interventions file (give one with --interventions)"
            return None, None, "", f"sequence {sequence!r} is not in the interventions file"
        seq = E.read_interventions(path, [sequence])[sequence]
        n = seq.n_steps
        idx = np.unique(np.rint(np.linspace(0, n - 1, min(self.strip_frames, n))).astype(int))
        unit = str(seq.attrs.get("unit", "") or "")
        return np.asarray(seq.images[idx]), np.asarray(seq.values, np.float64)[idx], unit, ""

    def view(self, model: str, sequence: str, checkpoint: str, output: str, progress: Tick | None = None) -> View:
        """Score (or take from the cache) and assemble what the page shows for one selection."""
        model, sequence, checkpoint, output = self.normalise(model, sequence, checkpoint, output)
        info = self.info(model, sequence)
        history = self.score(model, sequence, output, progress)
        row = next(r for r in history if r["checkpoint"] == checkpoint)
        index = info.checkpoints.index(checkpoint)
        (block,) = E.read_outputs(self.source.outputs, model, sequence, checkpoints=slice(index, index + 1))
        out = np.asarray(block.outputs[0], np.float64)
        curve = tested_curve(out, info.classes, info.output_kind, str(row["output"]))
        o = self.options
        grid = info.values if o.spacing == "values" else None
        res = E.permutation_test(curve, grid, n_permutations=o.n_permutations, alternative=o.alternative,
                                 seed=o.seed, alpha=o.alpha, return_null=True, precision=o.precision)
        assert res.null is not None
        try:
            m = E.permutation_moments(curve, grid)
            moments: tuple[float, float] | None = (float(np.asarray(m.mean)), float(np.asarray(m.std)))
        except (ValueError, E.EpgError):  # no exact moments for this grid or stencil
            moments = None
        frames, frame_values, unit, note = self.frames(sequence)
        return View(info, checkpoint, str(row["output"]), row, history, out, curve,
                    np.asarray(res.null, np.float64).ravel(), float(np.asarray(res.pvalue)), moments, frames,
                    frame_values, note, self.option_summary(), info.unit or unit)

    def option_summary(self) -> dict[str, Any]:
        o = self.options
        return {"n_permutations": o.n_permutations, "alternative": o.alternative, "alpha": o.alpha, "seed": o.seed,
                "spacing": o.spacing, "precision": o.precision, "min_effect": o.min_effect}
