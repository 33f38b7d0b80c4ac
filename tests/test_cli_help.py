"""Every command has --help with an example and is documented in the README."""

from __future__ import annotations

from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from epg_cli.main import cli

README = Path(__file__).resolve().parents[1] / "README.md"


def _commands(group: click.Group, prefix: str = "") -> list[tuple[str, click.Command]]:
    out = []
    for name, cmd in sorted(group.commands.items()):
        full = f"{prefix}{name}"
        out.append((full, cmd))
        if isinstance(cmd, click.Group):
            out += _commands(cmd, full + " ")
    return out


COMMANDS = _commands(cli)


def test_the_design_commands_exist() -> None:
    names = {n for n, _ in COMMANDS}
    for expected in ("demo", "intervene edit", "intervene synthetic", "intervene frames", "export", "predict",
                     "sweep", "score", "report", "bench"):
        assert expected in names, f"epg {expected} is missing"


@pytest.mark.parametrize("name, cmd", COMMANDS, ids=[n for n, _ in COMMANDS])
def test_help_has_an_example(name: str, cmd: click.Command) -> None:
    res = CliRunner().invoke(cli, name.split() + ["--help"])
    assert res.exit_code == 0, res.output
    if not isinstance(cmd, click.Group):
        assert "Example" in res.output and f"epg {name}" in res.output, res.output


@pytest.mark.parametrize("name", [n for n, _ in COMMANDS])
def test_command_is_in_readme(name: str) -> None:
    assert f"epg {name}" in README.read_text(), f"`epg {name}` is not documented in README.md"
