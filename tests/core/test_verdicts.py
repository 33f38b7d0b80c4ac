"""Verdicts you can take at face value: effect sizes beside the shuffle test, scores of a selection equal to a
fresh file holding only that selection, image groups on multi-property studies and label groups (paper Fig. 16)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import epg_core as E
from epg_cli.main import cli

K = 2000
N = 21


def _block(model: str, seq: str, outputs: np.ndarray, *, checkpoints: list[str] | None = None,
           attrs: dict[str, str] | None = None, kind: str = "probabilities", values: np.ndarray | None = None,
           classes: list[str] | None = None) -> E.OutputsBlock:
    m = outputs.shape[0]
    return E.OutputsBlock(model=model, sequence=seq, outputs=outputs.astype(np.float32), done=np.ones(m, bool),
                          checkpoints=checkpoints or [f"ep{i}" for i in range(m)], classes=classes or ["cat", "dog"],
                          values=np.linspace(0, 1, outputs.shape[1]) if values is None else values,
                          output_kind=kind, preprocessing={}, attrs=attrs or {})


def _binary(p: np.ndarray) -> np.ndarray:
    return np.stack([p, 1.0 - p], axis=-1)


def _curves() -> dict[str, np.ndarray]:
    """A real drift, a tiny smooth drift (p(cat) stays at 1.000), and noise."""
    x = np.linspace(0, 1, N)
    rng = np.random.default_rng(0)
    return {"drift": 0.9 - 0.8 * x, "tiny": 1.0 - 1e-4 * x, "noise": 0.5 + 0.2 * rng.standard_normal(N).clip(-2, 2)}


@pytest.fixture()
def effects_file(tmp_path: Path) -> Path:
    path = tmp_path / "outputs.h5"
    E.write_outputs(path, [_block("m", name, _binary(p)[None], attrs={"property": "bg", "image": name})
                           for name, p in _curves().items()])
    return path


def _by_seq(rows: list[dict]) -> dict[str, dict]:
    return {r["sequence"]: r for r in rows if r["aggregate"] == "none"}


def test_effect_is_max_minus_min_and_a_tiny_smooth_change_is_negligible(effects_file: Path) -> None:
    rows = _by_seq(E.score_outputs(effects_file, E.ScoreOptions(target="cat", n_permutations=K)))
    curves = _curves()
    for name, row in rows.items():
        p = curves[name].astype(np.float32).astype(np.float64)
        assert row["effect"] == pytest.approx(np.ptp(p), rel=1e-6, abs=2e-7)  # float32 round-off at 1.0
        assert row["min_effect"] == 0.01
    # the shuffle test is scale-free: the tiny drift is as significant as the real one ...
    assert rows["tiny"]["significant"] and rows["drift"]["significant"] and not rows["noise"]["significant"]
    # ... so the verdict needs the effect size beside it
    assert rows["tiny"]["negligible"] and rows["tiny"]["verdict"] == "negligible"
    assert rows["drift"]["verdict"] == "significant" and not rows["drift"]["negligible"]
    assert rows["noise"]["verdict"] == "not significant"
    off = _by_seq(E.score_outputs(effects_file, E.ScoreOptions(target="cat", n_permutations=K, min_effect=0.0)))
    assert off["tiny"]["verdict"] == "significant" and off["tiny"]["min_effect"] == 0.0


def test_effect_of_the_other_class_is_the_same(effects_file: Path) -> None:
    """p(dog) = 1 - p(cat): same EPG, same decision, same effect, same verdict."""
    cat = _by_seq(E.score_outputs(effects_file, E.ScoreOptions(target="cat", n_permutations=K)))
    dog = _by_seq(E.score_outputs(effects_file, E.ScoreOptions(target="dog", n_permutations=K)))
    for name in cat:
        assert cat[name]["pvalue"] == dog[name]["pvalue"] and cat[name]["verdict"] == dog[name]["verdict"]
        assert cat[name]["effect"] == pytest.approx(dog[name]["effect"], abs=1e-6)


def test_logits_have_no_default_floor(tmp_path: Path) -> None:
    path = tmp_path / "logits.h5"
    x = np.linspace(0, 1, N)
    E.write_outputs(path, [_block("m", "s", np.stack([1e-4 * x, -1e-4 * x], -1)[None], kind="logits")])
    (row,) = _by_seq(E.score_outputs(path, E.ScoreOptions(target="cat", n_permutations=K))).values()
    assert row["min_effect"] == 0.0 and row["verdict"] == "significant"


def test_cli_shows_effect_and_verdict_and_refuses_a_negative_floor(effects_file: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(cli, ["score", str(effects_file), "--class", "cat", "-k", str(K), "-o",
                              str(tmp_path / "s.csv"), "--quiet"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert "3 curves, 2 significant at 0.01" in res.output and "1 of them with a negligible effect" in res.output
    header = res.output.splitlines()[3]
    assert "effect" in header and "verdict" in header
    table = list(csv.DictReader(io.StringIO((tmp_path / "s.csv").read_text())))
    assert {r["sequence"]: r["verdict"] for r in table} == {"drift": "significant", "tiny": "negligible",
                                                             "noise": "not significant"}
    stored = _by_seq(E.read_scores(effects_file))
    assert stored["tiny"]["negligible"] is True and stored["tiny"]["verdict"] == "negligible"
    bad = runner.invoke(cli, ["score", str(effects_file), "--min-effect", "-1", "--quiet"])
    assert bad.exit_code == 2 and "--min-effect" in bad.output


# ------------------------------------------------------------------------------------------- selection


def _study_file(path: Path, models: dict[str, list[str]], images: list[str]) -> None:
    rng = np.random.default_rng(1)
    x = np.linspace(0, 1, N)
    blocks = []
    for model, ckpts in models.items():
        for img in images:
            for prop in ("bg", "hue"):
                ys = np.stack([np.clip(0.8 - (0.5 if prop == "bg" else 0.05) * x * (1 + i)
                                       + 0.02 * rng.standard_normal(N), 0, 1) for i, _ in enumerate(ckpts)])
                blocks.append(_block(model, f"{img}-{prop}", _binary(ys), checkpoints=ckpts,
                                     attrs={"property": prop, "image": img}))
    E.write_outputs(path, blocks)


def test_a_selection_scores_like_a_file_that_holds_only_it(tmp_path: Path) -> None:
    """Cached blocks of a removed model, image or checkpoint never enter a row; checkpoints are renumbered."""
    big, small = tmp_path / "big.h5", tmp_path / "small.h5"
    _study_file(big, {"a": ["ep1", "ep2", "ep3"], "b": ["ep1", "ep2", "ep3"], "gone": ["ep1"]},
                ["one", "two", "three"])
    # the small file: the same generator, then only the selected part written
    _study_file(tmp_path / "tmp.h5", {"a": ["ep1", "ep2", "ep3"], "b": ["ep1", "ep2", "ep3"], "gone": ["ep1"]},
                ["one", "two", "three"])
    keep_seqs = {f"{i}-{p}" for i in ("one", "three") for p in ("bg", "hue")}
    blocks = []
    for model in ("a", "b"):
        for block in E.read_outputs(tmp_path / "tmp.h5", model):
            if block.sequence in keep_seqs:
                sel = [0, 2]
                blocks.append(_block(model, block.sequence, block.outputs[sel], checkpoints=["ep1", "ep3"],
                                     attrs=dict(block.attrs)))
    E.write_outputs(small, blocks)
    select = E.Selection(models={"a": ("ep1", "ep3"), "b": ("ep3", "ep1")}, sequences=frozenset(keep_seqs))
    for group_by in ("none", "property", "property,label"):
        opts = E.ScoreOptions(n_permutations=500, group_by=group_by)
        got = E.score_outputs(big, opts, select=select)
        want = E.score_outputs(small, opts)
        assert [repr(r) for r in got] == [repr(r) for r in want]  # repr: NaN equals NaN
    assert {r["model"] for r in got} == {"a", "b"} and max(r["checkpoint_index"] for r in got) == 1


# ------------------------------------------------------------------------------------- groups and labels


def test_group_by_image_on_a_multi_property_study(tmp_path: Path) -> None:
    """Properties have different grids: one group per image x property, never refused."""
    path = tmp_path / "o.h5"
    x = np.linspace(0, 1, N)
    blocks = [_block("m", f"{img}-{prop}", _binary(0.9 - 0.4 * x * (k + 1))[None],
                     attrs={"property": prop, "image": img}, values=x * (180 if prop == "hue" else 1))
              for k, img in enumerate(("one", "two")) for prop in ("bg", "hue")]
    E.write_outputs(path, blocks)
    rows = E.score_outputs(path, E.ScoreOptions(n_permutations=500, group_by="image", target="cat"))
    means = [r for r in rows if r["aggregate"] == "mean_curve"]
    assert sorted((r["image"], r["property"]) for r in means) == [("one", "bg"), ("one", "hue"), ("two", "bg"),
                                                                 ("two", "hue")]
    assert all(r["n_curves"] == 1 for r in means)


def test_label_groups_never_average_images_of_different_labels(tmp_path: Path) -> None:
    """Fig. 16: the mean behaviour of the cat images and of the dog images, separately; the label is the class
    predicted on the original, or the label given with the image."""
    path = tmp_path / "o.h5"
    x = np.linspace(0, 1, N)
    p_cat = {"c1": 0.95 - 0.3 * x, "c2": 0.9 - 0.2 * x, "d1": 0.1 + 0.05 * x, "d2": 0.2 + 0.1 * x,
             "d3": 0.15 + 0.6 * x}
    attrs = {n: {"property": "bg", "image": n} for n in p_cat}
    attrs["d3"]["label"] = "dog"  # given: predicted cat at step 0? no, p(cat) = 0.15: the given label agrees
    E.write_outputs(path, [_block("m", n, _binary(p)[None], attrs=attrs[n]) for n, p in p_cat.items()])
    rows = E.score_outputs(path, E.ScoreOptions(n_permutations=500, group_by="property,label", target="cat"))
    means = {r["label"]: r for r in rows if r["aggregate"] == "mean_curve"}
    assert set(means) == {"cat", "dog"} and means["cat"]["n_curves"] == 2 and means["dog"]["n_curves"] == 3
    for label, names in (("cat", ["c1", "c2"]), ("dog", ["d1", "d2", "d3"])):
        mean = np.mean([p_cat[n].astype(np.float32).astype(np.float64) for n in names], axis=0)
        assert means[label]["epg"] == pytest.approx(np.mean(np.abs(np.gradient(mean))), rel=1e-5)
        assert means[label]["sequence"] == f"property=bg,label={label}"
    assert {r["sequence"]: r["label"] for r in rows if r["aggregate"] == "none"} == {
        "c1": "cat", "c2": "cat", "d1": "dog", "d2": "dog", "d3": "dog"}
    # a given label wins over the prediction
    E.write_outputs(tmp_path / "o2.h5", [_block("m", n, _binary(p)[None], attrs={**attrs[n], "label": "lynx"}
                                                if n == "c1" else attrs[n]) for n, p in p_cat.items()])
    rows = E.score_outputs(tmp_path / "o2.h5", E.ScoreOptions(n_permutations=500, group_by="label", target="cat"))
    assert sorted(r["label"] for r in rows if r["aggregate"] == "mean_curve") == ["cat", "dog", "lynx"]


def test_unknown_group_key_is_a_usage_error(effects_file: Path) -> None:
    with pytest.raises(E.UsageError, match="unknown group_by 'colour'"):
        E.score_outputs(effects_file, E.ScoreOptions(group_by="colour"))


# ------------------------------------------------------------------------------- studies that forget


STUDY = """
[study]
name = "forget"
out = "{out}"

