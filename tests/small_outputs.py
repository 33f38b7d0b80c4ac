"""A small outputs file (1 model x 3 images x 2 checkpoints x 7 steps x 3 classes) for tests of scoring;
needs only epg_core (the bare-core tests use it too)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

import epg_core as E


def small_outputs(path: Path, n: int = 7) -> Path:
    """Image "a" darkens p(cat) along the steps; "b" and "c" are noise."""
    rng = np.random.default_rng(3)
    t = np.linspace(0, 1, n)
    blocks = []
    for img in ("a", "b", "c"):
        out = np.empty((2, n, 3), np.float32)
        for m in range(2):
            logits = rng.normal(0, 0.3, (n, 3))
            logits[:, 0] += 2 - 3 * t * (img == "a")
            out[m] = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
        blocks.append(E.OutputsBlock(model="m", sequence=f"{img}-dark", outputs=out, done=np.ones(2, bool),
                                     checkpoints=["e1", "e2"], classes=["cat", "dog", "fox"],
                                     values=np.linspace(0, 1, n), attrs={"property": "dark", "image": img}))
    E.write_outputs(path, blocks)
    return path
