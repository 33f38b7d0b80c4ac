"""One CLI convention over every command: bad option values exit 2 with one line; errors are one line; Ctrl-C is 130.

The bad-value test walks every command that ``epg --help`` lists (subcommands of groups included) and every typed
option of it, so a new command or option is covered without touching this file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import pytest
from helpers import all_commands, one_line_error, run_cli

import epg_core as E
from epg_cli._types import FiniteRange, FloatList, Floats3, IntTuple, JsonObject, NameList, SizeType

LEAVES = [(name, cmd) for name, cmd in all_commands() if not isinstance(cmd, click.Group)]


def _bad_values(param: click.Option, folder: Path) -> list[str]:  # noqa: C901 - one case per click type
    """Values the option's type must refuse (empty for free text and flags)."""
    kind = param.type
    if param.is_flag or param.count:
        return []
    if isinstance(kind, SizeType):
        return ["12y", "0", "640x480x3", "99999"]
    if isinstance(kind, FiniteRange):
        bad = ["abc", "nan", "inf"]
        if kind.min is not None:
            bad.append(str(kind.min - 1))
        if kind.max is not None:
            bad.append(str(kind.max + 1))
        return bad
    if isinstance(kind, click.IntRange):
        bad = ["abc", "1.5"]
        if kind.min is not None:
            bad.append(str(kind.min - 1))
        if kind.max is not None:
            bad.append(str(kind.max + 1))
        return bad
    if isinstance(kind, click.FloatRange):
        raise AssertionError(f"{param.name}: use FiniteRange (FloatRange lets NaN through)")
    if isinstance(kind, click.Choice):
        return ["no-such-choice"]
    if isinstance(kind, FloatList):
        return ["a,b", "1,nan", ""] + (["2,1"] if kind.increasing else [])
    if isinstance(kind, IntTuple):
        return ["1", "a,b", ",".join(["-5"] * kind.n)] if kind.low is not None else ["1", "a,b"]
    if isinstance(kind, Floats3):
        return ["1,2", "x"] + (["0"] if kind.positive else [])
    if isinstance(kind, NameList):
        return ["a,,b", "a,a"]
    if isinstance(kind, JsonObject):
        return ["[1]", "{bad"]
    if isinstance(kind, click.Path):
        if not kind.dir_okay:
            return [str(folder)]  # a folder where a file is wanted
        if not kind.file_okay:
            return [str(folder / "file.txt")]  # a file where a folder is wanted
        return []
    if kind in (click.INT, click.FLOAT):
        raise AssertionError(f"{param.name}: a bare int/float type has no range; use IntRange/FiniteRange")
    return []  # free text (names, instructions, devices checked by the library)


def _required_args(cmd: click.Command, folder: Path) -> list[str]:
    """Valid stand-ins for the command's arguments and required options (parsing fails on the bad value first)."""
    args: list[str] = []
    for param in cmd.params:
        if isinstance(param, click.Argument):
            is_dir = isinstance(param.type, click.Path) and not param.type.file_okay
            args.append(str(folder) if is_dir else str(folder / "file.txt"))
        elif isinstance(param, click.Option) and param.required:
            value = param.type.choices[0] if isinstance(param.type, click.Choice) else "x"
            args += [param.opts[0], str(value)]
    return args


def _cases(folder: Path) -> list[tuple[str, str, str]]:
    return [(name, opt.opts[0], bad) for name, cmd in LEAVES for opt in cmd.params
            if isinstance(opt, click.Option) for bad in _bad_values(opt, folder)]


def test_every_command_has_typed_options() -> None:
    names = {n for n, _ in LEAVES}
    assert {"demo", "export", "predict", "sweep", "score", "report", "bench", "intervene synthetic",
            "intervene edit", "intervene frames"} <= names, names
    assert len(_cases(Path("/tmp"))) > 100  # the walk really finds the options


