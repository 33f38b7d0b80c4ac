"""Plug-ins named ``package.module:Name``: the one way every registry (statistics, editors, model families,
factories) imports a built-in entry or the user's own object, with one-line errors."""

from __future__ import annotations

import importlib
from typing import Any, TypeVar

from epg_core._errors import DataError, UsageError

__all__ = ["import_object", "plugin_class", "builtin_class"]

T = TypeVar("T")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:160]


def import_object(spec: str, what: str) -> Any:
    """The object ``package.module:name`` names. A module that is missing (UsageError), that fails while it is
    imported (DataError: the user's code raised) or that lacks the name (UsageError) is one line naming ``what``."""
    module_name, sep, attr = spec.partition(":")
    if not (sep and module_name and attr):
        raise UsageError(f"{what} {spec!r}: expected package.module:name")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UsageError(f"{what} {spec!r}: cannot import module {module_name!r} ({_first_line(exc)})") from None
    except Exception as exc:  # noqa: BLE001 - the module itself raises anything at import time
        raise DataError(f"{what} {spec!r}: module {module_name!r} fails to import "
                        f"({type(exc).__name__}: {_first_line(exc)})") from None
    if not hasattr(module, attr):
        raise UsageError(f"{what} {spec!r}: module {module_name!r} has no {attr!r}")
    return getattr(module, attr)


def plugin_class(spec: str, base: type[T], what: str, base_name: str) -> type[T]:
    """The user's own ``package.module:Class``, which must subclass ``base`` (named ``base_name`` in the error)."""
    found = import_object(spec, what)
    if not (isinstance(found, type) and issubclass(found, base)):
        raise UsageError(f"{what} {spec!r} is not a subclass of {base_name}")
    return found


def builtin_class(package: str, entry: str) -> Any:
    """A registry's built-in entry ``"module:Class"`` inside ``package`` (imported on first use)."""
    module, _, cls = entry.partition(":")
    return getattr(importlib.import_module(f"{package}.{module}"), cls)
