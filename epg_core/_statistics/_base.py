"""What a tested statistic is: how it becomes a kernel for the shuffle scan, and which options it takes."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar, NamedTuple, cast

import jax.numpy as jnp
import numpy as np

from epg_core._errors import UsageError
from epg_core._permutation._kernels import Kernel, callable_kernel

__all__ = ["Statistic", "StatisticSetup", "no_moments"]


def no_moments(z: np.ndarray) -> np.ndarray:
    """The per-curve constant of a statistic that needs none (zeros, one per curve)."""
    out: np.ndarray = np.zeros(int(z.shape[0]), dtype=np.float64)
    return out


def _as_type_of(default: Any, value: Any, where: str) -> Any:
    """``value`` as the type of ``default`` (int, float, bool, str); one UsageError line when it is not one."""
    kind: type[object] = type(cast(object, default))
    if default is None or isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
        return value
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        try:
            if kind is bool and text.lower() in ("true", "false", "1", "0", "yes", "no"):
                return text.lower() in ("true", "1", "yes")
            if kind in (int, float):
                return kind(text)
        except ValueError:
            pass
    raise UsageError(f"{where}: expected {kind.__name__}, got {value!r}")


class StatisticSetup(NamedTuple):
    """A statistic ready for the scan plus how to read it.

    ``kernel``/``params``: what the scan runs; ``normalised``: test the curves after the per-curve affine
    normalisation (so that ``a*y + c`` gets the same p-value); ``scaled``: the observed statistic is scaled back
    by the normalisation's factor (EPG is a gradient, in the output's unit); ``per_curve(z)``: one constant per
    curve handed to the kernel (Pearson's inverse norm).
    """

    kernel: Kernel
    params: Any
    normalised: bool
    scaled: bool
    per_curve: Callable[[np.ndarray], np.ndarray]


class Statistic:
    """A statistic of one curve (or one output-vector curve) that the shuffle test can test.

    Subclasses set ``name``, ``summary`` (one line for ``--help``), ``options`` (option name -> default), and
    ``vector`` (True if it takes whole output vectors, ``class_axis``). The simplest statistic defines
    ``value(y, x, **options) -> scalar`` as a ``@staticmethod`` (a JAX function of one curve ``y[N]`` on the
    grid ``x[N]``, run on the raw outputs); a built-in one overrides :meth:`setup` with its own fused kernel.
    """

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    options: ClassVar[dict[str, Any]] = {}
    vector: ClassVar[bool] = False

    def checked_options(self, options: Mapping[str, Any]) -> dict[str, Any]:
        """``options`` over the defaults, a string (``KEY=VALUE`` from the command line) converted to the type of
        the default; a UsageError names an option the statistic does not take or a value of the wrong type."""
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            takes = ", ".join(self.options) or "no options"
            raise UsageError(f"statistic {self.name!r} takes {takes}; got {', '.join(map(str, unknown))}")
        return {**self.options, **{k: _as_type_of(self.options[k], v, f"{self.name} option {k}")
                                   for k, v in options.items()}}

    def setup(self, n: int, grid: np.ndarray, x: np.ndarray | None, vector: bool, dtype: np.dtype, norm: str,
              options: dict[str, Any]) -> StatisticSetup:
        """The kernel for curves of ``n`` steps on ``grid`` (``x``: the grid as given, None for unit steps);
        by default the batched kernel of the static ``value`` method."""
        value = getattr(self, "value", None)  # a static method, or a function set on the instance
        if not callable(value):
            raise UsageError(f"statistic {self.name!r} defines neither a static value(y, x) nor setup()")
        kernel = callable_kernel(value, tuple(sorted(options.items())))
        params = (jnp.asarray(grid, dtype),)  # pyright: ignore[reportUnknownMemberType] - jax's stubs
        return StatisticSetup(kernel, params, False, False, no_moments)
