"""The options of scoring (``epg score``, ``epg report``, a study's ``[score]`` table), in a module of their own
so that every scoring module can import them without importing each other."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from epg_core._errors import UsageError
from epg_core._permutation._engine import ALTERNATIVES, METHODS, PRECISIONS
from epg_core._statistics._lookup import get_statistic

__all__ = ["ScoreOptions", "GROUP_BYS", "GROUP_KEYS", "group_keys", "Spacing", "GroupBy", "Alternative",
           "Precision", "Method"]

Spacing = Literal["step", "values"]
GroupBy = Literal["none", "property", "image", "label", "property,label"]
Alternative = Literal["two-sided", "less", "greater", "centered"]
Precision = Literal["float32", "float64"]
Method = Literal["fixed", "sequential"]

#: The ``group_by`` values the CLI offers (any comma-separated list of ``GROUP_KEYS`` is accepted).
GROUP_BYS: tuple[str, ...] = ("none", "property", "image", "label", "property,label")
#: The keys a group can be formed by (``group_by`` is "none" or a comma-separated list of these).
GROUP_KEYS: tuple[str, ...] = ("property", "image", "label")


def group_keys(group_by: str) -> tuple[str, ...]:
    """The keys of ``group_by`` ("none" -> no key); a UsageError names an unknown one."""
    if group_by == "none":
        return ()
    keys = tuple(k.strip() for k in group_by.split(","))
    bad = [k for k in keys if k not in GROUP_KEYS]
    if bad or not keys or len(set(keys)) != len(keys):
        raise UsageError(f"unknown group_by {group_by!r}; use none or a comma-separated list of "
                         f"{', '.join(GROUP_KEYS)} (e.g. property,label)")
    return keys



@dataclass(frozen=True)
class ScoreOptions:
    """What to score and how (the CLI's ``epg score`` options).

    ``target``: class name or index (None: the class predicted on the original image(s) by the model's last
    finished checkpoint; for a group, the majority over its originals). ``group_by``: "none" or keys among
    "property", "image", "label" ("property,label": one group per property and label): grouped rows with both
    aggregates of the paper (``mean_curve``: EPG of the mean outputs; ``mean_epg``: mean and SD of the
    per-curve EPGs). ``all_classes``: one vector curve (all outputs) per row instead of one class.
    ``precision``: "float32" or "float64" for the shuffle test. ``statistic``: the tested statistic, any
    registered name (``statistic_names()``; the ``pvalue``, ``verdict`` and ``value`` columns are its test),
    with ``statistic_options`` as (name, value) pairs. ``min_effect``: an effect (max - min of the
    output along the steps) below it is negligible (None: 0.01 for probabilities and cosine, off for logits).
    """

    target: str | int | None = None
    spacing: Spacing = "step"
    group_by: GroupBy | str = "none"
    n_permutations: int = 10_000
    alternative: Alternative = "two-sided"
    seed: int = 0
    alpha: float = 0.01
    use_fdr: bool = False
    checkpoint_chunk: int = 64
    all_classes: bool = False
    precision: Precision = "float32"
    mean_over_sequences: bool = False  # v1 name of group_by="property"
    min_effect: float | None = None
    method: Method = "fixed"  # "sequential": stop each curve's shuffles once its decision is settled (risk)
    risk: float = 1e-3
    statistic: str = "epg"
    statistic_options: tuple[tuple[str, Any], ...] | Mapping[str, Any] = ()  # checked(): sorted pairs

    def checked(self) -> ScoreOptions:
        """The options with v1 aliases resolved; a UsageError naming the first bad value."""
        group_by = "property" if self.mean_over_sequences and self.group_by == "none" else self.group_by
        group_keys(group_by)
        if self.min_effect is not None and not (np.isfinite(self.min_effect) and self.min_effect >= 0):
            raise UsageError(f"min_effect must be a finite number >= 0, got {self.min_effect}")
        for name, value, allowed in (("spacing", self.spacing, ("step", "values")),
                                     ("alternative", self.alternative, ALTERNATIVES),
                                     ("precision", self.precision, PRECISIONS),
                                     ("method", self.method, METHODS)):
            if value not in allowed:
                raise UsageError(f"unknown {name} {value!r}; use one of {', '.join(allowed)}")
        if not 0 < self.alpha < 1:
            raise UsageError(f"alpha must be in (0, 1), got {self.alpha}")
        if not 0 < self.risk < 1:
            raise UsageError(f"risk must be in (0, 1), got {self.risk}")
        if self.method == "sequential" and self.alternative == "centered":
            raise UsageError("method 'sequential' has no 'centered' alternative; use method 'fixed'")
        stat = get_statistic(self.statistic)()
        options = stat.checked_options(dict(self.statistic_options))
        if self.all_classes and not stat.vector:
            raise UsageError(f"statistic {self.statistic!r} needs one output per step; all_classes (whole output "
                             "vectors) works with epg only")
        if self.n_permutations < 1 or self.checkpoint_chunk < 1:
            raise UsageError("n_permutations and checkpoint_chunk must be >= 1")
        explicit = tuple(sorted((k, options[k]) for k in dict(self.statistic_options)))
        return ScoreOptions(**{**self.__dict__, "group_by": group_by, "mean_over_sequences": False,
                               "statistic_options": explicit})
