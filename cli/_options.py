"""Reusable click option decorators and error handling shared by every ``epg`` command."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, Literal, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])
#: Values of ``--alternative`` (click.Choice guarantees one of them).
Alternative = Literal["two-sided", "less", "greater", "centered"]


class DataError(click.ClickException):
    """Bad data (missing file, wrong file kind, corrupt checkpoint): one line, exit code 1."""

    exit_code = 1


def data_errors(func: F) -> F:
    """Turn library errors about the data into one-line messages with exit code 1 (never a traceback)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except click.ClickException:
            raise
        except (ValueError, OSError, KeyError, RuntimeError, TypeError) as exc:  # library errors
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise DataError(msg) from None

    return wrapper  # type: ignore[return-value]


def quiet_option(func: F) -> F:
    """``--quiet``: silence progress bars."""
    return click.option("--quiet", "-q", is_flag=True, help="Do not show progress bars.")(func)


def seed_option(func: F) -> F:
    """``--seed``: seed of every random draw (same seed, same result)."""
    return click.option("--seed", type=int, default=0, show_default=True, help="Random seed.")(func)


def threads_option(func: F) -> F:
    """``--threads``: intra-op threads for torch / ONNX Runtime (1 is often fastest on small machines)."""
    return click.option(
        "--threads", type=click.IntRange(min=0), default=1, show_default=True,
        help="Intra-op threads for torch and ONNX Runtime (0: library default).",
    )(func)


def permutation_options(func: F) -> F:
    """Options of the shuffle test: number of shuffles, alternative, alpha, seed."""
    func = click.option(
        "--permutations", "-k", "n_permutations", type=click.IntRange(min=1), default=10_000,
        show_default=True, help="Number of random shuffles K.",
    )(func)
    func = click.option(
        "--alternative", type=click.Choice(["two-sided", "less", "greater", "centered"]),
        default="two-sided", show_default=True,
        help="Tail of the shuffle test (a smooth real effect sits in the lower tail).",
    )(func)
    func = click.option("--alpha", type=click.FloatRange(0, 1, min_open=True, max_open=True),
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
    func = click.option("--group-by", type=click.Choice(["none", "property", "image"]), default="none",
                        show_default=True,
                        help="Also score groups of sequences: the mean curve (paper Tables 2, 6, 7) and the mean of "
                             "the per-curve EPGs (Table 4).")(func)
    func = click.option("--mean-over-sequences", is_flag=True, hidden=True,
                        help="v1 name of --group-by property.")(func)
    func = click.option("--fdr", "use_fdr", is_flag=True,
                        help="Benjamini-Hochberg across the whole study (significant = q <= alpha).")(func)
    func = click.option("--precision", type=click.Choice(["float32", "float64"]), default="float32",
                        show_default=True, help="Precision of the shuffle test.")(func)
    return permutation_options(func)


def score_options_from(kwargs: dict[str, Any]) -> Any:
    """``epg_core.ScoreOptions`` from the values of ``scoring_options`` (pops them from ``kwargs``)."""
    from epg_core import ScoreOptions

    group_by = kwargs.pop("group_by")
    if kwargs.pop("mean_over_sequences") and group_by == "none":
        group_by = "property"
    return ScoreOptions(target=kwargs.pop("target"), all_classes=kwargs.pop("all_classes"),
                        spacing=kwargs.pop("spacing"), group_by=group_by, use_fdr=kwargs.pop("use_fdr"),
                        precision=kwargs.pop("precision"), n_permutations=kwargs.pop("n_permutations"),
                        alternative=kwargs.pop("alternative"), alpha=kwargs.pop("alpha"), seed=kwargs.pop("seed"))
