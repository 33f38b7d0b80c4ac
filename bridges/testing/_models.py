"""Tiny torch models, checkpoints, training runs and interventions files that the tests and benchmarks build.

Every builder is seeded, so two calls give identical tensors and files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from epg_core import InterventionSequence, write_interventions

from ..models import conv_mixer

__all__ = [
    "TINY_CONVMIXER",
    "TINY_HF_CONFIGS",
    "tiny_model",
    "save_tiny",
    "ExportDisagrees",
    "make_disagreeing",
    "TwoLayer",
    "make_two_layer",
    "train_run",
    "small_interventions",
    "perturbed_checkpoints",
    "noise_interventions",
]

TINY_CONVMIXER = {"dim": 8, "depth": 1, "kernel_size": 3, "patch_size": 4, "n_classes": 3}

#: Tiny random transformers image classifiers (32x32 inputs, no downloads): family -> (config class name, kwargs).
TINY_HF_CONFIGS: dict[str, tuple[str, dict[str, Any]]] = {
    "resnet": ("ResNetConfig", {"embedding_size": 8, "hidden_sizes": [8, 16], "depths": [1, 1],
                                "layer_type": "basic"}),
    "vit": ("ViTConfig", {"image_size": 32, "patch_size": 8, "hidden_size": 16, "num_hidden_layers": 1,
                          "num_attention_heads": 2, "intermediate_size": 32}),
    "convnext": ("ConvNextConfig", {"num_stages": 2, "hidden_sizes": [8, 16], "depths": [1, 1]}),
    "swin": ("SwinConfig", {"image_size": 32, "patch_size": 4, "embed_dim": 8, "depths": [1, 1],
                            "num_heads": [1, 2], "window_size": 4}),
    "efficientnet": ("EfficientNetConfig", {"image_size": 32, "width_coefficient": 0.1, "depth_coefficient": 0.1,
                                            "hidden_dim": 128}),
    "mobilenetv2": ("MobileNetV2Config", {"image_size": 32, "depth_multiplier": 0.25}),
}


def tiny_model(seed: int = 0) -> nn.Module:
    """A small ConvMixer with non-trivial BatchNorm statistics (so eval mode differs from train mode)."""
    torch.manual_seed(seed)
    model = conv_mixer(**TINY_CONVMIXER)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            assert module.running_mean is not None and module.running_var is not None  # track_running_stats
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    return model.eval()


def save_tiny(path: Path, seed: int = 0, *, plain: bool = False) -> Path:
    """Save :func:`tiny_model` as ``{"paras", "state_dict"}`` (or a plain state_dict with ``plain``)."""
    model = tiny_model(seed)
    torch.save(model.state_dict() if plain else {"paras": dict(TINY_CONVMIXER), "state_dict": model.state_dict()}, path)
    return path


class ExportDisagrees(nn.Module):
    """Adds 1 to its outputs only while being exported: ORT then disagrees with torch eager."""

    def __init__(self) -> None:
        super().__init__()
        self.head = conv_mixer(**TINY_CONVMIXER)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.head(x)
        if torch.onnx.is_in_onnx_export():
            y = y + 1.0
        return y


def make_disagreeing(**kwargs: object) -> nn.Module:
    """``--arch epg_bridges.testing:make_disagreeing``: a factory whose export disagrees with torch."""
    return ExportDisagrees()


class TwoLayer(nn.Module):
    """A two-layer perceptron on 2x2-pooled images, for ``module:function`` architecture tests."""

    def __init__(self, hidden: int = 5) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.fc = nn.Linear(12, hidden)
        self.out = nn.Linear(hidden, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.relu(self.fc(self.pool(x).flatten(1))))


def make_two_layer(hidden: int = 5) -> nn.Module:
    """A ``module:function`` factory used through ``--arch epg_bridges.testing:make_two_layer``."""
    return TwoLayer(hidden)


def train_run(folder: Path, steps: int = 20, seed: int = 0) -> list[Path]:
    """A small ConvMixer trained for ``steps`` SGD steps, saved after each (BatchNorm stats move too)."""
    torch.manual_seed(seed)
    model = conv_mixer(**TINY_CONVMIXER)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    x = torch.randn(16, 3, 32, 32)
    y = torch.randint(0, 3, (16,))
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for step in range(1, steps + 1):
        model.train()
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        path = folder / f"epoch_{step}.pt"
        torch.save({"paras": dict(TINY_CONVMIXER), "state_dict": model.state_dict()}, path)
        paths.append(path)
    return paths


def small_interventions(path: Path) -> Path:
    """Two random sequences of different image sizes (5 and 4 steps) in one interventions file."""
    rng = np.random.default_rng(1)
    seqs = {
        "bright": InterventionSequence(rng.integers(0, 256, (5, 32, 32, 3), dtype=np.uint8), np.linspace(0, 1, 5),
                                       {"source": "synthetic", "property": "brightness", "unit": "",
                                        "includes_original": True}),
        "rotate": InterventionSequence(rng.integers(0, 256, (4, 40, 36, 3), dtype=np.uint8),
                                       np.array([0.0, 10.0, 20.0, 45.0]),
                                       {"source": "synthetic", "property": "angle", "unit": "deg",
                                        "includes_original": True}),
    }
    return write_interventions(path, seqs)


def perturbed_checkpoints(folder: Path, paras: dict[str, Any], base: dict[str, torch.Tensor], count: int,
                          scale: float) -> list[Path]:
    """``count`` checkpoints ``epoch_<i>.pth`` of ``base`` plus seeded noise of ``scale`` (a fake training run).

    Running variances are kept as they are (they must stay positive).
    """
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        gen = torch.Generator().manual_seed(i)
        state = {k: (v + scale * torch.randn(v.shape, generator=gen)) if v.is_floating_point() and "running_var"
                 not in k else v.clone() for k, v in base.items()}
        path = folder / f"epoch_{i + 1}.pth"
        torch.save({"paras": paras, "state_dict": state}, path)
        paths.append(path)
    return paths


def noise_interventions(path: Path, steps: int, size: int = 128) -> Path:
    """One sequence ``bench`` of ``steps`` random ``size`` x ``size`` images (seed 0) in an interventions file."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (steps, size, size, 3), dtype=np.uint8)
    seq = InterventionSequence(images, np.linspace(0, 1, steps), {"source": "synthetic", "property": "noise",
                                                                  "unit": "", "includes_original": True})
    return write_interventions(path, {"bench": seq})
