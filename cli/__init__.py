"""The ``epg`` command-line interface (a thin click layer over ``epg_core`` and ``epg_bridges``)."""

from ._extras import EXTRA_MODULES as EXTRA_MODULES
from ._extras import extra_for as extra_for
from .main import cli as cli

__all__ = ["EXTRA_MODULES", "cli", "extra_for"]
