"""End to end: the reduced demo reproduces Table 2; `epg score` / `epg report` against independent numbers."""

from __future__ import annotations

import csv
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from helpers import one_line_error
from PIL import Image

import epg_core as E
from epg_bridges.demo import DemoConfig, DemoResult, run_demo
from epg_cli.main import cli


@pytest.fixture(scope="module")
def demo_result(tmp_path_factory: pytest.TempPathFactory) -> DemoResult:

    return run_demo(tmp_path_factory.mktemp("demo"), DemoConfig.quick())


@pytest.mark.slow
def test_reduced_demo_reproduces_table2(demo_result: DemoResult) -> None:
    """Paper Table 2 on the mean behaviour over >= 4 images per property, at the last epoch."""
    c = demo_result.check
    assert c["ratio"] >= 10, c
    assert c["biased_background_significant"] and c["biased_background_flips"] > 0, c
    assert c["unbiased_flips"] == 0, c
    assert c["reproduces_table2"]
    verdict = {(r["model"], r["property"]): r for r in demo_result.verdict}
    assert set(verdict) == {(m, p) for m in ("biased", "unbiased") for p in ("background", "hue")}
    assert all(r["aggregate"] == "mean_curve" and r["n_curves"] >= 4 for r in verdict.values())
    assert verdict[("biased", "background")]["epg"] >= 10 * verdict[("biased", "hue")]["epg"]


@pytest.mark.slow
def test_demo_is_a_study_that_a_rerun_does_not_recompute(demo_result: DemoResult) -> None:
    """The demo wrote its built-in study file; running it again with `epg run` computes nothing."""
    from epg_bridges.study import load_study, run_study

    study = load_study(demo_result.study)
    assert [s.property for s in study.interventions] == ["background", "hue"] and len(study.images) >= 4
    again = run_study(demo_result.study)
    assert again.computed == {"interventions": [], "models": [], "scores": [], "report": []}
    assert [r["epg"] for r in again.rows] == [r["epg"] for r in demo_result.rows]


@pytest.mark.slow
def test_report_pngs_exist_and_are_not_trivial(demo_result: DemoResult) -> None:
    assert demo_result.report is not None
    folder = demo_result.report.parent
    pngs = sorted(folder.glob("*.png"))
    kinds = {p.name.split("_")[0] for p in pngs}
    assert {"curves", "null", "epg", "strip"} <= kinds, kinds
    for p in pngs:
        img = np.asarray(Image.open(p).convert("L"), dtype=np.float64)
        assert img.shape[0] > 50 and img.shape[1] > 200, p
        assert img.std() > 5, f"{p} looks blank"
    page = demo_result.report.read_text()
    assert all(p.name in page for p in pngs if not p.name.startswith("interventions"))
    assert "<table" in page and "square_0-background" in page


