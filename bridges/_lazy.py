"""Lazy re-exports: names whose modules need a heavy optional extra (torch, diffusers) load on first use.

A subpackage lists such names in ``_LAZY`` (name -> private module) and sets ``__getattr__ = lazy_getattr(...)``;
its ``if TYPE_CHECKING:`` block re-exports the same names explicitly for type checkers. So ``import
epg_bridges.models`` works with only the ``onnx`` extra, and predicting with an ``.onnx`` file never imports torch.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_getattr"]


def lazy_getattr(package: str, table: Mapping[str, str], namespace: dict[str, Any]) -> Callable[[str], Any]:
    """A module ``__getattr__`` that imports ``table[name]`` (relative to ``package``) on first access."""

    def __getattr__(name: str) -> Any:
        module = table.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module, package), name)
        namespace[name] = value  # later lookups skip this function
        return value

    return __getattr__
