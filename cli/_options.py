"""Reusable click option decorators shared by every ``epg`` command, progress bars and output-path checks.

Errors are handled once for every command by :class:`epg_cli._errors.EpgGroup` (one line, exit 2 for usage,
1 for data, 130 for Ctrl-C).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from ._types import FiniteRange

if TYPE_CHECKING:  # epg_core (jax) is imported when a command runs, not when the CLI starts
    from epg_core import ScoreOptions

F = TypeVar("F", bound=Callable[..., Any])


def quiet_option(func: F) -> F:
    """``--quiet``: silence progress bars."""
    return click.option("--quiet", "-q", is_flag=True, help="Do not show progress bars or progress messages.")(func)


def force_option(func: F) -> F:
    """``--force``: replace an existing output that epg did not write (without it such a path is refused)."""
    return click.option("--force", is_flag=True,
                        help="Replace an existing output path even if epg did not write it (without --force such a "
                             "path is refused; an earlier epg output of the same kind is always replaced).")(func)


def refuse_foreign_outputs(outputs: Mapping[Any, str], force: bool) -> None:
    """Refuse (exit 2, naming --force) an existing output path epg did not write as that kind (see
    ``epg_core._formats._guard``); checked before anything is written. With ``force`` such HDF5 files are removed (the
    command writes a new one) and every other kind is replaced atomically by its writer."""
    from epg_core import discard_foreign, refuse_foreign

    paths = {p: k for p, k in outputs.items() if p is not None}
    refuse_foreign(paths, force=force)
    if force:
        discard_foreign(paths)


def seed_option(func: F) -> F:
    """``--seed``: seed of every random draw (same seed, same result)."""
    return click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=0, show_default=True,
                        help="Random seed (0 .. 2^32 - 1).")(func)


def threads_option(func: F) -> F:
    """``--threads``: intra-op threads for torch / ONNX Runtime (1 is often fastest on small machines)."""
    return click.option(
        "--threads", type=click.IntRange(0, 1024), default=1, show_default=True,
        help="Intra-op threads for torch and ONNX Runtime (0: library default).",
    )(func)


def executor_options(help_text: str, *, default: str | None = "local") -> Callable[[F], F]:
    """``--executor local|ray`` and ``--ray-address``: where the work runs (``help_text`` says which work)."""
    def decorate(func: F) -> F:
        func = click.option("--ray-address", default=None, metavar="auto|HOST:PORT",
                            help="Ray cluster to join (with --executor ray).")(func)
        return click.option("--executor", type=click.Choice(["local", "ray"]), default=default,
                            show_default=default is not None, help=help_text)(func)

    return decorate


def permutation_options(func: F) -> F:
    """Options of the shuffle test: number of shuffles, alternative, alpha, seed."""
    func = click.option(
        "--permutations", "-k", "n_permutations", type=click.IntRange(1, 100_000_000), default=10_000,
        show_default=True, help="Number of random shuffles K.",
    )(func)
    func = click.option(
        "--alternative", type=click.Choice(["two-sided", "less", "greater", "centered"]),
        default="two-sided", show_default=True,
        help="Tail of the shuffle test (a smooth real effect sits in the lower tail).",
    )(func)
    func = click.option("--alpha", type=FiniteRange(0, 1, min_open=True, max_open=True),
                        default=0.01, show_default=True, help="Significance level.")(func)
    return seed_option(func)


def scoring_options(func: F) -> F:
    """Options that choose what is scored (``score``, ``report``, ``demo``): output, grid, groups, FDR, precision."""
    func = click.option("--class", "target", default=None, metavar="NAME|INDEX",
                        help="Output to explain (default: the class predicted on the original image; for a group, "
                             "the majority over its originals).")(func)
    func = click.option("--all-classes", is_flag=True,
                        help="Score the whole output vector (norm of the vector derivative): no class to choose.")(func)
    func = click.option("--spacing", type=click.Choice(["step", "values"]), default="step", show_default=True,
                        help="Unit steps (as in the paper) or the stored property values as the grid.")(func)
    func = click.option("--group-by", type=click.Choice(["none", "property", "image", "label", "property,label"]),
                        default="none", show_default=True,
                        help="Also score groups of sequences: the mean curve (paper Tables 2, 6, 7) and the mean of "
                             "the per-curve EPGs (Table 4). image = one group per image x property; label = the "
                             "class predicted on the original image (or the study's per-image label): "
                             "property,label averages the images of each label separately (paper Fig. 16).")(func)
    func = click.option("--min-effect", type=FiniteRange(0, None), default=None, metavar="X",
                        help="An effect (max - min of the output along the steps) below X is negligible: the "
                             "verdict says so even when the test is significant [default: 0.01 for probabilities "
                             "and cosine, off for logits].")(func)
    func = click.option("--mean-over-sequences", is_flag=True, hidden=True,
                        help="v1 name of --group-by property.")(func)
    func = click.option("--fdr", "use_fdr", is_flag=True,
                        help="Benjamini-Hochberg across the whole study (significant = q <= alpha).")(func)
    func = click.option("--method", type=click.Choice(["fixed", "sequential"]), default="fixed", show_default=True,
                        help="fixed: K shuffles per curve; sequential: each curve stops once its decision at "
                             "alpha is settled with resampling risk <= --risk (Gandy 2009), at most K.")(func)
    func = click.option("--risk", type=FiniteRange(0, 1, min_open=True, max_open=True), default=1e-3,
                        show_default=True, metavar="R",
                        help="Resampling risk of --method sequential: the chance that a decision differs from "
                             "the one infinitely many shuffles would give.")(func)
    func = click.option("--statistic", default="epg", show_default=True, metavar="NAME",
                        help="The tested statistic: epg, pearson, mi, one registered with "
                             "epg_core.register_statistic, or your own Statistic subclass as package.module:Class. "
                             "pvalue, verdict and value are its test; the epg column stays EPG.")(func)
    func = click.option("--statistic-option", "statistic_options", multiple=True, metavar="KEY=VALUE",
                        help="An option of the statistic (repeatable), e.g. k=3 for mi, weighting=trapezoid for "
                             "epg.")(func)
    return permutation_options(precision_option(func))


def key_values(pairs: Sequence[str], option: str) -> tuple[tuple[str, str], ...]:
    """``KEY=VALUE`` strings as (key, value) pairs; one usage line names a malformed one."""
    from ._errors import CliUsageError

    out = []
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise CliUsageError(f"{option} {pair!r}: expected KEY=VALUE")
        out.append((key.strip(), value))
    return tuple(out)


def precision_option(func: F) -> F:
    """``--precision float32|float64`` of the shuffle test (same decisions; float64 for the last digits)."""
    return click.option("--precision", type=click.Choice(["float32", "float64"]), default="float32",
                        show_default=True, help="Precision of the shuffle test.")(func)


def score_options_from(kwargs: dict[str, Any]) -> ScoreOptions:
    """``epg_core.ScoreOptions`` from the values of ``scoring_options`` (pops them from ``kwargs``)."""
    from epg_core import ScoreOptions

    group_by = kwargs.pop("group_by")
    if kwargs.pop("mean_over_sequences") and group_by == "none":
        group_by = "property"
    return ScoreOptions(target=kwargs.pop("target"), all_classes=kwargs.pop("all_classes"),
                        spacing=kwargs.pop("spacing"), group_by=group_by, use_fdr=kwargs.pop("use_fdr"),
                        precision=kwargs.pop("precision"), n_permutations=kwargs.pop("n_permutations"),
                        alternative=kwargs.pop("alternative"), alpha=kwargs.pop("alpha"), seed=kwargs.pop("seed"),
                        min_effect=kwargs.pop("min_effect"), method=kwargs.pop("method"), risk=kwargs.pop("risk"),
                        statistic=kwargs.pop("statistic"),
                        statistic_options=key_values(kwargs.pop("statistic_options"), "--statistic-option"))


def out_option(help_text: str, *, default: Any = None, file: bool = True, extra_names: Sequence[str] = ()) -> Any:
    """``-o/--out``: the file (or folder, ``file=False``) a command writes (one name for every command)."""
    kind = click.Path(dir_okay=False, path_type=Path) if file else click.Path(file_okay=False, path_type=Path)
    return click.option("--out", "-o", *extra_names, "out", type=kind, default=default,
                        show_default=default is not None, help=help_text)


def refuse_collisions(outputs: dict[str, Path | None], inputs: Sequence[str | os.PathLike[str] | None]) -> None:
    """Refuse (exit 2) an output path that equals an input or another output of the same command.

    Checked before anything is written, so ``-o`` can never overwrite the command's own input.
    """
    from ._errors import CliUsageError

    def key(path: str | os.PathLike[str]) -> str:
        return os.path.realpath(os.fspath(path))

    seen: dict[str, str] = {}
    for label, path in outputs.items():
        if path is None:
            continue
        if key(path) in seen:
            raise CliUsageError(f"{path}: {label} would overwrite the {seen[key(path)]}; choose another --out")
        seen[key(path)] = label
    for path in inputs:
        if path is not None and key(path) in seen:
            raise CliUsageError(f"{path}: the {seen[key(path)]} would overwrite this input; choose another --out")


@contextmanager
def progress_bar(desc: str, unit: str, quiet: bool) -> Iterator[Callable[[int, int], None]]:
    """A tqdm bar on stderr driven by the library's ``progress(done, total)`` callbacks.

    Off with ``--quiet``, and when stderr is not a terminal (logs and pipes get no carriage-return noise).
    """
    from tqdm.auto import tqdm

    with tqdm(desc=desc, unit=unit, disable=True if quiet else None, leave=False) as bar:
        def update(done: int, total: int) -> None:
            if bar.total != total:
                bar.total = total
            bar.n = done
            bar.refresh()

        yield update
