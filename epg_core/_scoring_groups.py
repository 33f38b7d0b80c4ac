"""Groups of sequences to score together, their target class, and the curves they yield (streamed).

A group is one model's sequences that share a key (their ``property``, their ``image``, or each sequence
alone). All its sequences must share the number of steps, the outputs and the grid, so the mean curve is
differentiated on the group's own grid.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from epg_core._errors import DataError, UsageError
from epg_core._io import OutputsBlock, iter_outputs, list_outputs, read_outputs

if TYPE_CHECKING:
    from epg_core._scoring import ScoreOptions

GROUP_BYS: tuple[str, ...] = ("none", "property", "image")
# Bytes of outputs read at once (one checkpoint chunk of one sequence).
READ_BYTES = 32 << 20
ALL = "all classes"


@dataclass
class Curve:
    """One curve waiting to be tested, with the row it will become."""

    y: np.ndarray
    grid: np.ndarray | None
    row: dict[str, Any]


def resolve_target(target: str | int | None, classes: list[str], first_step: np.ndarray | None = None) -> int:
    """Output index to explain: a class name, an index, or (None) the class predicted at ``first_step``."""
    if target is None:
        if first_step is None:
            raise UsageError("no target class given and no original outputs to take it from")
        return int(np.argmax(first_step))
    if isinstance(target, str) and not target.lstrip("-").isdigit():
        if target not in classes:
            shown = ", ".join(classes[:10]) + (", ..." if len(classes) > 10 else "")
            raise UsageError(f"unknown class {target!r}; the outputs have: {shown}")
        return classes.index(target)
    idx = int(target)
    if not 0 <= idx < len(classes):
        raise UsageError(f"output index {idx} is out of range: the outputs have {len(classes)} columns "
                         f"(0..{len(classes) - 1})")
    return idx


def majority_target(originals: np.ndarray, classes: list[str]) -> tuple[int, str]:
    """The class predicted most often on the originals ``[S, C]``; a tie goes to the tied class with the
    highest mean output and is reported in the returned note."""
    votes = np.bincount(np.argmax(originals, axis=-1), minlength=originals.shape[-1])
    tied = np.flatnonzero(votes == votes.max())
    if len(tied) == 1:
        return int(tied[0]), ""
    means = originals.mean(axis=0)
    best = int(tied[np.argmax(means[tied])])
    names = " and ".join(f"{classes[i]} ({votes[i]})" for i in tied)
    return best, f"tie between {names} on the originals; {classes[best]} has the higher mean output"


@dataclass
class Group:
    """One model's sequences scored together (``key`` "" for a lone sequence with group_by="none")."""

    model: str
    key: str
    by: str
    sequences: list[str]
    checkpoints: list[str]
    done: np.ndarray  # [S, M]
    classes: list[str]
    values: np.ndarray
    attrs: list[dict[str, Any]]
    target: int = -1
    note: str = ""
    binary: bool = False
    originals: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def n_tests(self, opts: ScoreOptions) -> int:
        """Curves this group sends to the shuffle test."""
        grouped = int(np.sum(self.done.all(axis=0))) if self.by != "none" else 0
        return int(np.sum(self.done)) + grouped

    def _row(self, ckpt: int, sequence: str, aggregate: str, outputs: np.ndarray, output: str) -> dict[str, Any]:
        from epg_core._scoring_rows import base_row

        attrs = self.attrs[self.sequences.index(sequence)] if aggregate == "none" else {}
        prop = str(attrs.get("property", self.key if self.by == "property" else ""))
        image = str(attrs.get("image", self.key if self.by == "image" else ""))
        return base_row(self.model, self.checkpoints[ckpt], ckpt, sequence, prop, image, aggregate,
                        len(self.sequences) if aggregate != "none" else 1, output, outputs, self.note,
                        (self.model, self.key, ckpt))

    def _target_curve(self, out: np.ndarray) -> np.ndarray:
        """The target's outputs along the steps. Binary probabilities are symmetrised, ``(p_t + 1 - p_o) / 2``
        (equal to ``p_t`` up to rounding), so that scoring either class gives bit-identical answers."""
        if self.binary:
            return (out[:, self.target] + (1.0 - out[:, 1 - self.target])) / 2.0
        return out[:, self.target].copy()  # a copy: a view would keep the whole [N, C] array alive while batched

    def curves(self, path: Path, opts: ScoreOptions) -> Iterator[Curve]:
        """Per-sequence curves of every finished checkpoint and, for real groups, the mean curve of every
        checkpoint finished in all sequences; read in chunks of checkpoints (bounded memory)."""
        n, c = len(self.values), len(self.classes)
        grid = None if opts.spacing == "step" else self.values
        chunk = max(1, min(opts.checkpoint_chunk, READ_BYTES // (n * c * 4)))
        output = ALL if opts.all_classes else self.classes[self.target]
        all_done: np.ndarray = np.all(self.done, axis=0)
        for start in range(0, len(self.checkpoints), chunk):
            stop = min(start + chunk, len(self.checkpoints))
            total = np.zeros((stop - start, n, c)) if self.by != "none" else None
            for s, seq in enumerate(self.sequences):
                if not self.done[s, start:stop].any():
                    continue
                (block,) = read_outputs(path, self.model, seq, checkpoints=slice(start, stop))
                for i in range(stop - start):
                    if not self.done[s, start + i]:
                        continue
                    out = np.asarray(block.outputs[i], np.float64)
                    if total is not None and all_done[start + i]:
                        total[i] += out
                    y = out if opts.all_classes else self._target_curve(out)
                    yield Curve(y, grid, self._row(start + i, seq, "none", out, output))
            if total is None:
                continue
            for i in range(stop - start):
                if all_done[start + i]:
                    mean = total[i] / len(self.sequences)
                    y = mean if opts.all_classes else self._target_curve(mean)
                    label = f"{self.by}={self.key}"
                    yield Curve(y, grid, self._row(start + i, label, "mean_curve", mean, output))


def _meta(path: Path, model: str, seq: str) -> tuple[OutputsBlock, np.ndarray]:
    """A block's names, grid and provenance, and its step-0 outputs of every checkpoint ``[M, C]``."""
    first = next(iter_outputs(path, model, seq, steps=slice(0, 1), checkpoint_chunk=1 << 30))
    return first, np.asarray(first.outputs[:, 0, :], np.float64)


def _grid_of(path: Path, model: str, seq: str) -> np.ndarray:
    (block,) = read_outputs(path, model, seq, checkpoints=slice(0, 0))
    return np.asarray(block.values, np.float64)


def model_groups(path: Path, opts: ScoreOptions) -> Iterator[Group]:
    """Every group of every model, with its target class resolved."""
    by_model: dict[str, list[str]] = {}
    for model, seq in list_outputs(path):
        by_model.setdefault(model, []).append(seq)
    for model, seqs in by_model.items():
        metas = {seq: _meta(path, model, seq) for seq in seqs}
        keyed: dict[str, list[str]] = {}
        for seq in seqs:
            attrs = metas[seq][0].attrs
            key = {"none": seq, "property": str(attrs.get("property", "")),
                   "image": str(attrs.get("image", seq))}[opts.group_by]
            keyed.setdefault(key, []).append(seq)
        for key, members in keyed.items():
            yield _make_group(path, model, key, members, metas, opts)


def _make_group(path: Path, model: str, key: str, members: list[str],
                metas: dict[str, tuple[OutputsBlock, np.ndarray]], opts: ScoreOptions) -> Group:
    first = metas[members[0]][0]
    values = _grid_of(path, model, members[0])
    for seq in members[1:]:
        other = metas[seq][0]
        if other.checkpoints != first.checkpoints or other.classes != first.classes:
            raise DataError(f"{path}: model {model!r}, group {key!r}: sequences {members[0]!r} and {seq!r} have "
                            "different checkpoints or outputs; they cannot be averaged")
        grid = _grid_of(path, model, seq)
        if grid.shape != values.shape or not np.array_equal(grid, values):
            raise DataError(f"{path}: model {model!r}, group {key!r}: sequences {members[0]!r} and {seq!r} have "
                            "different property grids (values); a mean curve needs one grid per group")
    done = np.stack([np.asarray(metas[s][0].done, bool) for s in members])
    group = Group(model, key if opts.group_by != "none" else "", opts.group_by, members, list(first.checkpoints),
                  done, list(first.classes), values, [dict(metas[s][0].attrs) for s in members])
    group.binary = len(group.classes) == 2 and first.output_kind == "probabilities"
    if opts.all_classes:
        return group
    if opts.target is not None:
        group.target = resolve_target(opts.target, group.classes)
        return group
    common = np.flatnonzero(done.all(axis=0))
    if len(common):
        originals = np.stack([metas[s][1][common[-1]] for s in members])
    else:  # no checkpoint finished everywhere: each sequence votes with its own last finished one
        originals = np.stack([metas[s][1][np.flatnonzero(d)[-1]] for s, d in zip(members, done, strict=True)
                              if d.any()] or [metas[members[0]][1][0]])
    group.target, group.note = majority_target(originals, group.classes)
    return group
