"""Every command has --help with an example and a row in the README's command table."""

from __future__ import annotations

from pathlib import Path

import click
import pytest
from helpers import all_commands, run_cli

README = Path(__file__).resolve().parents[2] / "README.md"
COMMANDS = all_commands()


def test_the_design_commands_exist() -> None:
    names = {n for n, _ in COMMANDS}
    for expected in ("demo", "intervene edit", "intervene synthetic", "intervene frames", "export", "predict",
                     "sweep", "score", "report", "bench"):
        assert expected in names, f"epg {expected} is missing"


@pytest.mark.parametrize("name, cmd", COMMANDS, ids=[n for n, _ in COMMANDS])
def test_help_has_an_example(name: str, cmd: click.Command) -> None:
    res = run_cli(*name.split(), "--help")
    assert res.exit_code == 0, res.output
    if not isinstance(cmd, click.Group):
        assert "Example" in res.output and f"epg {name} " in res.output, res.output


@pytest.mark.parametrize("name", [n for n, c in COMMANDS if not isinstance(c, click.Group)])
def test_command_is_in_the_readme_table(name: str) -> None:
    rows = [line for line in README.read_text().splitlines() if line.startswith(f"| `epg {name}`")]
    assert rows, f"`epg {name}` has no row in the README's command table"
