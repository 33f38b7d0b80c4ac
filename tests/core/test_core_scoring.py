"""Scoring an outputs file: grouped rows equal NumPy on the file, class-choice invariance, targets, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import epg_core as E


def _study(path: Path, n: int = 12, seed: int = 0, classes: int = 2) -> Path:
    """2 models x 2 properties x 2 images x 3 checkpoints; model a darkens p(cat) more with every epoch."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 1, n)
    blocks = []
    for model in ("a", "b"):
        for prop in ("dark", "hue"):
            for img in ("cat1", "cat2"):
                out = np.empty((3, n, classes), np.float32)
                for m in range(3):
                    drop = 0.6 * t * m if (prop == "dark" and model == "a") else 0.02 * rng.random(n)
                    logits = rng.normal(0, 0.01, (n, classes))
                    logits[:, 0] += 3 - 6 * drop
                    out[m] = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
                blocks.append(E.OutputsBlock(
                    model=model, sequence=f"{img}-{prop}", outputs=out, done=np.ones(3, bool),
                    checkpoints=["e1", "e2", "e3"], classes=[f"c{i}" for i in range(classes)],
                    values=np.linspace(0, 2, n), attrs={"property": prop, "image": img}))
    E.write_outputs(path, blocks)
    return path


def test_grouped_rows_equal_numpy_on_the_file(tmp_path: Path) -> None:
    path = _study(tmp_path / "out.h5")
    rows = E.score_outputs(path, E.ScoreOptions(group_by="property", n_permutations=500, spacing="values",
                                                 precision="float64"))
    blocks = {(b.model, b.sequence): b for b in E.read_outputs(path)}
    for r in rows:
        seqs = [f"{img}-{r['property']}" for img in ("cat1", "cat2")]
        m = r["checkpoint_index"]
        cls = ["c0", "c1"].index(r["output"])
        outs = np.stack([np.asarray(blocks[(r["model"], s)].outputs[m], np.float64) for s in seqs])
        x = blocks[(r["model"], seqs[0])].values
        sym = (outs[..., cls] + 1.0 - outs[..., 1 - cls]) / 2.0  # binary probabilities are symmetrised
        per = [np.mean(np.abs(np.gradient(o, x))) for o in sym]
        if r["aggregate"] == "mean_curve":
            mean = outs.mean(axis=0)
            assert r["epg"] == pytest.approx(np.mean(np.abs(np.gradient(sym.mean(axis=0), x))), rel=1e-9)
            assert r["flips"] == int(np.sum(np.diff(np.argmax(mean, -1)) != 0))
            assert r["n_curves"] == 2
        elif r["aggregate"] == "mean_epg":
            assert r["epg"] == pytest.approx(np.mean(per), rel=1e-9)
            assert r["epg_sd"] == pytest.approx(np.std(per, ddof=1), rel=1e-9)
            assert np.isnan(r["pvalue"])
        else:
            assert r["epg"] == pytest.approx(per[seqs.index(r["sequence"])], rel=1e-9)
    verdict = {(r["model"], r["property"]): r for r in rows
               if r["aggregate"] == "mean_curve" and r["checkpoint"] == "e3"}
    assert verdict[("a", "dark")]["significant"] and verdict[("a", "dark")]["flips"] == 1
    assert verdict[("a", "dark")]["epg"] >= 10 * verdict[("a", "hue")]["epg"]
    assert not any(v["flips"] for k, v in verdict.items() if k != ("a", "dark"))


def test_binary_class_choice_gives_identical_scores(tmp_path: Path) -> None:
    path = _study(tmp_path / "out.h5")
    a = E.score_outputs(path, E.ScoreOptions(target="c0", n_permutations=2000))
    b = E.score_outputs(path, E.ScoreOptions(target="c1", n_permutations=2000))
    for ra, rb in zip(a, b, strict=True):
        for col in ("epg", "pvalue", "significant", "flips", "zscore"):
            assert ra[col] == pytest.approx(rb[col], rel=1e-6) if col == "epg" else ra[col] == rb[col], col


def test_all_classes_scores_the_vector_curve(tmp_path: Path) -> None:
    path = _study(tmp_path / "out.h5", classes=5)
    rows = E.score_outputs(path, E.ScoreOptions(all_classes=True, n_permutations=300))
    blocks = {(b.model, b.sequence): b for b in E.read_outputs(path)}
    for r in rows:
        out = np.asarray(blocks[(r["model"], r["sequence"])].outputs[r["checkpoint_index"]], np.float64)
        ref = np.mean(np.linalg.norm(np.gradient(out, axis=0), axis=-1))
        assert r["output"] == "all classes" and r["epg"] == pytest.approx(ref, rel=1e-5)


def test_majority_target_reports_ties() -> None:
    originals = np.array([[0.6, 0.4], [0.3, 0.7], [0.55, 0.45], [0.2, 0.8]])
    target, note = E.majority_target(originals, ["cat", "dog"])
    assert target == 1 and "tie between cat (2) and dog (2)" in note
    assert E.majority_target(originals[:3], ["cat", "dog"]) == (0, "")


def test_groups_with_different_grids_are_refused(tmp_path: Path) -> None:
    out = np.full((1, 5, 2), 0.5, np.float32)
    blocks = [E.OutputsBlock(model="m", sequence=s, outputs=out, done=np.ones(1, bool), checkpoints=["c"],
                             classes=["a", "b"], values=v, attrs={"property": "p", "image": s})
              for s, v in (("one", np.arange(5.0)), ("two", np.arange(5.0) * 2))]
    E.write_outputs(tmp_path / "o.h5", blocks)
    with pytest.raises(E.DataError, match="different property grids"):
        E.score_outputs(tmp_path / "o.h5", E.ScoreOptions(group_by="property"))
    with pytest.raises(E.UsageError, match="group_by"):
        E.score_outputs(tmp_path / "o.h5", E.ScoreOptions(group_by="colour"))