[[images]]
path = "{images}"

[[interventions]]
property = "dark"
kind = "darken-background"
range = [0.0, 1.0]
n_steps = 7

[[models]]
name = "a"
checkpoints = "ckpt_a/*.pt"
size = 32
{model_b}
[score]
n_permutations = 300
group_by = "property"
"""
MODEL_B = """
[[models]]
name = "b"
checkpoints = "ckpt_b/*.pt"
size = 32
"""


@pytest.mark.slow
def test_a_changed_then_restored_study_gives_the_fresh_verdict(tmp_path: Path) -> None:
    """Remove a model, change the image glob, restore both: the scores CSV is byte-identical to a fresh run's,
    and no removed model or image enters a score or the report meanwhile."""
    pytest.importorskip("torch", reason="trains tiny checkpoints: needs the torch extra (bare-core CI has none)")
    from PIL import Image

    from epg_bridges.testing import train_run

    rng = np.random.default_rng(0)
    (tmp_path / "images").mkdir()
    for name in ("a1", "a2", "b1", "b2"):
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(tmp_path / "images" / f"{name}.png")
    train_run(tmp_path / "ckpt_a", steps=2, seed=0)
    train_run(tmp_path / "ckpt_b", steps=2, seed=1)

    def run(out: str, images: str = "images/*.png", b: bool = True) -> str:
        study = tmp_path / f"{out}.toml"
        study.write_text(STUDY.format(out=out, images=images, model_b=MODEL_B if b else ""))
        res = CliRunner().invoke(cli, ["run", str(study), "--quiet"], catch_exceptions=False)
        assert res.exit_code == 0, res.output
        return (tmp_path / out / "scores.csv").read_text()

    fresh = run("fresh")
    run("changed")
    without_b = run("changed", b=False)
    assert {r["model"] for r in csv.DictReader(io.StringIO(without_b))} == {"a"}
    assert "<td>b</td>" not in (tmp_path / "changed" / "report" / "index.html").read_text()
    fewer = run("changed", images="images/a*.png", b=False)
    assert {r["image"] for r in csv.DictReader(io.StringIO(fewer)) if r["aggregate"] == "none"} == {"a1", "a2"}
    restored = run("changed")
    rows = list(csv.DictReader(io.StringIO(restored)))
    assert {r["n_curves"] for r in rows if r["aggregate"] == "mean_curve"} == {"4"}
    assert restored == fresh


def test_demo_and_reference_demo_have_their_own_folders() -> None:
    pytest.importorskip("torch", reason="epg_bridges.demo trains models: needs the torch extra")
    from epg_bridges.demo import default_out

    assert default_out(False) != default_out(True)
