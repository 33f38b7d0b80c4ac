"""Image editors as plug-ins: an :class:`Editor` base class and one file per editor (see ``_registry.py``).

``get_editor(name)`` gives the class of a built-in editor (``instruct-pix2pix``, ``ledits++``, ``cosxl``,
``flux-kontext``, ``qwen-image-edit``, ``mgie``) or of the user's own subclass given as ``package.module:Class``.
``make_editor(name, options)`` builds one with options from ``-O KEY=VALUE`` strings or a study's table.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from epg_core import UsageError, builtin_class, plugin_class

from ._base import Editor as Editor
from ._base import EditorOptions as EditorOptions
from ._base import PerSample as PerSample
from ._base import make_options as make_options
from ._registry import BUILTIN as BUILTIN

__all__ = ["BUILTIN", "Editor", "EditorOptions", "PerSample", "editor_names", "get_editor", "make_editor",
           "make_options"]


def editor_names() -> tuple[str, ...]:
    """The built-in ``--method`` names."""
    return tuple(BUILTIN)


def get_editor(name: str) -> type[Editor]:
    """The editor class of a built-in name or of ``package.module:Class`` (a subclass of :class:`Editor`)."""
    if name in BUILTIN:
        found: type[Editor] = builtin_class(__name__, BUILTIN[name])
        return found
    if ":" not in name:
        raise UsageError(f"unknown editing method {name!r}; choose one of {', '.join(BUILTIN)} "
                         "or give your own Editor subclass as package.module:Class")
    return plugin_class(name, Editor, "editor", "epg_bridges.interventions.editors.Editor")


def make_editor(name: str, options: Mapping[str, Any] | None = None, *, where: str = "editor options") -> Editor:
    """An editor by name with its options (strings converted by field type; a wrong key names the valid ones)."""
    cls = get_editor(name)
    return cls(make_options(cls.Options, dict(options or {}), where=where, editor=name))
