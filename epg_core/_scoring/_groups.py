"""Groups of sequences to score together, their target class, and the curves they yield (streamed).

A group is one model's sequences that share a key: their ``property``, their ``image`` (one group per image x
property: the properties of an image have different grids), their ``label`` (the class predicted on the
original image, or the ``label`` attribute given with the image), any combination such as ``property,label``
(the paper's Fig. 16: the mean behaviour of the dog images and of the cat images, separately), or each
sequence alone. All its sequences must share the number of steps, the outputs and the grid, so the mean curve
is differentiated on the group's own grid. A :class:`Selection` restricts the models, checkpoints and sequences.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from epg_core._errors import DataError, UsageError
from epg_core._formats._outputs import OutputsBlock, iter_outputs, list_outputs, read_outputs
from epg_core._scoring._options import GROUP_KEYS, ScoreOptions, group_keys
from epg_core._scoring._rows import Curve, base_row
from epg_core._scoring._selection import Selection

# Bytes of outputs read at once (one checkpoint chunk of one sequence).
READ_BYTES = 32 << 20
ALL = "all classes"


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
    #: Reported index of each block checkpoint (its position among the selected ones; -1: not selected).
    index: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    #: The group's key by name (``property``, ``image``, ``label``), for its aggregate rows.
    parts: dict[str, str] = field(default_factory=dict)
    #: Each member sequence's label (the class predicted on its original, or the label given with it).
    labels: list[str] = field(default_factory=list)
    output_kind: str = "probabilities"

    def n_tests(self, opts: ScoreOptions) -> int:
        """Curves this group sends to the shuffle test."""
        grouped = int(np.sum(self.done.all(axis=0))) if self.by != "none" else 0
        return int(np.sum(self.done)) + grouped

    def _row(self, ckpt: int, sequence: str, aggregate: str, outputs: np.ndarray, output: str) -> dict[str, Any]:
        if aggregate == "none":
            member = self.sequences.index(sequence)
            attrs = self.attrs[member]
            prop, image, label = str(attrs.get("property", "")), str(attrs.get("image", "")), self.labels[member]
        else:
            prop, image, label = (self.parts.get(k, "") for k in GROUP_KEYS)
        row = base_row(self.model, self.checkpoints[ckpt], int(self.index[ckpt]), sequence, prop, image, aggregate,
                       len(self.sequences) if aggregate != "none" else 1, output, outputs, self.note,
                       (self.model, self.key, ckpt))
        row["label"], row["_kind"] = label, self.output_kind
        return row

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
                    name = ",".join(f"{k}={v}" for k, v in self.parts.items())
                    yield Curve(y, grid, self._row(start + i, name, "mean_curve", mean, output))


def _meta(path: Path, model: str, seq: str) -> tuple[OutputsBlock, np.ndarray]:
    """A block's names, grid and provenance, and its step-0 outputs of every checkpoint ``[M, C]``."""
    first = next(iter_outputs(path, model, seq, steps=slice(0, 1), checkpoint_chunk=1 << 30))
    return first, np.asarray(first.outputs[:, 0, :], np.float64)


def _grid_of(path: Path, model: str, seq: str) -> np.ndarray:
    (block,) = read_outputs(path, model, seq, checkpoints=slice(0, 0))
    return np.asarray(block.values, np.float64)


def _label(meta: OutputsBlock, originals: np.ndarray, done: np.ndarray) -> str:
    """A sequence's label: the ``label`` given with its image, else the class its last selected finished
    checkpoint predicts on the original (step 0)."""
    given = str(meta.attrs.get("label", "") or "")
    if given:
        return given
    finished = np.flatnonzero(done)
    row = originals[finished[-1]] if finished.size else originals[0]
    return str(meta.classes[int(np.argmax(row))])


def model_groups(path: Path, opts: ScoreOptions, select: Selection | None = None) -> Iterator[Group]:
    """Every group of every model (within ``select``), with its target class resolved."""
    select = select or Selection()
    keys = group_keys(opts.group_by)
    by_model: dict[str, list[str]] = {}
    for model, seq in list_outputs(path):
        if select.keeps(model, seq):
            by_model.setdefault(model, []).append(seq)
    for model, seqs in by_model.items():
        metas = {seq: _meta(path, model, seq) for seq in seqs}
        masks = {seq: select.checkpoint_mask(model, metas[seq][0].checkpoints) for seq in seqs}
        labels = {seq: _label(metas[seq][0], metas[seq][1], np.asarray(metas[seq][0].done, bool) & masks[seq])
                  for seq in seqs}
        keyed: dict[tuple[tuple[str, str], ...], list[str]] = {}
        for seq in seqs:
            attrs = metas[seq][0].attrs
            values = {"property": str(attrs.get("property", "")), "image": str(attrs.get("image", seq)),
                      "label": labels[seq]}
            if not keys:
                key: tuple[tuple[str, str], ...] = (("sequence", seq),)
            else:  # an image's properties have different grids: image groups are image x property
                used = [k for k in GROUP_KEYS if k in keys or (k == "property" and "image" in keys)]
                key = tuple((k, values[k]) for k in used)
            keyed.setdefault(key, []).append(seq)
        for key, members in keyed.items():
            parts = {} if not keys else dict(key)
            yield _make_group(path, model, parts, members, metas, masks, [labels[s] for s in members], opts)


def _make_group(path: Path, model: str, parts: dict[str, str], members: list[str],
                metas: dict[str, tuple[OutputsBlock, np.ndarray]], masks: dict[str, np.ndarray],
                labels: list[str], opts: ScoreOptions) -> Group:
    key = ",".join(f"{k}={v}" for k, v in parts.items())
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
    mask = masks[members[0]]
    done = np.stack([np.asarray(metas[s][0].done, bool) & mask for s in members])
    index = np.where(mask, np.cumsum(mask) - 1, -1).astype(np.int64)
    group = Group(model, key, opts.group_by, members, list(first.checkpoints), done, list(first.classes), values,
                  [dict(metas[s][0].attrs) for s in members], index=index, parts=parts, labels=labels,
                  output_kind=first.output_kind)
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
