"""Shared builders and assertions of the test suite (test modules import this, never each other)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import h5py
import numpy as np
from click.testing import CliRunner, Result

from epg_cli.main import cli

__all__ = ["all_commands", "assert_same_content", "hdf5_content", "one_line_error", "run_cli", "set_h5_attr",
           "write_image"]


def run_cli(*args: Any, catch: bool = False) -> Result:
    """``epg ARGS`` in-process; exceptions that escape the CLI propagate unless ``catch``."""
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=catch)


def one_line_error(result: Result, code: int = 1, *needles: str) -> str:
    """Exit ``code`` and a single ``Error: ...`` line on stderr that contains every needle; return that line."""
    assert result.exit_code == code, (result.exit_code, result.output)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ") and "Traceback" not in result.output, result.output
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def all_commands(group: click.Group = cli, prefix: str = "") -> list[tuple[str, click.Command]]:
    """Every command and group of ``epg`` by full name (``intervene synthetic``), sorted."""
    out: list[tuple[str, click.Command]] = []
    for name, cmd in sorted(group.commands.items()):
        full = f"{prefix}{name}"
        out.append((full, cmd))
        if isinstance(cmd, click.Group):
            out += all_commands(cmd, full + " ")
    return out


def write_image(path: Path, shape: tuple[int, int] = (36, 40), seed: int = 2, low: int = 30, high: int = 220) -> Path:
    """A random RGB PNG (or any suffix PIL writes) of ``shape`` = (height, width)."""
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    from PIL import Image  # imported here: the bare-core CI step runs test_io without the image stack

    Image.fromarray(rng.integers(low, high, size=(*shape, 3), dtype=np.uint8)).save(path)
    return path


def hdf5_content(path: Path) -> dict[str, object]:
    """Every dataset and attribute of an HDF5 file (for 'identical file' comparisons)."""
    found: dict[str, object] = {}
    with h5py.File(path) as handle:
        found["/attrs"] = dict(handle.attrs)

        def visit(name: str, obj: object) -> None:
            if isinstance(obj, h5py.Dataset):
                found[name] = obj[()]
            found[name + "/attrs"] = dict(obj.attrs)  # type: ignore[attr-defined]

        handle.visititems(visit)
    return found


def assert_same_content(a: Path, b: Path, *, ignore_attrs: tuple[str, ...] = ()) -> None:
    """Two HDF5 files hold the same datasets and attributes (attributes named in ``ignore_attrs`` aside)."""
    ca, cb = hdf5_content(a), hdf5_content(b)
    assert ca.keys() == cb.keys()
    for key in ca:
        va, vb = ca[key], cb[key]
        if isinstance(va, np.ndarray):
            np.testing.assert_array_equal(va, vb, err_msg=key)
        elif isinstance(va, dict) and isinstance(vb, dict):
            va = {k: v for k, v in va.items() if k not in ignore_attrs}
            vb = {k: v for k, v in vb.items() if k not in ignore_attrs}
            assert str(va) == str(vb), key
        else:
            assert str(va) == str(vb), key


def set_h5_attr(where: str, key: str, value: Any) -> Callable[[h5py.File], None]:
    """A change to an HDF5 file: set attribute ``key`` of ``where`` to ``value`` (delete it when None)."""
    def change(handle: h5py.File) -> None:
        if value is None:
            del handle[where].attrs[key]
        else:
            handle[where].attrs[key] = value
    return change
