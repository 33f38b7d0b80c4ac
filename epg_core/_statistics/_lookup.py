"""Finding a statistic by name: the built-ins of ``_registry`` (imported on first use) and the user's own."""

from __future__ import annotations

from collections.abc import Callable

from jaxtyping import Array

from epg_core._errors import UsageError
from epg_core._plugins import builtin_class, plugin_class
from epg_core._statistics._base import Statistic
from epg_core._statistics._registry import BUILTIN
from epg_core._statistics.function import FunctionStatistic

__all__ = ["statistic_names", "get_statistic", "register_statistic", "resolve_statistic"]

_REGISTERED: dict[str, type[Statistic]] = {}


def statistic_names() -> tuple[str, ...]:
    """Every registered statistic name: the built-ins, then the user's own in registration order."""
    return (*BUILTIN, *(n for n in _REGISTERED if n not in BUILTIN))


def register_statistic(cls: type[Statistic]) -> type[Statistic]:
    """Register the user's own :class:`Statistic` subclass under ``cls.name`` (usable as a decorator); a name
    already taken by another class is refused (registering the same class again is a no-op)."""
    is_statistic = isinstance(cls, type) and issubclass(cls, Statistic)  # pyright: ignore[reportUnnecessaryIsInstance]
    if not is_statistic or not cls.name:  # callers from untyped code pass anything
        raise UsageError("register_statistic takes a Statistic subclass with a name")
    if cls.name in BUILTIN or _REGISTERED.get(cls.name, cls) is not cls:
        raise UsageError(f"a statistic named {cls.name!r} is already registered")
    _REGISTERED[cls.name] = cls
    return cls


def get_statistic(name: str) -> type[Statistic]:
    """The class of a registered statistic; a UsageError lists the names."""
    if name in BUILTIN:
        found: type[Statistic] = builtin_class("epg_core._statistics", BUILTIN[name])
        return found
    if name in _REGISTERED:
        return _REGISTERED[name]
    if ":" in name:
        return plugin_class(name, Statistic, "statistic", "epg_core.Statistic")
    raise UsageError(f"unknown statistic {name!r}; use one of {', '.join(statistic_names())} or your own "
                     "Statistic subclass as package.module:Class")


def resolve_statistic(statistic: str | Statistic | Callable[..., Array]) -> Statistic:
    """A statistic instance from a registered name, an instance, or a callable ``f(y, x, **options)``."""
    if isinstance(statistic, Statistic):
        return statistic
    if isinstance(statistic, str):
        return get_statistic(statistic)()
    if callable(statistic):
        return FunctionStatistic(statistic)
    raise UsageError(f"a statistic is a registered name, a Statistic or a callable, got {type(statistic).__name__}")
