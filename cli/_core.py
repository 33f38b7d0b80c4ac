"""``epg demo`` and ``epg score``: thin commands over epg_core and the bridges."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ._extras import needs_extras, require_extra
from ._options import (
    force_option,
    out_option,
    permutation_options,
    precision_option,
    quiet_option,
    refuse_collisions,
    refuse_foreign_outputs,
    score_options_from,
    scoring_options,
    threads_option,
)
from ._table import echo_table

if TYPE_CHECKING:
    from epg_core import Alternative


def register(group: click.Group) -> None:
    """Add ``demo`` and ``score`` to ``group``."""
    group.add_command(demo)
    group.add_command(score)


SHORT_COLUMNS = ["model", "checkpoint", "sequence", "output", "epg", "effect", "pvalue", "verdict", "flips", "pearson"]
VERDICT_COLUMNS = ["verdict", "model", "property", "label", "output", "epg", "effect", "pvalue", "flips", "ratio",
                   "n_curves"]


def tested_columns(columns: list[str], rows: list[dict[str, Any]]) -> list[str]:
    """``columns`` with the tested statistic's name and value before ``pvalue`` when it is not EPG."""
    if all(r.get("statistic", "epg") == "epg" for r in rows) or "pvalue" not in columns:
        return columns
    at = columns.index("pvalue")
    return [*columns[:at], "statistic", "value", *columns[at:]]


def verdict_columns(rows: list[dict[str, Any]]) -> list[str]:
    """The verdict table's columns (``label`` only when the groups have labels; the tested statistic when it
    is not EPG)."""
    return tested_columns([c for c in VERDICT_COLUMNS if c != "label" or any(
        r.get("label") and r["aggregate"] != "none" for r in rows)], rows)


@click.command()
@click.argument("outputs", type=click.Path(dir_okay=False, path_type=Path))
@scoring_options
@out_option("Where to write the scores CSV (default: OUTPUTS with .scores.csv); a .parquet suffix writes "
            "Parquet (typed columns; the 'tables' extra).", extra_names=["--csv"])
@click.option("--rows", "show_rows", type=click.IntRange(0, 10**9), default=20, show_default=True,
              help="Rows of the table to print.")
@force_option
@quiet_option
def score(outputs: Path, out: Path | None, show_rows: int, quiet: bool, force: bool, **kwargs: Any) -> None:
    """Score an outputs file: EPG, shuffle test, flips and Pearson rho for every model x checkpoint x sequence.

    Writes the tidy scores table as CSV (or Parquet, by the suffix of -o) and as the /scores dataset of
    OUTPUTS.

    \b
    Example:
        epg score outputs.h5 --class cat --fdr -o scores.csv
        epg score outputs.h5 --group-by property --spacing values --permutations 10000
        epg score outputs.h5 -o scores.parquet
        epg score outputs.h5 --method sequential --risk 1e-3   # stop each curve once its decision is settled
        epg score outputs.h5 --statistic mi --statistic-option k=3   # test mutual information instead of EPG
    """
    from tqdm import tqdm

    import epg_core as E

    csv_path = out or outputs.with_suffix(".scores.csv")
    refuse_collisions({"scores CSV": csv_path}, [outputs])
    parquet = csv_path.suffix.lower() == ".parquet"
    if parquet:
        require_extra("score -o *.parquet", "tables", ["pyarrow", "pyarrow.parquet"])
    refuse_foreign_outputs({csv_path: "scores-parquet" if parquet else "scores-csv"}, force)
    opts = score_options_from(kwargs)
    alpha, alternative, n_permutations, use_fdr = opts.alpha, opts.alternative, opts.n_permutations, opts.use_fdr
    with tqdm(desc="scoring curves", unit="curve", disable=True if quiet else None, leave=False) as bar:
        def tick(n: int) -> None:
            bar.update(n)

        rows = E.score_outputs(outputs, opts, progress=tick)
    if parquet:
        E.write_scores_parquet(csv_path, rows, opts)
    else:
        E.write_scores_csv(csv_path, rows)
    E.write_scores(outputs, rows)
    click.echo(f"scores: {csv_path}")
    click.echo(f"scores dataset: {outputs}:/scores")
    curves = [r for r in rows if r["aggregate"] == "none"]
    n_sig = sum(r["significant"] for r in curves)
    n_small = sum(r["verdict"] == "negligible" for r in curves)
    tested = "" if opts.statistic == "epg" else f"{opts.statistic} test, "
    click.echo(f"{len(curves)} curves, {n_sig} significant at {alpha} ({tested}{alternative}, K={n_permutations}"
               f"{', BH-FDR' if use_fdr else ''}), {n_small} of them with a negligible effect")
    if opts.group_by != "none":
        click.echo("verdict: the mean curve of each model x group at the model's last checkpoint")
        verdict = E.verdict_rows(rows)
        echo_table(verdict, verdict_columns(verdict))
        click.echo(f"every row (per curve, per group, per checkpoint) is in {csv_path}")
        return
    echo_table(rows[:show_rows], tested_columns(SHORT_COLUMNS, rows))
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
@out_option("Folder for every file the demo writes (its study.toml can be rerun with `epg run`) "
            "[default: epg-out/demo, with --reference epg-out/reference].", file=False)
