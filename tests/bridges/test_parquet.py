"""Scores as Parquet: ``epg score -o scores.parquet`` writes the CSV's long table with typed columns.

Oracles: the CSV text itself (parsed here with the csv module, independently of ``read_scores``), pyarrow's own
reader, and pandas and polars where installed. The footer check ``is_epg_parquet`` is compared with pyarrow's
reading of the key-value metadata.
"""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import one_line_error, run_cli

import epg_core as E

pa = pytest.importorskip("pyarrow", reason="pyarrow is not installed (the 'tables' extra)")
pq = pytest.importorskip("pyarrow.parquet", reason="pyarrow is not installed (the 'tables' extra)")


def _outputs(path: Path) -> Path:
    """Two models x two images of one property, three checkpoints, three classes: a smooth and a noisy model."""
    rng = np.random.default_rng(3)
    x = np.linspace(0.0, 1.0, 9)
    p = 1.0 / (1.0 + np.exp(-10.0 * (x - 0.5)))
    blocks = []
    for model in ("smooth", "noise"):
        for image in ("007", "cat"):  # "007" looks like a number: it must stay text
            out = np.stack([np.stack([1.0 - p, 0.6 * p, 0.4 * p], -1) if model == "smooth"
                            else rng.dirichlet([1.0, 1.0, 1.0], size=len(x)) for _ in range(3)])
            blocks.append(E.OutputsBlock(model=model, sequence=f"{image}-bright", outputs=out.astype(np.float32),
                                         done=np.ones(3, bool), checkpoints=["1", "2", "10"],
                                         classes=["a", "b", "c"], values=x, output_kind="probabilities",
                                         attrs={"property": "bright", "image": image}))
    return E.write_outputs(path, blocks)


