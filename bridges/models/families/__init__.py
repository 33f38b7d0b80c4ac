"""Model families as plug-ins: a :class:`ModelFamily` base class and one file per family (see ``_registry.py``).

``model_family(architecture)`` gives the family object of an ``--arch`` string: ``convmixer`` (the paper's),
``hf`` (a transformers folder, built from its config.json), ``timm:NAME``, ``torchvision:NAME``, the user's
``package.module:function`` factory, a family registered with :func:`register_model_family`, or the user's
``package.module:Class`` of a ModelFamily subclass. Listing names (``model_family_names``) imports no family
module and no torch; the rest loads on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..._lazy import lazy_getattr
from ._registry import BUILTIN as BUILTIN
from ._registry import FALLBACK as FALLBACK
from ._registry import get_model_family as get_model_family
from ._registry import model_family as model_family
from ._registry import model_family_names as model_family_names
from ._registry import register_model_family as register_model_family

if TYPE_CHECKING:  # torch, loaded on first use
    from ._base import ModelFamily as ModelFamily

__getattr__ = lazy_getattr(__name__, {"ModelFamily": "._base"}, globals())

__all__ = ["BUILTIN", "FALLBACK", "ModelFamily", "get_model_family", "model_family", "model_family_names",
           "register_model_family"]
