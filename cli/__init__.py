"""The ``epg`` command-line interface (a thin click layer over ``epg_core`` and ``epg_bridges``)."""

from epg_cli.main import cli

__all__ = ["cli"]
