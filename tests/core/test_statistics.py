"""Statistics as plug-ins: the registry, a user's statistic in one class plus one line, and the scores table
testing any registered statistic (oracles: full enumeration with NumPy's corrcoef, np.gradient)."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jaxtyping import Array
from small_outputs import small_outputs

import epg_core as E
from epg_core._statistics._registry import BUILTIN


class Slope(E.Statistic):
    """|least-squares slope| of the curve on the grid: a user's statistic (not affine invariant in scale)."""

    name: ClassVar[str] = "test-slope"
    summary: ClassVar[str] = "absolute least-squares slope"

    @staticmethod
    def value(y: Array, x: Array) -> Array:
        xc = x - x.mean()
        return jnp.abs(jnp.sum(xc * (y - y.mean())) / jnp.sum(xc * xc))


def test_the_registry_lists_each_built_in_under_its_own_name() -> None:
    assert E.statistic_names()[:len(BUILTIN)] == tuple(BUILTIN) == ("epg", "pearson", "mi")
    for name in BUILTIN:
        cls = E.get_statistic(name)
        assert issubclass(cls, E.Statistic) and cls.name == name and cls.summary
    with pytest.raises(E.UsageError, match="unknown statistic 'nope'; use one of epg, pearson, mi"):
        E.get_statistic("nope")


def test_pearson_by_name_equals_full_enumeration_with_numpy() -> None:
    rng = np.random.default_rng(0)
    y = rng.random((6, 7))
    y[0] = np.linspace(0, 1, 7) + 0.05 * rng.random(7)  # a clear trend
    res = E.permutation_test(y, statistic="pearson", exact=True, alternative="greater", precision="float64")
    for i, curve in enumerate(y):
        r_obs = float(np.corrcoef(np.arange(7), curve)[0, 1])
        null = np.array([float(np.corrcoef(np.arange(7), curve[list(p)])[0, 1])
                         for p in itertools.permutations(range(7))])
        assert res.statistic[i] == pytest.approx(r_obs, abs=1e-12)
        assert res.pvalue[i] == pytest.approx(np.mean(null >= r_obs - 1e-12), abs=1e-12)


def test_a_users_statistic_is_one_class_and_one_line(tmp_path: Path) -> None:
    E.register_statistic(Slope)  # the one line
    assert "test-slope" in E.statistic_names()
    E.register_statistic(Slope)  # again: a no-op
    y = np.random.default_rng(1).random((4, 6))
    res = E.permutation_test(y, statistic="test-slope", exact=True, alternative="greater", precision="float64")
    grid = np.arange(6.0)
    for i, curve in enumerate(y):
        obs = abs(np.polyfit(grid, curve, 1)[0])
        null = np.array([abs(np.polyfit(grid, curve[list(p)], 1)[0]) for p in itertools.permutations(range(6))])
        assert res.statistic[i] == pytest.approx(obs, rel=1e-10)
        assert res.pvalue[i] == pytest.approx(np.mean(null >= obs * (1 - 1e-10)), abs=1e-12)

    class Other(Slope):
        name: ClassVar[str] = "test-slope"

    with pytest.raises(E.UsageError, match="already registered"):
        E.register_statistic(Other)
    with pytest.raises(E.UsageError, match="already registered"):
        E.register_statistic(type("Fake", (E.Statistic,), {"name": "epg"}))

    path = small_outputs(tmp_path / "o.h5")
    rows = E.score_outputs(path, E.ScoreOptions(statistic="test-slope", n_permutations=300))
    assert {r["statistic"] for r in rows} == {"test-slope"}


@pytest.mark.parametrize("statistic", ["pearson", "mi"])
def test_the_scores_table_tests_any_registered_statistic(tmp_path: Path, statistic: str) -> None:
    path = small_outputs(tmp_path / "o.h5")
    options = (("k", "2"),) if statistic == "mi" else ()
    opts = E.ScoreOptions(statistic=statistic, statistic_options=options, n_permutations=400, precision="float64",
                          group_by="property")
    rows = E.score_outputs(path, opts)
    blocks = {b.sequence: b for b in E.read_outputs(path)}
    tested = [r for r in rows if r["aggregate"] == "none"]
    assert tested and all(r["statistic"] == statistic for r in rows if r["aggregate"] != "mean_epg")
    mi_k: dict[str, Any] = {"k": 2} if statistic == "mi" else {}
    for r in tested:
        curve = np.asarray(blocks[r["sequence"]].outputs[r["checkpoint_index"], :, ["cat", "dog", "fox"].index(
            r["output"])], np.float64)
        alone = E.permutation_test(curve, statistic=statistic, n_permutations=400, precision="float64", **mi_k)
        assert r["value"] == float(alone.statistic)  # the same bits alone as in the study's batch
        assert r["pvalue"] == float(alone.pvalue)
        assert r["epg"] == pytest.approx(np.mean(np.abs(np.gradient(curve))), rel=1e-9)  # epg stays EPG
        assert r["verdict"] in ("significant", "negligible", "not significant")
        if statistic == "mi":  # KSG with the digamma sum in fixed point (exact ties): within 1e-5 of ksg_mi
            assert r["value"] == pytest.approx(float(E.ksg_mi(curve, np.arange(7.0), k=2)), abs=1e-5)
    epg_rows = E.score_outputs(path, E.ScoreOptions(n_permutations=400, precision="float64", group_by="property"))
    assert [r["epg"] for r in epg_rows if r["aggregate"] == "none"] == pytest.approx([r["epg"] for r in tested])
    assert all(r["value"] == r["epg"] and r["statistic"] == "epg" for r in epg_rows if r["aggregate"] == "none")


