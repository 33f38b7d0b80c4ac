# pyright: reportAttributeAccessIssue=false, reportArgumentType=false, reportIndexIssue=false, reportGeneralTypeIssues=false
"""`epg run study.toml`: every stage once, nothing on a rerun, only the affected stages after a change; the
grouped scores equal a NumPy computation on the outputs file; study-file errors are one line."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner
from helpers import one_line_error
from PIL import Image

from epg_bridges.testing import train_run
from epg_cli.main import cli

pytestmark = pytest.mark.slow

STUDY = """
[study]
name = "tiny"
out = "out"

[[images]]
path = "images/*.png"

[[interventions]]
property = "dark"
kind = "darken-background"
range = [0.0, 1.0]
n_steps = {n_steps}

[[interventions]]
property = "hue"
kind = "hue"
range = [0.0, 180.0]
n_steps = 9

[[models]]
name = "a"
checkpoints = "ckpt_a/*.pt"
size = 32

[[models]]
name = "b"
checkpoints = "ckpt_b/*.pt"
size = 32

[score]
n_permutations = {k}
seed = 3

[report]
checkpoints = "last"
max_null_plots = 2
"""


def _write(folder: Path, n_steps: int = 9, k: int = 300) -> Path:
    path = folder / "study.toml"
    path.write_text(STUDY.format(n_steps=n_steps, k=k))
    return path


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("study")
    rng = np.random.default_rng(0)
    (d / "images").mkdir()
    for name in ("one", "two"):
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(d / "images" / f"{name}.png")
    train_run(d / "ckpt_a", steps=3, seed=0)
    train_run(d / "ckpt_b", steps=3, seed=1)
    return d


def _run(study: Path) -> str:
    res = CliRunner().invoke(cli, ["run", str(study), "--quiet"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return res.output


def _computed(output: str) -> str:
    return next(line for line in output.splitlines() if line.startswith("computed:"))


def _model_outputs(path: Path) -> dict[str, str]:
    """SHA-256 of every outputs array of every model (not the /scores dataset)."""
    found: dict[str, str] = {}
    with h5py.File(path, "r") as f:
        def visit(name: str, obj: object) -> None:
            if isinstance(obj, h5py.Dataset) and name.endswith("/outputs"):
                found[name] = hashlib.sha256(np.asarray(obj).tobytes()).hexdigest()
        f["models"].visititems(visit)
    return found


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_run_then_rerun_then_one_change(study_dir: Path) -> None:
    study = _write(study_dir)
    first = _run(study)
    assert _computed(first) == "computed: interventions: 4, models: 2, scores: 1, report: 1"
    out = study_dir / "out"
    assert (out / "report" / "index.html").is_file() and (out / "scores.csv").is_file()
    before = {p: _digest(out / p) for p in ("interventions.h5", "outputs.h5")}
    outputs = _model_outputs(out / "outputs.h5")

    assert _computed(_run(study)) == "computed: interventions: 0, models: 0, scores: 0, report: 0"
    assert {p: _digest(out / p) for p in before} == before  # a rerun does not even touch the files

    _write(study_dir, k=400)  # a scoring option: scores and report only
    assert _computed(_run(study)) == "computed: interventions: 0, models: 0, scores: 1, report: 1"
    assert _model_outputs(out / "outputs.h5") == outputs  # the models were not rerun (only /scores changed)

    _write(study_dir, n_steps=11, k=400)  # one property's grid: its 2 sequences, both models, scores, report
    assert _computed(_run(study)) == "computed: interventions: 2, models: 2, scores: 1, report: 1"
    with h5py.File(out / "outputs.h5", "r") as f:
        assert f["models/a/one-dark/outputs"].shape[1] == 11 and f["models/a/one-hue/outputs"].shape[1] == 9


def test_grouped_scores_equal_numpy_on_the_outputs_file(study_dir: Path) -> None:
    """The mean_curve row of each model x property x checkpoint is the EPG of the mean of its curves."""
    import epg_core as E

    study = _write(study_dir, n_steps=11, k=400)
    _run(study)
    rows = E.read_scores(study_dir / "out" / "outputs.h5")
    with h5py.File(study_dir / "out" / "outputs.h5", "r") as f:
        for r in (r for r in rows if r["aggregate"] == "mean_curve"):
            curves = [np.asarray(f[f"models/{r['model']}/{img}-{r['property']}/outputs"], np.float64)
                      for img in ("one", "two")]
            k = r["checkpoint_index"]
            classes = json.loads(f[f"models/{r['model']}/one-{r['property']}"].attrs["classes"])
            mean = np.mean([c[k, :, classes.index(r["output"])] for c in curves], axis=0)
            assert r["epg"] == pytest.approx(np.mean(np.abs(np.gradient(mean))), rel=1e-5, abs=1e-9)
            assert r["n_curves"] == 2


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("[study]\nname = 1\n", "'name' must be a non-empty string"),
        ("[[images]]\npath = 'nothing/*.png'\n", "no image matches"),
        ("[study]\n[[images]]\npath='images/*.png'\n[[interventions]]\nkind='blur'\n", "unknown kind 'blur'"),
        ("[study]\n[[images]]\npath='images/*.png'\n[[interventions]]\nkind='hue'\nrange=[1, 1]\n"
         "[[models]]\nname='a'\ncheckpoints='ckpt_a/*.pt'\n", "'range' must be two different numbers"),
        ("[study]\n[[images]]\npath='images/*.png'\n[[interventions]]\nkind='hue'\n"
         "[[models]]\nname='a'\ncheckpoints='none/*.pt'\n", "no file matches"),
        ("[study\n", "not a valid TOML file"),
        ("[bogus]\n", "unknown section"),
    ],
)
def test_study_file_errors_are_one_line_naming_the_field(study_dir: Path, tmp_path: Path, text: str,
                                                         fragment: str) -> None:
    path = study_dir / f"bad_{hashlib.sha1(text.encode()).hexdigest()[:8]}.toml"
    path.write_text(text)
    res = CliRunner().invoke(cli, ["run", str(path), "--quiet"])
    one_line_error(res, 2, fragment)
    assert str(path) in res.output


def test_a_study_assembled_from_the_cli_only(study_dir: Path, tmp_path: Path) -> None:
    """2 images x 2 properties x 2 models x 3 checkpoints with commands alone: intervene with several images and
    --append, a sweep of two interventions files per model, score --group-by property; each mean_curve row equals
    NumPy on the outputs file (read with h5py), and each group's mean_epg row the mean of its per-curve rows."""
    runner = CliRunner()
    one, two = (str(study_dir / "images" / f"{n}.png") for n in ("one", "two"))

    def ok(*args: str) -> None:
        res = runner.invoke(cli, [*args, "--quiet"], catch_exceptions=False)
        assert res.exit_code == 0, res.output

    ok("intervene", "synthetic", "darken-background", one, "--n-steps", "9", "--property", "dark",
       "-o", str(tmp_path / "dark.h5"))
    ok("intervene", "synthetic", "darken-background", two, "--n-steps", "9", "--property", "dark",
       "-o", str(tmp_path / "dark.h5"), "--append")
    ok("intervene", "synthetic", "hue", one, two, "--n-steps", "9", "-o", str(tmp_path / "hue.h5"))
    out = tmp_path / "outputs.h5"
    for model in ("a", "b"):
        ok("sweep", str(study_dir / f"ckpt_{model}" / "*.pt"), str(tmp_path / "dark.h5"), str(tmp_path / "hue.h5"),
           "-o", str(out), "--model-name", model, "--size", "32")
    ok("score", str(out), "--group-by", "property", "-k", "300", "-o", str(tmp_path / "s.csv"))

    import epg_core as E

    rows = E.read_scores(out)
    groups = [r for r in rows if r["aggregate"] == "mean_curve"]
    assert len(groups) == 2 * 2 * 3  # models x properties x checkpoints
    with h5py.File(out, "r") as f:
        for r in groups:
            block = f"models/{r['model']}"
            members = [s for s in f[block] if f[f"{block}/{s}"].attrs["property"] == r["property"]]
            assert sorted(members) == [f"one-{r['property']}", f"two-{r['property']}"]
            classes = json.loads(f[f"{block}/{members[0]}"].attrs["classes"])
            c = classes.index(r["output"])
            curves = [np.asarray(f[f"{block}/{s}/outputs"], np.float64)[r["checkpoint_index"], :, c] for s in members]
            assert r["epg"] == pytest.approx(np.mean(np.abs(np.gradient(np.mean(curves, axis=0)))), rel=1e-5, abs=1e-9)
            per = [x["epg"] for x in rows if x["aggregate"] == "none" and x["model"] == r["model"]
                   and x["property"] == r["property"] and x["checkpoint"] == r["checkpoint"]]
            (mean_row,) = [x for x in rows if x["aggregate"] == "mean_epg" and x["model"] == r["model"]
                           and x["property"] == r["property"] and x["checkpoint"] == r["checkpoint"]]
            assert len(per) == 2 and mean_row["epg"] == pytest.approx(np.mean(per), rel=1e-9)
