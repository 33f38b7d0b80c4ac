"""``epg report``: the evidence as figures and one index.html (a thin command over epg_bridges.report)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from ._extras import needs_extras
from ._options import data_errors, quiet_option, score_options_from, scoring_options


def register(group: click.Group) -> None:
    """Add ``report`` to ``group``."""
    group.add_command(report)


@click.command()
@click.argument("outputs", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder for the PNGs and index.html (default: OUTPUTS without suffix + '-report').")
@click.option("--interventions", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Interventions file, for strips of the intervention images.")
@scoring_options
@quiet_option
@data_errors
@needs_extras("report", "report")
def report(outputs: Path, out_dir: Path | None, interventions: Path | None, quiet: bool, **kwargs: Any) -> None:
    """Draw the evidence as PNGs plus one index.html: curves, null distributions, EPG over checkpoints.

    \b
    Example:
        epg report outputs.h5 --interventions interventions.h5 --out report/
    """
    from epg_bridges.report import build_report

    opts = score_options_from(kwargs)
    out_dir = out_dir or outputs.with_name(outputs.stem + "-report")
    say = (lambda _m: None) if quiet else (lambda m: click.echo(f"  plotting {m}", err=True))
    paths = build_report(outputs, out_dir, options=opts, interventions_path=interventions, progress=say)
    for key in ("strips", "curves", "over_checkpoints", "nulls"):
        for p in paths[key]:
            click.echo(str(p))
    click.echo(f"report: {paths['index']}")
