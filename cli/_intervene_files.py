"""Names, the write plan and the sequence table shared by the ``epg intervene`` commands.

The plan (names, collisions, resuming) and the writing live in ``epg_bridges.interventions.make_interventions``;
this module only holds the shared click options and the printed summary.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ._options import out_option

if TYPE_CHECKING:
    from epg_core import InterventionSequence

#: Columns of the sequence table (``list`` and the summary every command prints).
LIST_COLUMNS = ("sequence", "property", "image", "kind", "n_steps", "values", "size", "includes_original")
NAME_RULE = "letters, digits and _.+=-, starting with a letter or digit"  # the library's rule (checked there)


def default_out(sources: Sequence[Path], stems: Sequence[str], prop: str, name: str | None) -> Path:
    """``epg-out/<sequence>.h5`` for one input, ``epg-out/<property>.h5`` for several."""
    from epg_bridges.interventions import image_ids

    if len(sources) == 1:
        return Path("epg-out") / f"{name or f'{image_ids(stems)[0]}-{prop}'}.h5"
    return Path("epg-out") / f"{prop}.h5"


def report(made: Any, quiet: bool = False) -> None:
    """Print the written paths and one table row per sequence of the command (nothing with ``--quiet``)."""
    from epg_core import read_interventions

    seqs = read_interventions(made.path, made.names, images=False)
    sheets = [s for s in made.sheets if s.exists()]
    print_sequences(seqs, [made.path, *sheets], quiet)


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


def print_sequences(sequences: Mapping[str, InterventionSequence], paths: Sequence[Path], quiet: bool = False) -> None:
    """Print the written paths and one table row per sequence (nothing with ``--quiet``)."""
    from ._table import echo_table

    if quiet:
        return

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
                                 f"{NAME_RULE}).")(func)
        func = click.option("--property", "property_name", type=str, default=None,
                            help=f"{property_help} Recorded on every sequence as the group key of a study "
                                 f"({NAME_RULE}).")(func)
        func = click.option("--append", is_flag=True,
                            help="Add the sequences to --out if it exists (a name already in it is refused; nothing "
                                 "is replaced). Without it an existing --out is refused.")(func)
        return out_option("Interventions HDF5 file to write (default: epg-out/<sequence>.h5 for one input, "
                          "epg-out/<property>.h5 for several); a contact sheet per sequence goes beside it as "
                          "<file stem>.<sequence>.png.")(func)

    return apply
