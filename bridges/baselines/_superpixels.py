"""SLIC superpixels of an image, the features of LIME and Kernel SHAP (the paper: 100 segments, compactness 1)."""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["slic_mask"]


def slic_mask(image: np.ndarray, n_segments: int, compactness: float) -> torch.Tensor:
    """Superpixel labels 0..K-1 of ``image`` (``[H, W, 3]`` in [0, 1]) as a feature mask ``[1, 3, H, W]``."""
    from skimage.segmentation import slic

    labels = slic(np.clip(image, 0.0, 1.0).astype(np.float64), n_segments=n_segments, compactness=compactness,
                  start_label=0, channel_axis=-1)
    _, dense = np.unique(labels, return_inverse=True)  # consecutive ids (Captum counts features by max id)
    mask = torch.from_numpy(dense.reshape(labels.shape).astype(np.int64))
    return mask[None, None].expand(1, image.shape[-1], *labels.shape).contiguous()
