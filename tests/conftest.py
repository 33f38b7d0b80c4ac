"""Shared test settings: offline hub, float64 available, paths of the paper's reference assets."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)

REFERENCE = Path(__file__).resolve().parents[1].parent / "shared" / "reference" / "propgrad"


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    """The paper's checkpoints and photos (../shared/reference/propgrad, present on CI and dev machines)."""
    if not REFERENCE.is_dir():
        pytest.skip(f"reference assets not found at {REFERENCE} (they live in ../shared beside the checkout)")
    return REFERENCE
