"""The report answers the study: verdict table from the scores, nulls that agree with it, names that never
collide, x axes in the property's unit, the chosen checkpoints, and the ``epg report`` command."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from test_report_data import CHECKPOINTS, IMAGES, MODELS, PROPERTIES, make_study, sequence_name

import epg_core as E
from epg_bridges.report import ReportOptions, build_report, null_words, plot_name
from epg_bridges.report._curves import x_axis
from epg_bridges.report._study import load_study
from epg_cli.main import cli

K = 1000


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    return make_study(tmp_path_factory.mktemp("study"))


@pytest.fixture(scope="module")
def grouped(study: tuple[Path, list[Path]], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    outputs, inters = study
    opts = ReportOptions(score=E.ScoreOptions(n_permutations=K, group_by="property"), checkpoints="all")
    return build_report(outputs, tmp_path_factory.mktemp("grouped"), opts, interventions=inters)


def _table(page: str) -> tuple[list[str], list[list[str]]]:
    """Headers and cells of the first table on the page (the verdict table)."""
    table = page.split("<table>", 1)[1].split("</table>", 1)[0]
    headers = re.findall(r"<th>(.*?)</th>", table)
    rows = [re.findall(r"<td>(.*?)</td>", tr) for tr in re.findall(r"<tr class='[a-z]+'>(.*?)</tr>", table)]
    return headers, rows


def test_verdict_rows_are_the_mean_curve_rows_at_the_last_checkpoint(study: tuple[Path, list[Path]],
                                                                      grouped: dict[str, Any]) -> None:
    rows = E.score_outputs(study[0], E.ScoreOptions(n_permutations=K, group_by="property"))
    expected = {(r["model"], r["property"]): r for r in rows
                if r["aggregate"] == "mean_curve" and r["checkpoint"] == CHECKPOINTS[-1]}
    got = {(r["model"], r["property"]): r for r in grouped["verdicts"]}
    assert set(got) == {(m, p) for m in MODELS for p in PROPERTIES} == set(expected)
    for key, row in got.items():
        assert row.keys() == expected[key].keys()
        for col, value in row.items():
            same = value == expected[key][col] or (isinstance(value, float) and np.isnan(value)
                                                     and np.isnan(expected[key][col]))
            assert same, (key, col, value, expected[key][col])
    assert got[("biased", "background")]["significant"] and got[("biased", "background")]["flips"] > 0
    assert not any(got[(m, "hue")]["significant"] for m in MODELS)


def test_verdict_table_decision_first_only_varying_columns_no_nan(grouped: dict[str, Any]) -> None:
    page = grouped["index"].read_text()
    headers, cells = _table(page)
    assert headers[0] == "verdict" and {"EPG", "effect", "p", "property", "model"} <= set(headers)
    assert "checkpoint" not in headers and "class" not in headers  # the same on every row: in the caption
    assert "Same on every row: checkpoint ep3 · class cat" in page
    assert len(cells) == 4 and all(len(c) == len(headers) for c in cells)
    first = {(c[headers.index("property")], c[headers.index("model")]): c[0] for c in cells}
    assert first[("background", "biased")] == "significant" and first[("hue", "unbiased")] == "not significant"
    assert not re.search(r"\bnan\b", page, re.I)
    summary = re.search(r"<p class='summary'>(.*?)</p>", page)
    assert summary and "1 of 4 property × model mean curves is significant" in summary.group(1)


def test_summary_flips_use_the_table_columns_words(grouped: dict[str, Any]) -> None:
    """The verdict sentence names flips with the table's own columns (flips of the tested mean curve, and flips
    on all images), so it never says "1 flip" where the table's flips column says 0."""
    page = grouped["index"].read_text()
    headers, cells = _table(page)
    summary = re.search(r"<p class='summary'>(.*?)</p>", page)
    assert summary
    for c in cells:
        if c[0] != "significant":
            continue
        key = f"{c[headers.index('property')]} × {c[headers.index('model')]}"
        flips, all_images = c[headers.index("flips")], c[headers.index("flips (all images)")]
        assert f"{key} (EPG" in summary.group(1)
        assert f"flips {flips}, flips (all images) {all_images})" in summary.group(1)


def test_null_distributions_agree_with_the_table(grouped: dict[str, Any]) -> None:
    checks = grouped["null_checks"]
    assert len(checks) == len(grouped["verdicts"]) == 4
    for check in checks:
        assert check.agrees and check.pvalue == check.table_pvalue == check.verdict.row["pvalue"]
        assert check.path.is_file()


def test_null_words_match_the_picture() -> None:
    null = np.linspace(1.0, 2.0, 100)
    assert null_words(0.5, null, True) == "significant: smoother than all 100 shuffles"
    assert null_words(3.0, null, True) == "significant: rougher than all 100 shuffles"
    assert null_words(1.25, null, False).startswith("not significant: smoother than 75 of 100")
    assert null_words(1.9, null, False).startswith("not significant: rougher than 90 of 100")


def test_plot_names_never_collide(grouped: dict[str, Any]) -> None:
    assert plot_name("strip", "a.b") != plot_name("strip", "a-b") != plot_name("strip", "A-B")
    assert re.fullmatch(r"strip_a-b_[0-9a-f]{8}\.png", plot_name("strip", "a.b"))
    # the study's images "cat.1" and "cat-1" slug alike: one strip each, both on the page
    strips = grouped["strips"]
    assert len(strips) == len(set(strips)) == len(PROPERTIES) * len(IMAGES)
    page = grouped["index"].read_text()
    for p in strips:
        assert p.name in page


