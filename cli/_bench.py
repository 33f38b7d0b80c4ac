"""``epg bench``: the shuffle-test benchmark of issue 3 (a thin wrapper over ``bench/permutation.py``).

The harness lives in the repository's ``bench/`` folder, which is not an installed package: this command
finds it beside the ``cli/`` folder of an editable install (``pip install -e .``), or on ``sys.path``
(running from the repository root), and says so in one line when neither has it.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

import click

from ._options import DataError, data_errors, quiet_option

_CASES = ("one", "sweep", "rotation")


def _harness() -> ModuleType:
    """``bench.permutation`` from the source checkout this package was installed from (editable install)."""
    root = Path(__file__).resolve().parents[1]  # cli/_bench.py -> repository root
    if (root / "bench" / "permutation.py").is_file():
        if str(root) not in sys.path:
            sys.path.insert(0, str(root))
        module = importlib.import_module("bench.permutation")
        if Path(module.__file__ or "").resolve().parent == root / "bench":
            return module
    try:  # e.g. run from the repository root with a regular install
        module = importlib.import_module("bench.permutation")
    except ImportError:
        module = None
    if module is None or not hasattr(module, "run_benchmark"):
        raise DataError(
            "the benchmark harness bench/permutation.py was not found: `epg bench` needs the source "
            "checkout, installed with `pip install -e .` (or run `python -m bench.permutation` from it)"
        )
    return module


def register(group: click.Group) -> None:
    """Add ``epg bench`` to ``group``."""

    @group.command("bench")
    @click.option("--quick", is_flag=True,
                  help="About 30 s: baselines with 1,000 shuffles on subsets, extrapolated; fewer repeats.")
    @click.option("--json", "json_path", type=click.Path(dir_okay=False, writable=True, path_type=Path),
                  default=None, help="Also write the numbers as JSON to this file.")
    @click.option("--case", "cases", type=click.Choice(_CASES), multiple=True,
                  help="Case(s) to run (repeat the option; default all): one = 1 x 101 steps, "
                       "sweep = 1,616 x 101, rotation = 30 x 360; K = 10,000 shuffles each.")
    @quiet_option
    @data_errors
    def bench(quick: bool, json_path: Path | None, cases: tuple[str, ...], quiet: bool) -> None:
        """Benchmark the shuffle test against the authors' loop and scipy; print one markdown table.

        Every implementation runs in its own process (peak memory per implementation): the authors' loop
        (extrapolated from a few curves), scipy per curve and batched, epg_core in float32 and float64
        (median of warm calls; compile time apart), the compute lower bound of a fused stencil kernel, the
        agreement of the p-values with scipy, and the correlation of p-value errors between adjacent curves.
        The full run takes a few minutes.

        \b
        Example:
            epg bench --quick                         # ~30 s smoke run of every case
            epg bench --case sweep --json bench.json  # the 1,616-curve sweep, numbers as JSON
        """
        harness = _harness()
        selected = [harness.CASES[c] for c in dict.fromkeys(cases)] if cases else None
        harness.run_benchmark(selected, quick=quick, json_path=json_path, quiet=quiet)
        if json_path is not None:
            click.echo(str(json_path))
