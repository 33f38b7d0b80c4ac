"""Every value the README shows is what the commands print now (regenerate: python tests/readme_check.py --write)."""

from __future__ import annotations

from pathlib import Path

import pytest
from readme_check import blocks, printed, run_demo, run_walkthrough

pytestmark = pytest.mark.slow


def test_readme_has_its_checked_blocks() -> None:
    assert {"demo", "walkthrough", "walkthrough-score"} <= set(blocks())


def test_demo_prints_the_readme_verdict(tmp_path: Path) -> None:
    output = run_demo(tmp_path)
    assert printed(blocks()["demo"], output), f"README's demo block is not what `epg demo` prints:\n{output}"


def test_walkthrough_prints_the_readme_scores(tmp_path: Path, reference_dir: Path) -> None:
    output = run_walkthrough(tmp_path, reference_dir)
    assert printed(blocks()["walkthrough-score"], output), f"README's score block differs:\n{output}"
    assert (tmp_path / "report" / "index.html").is_file()