def test_statistic_options_are_checked_and_typed() -> None:
    with pytest.raises(E.UsageError, match=r"statistic 'mi' takes k; got q"):
        E.ScoreOptions(statistic="mi", statistic_options=(("q", "1"),)).checked()
    with pytest.raises(E.UsageError, match=r"mi option k: expected int, got 'three'"):
        E.ScoreOptions(statistic="mi", statistic_options=(("k", "three"),)).checked()
    with pytest.raises(E.UsageError, match="all_classes"):
        E.ScoreOptions(statistic="pearson", all_classes=True).checked()
    checked = E.ScoreOptions(statistic="mi", statistic_options={"k": "3"}).checked()  # a study's table
    assert checked.statistic_options == (("k", 3),)
    with pytest.raises(E.UsageError, match="class_axis works with epg only"):
        E.permutation_test(np.zeros((2, 5, 3)), statistic="pearson", class_axis=-1)


@pytest.mark.parametrize("precision", ["float32", "float64"])
def test_mi_is_the_same_alone_and_in_a_batch_on_a_uniform_grid(precision: str) -> None:
    """A uniform grid makes KSG's distances tie and its null take few values: the fixed-point digamma sum keeps
    every tie a tie whatever the batch (it failed with the float sum: p 0.58 in a batch, 0.41 alone)."""
    rng = np.random.default_rng(5)
    y = rng.random((24, 9))
    y[:6] += np.linspace(0, 1, 9)
    batch = E.permutation_test(y, statistic="mi", k=2, n_permutations=500, precision=precision)
    for i, curve in enumerate(y):
        alone = E.permutation_test(curve, statistic="mi", k=2, n_permutations=500, precision=precision)
        assert float(alone.pvalue) == float(batch.pvalue[i]) and float(alone.statistic) == float(batch.statistic[i])
    exact = E.permutation_test(y[:3, :7], statistic="mi", k=2, exact=True, precision="float64", alternative="greater")
    for i, curve in enumerate(y[:3, :7]):  # full enumeration with the public ksg_mi as the oracle
        obs = float(E.ksg_mi(curve, np.arange(7.0), k=2))
        orders = np.array(list(itertools.permutations(range(7))))
        null = np.asarray(jax.vmap(lambda c: E.ksg_mi(c, jnp.arange(7.0), k=2))(jnp.asarray(curve[orders])))
        assert exact.pvalue[i] == pytest.approx(np.mean(null >= obs - 1e-6), abs=1e-12)


def test_every_registry_imports_plugins_the_same_way(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One importer behind statistics, editors, model families and factories: one line per failure kind."""
    (tmp_path / "broken_stats_xyz.py").write_text("raise RuntimeError('boom\\nmore')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(E.DataError, match=r"module 'broken_stats_xyz' fails to import \(RuntimeError: boom\)$"):
        E.import_object("broken_stats_xyz:S", "statistic")
    with pytest.raises(E.UsageError, match="statistic 'nope_mod_xyz:S': cannot import module 'nope_mod_xyz'"):
        E.plugin_class("nope_mod_xyz:S", E.Statistic, "statistic", "epg_core.Statistic")
    with pytest.raises(E.UsageError, match="module 'epg_core' has no 'Nope'"):
        E.import_object("epg_core:Nope", "statistic")
    with pytest.raises(E.UsageError, match="expected package.module:name"):
        E.import_object("epg_core:", "statistic")
    with pytest.raises(E.UsageError, match="'epg_core:ScoreOptions' is not a subclass of epg_core.Statistic"):
        E.plugin_class("epg_core:ScoreOptions", E.Statistic, "statistic", "epg_core.Statistic")
    assert E.builtin_class("epg_core._statistics", "pearson:Pearson") is E.get_statistic("pearson")