def test_bad_option_values_exit_2_with_one_line(tmp_path: Path) -> None:
    (tmp_path / "file.txt").write_text("x\n")
    failures = []
    for name, option, bad in _cases(tmp_path):
        cmd = dict(LEAVES)[name]
        result = run_cli(*name.split(), *_required_args(cmd, tmp_path), option, bad, catch=True)
        lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
        ok = (result.exit_code == 2 and len(lines) == 1 and lines[0].startswith("Error: ")
              and option in lines[0] and "Traceback" not in result.output
              and isinstance(result.exception, (SystemExit, type(None))))
        if not ok:
            failures.append(f"epg {name} {option} {bad!r}: exit {result.exit_code}, {result.output[-300:]!r}")
    assert not failures, "\n".join(failures)


def test_size_is_width_first_everywhere(tmp_path: Path) -> None:
    assert SizeType().convert("640x480", None, None) == (640, 480)
    assert SizeType().convert("224", None, None) == (224, 224)
    sizes = [(name, o) for name, cmd in LEAVES for o in cmd.params if isinstance(o, click.Option)
             and "--size" in o.opts]
    assert {n for n, _ in sizes} >= {"export", "predict", "sweep", "intervene synthetic", "intervene edit",
                                     "intervene frames"}
    assert all(isinstance(o.type, SizeType) for _, o in sizes)


def test_out_quiet_and_k_are_the_same_everywhere() -> None:
    for name, cmd in LEAVES:
        opts = {o.name: o for o in cmd.params if isinstance(o, click.Option)}
        assert "quiet" in opts and "-q" in opts["quiet"].opts, f"epg {name} has no --quiet/-q"
        for opt in opts.values():
            assert "--output" not in opt.opts, f"epg {name}: use -o/--out"
            if "-o" in opt.opts:
                assert "--out" in opt.opts, f"epg {name}: -o must mean --out"
            if "-k" in opt.opts:
                assert "--permutations" in opt.opts, f"epg {name}: -k must mean --permutations"
    writers = {"export", "predict", "sweep", "score", "demo", "bench", "intervene synthetic", "intervene edit",
               "intervene frames"}
    for name, cmd in LEAVES:
        if name in writers:
            assert any("--out" in o.opts and "-o" in o.opts for o in cmd.params if isinstance(o, click.Option)), name


# --------------------------------------------------------------------------- what the group catches


def _score_raising(monkeypatch: pytest.MonkeyPatch, exc: BaseException, tmp_path: Path) -> Any:
    def boom(*_args: Any, **_kwargs: Any) -> Any:
        raise exc

    monkeypatch.setattr(E, "score_outputs", boom)
    return run_cli("score", tmp_path / "outputs.h5", "-q", catch=True)


@pytest.mark.parametrize("exc, code", [
    (E.UsageError("outputs.h5: --class: no output 'zebra'"), 2),
    (E.DataError("outputs.h5: /models/m/s/done has the wrong shape"), 1),
    (E.StoreError("outputs.h5: no space left on device; the file is intact"), 1),
    (FileNotFoundError(2, "No such file or directory", "outputs.h5"), 1),
])
def test_library_errors_become_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, exc: Exception,
                                        code: int) -> None:
    line = one_line_error(_score_raising(monkeypatch, exc, tmp_path), code)
    assert "outputs.h5" in line


@pytest.mark.parametrize("exc", [KeyError("checkpoints"), TypeError("bad call"), ValueError("plain ValueError"),
                                 RuntimeError("bug")])
def test_programming_errors_propagate_as_tracebacks(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                    exc: Exception) -> None:
    result = _score_raising(monkeypatch, exc, tmp_path)
    assert result.exception is exc  # not turned into a "bad data" line


def test_ctrl_c_exits_130_with_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    line = one_line_error(_score_raising(monkeypatch, KeyboardInterrupt(), tmp_path), 130)
    assert "interrupted" in line
