"""Names, the write plan and the sequence table shared by the ``epg intervene`` commands.

Sequence names are ``<image>-<property>`` (de-duplicated in command-line order); every path and name is checked
before the slow work and before anything is written.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ._errors import CliUsageError
from ._options import out_option, refuse_collisions

if TYPE_CHECKING:
    from epg_core import InterventionSequence

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+=-]*$")  # the study file's rule for property names
_NAME_RULE = "letters, digits and _.+=-, starting with a letter or digit"
#: Columns of the sequence table (``list`` and the summary every command prints).
LIST_COLUMNS = ("sequence", "property", "image", "kind", "n_steps", "values", "size", "includes_original")


# ---------------------------------------------------------------------------------------- names, plan


def slug(text: str, fallback: str) -> str:
    """``text`` as a valid name: runs of other characters become ``_`` (``my cat (2)`` -> ``my_cat_2``)."""
    slug = re.sub(r"[^A-Za-z0-9_.+=-]+", "_", text).strip("_.+=-")
    return slug or fallback


def _checked_name(value: str, option: str) -> str:
    """``value`` if it is a valid sequence or property name, else a one-line usage error naming ``option``."""
    if not _NAME.match(value):
        raise CliUsageError(f"{option} {value!r}: use {_NAME_RULE}")
    return value


def image_ids(stems: Sequence[str]) -> list[str]:
    """One id per source from its stem (made a valid name); a repeated id gets ``-2``, ``-3``... in order."""
    ids: list[str] = []
    for stem in stems:
        base = slug(stem, "image")
        candidate, k = base, 2
        while candidate in ids:
            candidate, k = f"{base}-{k}", k + 1
        ids.append(candidate)
    return ids


@dataclasses.dataclass(frozen=True)
class _Plan:
    """What one command writes: the file (added to when ``append``), one sequence and contact sheet per source."""

    h5: Path
    append: bool
    names: tuple[str, ...]
    images: tuple[str, ...]
    sheets: tuple[Path, ...]


def _existing_sequences(h5: Path, append: bool) -> set[str]:
    """Sequence names already in ``h5``; an existing file without ``--append`` is refused (never replaced)."""
    if not h5.exists():
        return set()
    if not append:
        raise CliUsageError(f"{h5}: the file exists; add --append to add sequences to it (nothing in it is "
                            "replaced) or choose another --out")
    from epg_core import list_sequences

    return set(list_sequences(h5))


def plan_outputs(sources: Sequence[Path], stems: Sequence[str], prop: str, name: str | None, out: Path | None,
          append: bool, inputs: Sequence[Path | None]) -> _Plan:
    """Check names and paths before any work: valid names, no source twice, no clash, no output over an input."""
    _checked_name(prop, "--property")
    seen: set[str] = set()
    for src in sources:
        key = os.path.realpath(src)
        if key in seen:
            raise CliUsageError(f"{src}: given twice")
        seen.add(key)
    if name is not None and len(sources) > 1:
        raise CliUsageError(f"--name names one sequence but {len(sources)} inputs were given; their names are "
                            "<image>-<property> (choose the property with --property)")
    ids = image_ids(stems)
    names = [_checked_name(name, "--name")] if name is not None else [f"{i}-{prop}" for i in ids]
    h5 = out if out is not None else Path("epg-out") / f"{names[0] if len(names) == 1 else prop}.h5"
    existing = _existing_sequences(h5, append)
    clash = [n for n in names if n in existing]
    if clash:
        raise CliUsageError(f"{h5}: already holds sequence {clash[0]!r}; choose another --property or --name "
                            "(appending never replaces a sequence)")
    sheets = tuple(h5.with_name(f"{h5.stem}.{n}.png") for n in names)
    refuse_collisions({"interventions file": h5, **{f"contact sheet of {n}": s for n, s in zip(names, sheets,
                                                                                               strict=True)}},
                      list(inputs))
    return _Plan(h5, append, tuple(names), tuple(ids), sheets)


# ---------------------------------------------------------------------------------------------- output


def write_sequences(plan: _Plan, sequences: Mapping[str, InterventionSequence], sheet_steps: int) -> list[Path]:
    """Write (or add to, with ``--append``) the interventions file atomically, its contact sheets just before.

    The sheets are written once the new file is complete and before it is renamed into place, so the file's
    sequences exist only when everything of the command is written: a run killed at any moment leaves no file
    (or, appending, no new sequence) and its rerun is never refused; a failing command leaves no new file.
    """
    from epg_bridges.interventions import write_contact_sheet
    from epg_core import append_interventions, write_interventions

    created: list[Path] = []

    def write_sheets() -> None:
        try:
            for seq, sheet in zip(sequences.values(), plan.sheets, strict=True):
                existed = sheet.exists()
                write_contact_sheet(seq, sheet, n=sheet_steps)
                if not existed:
                    created.append(sheet)
        except Exception:
            for sheet in created:
                sheet.unlink(missing_ok=True)
            raise

    if plan.h5.exists():
        if not plan.append:  # created by someone else while we worked: still never replaced
            _existing_sequences(plan.h5, append=False)
        append_interventions(plan.h5, sequences, before_commit=write_sheets)
    else:
        write_interventions(plan.h5, sequences, before_commit=write_sheets)
    return [plan.h5, *plan.sheets]


def sequence_row(name: str, seq: InterventionSequence) -> dict[str, Any]:
    """One row of the sequence table (works on sequences read with ``images=False``)."""
    attrs = seq.attrs
    unit = f" {attrs['unit']}" if attrs.get("unit") else ""
    return {
        "sequence": name, "property": str(attrs.get("property", "")), "image": str(attrs.get("image", "")),
        "kind": str(attrs.get("edit") or attrs.get("source") or ""), "n_steps": seq.n_steps,
        "values": f"{seq.values[0]:.4g} .. {seq.values[-1]:.4g}{unit}",
        "size": f"{seq.images.shape[2]}x{seq.images.shape[1]}",
        "includes_original": bool(attrs.get("includes_original", False)),
    }


def print_sequences(sequences: Mapping[str, InterventionSequence], paths: Sequence[Path]) -> None:
    """Print the written paths and one table row per sequence."""
    from ._table import echo_table

    for p in paths:
        click.echo(f"wrote {p}")
    echo_table([sequence_row(n, s) for n, s in sequences.items()], LIST_COLUMNS)


def common_output_options(property_help: str) -> Any:
    """``-o``, ``--append``, ``--property``, ``--name``, ``--sheet-steps``: shared by every intervene command."""

    def apply(func: Any) -> Any:
        func = click.option("--sheet-steps", type=click.IntRange(1, 1000), default=8, show_default=True,
                            help="Steps shown on each contact-sheet PNG.")(func)
        func = click.option("--name", type=str, default=None,
                            help="Sequence name when there is one input (default: <image>-<property>; "
                                 f"{_NAME_RULE}).")(func)
        func = click.option("--property", "property_name", type=str, default=None,
                            help=f"{property_help} Recorded on every sequence as the group key of a study "
                                 f"({_NAME_RULE}).")(func)
        func = click.option("--append", is_flag=True,
                            help="Add the sequences to --out if it exists (a name already in it is refused; nothing "
                                 "is replaced). Without it an existing --out is refused.")(func)
        return out_option("Interventions HDF5 file to write (default: epg-out/<sequence>.h5 for one input, "
                          "epg-out/<property>.h5 for several); a contact sheet per sequence goes beside it as "
                          "<file stem>.<sequence>.png.")(func)

    return apply
