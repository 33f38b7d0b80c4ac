"""``epg bench``: the shuffle-test benchmark of issue 3 (a thin wrapper over ``epg_bench.permutation``).

The harness is the repository's ``bench/`` folder, installed with the package as ``epg_bench``, so this command
works from any install (also ``python -m epg_bench.permutation``).
"""

from __future__ import annotations

from pathlib import Path

import click

from ._options import out_option, quiet_option

_CASES = ("one", "sweep", "rotation")


def register(group: click.Group) -> None:
    """Add ``epg bench`` to ``group``."""

    @group.command("bench")
    @click.option("--quick", is_flag=True,
                  help="About 30 s: baselines with 1,000 shuffles on subsets, extrapolated; fewer repeats.")
    @out_option("Also write the numbers as JSON to this file.", extra_names=["--json"])
    @click.option("--case", "cases", type=click.Choice(_CASES), multiple=True,
                  help="Case(s) to run (repeat the option; default all): one = 1 x 101 steps, "
                       "sweep = 1,616 x 101, rotation = 30 x 360; K = 10,000 shuffles each.")
    @quiet_option
    def bench(quick: bool, out: Path | None, cases: tuple[str, ...], quiet: bool) -> None:
        """Benchmark the shuffle test against the authors' loop and scipy; print one markdown table.

        Every implementation runs in its own process (peak memory per implementation): the authors' loop
        (extrapolated from a few curves), scipy per curve and batched, epg_core in float32 and float64
        (median of warm calls; compile time apart), the compute lower bound of a fused stencil kernel, the
        agreement of the p-values with scipy, and the correlation of p-value errors between adjacent curves.
        The full run takes a few minutes; the scipy baselines need scipy (the ``test`` extra).

        \b
        Example:
            epg bench --quick                         # ~30 s smoke run of every case
            epg bench --case sweep -o bench.json      # the 1,616-curve sweep, numbers as JSON
        """
        from epg_bench import permutation as harness

        selected = [harness.CASES[c] for c in dict.fromkeys(cases)] if cases else None
        harness.run_benchmark(selected, quick=quick, json_path=out, quiet=quiet)
        if out is not None:
            click.echo(str(out))
