"""``epg run STUDY``: every stage of a study file, each skipped when its result is up to date."""

from __future__ import annotations

from pathlib import Path

import click

from ._core import verdict_columns
from ._options import executor_options, force_option, quiet_option, refuse_foreign_outputs
from ._table import echo_table


def register(group: click.Group) -> None:
    """Add ``run`` to ``group``."""
    group.add_command(run)


@click.command()
@click.argument("study", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--no-report", is_flag=True, help="Stop after scoring.")
@executor_options("Where model sweeps run (ray: a local Ray instance, or --ray-address) [default: the study's "
                  "[executor] table, else local].", default=None)
@force_option
@quiet_option
def run(study: Path, no_report: bool, executor: str | None, ray_address: str | None, quiet: bool,
        force: bool) -> None:
    """Run a study file: images x interventions x models x checkpoints, scores and the report, in one folder.

    Every stage is skipped when its result exists for the same inputs and options; a changed option recomputes
    only what it affects. See the README ("Studies") for the file format.

    \b
    Example:
        epg run study.toml
        epg run study.toml --executor ray --ray-address auto
    """
    from epg_bridges.study import load_study, run_study, study_outputs, verdict_rows

    refuse_foreign_outputs(study_outputs(load_study(study)), force)

    say = (lambda _m: None) if quiet else (lambda m: click.echo(f"  .. {m}", err=True))
    result = run_study(study, say=say, report=not no_report, executor=executor, ray_address=ray_address)
    click.echo(f"== {len(result.rows)} scores; the verdict at each model's last checkpoint:")
    verdict = verdict_rows(result.rows)
    echo_table(verdict, verdict_columns(verdict))
    ran = ", ".join(f"{k}: {len(v)}" for k, v in result.computed.items())
    click.echo(f"computed: {ran}")
    click.echo(f"scores: {result.scores_csv}")
    if result.report is not None:
        click.echo(f"report: {result.report}")
