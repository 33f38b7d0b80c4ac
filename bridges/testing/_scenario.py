"""The demo's known-bias scenario: disks and squares whose background brightness follows the label, and a
small seeded ConvMixer trainer. Used by ``epg demo`` and by the tests."""

from __future__ import annotations

import colorsys
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from ..models import Preprocessing, conv_mixer

__all__ = ["SCENARIO_CLASSES", "SCENARIO_ARCH", "make_dataset", "train_classifier"]

SCENARIO_CLASSES = ["disk", "square"]
SCENARIO_ARCH = {"dim": 24, "depth": 2, "kernel_size": 5, "patch_size": 4, "n_classes": 2}



def _render(shape: int, bg: float, hue: float, radius: float, centre: tuple[float, float], size: int,
            rng: np.random.Generator) -> np.ndarray:
    """One image: a coloured disk (0) or square (1) on a grey background of brightness ``bg``."""
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    cy, cx = centre
    if shape == 0:
        mask = (yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2
    else:
        mask = (np.abs(yy - cy) <= radius * 0.85) & (np.abs(xx - cx) <= radius * 0.85)
    colour = np.array(colorsys.hsv_to_rgb(hue, 0.85, 0.9))
    img = np.full((size, size, 3), bg, dtype=np.float64)
    img[mask] = colour
    img += rng.normal(0.0, 0.03, img.shape)
    return (np.clip(img, 0, 1) * 255).round().astype(np.uint8)


def make_dataset(n: int, *, biased: bool, seed: int, size: int = 32,
                 label: int | None = None, bright: bool | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``n`` images and labels. Biased: squares on bright, disks on dark backgrounds (98%); else random."""
    rng = np.random.default_rng(seed)
    images = np.empty((n, size, size, 3), np.uint8)
    labels = np.empty(n, np.int64)
    for i in range(n):
        y = int(rng.integers(0, 2)) if label is None else label
        if bright is not None:
            is_bright = bright
        elif biased:
            is_bright = (y == 1) if rng.uniform() < 0.98 else (y == 0)
        else:
            is_bright = bool(rng.integers(0, 2))
        bg = rng.uniform(0.65, 0.85) if is_bright else rng.uniform(0.1, 0.3)
        if not biased and bright is None:
            bg = rng.uniform(0.1, 0.85)
        centre = (size / 2 + rng.uniform(-3, 3), size / 2 + rng.uniform(-3, 3))
        images[i] = _render(y, bg, rng.uniform(), rng.uniform(size * 0.2, size * 0.3), centre, size, rng)
        labels[i] = y
    return images, labels


def train_classifier(
    images: np.ndarray, labels: np.ndarray, preprocessing: Preprocessing, *, epochs: int, seed: int,
    threads: int = 1, on_epoch: Callable[[int, nn.Module], None] | None = None,
) -> nn.Module:
    """Train a small ConvMixer with Adam (seeded, deterministic on CPU); ``on_epoch`` sees each epoch."""
    torch.manual_seed(seed)
    if threads > 0:
        torch.set_num_threads(threads)
    model = conv_mixer(**SCENARIO_ARCH)
    x = torch.from_numpy(preprocessing.apply(images))
    y = torch.from_numpy(labels)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(seed)
    for epoch in range(1, epochs + 1):
        model.train()
        for idx in torch.randperm(len(x), generator=gen).split(64):
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            loss.backward()
            opt.step()
        model.eval()
        if on_epoch is not None:
            on_epoch(epoch, model)
    return model
