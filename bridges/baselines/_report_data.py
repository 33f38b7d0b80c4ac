"""What the report's local-baselines section shows, gathered here so that the report draws without reading files.

``baselines_report(outputs, attributions)``: the flip task's table (``flip_task_table``) and, for a few sequences
(named, else up to four at their last attributed checkpoint, flips and non-flips alternating), every method's
maps of the original and the intervened image (the paper's Fig. 18).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from epg_core import UsageError

from ._flip import FlipTaskTable, FlipUnit, flip_task_table
from ._names import METHOD_NAMES
from ._store import read_attributions

__all__ = ["Example", "BaselinesReport", "baselines_report"]


@dataclass(frozen=True)
class Example:
    """One unit's maps for the Fig. 18 view: ``steps`` (the original, the intervened), method -> ``[2, H, W]``."""

    unit: FlipUnit
    steps: tuple[int, ...]
    maps: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass(frozen=True)
class BaselinesReport:
    """The flip task's table and the examples to draw."""

    table: FlipTaskTable
    examples: list[Example]


def _chosen(units: Sequence[FlipUnit], sequences: Sequence[str] | None, limit: int) -> list[FlipUnit]:
    last: dict[tuple[str, str], FlipUnit] = {}
    for u in units:
        last[(u.model, u.sequence)] = u  # units come in checkpoint order: the last attributed one stays
    pool = list(last.values())
    if sequences:
        picked = [u for u in pool if u.sequence in sequences]
        missing = [s for s in sequences if s not in {u.sequence for u in picked}]
        if missing:
            raise UsageError(f"--attribution-sequence {missing[0]!r}: no attributions of that sequence with outputs")
        return picked
    flips, steady = [u for u in pool if u.label], [u for u in pool if not u.label]
    mixed = [u for pair in zip(flips, steady, strict=False) for u in pair]
    return (mixed + [u for u in pool if u not in mixed])[:limit]


def baselines_report(
    outputs: str | os.PathLike[str],
    attributions: str | os.PathLike[str],
    *,
    target: str | None = None,
    sequences: Sequence[str] | None = None,
    max_sequences: int = 4,
    n_bootstrap: int = 2000,
    seed: int = 0,
) -> BaselinesReport:
    """The table and the examples of the report's section (see the module doc)."""
    table = flip_task_table(outputs, attributions, target=target, n_bootstrap=n_bootstrap, seed=seed)
    examples = []
    for unit in _chosen(table.units, sequences, max_sequences):
        items = read_attributions(attributions, model=unit.model, checkpoint=unit.checkpoint, sequence=unit.sequence)
        items = [i for i in items if i.key.target == table.target]
        items.sort(key=lambda i: METHOD_NAMES.index(i.key.method) if i.key.method in METHOD_NAMES else 99)
        if not items:
            continue
        stored = list(items[0].key.steps)
        later = [s for s in stored if s > 0]
        steps = (0, later[-1]) if 0 in stored and later else (stored[0],)
        maps = {i.key.method: np.stack([i.maps[list(i.key.steps).index(s)] for s in steps]) for i in items
                if all(s in i.key.steps for s in steps)}
        examples.append(Example(unit, steps, maps))
    return BaselinesReport(table, examples)
