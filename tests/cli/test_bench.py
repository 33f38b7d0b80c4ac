"""Smoke test of the benchmark harness (``epg_bench.permutation``) on a tiny case: machinery, not timings."""

from __future__ import annotations

import itertools
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from epg_bench import permutation as bp


def test_the_harness_is_an_installed_package(tmp_path: Path) -> None:
    """``epg bench`` needs no source checkout on sys.path: the package imports from anywhere."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    code = "import epg_bench.permutation as p, epg_cli._bench; print(p.CASES['one'].spec())"
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "one:1:101:10000"


def test_exact_pvalues_match_brute_force() -> None:
    y = np.random.default_rng(3).standard_normal((5, 5))
    perms = np.array(list(itertools.permutations(range(5))))
    null = bp.epg_numpy(y[:, perms], axis=-1)  # [5, 120]
    obs = bp.epg_numpy(y, axis=-1)
    tol = 1e-9 * np.abs(obs)[:, None]
    less = np.mean(null <= obs[:, None] + tol, axis=1)
    greater = np.mean(null >= obs[:, None] - tol, axis=1)
    np.testing.assert_allclose(bp.exact_pvalues(y), np.minimum(1, 2 * np.minimum(less, greater)))


def test_agreement_z_units() -> None:
    # identical p-values: z = 0; a difference of one standard error: z = 1
    assert bp.agreement_z([0.3, 0.5], 1000, [0.3, 0.5], 1000) == 0.0
    p, k = 0.5, 10_000
    se = math.sqrt(p * (2 - p) * 2 / k)
    assert bp.agreement_z([p + se / 2], k, [p - se / 2], k) == pytest.approx(1.0, rel=1e-2)
    assert 3.0 < bp.max_z_bound(1616) < 5.0 and bp.max_z_bound(1) == pytest.approx(2.576, abs=1e-3)


def test_case_parse() -> None:
    assert bp.Case.parse("sweep") == bp.CASES["sweep"]
    assert bp.Case.parse("tiny:4:11:200") == bp.Case("tiny", 4, 11, 200)
    with pytest.raises(ValueError, match="unknown case"):
        bp.Case.parse("nope")


@pytest.mark.slow
def test_harness_tiny_case(tmp_path: Path) -> None:
    case = bp.Case("tiny", 4, 11, 200)
    out = tmp_path / "bench.json"
    stream = (tmp_path / "table.md").open("w")
    res = bp.run_benchmark([case], quick=True, json_path=out, quiet=True,
                           errcorr=bp.ErrCorrSpec(20, 6, 200), stream=stream)
    stream.close()
    printed = (tmp_path / "table.md").read_text()

    impls = res["cases"]["tiny"]["impls"]
    assert set(impls) == set(bp.IMPLS)
    for name, r in impls.items():
        assert "error" not in r, (name, r.get("error"))
        assert r["time_s"] > 0 and r["peak_rss_mb"] > 10
        assert len(r["pvalues"]) >= 1 and all(0 < p <= 1 for p in r["pvalues"])
    assert impls["epg32"]["dtype"] == "float32" and impls["epg64"]["dtype"] == "float64"
    assert impls["epg32"]["compile_s"] >= 0 and impls["epg32"]["incl_generation_s"] > 0

    derived = res["cases"]["tiny"]["derived"]
    assert derived["reference"] == "scipy_batch"
    for name in ("authors", "scipy_curve", "epg32", "epg64", "scipy_batch"):
        z = derived["impls"][name]["agreement"]["max_z"]
        assert math.isfinite(z) and z < 5, (name, z)
    bound = derived["lower_bound"]
    assert bound["terms"] == 4 * 200 * 11 and bound["time_s"] > 0 and bound["rate_terms_per_s"] > 1e6
    assert derived["impls"]["epg32"]["times_lower_bound"] > 0

    ec = res["error_correlation"]
    assert "error" not in ec, ec.get("error")
    assert ec["methods"]["shared"]["rho"] > 0.9  # near-duplicates + shared shuffles: the same errors
    assert all(math.isfinite(m["rms_error"]) for m in ec["methods"].values())

    assert "QUICK" in printed and res["table"] in printed
    for label in list(bp.IMPL_LABELS.values()) + ["adjacent-error correlation"]:
        assert label in res["table"], label
    assert printed.count("\n|") >= 2 + 6 + 4  # header rule, 5 implementations + bound, 4 errcorr rows

    data = json.loads(out.read_text())
    assert {"meta", "cases", "error_correlation"} <= set(data)
    assert data["meta"]["quick"] is True
    tiny = data["cases"]["tiny"]
    assert {"case", "impls", "derived"} <= set(tiny)
    assert tiny["derived"]["impls"]["epg32"]["agreement"]["max_z"] == pytest.approx(
        derived["impls"]["epg32"]["agreement"]["max_z"])
    assert "pvalues" not in tiny["impls"]["epg32"]