def test_every_figure_is_on_the_page_and_grouped_sections_exist(grouped: dict[str, Any]) -> None:
    folder = grouped["index"].parent
    page = grouped["index"].read_text()
    pngs = sorted(folder.glob("*.png"))
    assert pngs and all(p.name in page for p in pngs)
    assert len(grouped["curves"]) == len(PROPERTIES) and len(grouped["sequences"]) == len(PROPERTIES)
    assert len(grouped["over_checkpoints"]) == len(MODELS) and len(grouped["epg_vs_flips"]) == 1
    assert page.index("id='verdict'") < page.index("id='behaviour'") < page.index("id='checkpoints'")


def test_x_axis_uses_values_and_the_interventions_unit(study: tuple[Path, list[Path]]) -> None:
    outputs, inters = study
    opts = ReportOptions(score=E.ScoreOptions(n_permutations=K)).checked()
    rows = E.score_outputs(outputs, opts.score)
    units = {name: str(s.attrs["unit"]) for f in inters for name, s in E.read_interventions(f, images=False).items()}
    with_units = load_study(outputs, rows, opts, units)
    xs, label = x_axis(with_units.section_tracks("hue"), "hue")
    assert label == "hue [deg]" and np.array_equal(xs, PROPERTIES["hue"][0])
    bare = load_study(outputs, rows, opts)
    assert x_axis(bare.section_tracks("hue"), "hue")[1] == "hue"
    track = bare.section_tracks("hue")[0]
    track.values = np.arange(len(track.values), dtype=np.float64)
    assert x_axis([track], "hue")[1] == "step"


@pytest.mark.parametrize(("spec", "expected"), [("last", [2]), ("all", [0, 1, 2]), (("ep1", "ep3"), [0, 2]),
                                                ("ep2", [1])])
def test_checkpoints_option_chooses_the_drawn_checkpoints(study: tuple[Path, list[Path]], spec: Any,
                                                          expected: list[int]) -> None:
    opts = ReportOptions(score=E.ScoreOptions(n_permutations=10), checkpoints=spec).checked()
    rows = E.score_outputs(study[0], opts.score)
    s = load_study(study[0], rows, opts)
    assert all(t.chosen == expected for t in s.tracks.values())


def test_unknown_checkpoint_is_a_usage_error(study: tuple[Path, list[Path]], tmp_path: Path) -> None:
    opts = ReportOptions(score=E.ScoreOptions(n_permutations=10), checkpoints=("ep9",))
    with pytest.raises(E.UsageError, match="no checkpoint named 'ep9'"):
        build_report(study[0], tmp_path, opts)
    with pytest.raises(E.UsageError, match="checkpoints"):
        ReportOptions(checkpoints=()).checked()


@pytest.mark.slow
def test_ungrouped_fdr_all_classes_values_spacing(study: tuple[Path, list[Path]], tmp_path: Path) -> None:
    """Per-sequence verdicts, q-values in the decision cell, vector nulls and a values grid still agree."""
    score = E.ScoreOptions(n_permutations=K, use_fdr=True, all_classes=True, spacing="values")
    res = build_report(study[0], tmp_path, ReportOptions(score=score), interventions=study[1])
    assert len(res["verdicts"]) == len(MODELS) * len(PROPERTIES) * len(IMAGES)
    assert all(c.agrees for c in res["null_checks"]) and len(res["null_checks"]) == len(res["verdicts"])
    headers, cells = _table(res["index"].read_text())
    assert headers[:2] == ["verdict", "property"] and "sequence" in headers
    assert all(re.fullmatch(r"(significant|negligible|not significant) \(q = [0-9.e-]+\)", c[0]) for c in cells)
    assert sequence_name("background", IMAGES[0]) in res["index"].read_text()


@pytest.mark.slow
def test_old_pngs_of_the_report_are_removed_others_kept(study: tuple[Path, list[Path]], tmp_path: Path) -> None:
    stale = tmp_path / plot_name("null", "gone")
    mine = tmp_path / "notes.png"
    stale.write_bytes(b"x")
    mine.write_bytes(b"x")
    build_report(study[0], tmp_path, E.ScoreOptions(n_permutations=10))
    assert not stale.exists() and mine.exists()


@pytest.mark.slow
def test_report_command(study: tuple[Path, list[Path]], tmp_path: Path) -> None:
    outputs, (bg, hue) = study
    out = tmp_path / "rep"
    res = CliRunner().invoke(cli, ["report", str(outputs), "-i", str(bg), "--interventions", str(hue), "-o", str(out),
                                   "--checkpoints", "ep1,ep3", "--group-by", "property", "-k", str(K), "-q"])
    assert res.exit_code == 0, res.output
    assert "1 of 4 verdict rows significant (0 more negligible)" in res.output
    assert f"report: {out / 'index.html'}" in res.output
    assert len(list(out.glob("strip_*.png"))) == 4 and len(list(out.glob("null_*.png"))) == 4
    res = CliRunner().invoke(cli, ["report", str(outputs), "-o", str(tmp_path / "x"), "--checkpoints", "ep9", "-q"])
    assert res.exit_code == 2 and "ep9" in res.output
