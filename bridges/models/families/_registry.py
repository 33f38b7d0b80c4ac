"""The model families by ``--arch`` name: adding a built-in family is one file plus one line in ``BUILTIN``.

Listing the names imports no family module (nor torch); a family's module is imported when an ``--arch`` string
is resolved to it. The user's own families are registered with :func:`register_model_family` (one line, or a
class decorator) and are consulted before the built-in ones; ``--arch package.module:Class`` runs a family
class without registering it.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from epg_core import UsageError, builtin_class, plugin_class

if TYPE_CHECKING:
    from ._base import ModelFamily

__all__ = ["BUILTIN", "FALLBACK", "model_family_names", "register_model_family", "get_model_family", "model_family"]

#: name -> "module:Class" inside this package (imported on first use)
BUILTIN: dict[str, str] = {
    "convmixer": "convmixer:ConvMixerFamily",
    "hf": "hf:HfFamily",
    "timm": "timm:TimmFamily",
    "torchvision": "torchvision:TorchvisionFamily",
    "factory": "factory:FactoryFamily",
}
#: the family of any ``A:B`` that no other family takes (the user's ``package.module:function``)
FALLBACK = "factory"

_REGISTERED: dict[str, type[ModelFamily]] = {}
_NAME = re.compile(r"^[a-z][a-z0-9_+-]*$")


def model_family_names() -> tuple[str, ...]:
    """The registered family names: the user's (in registration order), then the built-in ones."""
    return (*_REGISTERED, *(n for n in BUILTIN if n not in _REGISTERED))


def register_model_family(family: type[ModelFamily], *, replace: bool = False) -> type[ModelFamily]:
    """Register the user's family under its ``name`` (an ``--arch`` value from then on); returns the class, so it
    also works as a class decorator. A built-in name or one registered with another class needs ``replace``."""
    from ._base import ModelFamily

    if not (isinstance(family, type) and issubclass(family, ModelFamily)):
        raise UsageError(f"register_model_family: {family!r} is not a subclass of ModelFamily")
    name = family.name
    if not _NAME.match(name):
        raise UsageError(f"register_model_family: {family.__name__}.name must be a lowercase name such as "
                         f"'mynets' (letters, digits, _ + -), got {name!r}")
    current = _REGISTERED.get(name)
    taken = name in BUILTIN if current is None else current is not family
    if taken and not replace:
        raise UsageError(f"register_model_family: the name {name!r} is taken; give replace=True to replace it")
    _REGISTERED[name] = family
    return family


def get_model_family(name: str) -> type[ModelFamily]:
    """The family class of a registered name, or of ``package.module:Class`` (a ModelFamily subclass)."""
    from ._base import ModelFamily

    if name in _REGISTERED:
        return _REGISTERED[name]
    if name in BUILTIN:
        found: type[ModelFamily] = builtin_class(__name__.rpartition(".")[0], BUILTIN[name])
        return found
    module, sep, attr = name.partition(":")
    if sep and module and attr:
        return plugin_class(name, ModelFamily, "model family", "ModelFamily")
    raise UsageError(f"unknown model family {name!r}; choose one of {', '.join(model_family_names())} "
                     "or give your own ModelFamily subclass as package.module:Class")


def model_family(architecture: str) -> ModelFamily:
    """The family object ``--arch architecture`` names: a family registered under the string (any case) or under
    its ``NAME:`` prefix, else the fallback (``package.module:function``, or ``package.module:Class`` of a family).
    """
    if not isinstance(architecture, str):
        raise UsageError(f"--arch must be a string, got {type(architecture).__name__}")
    prefix, sep, _ = architecture.partition(":")
    key = prefix if sep else architecture.strip().lower()
    if key in _REGISTERED or key in BUILTIN:
        family = get_model_family(key)
        if family.takes(architecture):
            return family.bind(architecture)
    fallback = get_model_family(FALLBACK)
    if fallback.takes(architecture):
        return fallback.bind(architecture)
    usages = [get_model_family(n).usage or n for n in model_family_names() if n != FALLBACK]
    raise UsageError(f"unknown architecture {architecture!r}: use {', '.join(usages)} or "
                     f"{get_model_family(FALLBACK).usage}")
