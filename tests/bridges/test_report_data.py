"""A small study written directly with epg_core's writers (no CLI, no models): 2 properties x 2 images x
2 models x 3 checkpoints, plus one interventions file per property. Shared by the report tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

import epg_core as E

CLASSES = ["cat", "dog"]
CHECKPOINTS = ["ep1", "ep2", "ep3"]
MODELS = ["biased", "unbiased"]
#: Image ids that differ only in punctuation: their plots must not overwrite each other.
IMAGES = ["cat.1", "cat-1"]
PROPERTIES = {"background": (np.linspace(0.0, 1.0, 11), "fraction"), "hue": (np.linspace(0.0, 180.0, 11), "deg")}


def p_cat(model: str, prop: str, image: int, ckpt: int, values: np.ndarray) -> np.ndarray:
    """p(cat) along the intervention: the biased model follows the background more with training (a flip from
    ep2 on); everything else is a confident, rough 'cat'."""
    rng = np.random.default_rng(1000 * MODELS.index(model) + 100 * list(PROPERTIES).index(prop) + 10 * image + ckpt)
    noise = 0.04 * rng.standard_normal(len(values))
    if model == "biased" and prop == "background":
        x = values / values.max()
        strength = (1.0, 6.0, 12.0)[ckpt]
        return np.clip(1.0 / (1.0 + np.exp(-strength * (0.55 - x + 0.05 * image))) + 0.2 * (ckpt == 0), 0.01, 0.99)
    return np.clip(0.85 + noise, 0.01, 0.99)


def _images(prop: str, image: int, values: np.ndarray) -> np.ndarray:
    """24x24 frames: a bright object on a background that darkens (or a hue that turns) with the value."""
    frames = np.zeros((len(values), 24, 24, 3), np.uint8)
    yy, xx = np.mgrid[:24, :24]
    obj = (yy - 12) ** 2 + (xx - 12 - 2 * image) ** 2 < 36
    for i, v in enumerate(values):
        if prop == "background":
            bg = np.array([90, 160, 220]) * (1.0 - v)
            fg = np.array([230, 180, 60])
        else:
            t = v / 180.0
            bg = np.array([90, 160, 220])
            fg = np.array([230 * (1 - t) + 60 * t, 180, 60 * (1 - t) + 230 * t])
        frames[i] = np.where(obj[..., None], fg, bg).astype(np.uint8)
    return frames


def sequence_name(prop: str, image: str) -> str:
    return f"{prop}_{image}"


def make_study(folder: Path) -> tuple[Path, list[Path]]:
    """Write ``outputs.h5`` and one interventions file per property into ``folder``; return their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    blocks = []
    inter_files = []
    for prop, (values, unit) in PROPERTIES.items():
        seqs = {}
        for j, image in enumerate(IMAGES):
            name = sequence_name(prop, image)
            attrs = {"property": prop, "image": image}
            seqs[name] = E.InterventionSequence(_images(prop, j, values), values,
                                                {**attrs, "unit": unit, "source": "test"})
            for model in MODELS:
                out = np.zeros((len(CHECKPOINTS), len(values), 2), np.float32)
                for c in range(len(CHECKPOINTS)):
                    p = p_cat(model, prop, j, c, values)
                    out[c, :, 0], out[c, :, 1] = p, 1.0 - p
                blocks.append(E.OutputsBlock(model, name, out, np.ones(len(CHECKPOINTS), bool), CHECKPOINTS,
                                             CLASSES, values, "probabilities", attrs=attrs))
        inter_files.append(E.write_interventions(folder / f"interventions_{prop}.h5", seqs))
    return E.write_outputs(folder / "outputs.h5", blocks), inter_files


def test_study_files_read_back(tmp_path: Path) -> None:
    outputs, inters = make_study(tmp_path)
    pairs = E.list_outputs(outputs)
    assert len(pairs) == len(MODELS) * len(PROPERTIES) * len(IMAGES)
    (block,) = E.read_outputs(outputs, "biased", sequence_name("background", IMAGES[1]))
    assert block.attrs["property"] == "background" and block.attrs["image"] == IMAGES[1]
    assert block.outputs.shape == (3, 11, 2)
    seqs = E.read_interventions(inters[1], images=False)
    assert {s.attrs["unit"] for s in seqs.values()} == {"deg"}
