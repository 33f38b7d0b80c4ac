"""Entry point of the ``epg`` command group; each sub-module registers its commands."""

from __future__ import annotations

import os

import click

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="epg")
def cli() -> None:
    """Explain why an image model predicts what it does, by gradual interventions.

    \b
    Example:
        epg demo                      # the whole pipeline on a built-in scenario
        epg score outputs.h5 --class cat
    """


from epg_cli import _core, _intervene, _models  # noqa: E402  (registration)

_core.register(cli)
_intervene.register(cli)
_models.register(cli)
