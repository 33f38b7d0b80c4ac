"""Shared test settings: offline hub, the float64 switch as a fixture, paths of the paper's reference assets.

JAX runs in its default float32 mode for the whole suite (what users get); a test that needs float64 asks for
the ``x64`` fixture (or uses ``precision="float64"`` / ``jax.enable_x64(True)`` itself).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("JAX_PLATFORMS", "cpu")

REFERENCE = Path(__file__).resolve().parents[1].parent / "shared" / "reference" / "propgrad"


@pytest.fixture()
def x64() -> Iterator[None]:
    """float64 JAX arrays for the duration of one test (``jax.enable_x64`` scope, not a global switch)."""
    import jax

    with jax.enable_x64(True):
        yield


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    """The paper's checkpoints and photos (../shared/reference/propgrad, present on CI and dev machines)."""
    if not REFERENCE.is_dir():
        pytest.skip(f"reference assets not found at {REFERENCE} (they live in ../shared beside the checkout)")
    return REFERENCE
