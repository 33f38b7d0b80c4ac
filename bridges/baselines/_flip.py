"""The flip task's inputs: one unit per model x checkpoint x sequence, its label and every method's score.

The project page's protocol: label = the prediction (argmax over the outputs) changes along the sequence; EPG's
score = the curve's EPG for the explained class; a local baseline's score = the mean squared difference of its
explanation between the original (step 0) and the intervened image (the last stored step). ``predict_from=F``
keeps the scores from seeing what they predict: EPG from the first ``k = max(2, round(F * N))`` steps, the
baselines from the last stored step among them, the label from the prediction changing from step ``k - 1`` on.
The statistics are ``epg_core``'s (``epg``, ``flips``, ``flip_task``); nothing is computed here but the inputs.
"""

from __future__ import annotations

import csv
import io
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import epg_core as E
from epg_core import DataError, FlipTaskResult, MissingFileError, UsageError

from ._names import METHOD_NAMES
from ._store import Attribution, check_attributions_target, list_attributions, read_attributions

__all__ = ["FlipUnit", "FlipTaskTable", "flip_task_table", "FLIP_COLUMNS", "write_flip_csv", "steps_seen"]

#: Columns of the flip-task table (CLI, CSV, report).
FLIP_COLUMNS = ("score", "n", "positives", "accuracy", "threshold", "auroc", "auroc_low", "auroc_high")


@dataclass(frozen=True)
class FlipUnit:
    """One unit: its label (a flip happens), EPG's score and each method's score (method -> score)."""

    model: str
    checkpoint: str
    sequence: str
    label: bool
    epg: float
    baselines: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class FlipTaskTable:
    """The flip task over a study: the units, one result per score (``"epg"`` first), the explained class."""

    units: list[FlipUnit]
    results: dict[str, FlipTaskResult]
    target: str
    predict_from: float | None
    skipped: int = 0

    def rows(self) -> list[dict[str, Any]]:
        """One row per score with the :data:`FLIP_COLUMNS`."""
        return [{"score": name, "n": r.n, "positives": r.positives, "accuracy": r.accuracy,
                 "threshold": r.threshold, "auroc": r.auroc, "auroc_low": r.auroc_low, "auroc_high": r.auroc_high}
                for name, r in self.results.items()]


def steps_seen(n: int, predict_from: float | None) -> int:
    """How many leading steps the scores see: all of them, or ``max(2, round(F * n))`` (< n) with ``F``."""
    if predict_from is None:
        return n
    if not 0 < predict_from < 1:
        raise UsageError(f"--predict-from must lie in (0, 1), got {predict_from}")
    k = max(2, int(round(predict_from * n)))
    if k >= n:
        raise UsageError(f"--predict-from {predict_from}: the first {k} of {n} steps leave none to predict; "
                         "choose a smaller fraction")
    return k


def _class_name(target: str | None, classes: list[str]) -> str | None:
    if target is None or target in classes:
        return target
    try:
        index = int(target)
    except ValueError:
        raise UsageError(f"--class {target!r} is not one of the outputs' classes ({', '.join(classes)})") from None
    if not 0 <= index < len(classes):
        raise UsageError(f"--class {target}: the outputs have {len(classes)} classes")
    return classes[index]


def _baseline_score(item: Attribution, last_step: int, where: str) -> float:
    """Mean squared difference of the maps at step 0 and at the last stored step <= ``last_step``."""
    steps = list(item.key.steps)
    if 0 not in steps:
        raise DataError(f"{where}: the stored steps {steps} lack step 0 (the original image); rerun epg attribute "
                        "with --steps 0,-1")
    later = [s for s in steps if 0 < s <= last_step]
    if not later:
        raise DataError(f"{where}: no stored step after the original within steps 1..{last_step}; rerun epg "
                        "attribute with --steps that include one (e.g. --steps all)")
    a, b = item.maps[steps.index(0)], item.maps[steps.index(later[-1])]
    return float(np.mean((b.astype(np.float64) - a.astype(np.float64)) ** 2))


