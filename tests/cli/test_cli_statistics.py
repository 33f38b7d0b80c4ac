"""``epg score --statistic``: any registered statistic from the command line, the user's own as
``package.module:Class`` without touching epg, and one-line errors."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from helpers import one_line_error, run_cli, write_image
from small_outputs import small_outputs

import epg_core as E

USER_MODULE = '''
from typing import ClassVar
import jax.numpy as jnp
import epg_core as E


class Range(E.Statistic):
    name: ClassVar[str] = "range"
    summary: ClassVar[str] = "max - min"

    @staticmethod
    def value(y, x):
        return jnp.max(y) - jnp.min(y)
'''


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.mark.slow
def test_score_tests_the_chosen_statistic_as_the_library_does(tmp_path: Path) -> None:
    path = small_outputs(tmp_path / "o.h5")
    result = run_cli("score", path, "--statistic", "mi", "--statistic-option", "k=3", "-k", "300", "--quiet",
                     "-o", tmp_path / "s.csv")
    assert result.exit_code == 0, result.output
    assert "(mi test, two-sided, K=300)" in result.output and " statistic " in result.output
    lib = E.score_outputs(path, E.ScoreOptions(statistic="mi", statistic_options=(("k", 3),), n_permutations=300))
    rows = _rows(tmp_path / "s.csv")
    assert [r["statistic"] for r in rows] == ["mi"] * len(lib)
    assert [float(r["pvalue"]) for r in rows] == pytest.approx([r["pvalue"] for r in lib], rel=1e-6)
    assert [float(r["value"]) for r in rows] == pytest.approx([r["value"] for r in lib], rel=1e-6)


def test_a_users_statistic_runs_from_the_cli_without_touching_epg(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "my_stats.py").write_text(USER_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    path = small_outputs(tmp_path / "o.h5")
    result = run_cli("score", path, "--statistic", "my_stats:Range", "-k", "200", "--quiet", "-o", tmp_path / "s.csv")
    assert result.exit_code == 0, result.output
    rows = _rows(tmp_path / "s.csv")
    blocks = {b.sequence: b for b in E.read_outputs(path)}
    for r in rows:
        curve = blocks[r["sequence"]].outputs[int(r["checkpoint_index"]), :, ["cat", "dog", "fox"].index(r["output"])]
        assert float(r["value"]) == pytest.approx(float(np.ptp(curve)), rel=1e-6)  # range is shuffle invariant:
        assert float(r["pvalue"]) == 1.0  # every shuffle ties


@pytest.mark.parametrize(("args", "needle"), [
    (["--statistic", "nope"], "unknown statistic 'nope'"),
    (["--statistic", "mi", "--statistic-option", "k"], "expected KEY=VALUE"),
    (["--statistic", "mi", "--statistic-option", "q=1"], "statistic 'mi' takes k; got q"),
    (["--statistic", "mi", "--statistic-option", "k=x"], "mi option k: expected int"),
    (["--statistic", "pearson", "--all-classes"], "works with epg only"),
    (["--statistic", "no_such_module_xyz:Stat"], "cannot import module 'no_such_module_xyz'"),
    (["--statistic", "epg_core:epg"], "is not a subclass of epg_core.Statistic"),
])
def test_bad_statistics_are_one_usage_line(tmp_path: Path, args: list[str], needle: str) -> None:
    path = small_outputs(tmp_path / "o.h5")
    result = run_cli("score", path, *args, "-k", "50", "--quiet", catch=True)
    one_line_error(result, 2, needle)


def test_a_studys_score_table_names_the_statistic(tmp_path: Path) -> None:
    from epg_bridges.study._run import score_options
    from epg_bridges.study._spec import load_study

    (tmp_path / "ck").mkdir()
    (tmp_path / "ck" / "a.pt").write_bytes(b"")
    write_image(tmp_path / "a.png")
    study = tmp_path / "s.toml"
    text = ('[study]\nname = "t"\nout = "out"\n[[images]]\npath = "*.png"\n[[interventions]]\nproperty = "dark"\n'
            'kind = "darken-background"\nrange = [0.0, 1.0]\nn_steps = 5\n[[models]]\nname = "a"\n'
            'checkpoints = "ck/*.pt"\nsize = 32\n[score]\nstatistic = "mi"\nstatistic_options = {{ {} }}\n')
    study.write_text(text.format("k = 3"))
    opts = score_options(load_study(study))
    assert (opts.statistic, opts.statistic_options) == ("mi", (("k", 3),))
    study.write_text(text.format("q = 3"))
    with pytest.raises(E.UsageError, match=r"s.toml: \[score\]: statistic 'mi' takes k; got q"):
        score_options(load_study(study))


@pytest.mark.parametrize("extra", [["--statistic", "pearson"], ["--method", "sequential"]])
def test_the_reports_null_checks_rerun_the_tables_own_test(tmp_path: Path, extra: list[str]) -> None:
    """The report redraws each verdict's null with the table's statistic (and, for a sequential table, compares
    decisions): no false "computed with other options" warning."""
    path = small_outputs(tmp_path / "o.h5")
    result = run_cli("report", path, "-o", tmp_path / "rep", "--group-by", "property", "-k", "300", "--quiet",
                     *extra)
    assert result.exit_code == 0, result.output
    page = (tmp_path / "rep" / "index.html").read_text()
    assert "null distributions checked against the table" in result.output
    assert "re-run with the report" not in page
    if extra[1] == "pearson":
        assert "shuffle test of pearson" in page
