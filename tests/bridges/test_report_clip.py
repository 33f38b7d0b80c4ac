"""The report's CLIP prompt view (paper Fig. 8): per class, mean +- SD over prompts along the property."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import epg_core as E

pytest.importorskip("matplotlib")

from epg_bridges.report import ReportOptions, build_report  # noqa: E402
from epg_bridges.report._clip_view import clip_curves  # noqa: E402
from epg_bridges.report._page import png_size  # noqa: E402

PROMPT_CLASSES = ["cat", "cat", "cat", "dog", "dog"]


def clip_block(model: str = "clip", sequence: str = "turntable") -> E.OutputsBlock:
    """A turntable of 12 angles: per-prompt cosines that follow the angle, the per-class outputs their means."""
    angles = np.arange(0, 360, 30, dtype=np.float64)
    rng = np.random.default_rng(0)
    phase = np.deg2rad(angles)
    cat = 0.26 + 0.03 * np.cos(phase)[:, None] + rng.normal(0, 0.006, (12, 3)) + np.array([0.0, 0.01, -0.01])
    dog = 0.22 - 0.02 * np.cos(phase)[:, None] + rng.normal(0, 0.006, (12, 2)) + np.array([0.015, -0.015])
    prompts = np.concatenate([cat, dog], axis=1).astype(np.float32)[None]  # [M=1, N, P]
    outputs = np.stack([prompts[0, :, :3].mean(1), prompts[0, :, 3:].mean(1)], axis=1)[None]
    return E.OutputsBlock(
        model=model, sequence=sequence, outputs=outputs.astype(np.float32), done=np.array([True]),
        checkpoints=["clip"], classes=["cat", "dog"], values=angles, output_kind="cosine",
        preprocessing={}, attrs={"property": "angle", "image": "obj_1"}, prompt_outputs=prompts,
        prompts=["a photo of a cat", "a cat", "a blurry cat", "a photo of a dog", "a dog"],
        prompt_classes=PROMPT_CLASSES, logit_scale=100.0)


def test_clip_curves_are_mean_and_sd_over_each_class_prompts() -> None:
    block = clip_block()
    assert block.prompt_outputs is not None
    curves = clip_curves(block, 0)
    assert list(curves) == ["cat", "dog"] and [k for _, _, k in curves.values()] == [3, 2]
    cos = block.prompt_outputs[0].astype(np.float64)
    np.testing.assert_allclose(curves["cat"][0], cos[:, :3].mean(1), atol=1e-12)
    np.testing.assert_allclose(curves["dog"][1], cos[:, 3:].std(1), atol=1e-12)
    np.testing.assert_allclose(curves["cat"][0], block.outputs[0, :, 0], atol=1e-6)  # the stored output


def test_report_draws_the_clip_view_and_the_page_shows_it(tmp_path: Path) -> None:
    outputs = E.write_outputs(tmp_path / "outputs.h5", [clip_block()])
    result = build_report(outputs, tmp_path / "report", ReportOptions(score=E.ScoreOptions(n_permutations=200)))
    [figure] = result["clip"]
    assert figure.exists() and figure.name.startswith("clip_") and png_size(figure)[0] > 300
    page = Path(result["index"]).read_text()
    assert "CLIP prompts" in page and f"src='{figure.name}'" in page

    plain = E.OutputsBlock(model="cnn", sequence="turntable", outputs=np.full((1, 12, 2), 0.5, np.float32),
                           done=np.array([True]), checkpoints=["c"], classes=["cat", "dog"],
                           values=np.arange(12.0), output_kind="probabilities", preprocessing={}, attrs={})
    E.write_outputs(tmp_path / "plain.h5", [plain])
    again = build_report(tmp_path / "plain.h5", tmp_path / "report", E.ScoreOptions(n_permutations=200))
    assert again["clip"] == [] and not figure.exists()  # no prompt outputs: no view, the stale figure removed
    assert "CLIP prompts" not in Path(again["index"]).read_text()