def flip_task_table(
    outputs: str | os.PathLike[str],
    attributions: str | os.PathLike[str],
    *,
    target: str | None = None,
    predict_from: float | None = None,
    n_bootstrap: int = 2000,
    seed: int = 0,
) -> FlipTaskTable:
    """Units from an outputs file and an attributions file, and ``epg_core.flip_task`` for EPG and each method.

    ``target``: the explained class (default: the one class the attributions explain). Units are the model x
    checkpoint x sequence triples with attributions and finished outputs; attributions without outputs are
    counted in ``skipped``. Each method's row uses the units where it was computed.
    """
    outputs, attributions = Path(outputs), Path(attributions)
    keys = list_attributions(attributions)
    if not keys and not attributions.exists():
        raise MissingFileError(f"{attributions}: file not found")
    models = sorted({k.model for k in keys})
    have = {m for m, _ in E.list_outputs(outputs)}
    blocks = {(b.model, b.sequence): b for m in models if m in have for b in E.read_outputs(outputs, m)}
    if target is not None and blocks:
        target = _class_name(target, next(iter(blocks.values())).classes)
    target = check_attributions_target(keys, target, attributions)
    groups: dict[tuple[str, str, str], list[Attribution]] = {}
    for item in read_attributions(attributions):
        if item.key.target == target:
            groups.setdefault((item.key.model, item.key.checkpoint, item.key.sequence), []).append(item)
    units: list[FlipUnit] = []
    skipped = 0
    for (model, checkpoint, sequence), items in groups.items():
        block = blocks.get((model, sequence))
        if block is None or checkpoint not in block.checkpoints:
            skipped += 1
            continue
        m = block.checkpoints.index(checkpoint)
        if not block.done[m]:
            skipped += 1
            continue
        if target not in block.classes:
            raise DataError(f"{outputs}: {model}/{sequence} has no class {target!r} (classes: "
                            f"{', '.join(block.classes)})")
        n = block.outputs.shape[1]
        k = steps_seen(n, predict_from)
        where = f"{attributions}: {model}/{checkpoint}/{sequence}"
        if max(max(i.key.steps) for i in items) >= n:
            raise DataError(f"{where}: stored steps reach beyond the {n} steps of the outputs")
        rows = np.asarray(block.outputs[m], np.float64)  # [N, C]
        curve = rows[:k, block.classes.index(target)]
        epg_value = float(E.epg(curve))
        label_rows = rows if predict_from is None else rows[k - 1:]
        label = bool(int(E.flips(label_rows)) > 0)
        scores = {i.key.method: _baseline_score(i, k - 1, f"{where}/{i.key.method}") for i in items}
        units.append(FlipUnit(model, checkpoint, sequence, label, epg_value, scores))
    if not units:
        raise DataError(f"{attributions}: no attribution has finished outputs in {outputs} (model, checkpoint and "
                        "sequence names must match: use the same --model-name for sweep and attribute)")
    results = {"epg": E.flip_task([u.epg for u in units], [u.label for u in units], n_bootstrap=n_bootstrap,
                                  seed=seed)}
    present = {name for u in units for name in u.baselines}
    order = [n for n in METHOD_NAMES if n in present] + sorted(present - set(METHOD_NAMES))
    for name in order:
        mine = [u for u in units if name in u.baselines]
        results[name] = E.flip_task([u.baselines[name] for u in mine], [u.label for u in mine],
                                    n_bootstrap=n_bootstrap, seed=seed)
    return FlipTaskTable(units, results, target, predict_from, skipped)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else repr(value)
    return str(value)


def write_flip_csv(table: FlipTaskTable, path: str | os.PathLike[str], *, force: bool = False) -> Path:
    """The table as CSV (atomic); an existing file that is not such a table is refused unless ``force``."""
    path = Path(path)
    header = ",".join(FLIP_COLUMNS)
    if path.is_dir():
        raise UsageError(f"{path}: is a folder; choose another --csv")
    if path.exists() and not force:
        try:
            first = path.read_text(encoding="utf-8").splitlines()[:1]
        except (OSError, UnicodeDecodeError):
            first = []
        if first != [header]:
            raise UsageError(f"{path}: exists and is not an epg flip-task CSV; refusing to replace it: choose "
                             "another --csv, or --force")
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(FLIP_COLUMNS)
    for row in table.rows():
        writer.writerow([_cell(row[c]) for c in FLIP_COLUMNS])
    return E.write_bytes_atomic(path, buffer.getvalue().encode("utf-8"))