@pytest.fixture(scope="module")
def scored(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The same scores written as CSV, as Parquet and into the outputs file (grouped rows hold NaN p-values)."""
    folder = tmp_path_factory.mktemp("parquet")
    outputs = _outputs(folder / "outputs.h5")
    common = ["-k", "300", "--group-by", "property", "--seed", "5", "-q"]
    for name in ("scores.csv", "scores.parquet"):
        res = run_cli("score", outputs, "-o", folder / name, *common)
        assert res.exit_code == 0, res.output
    return {"outputs": outputs, "csv": folder / "scores.csv", "parquet": folder / "scores.parquet"}


def _csv_text(path: Path) -> tuple[list[str], list[list[str]]]:
    with open(path, newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader)
        return header, list(reader)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return type(a) is type(b) and a == b


def test_pyarrow_reads_the_csv_table_column_by_column_with_types(scored: dict[str, Path]) -> None:
    header, body = _csv_text(scored["csv"])
    table = pq.read_table(scored["parquet"])
    assert table.column_names == header and table.num_rows == len(body) > 0
    kinds = {}
    for j, name in enumerate(header):
        column = table.column(name)
        texts = [line[j] for line in body]
        values = column.to_pylist()
        assert column.null_count == 0, name
        if pa.types.is_boolean(column.type):
            kinds[name] = "bool"
            assert [str(v) for v in values] == texts, name
        elif pa.types.is_int64(column.type):
            kinds[name] = "int"
            assert [str(v) for v in values] == texts, name
        elif pa.types.is_float64(column.type):
            kinds[name] = "float"
            want = [float(t) for t in texts]  # the CSV writes repr(float): exact round trip, 'nan' included
            assert all(_same(v, w) for v, w in zip(values, want, strict=True)), name
        else:
            assert pa.types.is_string(column.type), (name, column.type)
            kinds[name] = "str"
            assert values == texts, name
    # typed as the table means them, whatever columns the scorer has grown
    assert kinds["significant"] == "bool" and kinds["n_steps"] == "int" and kinds["checkpoint_index"] == "int"
    assert kinds["epg"] == kinds["pvalue"] == kinds["qvalue"] == "float"
    assert kinds["model"] == kinds["checkpoint"] == kinds["image"] == "str"
    assert "nan" in [line[header.index("pvalue")] for line in body]  # the mean_epg rows: not a test of their own
    assert any(math.isnan(v) for v in table.column("pvalue").to_pylist())


def test_the_scoring_options_are_in_the_key_value_metadata(scored: dict[str, Path]) -> None:
    meta = {k.decode(): v.decode() for k, v in (pq.read_schema(scored["parquet"]).metadata or {}).items()}
    assert meta["epg_format"] == "epg-scores" and json.loads(meta["epg_format_version"]) == 1
    options = json.loads(meta["epg_options"])
    assert options["n_permutations"] == 300 and options["group_by"] == "property" and options["seed"] == 5
    assert options["alternative"] == "two-sided" and options["spacing"] == "step"
    assert json.loads(meta["epg_columns"]) == pq.read_table(scored["parquet"]).column_names


def test_read_scores_gives_the_same_rows_from_csv_parquet_and_the_outputs_file(scored: dict[str, Path]) -> None:
    from_csv = E.read_scores(scored["csv"])
    from_parquet = E.read_scores(scored["parquet"])
    from_h5 = E.read_scores(scored["outputs"])
    assert len(from_csv) == len(from_parquet) == len(from_h5) > 0
    for a, b, c in zip(from_csv, from_parquet, from_h5, strict=True):
        assert list(a) == list(b) == list(c)
        for key in a:
            assert _same(a[key], b[key]) and _same(b[key], c[key]), (key, a[key], b[key], c[key])
    assert {r["image"] for r in from_csv} >= {"007", "cat"}  # names stay text in the CSV too
    assert {r["checkpoint"] for r in from_csv} == {"1", "2", "10"}


def test_pandas_reads_it(scored: dict[str, Path]) -> None:
    pd = pytest.importorskip("pandas", reason="pandas is not installed")
    frame = pd.read_parquet(scored["parquet"])
    rows = E.read_scores(scored["csv"])
    assert list(frame.columns) == list(rows[0]) and len(frame) == len(rows)
    assert frame["significant"].dtype == bool and frame["n_steps"].dtype == np.int64
    assert frame["epg"].dtype == np.float64
    np.testing.assert_array_equal(frame["epg"].to_numpy(), [r["epg"] for r in rows])
    assert frame["model"].tolist() == [r["model"] for r in rows]


def test_polars_reads_it(scored: dict[str, Path]) -> None:
    pl = pytest.importorskip("polars", reason="polars is not installed")
    frame = pl.read_parquet(scored["parquet"])
    rows = E.read_scores(scored["csv"])
    assert frame.columns == list(rows[0]) and frame.height == len(rows)
    assert frame.schema["significant"] == pl.Boolean and frame.schema["n_steps"] == pl.Int64
    assert frame.schema["pvalue"] == pl.Float64 and frame.schema["model"] == pl.String
    np.testing.assert_array_equal(frame["pvalue"].to_numpy(), [r["pvalue"] for r in rows])


def test_the_schema_follows_the_rows_not_a_column_list(tmp_path: Path) -> None:
    """A column the scorer gains later (say ``n_used``) is typed from its values; None in a float column is NaN."""
    rows = [{"model": "m", "sequence": "s", "epg": 0.5, "pvalue": None, "n_used": 120, "flag": True, "x": "a"},
            {"model": "m", "sequence": "t", "epg": 1.5, "pvalue": 0.01, "n_used": 7, "flag": False, "x": None}]
    path = E.write_scores_parquet(tmp_path / "s.parquet", rows, {"n_permutations": 9})
    schema = pq.read_schema(path)
    assert [str(schema.field(c).type) for c in rows[0]] == ["string", "string", "double", "double", "int64", "bool",
                                                             "string"]
    back = E.read_scores(path)
    assert math.isnan(back[0]["pvalue"]) and back[1]["n_used"] == 7 and back[1]["x"] == ""
    with pytest.raises(E.UsageError, match="columns"):
        E.write_scores_parquet(tmp_path / "bad.parquet", [rows[0], {"model": "m"}])
    assert not (tmp_path / "bad.parquet").exists()


def test_is_epg_parquet_reads_the_footer_marker(scored: dict[str, Path], tmp_path: Path) -> None:
    ours = scored["parquet"]
    assert E.is_epg_parquet(ours)
    foreign = tmp_path / "foreign.parquet"
    pq.write_table(pa.table({"model": ["m"], "sequence": ["s"], "epg": [1.0], "pvalue": [0.5]}), foreign)
    assert not E.is_epg_parquet(foreign)  # a scores-like table, but not written by epg
    marked = tmp_path / "other-marker.parquet"
    pq.write_table(pa.table({"a": [1]}).replace_schema_metadata({"epg_format": "something-else"}), marked)
    assert not E.is_epg_parquet(marked)
    truncated = tmp_path / "truncated.parquet"
    truncated.write_bytes(ours.read_bytes()[:-20])
    assert not E.is_epg_parquet(truncated)
    for other in (scored["csv"], scored["outputs"], tmp_path / "missing.parquet"):
        assert not E.is_epg_parquet(other)
    # the check agrees with pyarrow's reading of the metadata
    for path in (ours, foreign, marked):
        meta = pq.read_schema(path).metadata or {}
        assert E.is_epg_parquet(path) == (meta.get(b"epg_format") == b"epg-scores")
    with pytest.raises(E.DataError, match="did not write"):
        E.read_scores(foreign)


def test_a_second_score_replaces_the_parquet_file(scored: dict[str, Path], tmp_path: Path) -> None:
    target = tmp_path / "again.parquet"
    for k in ("50", "60"):
        res = run_cli("score", scored["outputs"], "-o", target, "-k", k, "-q")
        assert res.exit_code == 0, res.output
    assert json.loads(pq.read_schema(target).metadata[b"epg_options"])["n_permutations"] == 60
    assert [p.name for p in tmp_path.iterdir()] == ["again.parquet"]  # no temporary file left


@pytest.mark.slow
def test_without_pyarrow_score_to_parquet_names_the_extra(scored: dict[str, Path], tmp_path: Path) -> None:
    """As if the 'tables' extra were missing: one line, exit 1, nothing written (not even /scores)."""
    before = scored["outputs"].read_bytes()
    code = ("import sys\nsys.modules['pyarrow'] = None\nsys.modules['pyarrow.parquet'] = None\n"
            "from epg_cli.main import cli\ncli(sys.argv[1:], prog_name='epg')\n")
    res = subprocess.run([sys.executable, "-c", code, "score", str(scored["outputs"]), "-o",
                          str(tmp_path / "s.parquet"), "-k", "20", "-q"], capture_output=True, text=True,
                         cwd=tmp_path)
    assert res.returncode == 1, res.stdout + res.stderr
    assert res.stderr.strip() == ("Error: epg score -o *.parquet needs the 'tables' extra: "
                                  "pip install 'epg[tables]'")
    assert list(tmp_path.iterdir()) == [] and scored["outputs"].read_bytes() == before


def test_the_core_reads_csv_scores_without_pyarrow(scored: dict[str, Path]) -> None:
    csv_path, parquet = str(scored["csv"]), str(scored["parquet"])
    code = ("import sys\nsys.modules['pyarrow'] = None\nimport epg_core as E\n"
            f"rows = E.read_scores({csv_path!r})\nprint(len(rows), E.is_epg_parquet({parquet!r}))\n"
            f"try:\n    E.read_scores({parquet!r})\nexcept ImportError:\n    print('needs pyarrow')\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == [str(len(E.read_scores(scored["csv"]))), "True", "needs", "pyarrow"]


def test_read_scores_refuses_a_table_that_is_not_scores(tmp_path: Path) -> None:
    other = tmp_path / "other.csv"
    other.write_text("a,b\n1,2\n")
    one_line = str(pytest.raises(E.DataError, E.read_scores, other).value)
    assert "other.csv" in one_line and "not an epg scores CSV" in one_line
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("model,sequence,epg,pvalue\nm,s,1.0\n")
    with pytest.raises(E.DataError, match="line 2"):
        E.read_scores(ragged)
    res = run_cli("score", tmp_path / "missing.h5", "-o", tmp_path / "s.parquet", "-q")
    one_line_error(res, 2, "missing.h5")  # a missing input names nothing: a usage error


@pytest.mark.slow
def test_the_tables_benchmark_runs_tiny(capsys: pytest.CaptureFixture[str]) -> None:
    from epg_bench import bench_tables

    bench_tables.main(["--rows", "300", "--checkpoints", "2", "--steps", "6", "-k", "50"])
    printed = capsys.readouterr().out
    assert "| Parquet | 300 |" in printed and "| CSV | 300 |" in printed and "another sequence" in printed
