"""SLIC superpixels of an image, the features of LIME and Kernel SHAP (the paper: 100 segments, compactness 1)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import numpy as np
import torch

from ._method import Context, baseline_tensor

__all__ = ["slic_mask", "superpixel_attributions"]


class SuperpixelOptions(Protocol):
    """What LIME and Kernel SHAP share: the SLIC superpixels, the number of samples and the removed value."""

    @property
    def segments(self) -> int: ...
    @property
    def compactness(self) -> float: ...
    @property
    def samples(self) -> int: ...
    @property
    def baseline(self) -> str: ...


def slic_mask(image: np.ndarray, n_segments: int, compactness: float) -> torch.Tensor:
    """Superpixel labels 0..K-1 of ``image`` (``[H, W, 3]`` in [0, 1]) as a feature mask ``[1, 3, H, W]``."""
    from skimage.segmentation import slic

    labels = slic(np.clip(image, 0.0, 1.0).astype(np.float64), n_segments=n_segments, compactness=compactness,
                  start_label=0, channel_axis=-1)
    _, dense = np.unique(labels, return_inverse=True)  # consecutive ids (Captum counts features by max id)
    mask = torch.from_numpy(dense.reshape(labels.shape).astype(np.int64))
    return mask[None, None].expand(1, image.shape[-1], *labels.shape).contiguous()


def superpixel_attributions(x: torch.Tensor, target: int, ctx: Context, options: SuperpixelOptions,
                            explainer: Callable[[], Any]) -> torch.Tensor:
    """A perturbation explainer (Captum LIME or Kernel SHAP, made by ``explainer()``) on each image's SLIC
    superpixels, one image at a time, batched over samples, seeded per image (same seed, same map)."""
    images = ctx.to_image(x)
    parts = []
    for i in range(len(x)):
        mask = slic_mask(images[i], options.segments, options.compactness)
        method = explainer()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(ctx.seed)
            parts.append(method.attribute(x[i:i + 1], target=target, feature_mask=mask,
                                          baselines=baseline_tensor(options.baseline, x[i:i + 1], ctx),
                                          n_samples=options.samples, perturbations_per_eval=ctx.batch_size))
    return torch.cat(parts)
