"""``epg demo``, ``epg score`` and ``epg report``: thin commands over epg_core and the bridges."""

from __future__ import annotations

import click
import numpy as np

from epg_cli._options import data_errors, permutation_options, quiet_option
from epg_cli._table import echo_table


def register(group: click.Group) -> None:
    """Add ``demo`` to ``group``."""
    group.add_command(demo)


@click.command()
@permutation_options
@quiet_option
@data_errors
def demo(n_permutations: int, alternative: str, alpha: float, seed: int, quiet: bool) -> None:
    """Score the built-in example curves of the paper's Fig. 9 and print EPG, Pearson and p-values.

    \b
    Example:
        epg demo
        epg demo --permutations 2000 --alternative less
    """
    import epg_core as E
    from epg_core._examples import example_curves

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
            "flips@0.5": int(E.flips(curve.y, threshold=0.5)), "paper (Fig. 9)": curve.expected,
        })
    click.echo(f"Shuffle test: K={n_permutations}, {alternative}, alpha={alpha}, seed={seed}")
    echo_table(rows, list(rows[0]))