@click.option("--quick", is_flag=True, help="Smaller data set, fewer epochs and steps (about a minute).")
@click.option("--curves-only", is_flag=True, help="Only the Fig. 9 example curves, no models.")
@click.option("--reference", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Run the paper's three ConvMixer checkpoints on its four photos (the propgrad reference folder).")
@click.option("--no-report", is_flag=True, help="Stop after scoring.")
@permutation_options
@precision_option
@threads_option
@force_option
@quiet_option
@needs_extras("demo", "torch", "report")
def demo(out: Path | None, quick: bool, curves_only: bool, reference: Path | None, no_report: bool, n_permutations: int,
         alternative: Alternative, alpha: float, seed: int, precision: str, threads: int, quiet: bool,
         force: bool) -> None:
    """Run the whole method on a built-in known-bias study: no downloads, no files of your own.

    Part 1 scores the paper's Fig. 9 example curves. Part 2 generates disks and squares whose background
    brightness is correlated with the label, trains a biased and an unbiased ConvMixer (seconds, seeded),
    and runs the built-in study file on four held-out images: darken the background (biased property) and
    rotate the hue (irrelevant property), sweep every epoch's checkpoint through ONNX Runtime, score the mean
    behaviour per property with the shuffle test and draw the report. With --reference the paper's three
    checkpoints run on its four photos. A rerun recomputes only what changed.

    \b
    Example:
        epg demo
        epg demo --quick -o /tmp/demo
        epg demo --reference ../shared/reference/propgrad
    """
    _curves_table(n_permutations, alternative, alpha, seed)
    if curves_only:
        return
    from epg_bridges.demo import DemoConfig, default_out, run_demo, run_reference

    out = out or default_out(reference is not None)
    refuse_foreign_outputs({out: "demo"}, force)

    base = DemoConfig.quick() if quick else DemoConfig()
    cfg = dataclasses.replace(base, seed=seed, threads=threads, n_permutations=n_permutations, precision=precision)
    say = (lambda _m: None) if quiet else (lambda m: click.echo(f"  .. {m}", err=True))
    click.echo("")
    if reference is not None:
        click.echo(f"== The paper's cats-vs-dogs models on its four photos ({reference})")
        result = run_reference(out, reference, cfg, say=say, report=not no_report)
    else:
        click.echo("== Known-bias scenario (paper Sec. 4.1 / Table 2): mean behaviour over "
                   f"{cfg.n_images} images per property, last epoch")
        result = run_demo(out, cfg, say=say, report=not no_report)
    echo_table(result.verdict, verdict_columns(result.verdict))
    if reference is None:
        c = result.check
        click.echo(f"biased model: EPG(background) / EPG(hue) = {c['ratio']:.1f}x, background significant: "
                   f"{'yes' if c['biased_background_significant'] else 'no'}, flips on the images: "
                   f"{c['biased_background_flips']}; unbiased model flips: {c['unbiased_flips']}")
        click.echo("reproduces the paper's Table 2 pattern: " + ("YES" if c["reproduces_table2"] else "NO"))
    if getattr(result, "flip_task", None) is not None:  # EPG against local explanations (epg flip-task)
        from ._baselines import echo_flip_table

        echo_flip_table(result.flip_task)
    click.echo(f"study: {result.study}")
    click.echo(f"scores: {result.scores_csv}")
    if result.report is not None:
        click.echo(f"report: {result.report}")