@pytest.fixture(scope="module")
def bridge_outputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Outputs of the model bridge: a tiny ConvMixer exported to ONNX and run on designed interventions."""
    from epg_bridges.interventions import synthetic_sequence
    from epg_bridges.models import Preprocessing, RunOptions, conv_mixer, export_onnx, predict

    d = tmp_path_factory.mktemp("bridge")
    rng = np.random.default_rng(0)
    seqs = {}
    for i in range(3):
        img = rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)
        seqs[f"img{i}"] = synthetic_sequence(img, "darken-background", np.linspace(0, 1, 15))
    inter = E.write_interventions(d / "interventions.h5", seqs)
    prep = Preprocessing(size=(24, 24))
    torch.manual_seed(0)
    model = conv_mixer(dim=8, depth=1, kernel_size=3, patch_size=4, n_classes=3).eval()
    onnx_path = d / "tiny.onnx"
    export_onnx(model, onnx_path, preprocessing=prep, classes=["a", "b", "c"])
    predict(onnx_path, [inter], d / "outputs.h5", RunOptions(model_name="tiny"))
    return d / "outputs.h5"


def _read_probs(path: Path) -> dict[str, np.ndarray]:
    """The stored outputs, read with h5py directly (independent of epg_core's reader)."""
    with h5py.File(path, "r") as f:
        group = f["models/tiny"]
        assert isinstance(group, h5py.Group)
        return {str(seq): np.asarray(group[f"{seq}/outputs"])[0] for seq in group}


def _csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_score_equals_independent_np_gradient(bridge_outputs: Path, tmp_path: Path) -> None:
    out_csv = tmp_path / "s.csv"
    args = ["score", str(bridge_outputs), "--class", "1", "-k", "500", "--csv", str(out_csv), "-q"]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    rows = _csv(out_csv)
    probs = _read_probs(bridge_outputs)
    assert len(rows) == 3
    for row in rows:
        p = probs[row["sequence"]][:, 1].astype(np.float64)
        # the CLI scores in float32 (the default precision): float32 rounding, not 1e-9
        assert float(row["epg"]) == pytest.approx(np.mean(np.abs(np.gradient(p))), rel=1e-5, abs=1e-9)
        assert row["output"] == "b"
    assert len(E.read_scores(bridge_outputs)) == 3  # also stored as /scores


def test_score_mean_over_sequences_equals_scoring_the_averaged_curve(bridge_outputs: Path, tmp_path: Path) -> None:
    out_csv = tmp_path / "m.csv"
    res = CliRunner().invoke(cli, ["score", str(bridge_outputs), "--class", "a", "--mean-over-sequences",
                                   "-k", "500", "--csv", str(out_csv), "-q"])
    assert res.exit_code == 0, res.output
    (row,) = [r for r in _csv(out_csv) if r.get("aggregate", "mean_curve") == "mean_curve"]  # EPG of the mean
    mean_curve = np.mean([v[:, 0].astype(np.float64) for v in _read_probs(bridge_outputs).values()], axis=0)
    ref = E.permutation_test(mean_curve, n_permutations=500, seed=0)
    assert float(row["epg"]) == pytest.approx(np.mean(np.abs(np.gradient(mean_curve))), rel=1e-5)  # float32
    assert float(row["pvalue"]) == pytest.approx(float(ref.pvalue))


def test_score_fdr_and_values_spacing(bridge_outputs: Path, tmp_path: Path) -> None:
    opts = E.ScoreOptions(target=0, spacing="values", use_fdr=True, n_permutations=300, precision="float64")
    rows = E.score_outputs(bridge_outputs, opts)
    probs = _read_probs(bridge_outputs)
    with h5py.File(bridge_outputs, "r") as f:
        x = np.asarray(f["models/tiny/img0/values"], np.float64)
    r0 = next(r for r in rows if r["sequence"] == "img0")
    assert r0["epg"] == pytest.approx(np.mean(np.abs(np.gradient(probs["img0"][:, 0].astype(np.float64), x))), rel=1e-9)
    q = E.fdr(np.array([r["pvalue"] for r in rows]), 0.01).qvalues
    np.testing.assert_allclose([r["qvalue"] for r in rows], q)
    assert all(r["correction"] == "bh" for r in rows)


@pytest.mark.parametrize(
    "args, code, fragment",
    [
        (["score", "missing.h5"], 2, "file not found"),  # the argument names nothing: usage
        (["score", "{interventions}"], 1, "interventions"),
        (["score", "{outputs}", "--class", "zebra"], 2, "unknown class 'zebra'"),  # a bad option value
        (["score", "{outputs}", "--class", "9"], 2, "out of range"),
        (["score", "{outputs}", "--spacing", "log"], 2, "Invalid value"),
        (["score", "{outputs}", "-o", "{outputs}"], 2, "overwrite"),
        (["report", "missing.h5"], 2, "file not found"),
    ],
)
def test_score_errors_are_one_line(
    bridge_outputs: Path, tmp_path: Path, args: list[str], code: int, fragment: str
) -> None:
    inter = bridge_outputs.parent / "interventions.h5"
    argv = [a.format(outputs=bridge_outputs, interventions=inter) for a in args]
    res = CliRunner().invoke(cli, argv + ["-q"] if argv[0] == "score" else argv)
    one_line_error(res, code, fragment)


@pytest.mark.slow
def test_report_command_writes_pngs_and_index(bridge_outputs: Path, tmp_path: Path) -> None:
    res = CliRunner().invoke(cli, ["report", str(bridge_outputs), "--out", str(tmp_path / "rep"), "-k", "300",
                                   "--interventions", str(bridge_outputs.parent / "interventions.h5"), "-q"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "rep" / "index.html").is_file()
    assert len(list((tmp_path / "rep").glob("null_*.png"))) == 3
    assert len(list((tmp_path / "rep").glob("strip_*.png"))) == 3
