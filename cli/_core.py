"""``epg demo`` and ``epg score``: thin commands over epg_core and the bridges."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import click

from ._extras import needs_extras
from ._options import (
    Alternative,
    data_errors,
    permutation_options,
    quiet_option,
    score_options_from,
    scoring_options,
    threads_option,
)
from ._table import echo_table


def register(group: click.Group) -> None:
    """Add ``demo`` and ``score`` to ``group``."""
    group.add_command(demo)
    group.add_command(score)


SHORT_COLUMNS = ["model", "checkpoint", "sequence", "output", "epg", "pvalue", "significant", "flips", "pearson"]


@click.command()
@click.argument("outputs", type=click.Path(dir_okay=False, path_type=Path))
@scoring_options
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Where to write the scores CSV (default: OUTPUTS with .scores.csv).")
@click.option("--rows", "show_rows", type=int, default=20, show_default=True, help="Rows of the table to print.")
@quiet_option
@data_errors
def score(outputs: Path, csv_path: Path | None, show_rows: int, quiet: bool, **kwargs: Any) -> None:
    """Score an outputs file: EPG, shuffle test, flips and Pearson rho for every model x checkpoint x sequence.

    Writes the tidy scores table as CSV and as the /scores dataset of OUTPUTS.

    \b
    Example:
        epg score outputs.h5 --class cat --fdr
        epg score outputs.h5 --group-by property --spacing values --permutations 10000
    """
    from tqdm import tqdm

    import epg_core as E

    opts = score_options_from(kwargs)
    alpha, alternative, n_permutations, use_fdr = opts.alpha, opts.alternative, opts.n_permutations, opts.use_fdr
    with tqdm(desc="scoring curves", unit="curve", disable=quiet, leave=False) as bar:
        def tick(n: int) -> None:
            bar.update(n)

        rows = E.score_outputs(outputs, opts, progress=tick)
    csv_path = csv_path or outputs.with_suffix(".scores.csv")
    E.write_scores_csv(csv_path, rows)
    E.write_scores(outputs, rows)
    click.echo(f"scores: {csv_path}")
    click.echo(f"scores dataset: {outputs}:/scores")
    n_sig = sum(r["significant"] for r in rows)
    click.echo(f"{len(rows)} curves, {n_sig} significant at {alpha} ({alternative}, K={n_permutations}"
               f"{', BH-FDR' if use_fdr else ''})")
    echo_table(rows[:show_rows], SHORT_COLUMNS)
    if len(rows) > show_rows:
        click.echo(f"... {len(rows) - show_rows} more rows in {csv_path}")


def _curves_table(n_permutations: int, alternative: Alternative, alpha: float, seed: int) -> None:
    """Part 1 of the demo: the paper's Fig. 9 example curves."""
    import epg_core as E
    from epg_core import example_curves

    rows = []
    for curve in example_curves():
        res = E.permutation_test(curve.y, n_permutations=n_permutations, alternative=alternative,
                                 seed=seed, alpha=alpha, **curve.options)
        rho = E.permutation_test(curve.y, statistic="pearson", n_permutations=n_permutations,
                                 alternative=alternative, seed=seed, alpha=alpha)
        rows.append({
            "curve": curve.name, "epg": float(res.statistic), "p(epg)": float(res.pvalue),
            "epg sig.": bool(res.significant), "pearson": float(rho.statistic),
            "p(pearson)": float(rho.pvalue), "pearson sig.": bool(rho.significant),
            "paper (Fig. 9)": curve.expected,
        })
    click.echo(f"== Example curves (paper Fig. 9): shuffle test K={n_permutations}, {alternative}, alpha={alpha}")
    echo_table(rows, list(rows[0]))


@click.command()
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("epg-out/demo"),
              show_default=True, help="Folder for every file the demo writes.")
@click.option("--quick", is_flag=True, help="Smaller data set, fewer epochs, images and steps (about 15 s).")
@click.option("--curves-only", is_flag=True, help="Only the Fig. 9 example curves, no models.")
@click.option("--reference", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Run with the paper's ConvMixer checkpoints and photos (the propgrad reference folder).")
@permutation_options
@threads_option
@quiet_option
@data_errors
@needs_extras("demo", "torch", "report")
def demo(out_dir: Path, quick: bool, curves_only: bool, reference: Path | None, n_permutations: int,
         alternative: Alternative, alpha: float, seed: int, threads: int, quiet: bool) -> None:
    """Run the whole method on a built-in known-bias scenario: no downloads, no files of your own.

    Part 1 scores the paper's Fig. 9 example curves. Part 2 generates disks and squares whose background
    brightness is correlated with the label, trains a biased and an unbiased ConvMixer (seconds, seeded),
    darkens the background (biased property) and rotates the hue (irrelevant property) of held-out
    images, sweeps every epoch's checkpoint through ONNX Runtime, scores with the shuffle test and draws
    the report. With --reference the same pipeline runs on the paper's checkpoints and photos.

    \b
    Example:
        epg demo
        epg demo --quick --out /tmp/demo
        epg demo --reference ../shared/reference/propgrad
    """
    _curves_table(n_permutations, alternative, alpha, seed)
    if curves_only:
        return
    from epg_bridges.demo import DemoConfig, run_demo, run_reference

    base = DemoConfig.quick() if quick else DemoConfig()
    cfg = dataclasses.replace(base, seed=seed, threads=threads, n_permutations=n_permutations)
    say = (lambda _m: None) if quiet else (lambda m: click.echo(f"  .. {m}", err=True))
    click.echo("")
    if reference is not None:
        click.echo(f"== Paper reference models on their photos ({reference})")
        result = run_reference(out_dir, reference, cfg, quiet=quiet, say=say)
        echo_table([{"model / property": k, "mean EPG": v} for k, v in result.check.items()],
                   ["model / property", "mean EPG"])
    else:
        click.echo("== Known-bias scenario (paper Sec. 4.1 / Table 2)")
        result = run_demo(out_dir, cfg, quiet=quiet, say=say)
        last = {m: [r["checkpoint"] for r in result.rows if r["model"] == m][-1] for m in ("biased", "unbiased")}
        final = [r for r in result.rows if r["checkpoint"] == last[r["model"]]]
        echo_table(final, SHORT_COLUMNS)
        c = result.check
        click.echo(f"biased model: EPG(background) / EPG(hue) = {c['ratio']:.1f}x, background significant: "
                   f"{c['biased_background_significant']}, flips: {c['biased_background_flips']}; "
                   f"unbiased model flips: {c['unbiased_flips']}")
        click.echo("reproduces the paper's Table 2 pattern: " + ("YES" if c["reproduces_table2"] else "NO"))
    click.echo(f"interventions: {result.interventions}")
    click.echo(f"outputs: {result.outputs}")
    click.echo(f"scores: {result.scores_csv}")
    click.echo(f"report: {result.report}")
