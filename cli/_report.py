"""``epg report``: the study's answer as one index.html with its figures (a thin command over epg_bridges.report)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from ._extras import needs_extras
from ._options import (
    force_option,
    out_option,
    quiet_option,
    refuse_collisions,
    refuse_foreign_outputs,
    score_options_from,
    scoring_options,
)


def register(group: click.Group) -> None:
    """Add ``report`` to ``group``."""
    group.add_command(report)


def parse_checkpoints(value: str) -> str | tuple[str, ...]:
    """``last``, ``all`` or comma-separated checkpoint names (a bad name is refused when the file is read)."""
    value = value.strip()
    if value in ("last", "all"):
        return value
    names = tuple(n.strip() for n in value.split(",") if n.strip())
    if not names:
        raise click.BadParameter("use 'last', 'all' or comma-separated checkpoint names", param_hint="--checkpoints")
    return names


@click.command()
@click.argument("outputs", type=click.Path(dir_okay=False, path_type=Path))
@out_option("Folder for index.html and its PNGs (default: OUTPUTS without suffix + '-report').", file=False)
@click.option("--interventions", "-i", type=click.Path(dir_okay=False, path_type=Path), multiple=True,
              help="Interventions file(s), for the strips and the property units; may be given several times.")
@click.option("--checkpoints", "checkpoints", default="last", show_default=True, metavar="last|all|NAMES",
              help="Checkpoints of the per-sequence curves: the last finished, all, or comma-separated names.")
@click.option("--attributions", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="An `epg attribute` file: adds the flip task (EPG against local explanations, with ROC curves) "
                   "and each method's explanation of the original and the intervened image (paper Fig. 18).")
@click.option("--attribution-sequence", "attribution_sequences", multiple=True, metavar="NAME",
              help="Sequence whose explanations are drawn (repeatable) [default: up to four, flips and not].")
@scoring_options
@force_option
@quiet_option
@needs_extras("report", "report")
def report(outputs: Path, out: Path | None, interventions: tuple[Path, ...], checkpoints: str, quiet: bool,
           force: bool, **kwargs: Any) -> None:
    """Answer the study on one page: a verdict table per property x model, mean behaviour curves, each
    sequence's curves, null distributions, EPG over checkpoints and the intervention strips.

    \b
    Example:
        epg report outputs.h5 -i background.h5 -i hue.h5 --group-by property --checkpoints all -o report/
    """
    from epg_bridges.report import ReportOptions, build_report

    attributions, attribution_sequences = kwargs.pop("attributions"), list(kwargs.pop("attribution_sequences"))
    opts = ReportOptions(score=score_options_from(kwargs), checkpoints=parse_checkpoints(checkpoints))
    out_dir = out or outputs.with_name(outputs.stem + "-report")
    refuse_collisions({"report folder": out_dir}, [outputs, *interventions])
    refuse_foreign_outputs({out_dir: "report"}, force)
    say = (lambda _m: None) if quiet else (lambda m: click.echo(f"  plotting {m}", err=True))
    baselines = None
    if attributions is not None:  # the flip task and the explanations (epg attribute)
        from epg_bridges.baselines import baselines_report

        target = None if opts.score.target is None else str(opts.score.target)
        baselines = baselines_report(outputs, attributions, target=target,
                                     sequences=attribution_sequences or None)
    paths = build_report(outputs, out_dir, opts, interventions=list(interventions), progress=say,
                         baselines=baselines)
    verdicts = paths["verdicts"]
    n_sig = sum(r.get("verdict", "significant" if r["significant"] else "") == "significant" for r in verdicts)
    n_small = sum(r.get("verdict") == "negligible" for r in verdicts)
    click.echo(f"{n_sig} of {len(verdicts)} verdict rows significant ({n_small} more negligible); "
               f"{len(paths['nulls'])} null distributions checked against the table")
    bad = [c for c in paths["null_checks"] if not c.agrees]
    if bad:
        click.echo(f"warning: {len(bad)} null distribution(s) give another p-value than the table", err=True)
    click.echo(f"report: {paths['index']}")
