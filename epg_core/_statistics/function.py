"""A user's own statistic given as a function ``f(y[N], x[N], **options) -> scalar`` (JAX-traceable)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from jaxtyping import Array

from epg_core._statistics._base import Statistic


class FunctionStatistic(Statistic):
    """Wraps a callable as the statistic's ``value`` (the base class's kernel: raw curves, no normalisation,
    since the function may not be affine-invariant)."""

    name: ClassVar[str] = "function"
    summary: ClassVar[str] = "a callable f(y, x, **options) -> scalar"

    def __init__(self, fn: Callable[..., Array]) -> None:
        self.value = fn

    def checked_options(self, options: Any) -> dict[str, Any]:
        """Any keyword the function takes (checked when it is traced)."""
        return dict(options)
