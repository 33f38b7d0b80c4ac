"""``--arch package.module:function``: the user's own factory, any callable returning an ``nn.Module``.

This family takes every ``A:B`` that no registered family claims (it is the registry's fallback). When
``package.module:Name`` names a :class:`ModelFamily` subclass instead of a function, that family is used: a user's
family runs from the command line without being registered.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar, cast

from torch import nn

from .._sources import import_target
from ._base import ModelFamily

__all__ = ["FactoryFamily"]


class FactoryFamily(ModelFamily):
    """``--arch package.module:function``: ``paras`` (or the Lightning hyper_parameters it names) as its keyword
    arguments; a forward that returns a tensor; an HF folder's tensors may be loaded into it."""

    name: ClassVar[str] = "factory"
    usage: ClassVar[str] = "'package.module:function'"
    runs_hf_folder: ClassVar[bool] = True

    def __init__(self, architecture: str, target: Callable[..., nn.Module] | None = None) -> None:
        super().__init__(architecture)
        self._factory = target if target is not None else cast(Callable[..., nn.Module], import_target(architecture))

    @classmethod
    def takes(cls, architecture: str) -> bool:
        module, sep, attr = architecture.partition(":")
        return bool(sep and module and attr)

    @classmethod
    def bind(cls, architecture: str) -> ModelFamily:
        target = import_target(architecture)
        if isinstance(target, type) and issubclass(target, ModelFamily):
            return target(architecture)
        return cls(architecture, cast(Callable[..., nn.Module], target))

    def factory(self) -> Callable[..., nn.Module]:
        return self._factory
