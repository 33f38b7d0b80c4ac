"""``epg app``: the interactive explorer of a study folder or an outputs file (a thin command over epg_bridges.app)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import click

from ._extras import needs_extras
from ._options import FiniteRange, permutation_options, precision_option, quiet_option

FOLLOWED = ("n_permutations", "alternative", "seed", "spacing", "min_effect")


def register(group: click.Group) -> None:
    """Add ``app`` to ``group``."""
    group.add_command(app)


@click.command()
@click.argument("source", metavar="STUDY_DIR|OUTPUTS.h5", type=click.Path(path_type=Path))
@click.option("--interventions", "interventions", type=click.Path(dir_okay=False, path_type=Path), multiple=True,
              metavar="FILE", help="Interventions file(s) with the frames of the sequences (repeatable; default for "
                                   "a study folder: its interventions.h5).")
@click.option("--port", type=click.IntRange(1, 65535), default=7860, show_default=True,
              help="Port on 127.0.0.1 to serve the page on (the explorer never listens on other addresses).")
@click.option("--spacing", type=click.Choice(["step", "values"]), default="step", show_default=True,
              help="Unit steps (as in the paper) or the stored property values as the grid.")
@click.option("--min-effect", type=FiniteRange(0, None), default=None, metavar="X",
              help="An effect (max - min of the output along the steps) below X is negligible [default: 0.01 for "
                   "probabilities and cosine, off for logits].")
@permutation_options
@precision_option
@click.option("--stop-after", type=FiniteRange(0, None, min_open=True), default=None, metavar="SECONDS",
              help="Stop serving after this many seconds (default: until Ctrl-C).")
@quiet_option
@needs_extras("app", "app")
def app(source: Path, interventions: tuple[Path, ...], port: int, stop_after: float | None, quiet: bool,
        **kwargs: Any) -> None:
    """Explore scores interactively in the browser: pick model, checkpoint, sequence and class.

    Shows the intervention strip, the curve with its EPG, p-value, verdict and prediction flips, the shuffle
    null with the observed EPG and the exact null mean +- SD, and the EPG over checkpoints. Curves are scored
    on demand (in memory: nothing is written to your files) with the options below; -k, --alternative, --seed,
    --spacing and --min-effect follow the scores stored in the outputs file unless given, so the page agrees with
    the report.
    The page is served on http://127.0.0.1:PORT/ only.

    \b
    Example:
        epg app epg-out/demo
        epg app outputs.h5 --interventions interventions.h5 --port 7861
    """
    import epg_core as E
    from epg_bridges.app import Explorer, check_port, resolve_source, stored_options

    src = resolve_source(source, interventions)
    check_port(port)
    ctx = click.get_current_context()
    stored = stored_options(src.outputs)
    chosen = {k: kwargs[k] for k in ("n_permutations", "alternative", "alpha", "seed", "spacing", "precision",
                                     "min_effect")}
    for key in FOLLOWED:
        if key in stored and ctx.get_parameter_source(key) == click.core.ParameterSource.DEFAULT:
            chosen[key] = stored[key]
    options = dataclasses.replace(E.ScoreOptions(), **chosen)
    say = (lambda _m: None) if quiet else (lambda m: click.echo(f"  .. {m}", err=True))
    explorer = Explorer(src, options)
    from epg_bridges.app import run_until, serve  # imports gradio

    served = serve(explorer, port, quiet=True, say=say)
    click.echo(f"epg explorer: {served.url} (Ctrl-C to stop)")
    run_until(served, stop_after)
    if not quiet:
        click.echo("epg explorer: stopped", err=True)
