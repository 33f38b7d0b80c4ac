"""Benchmark of own-model families (issue 13): export, weight swap per checkpoint, ORT vs torch throughput.

For each transformers family's tiny random model (32x32, as in the tests), a DenseNet-style model and a
ResNet18-size model built from a ``ResNetConfig`` at 224x224 (no downloads), measures (one run, this machine):

- export: ``export_model`` (which exporter made it: dynamo or the TorchScript fallback);
- swap: per checkpoint, ``WeightSwapper.model_bytes`` plus a new ORT session (re-export when a swap is not
  provable, shown in the ``swap`` column);
- images/s of ONNX Runtime and torch eager at batch 16.

    python -m epg_bench.bench_families [--quick] [--threads N] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from epg_bridges.models import (
    OnnxRunner,
    Preprocessing,
    WeightSwapper,
    export_model,
    exporter_of,
    tensor_output,
    torch_outputs,
)
from epg_bridges.testing import TINY_HF_CONFIGS

RESNET18 = ("ResNetConfig", {"embedding_size": 64, "hidden_sizes": [64, 128, 256, 512], "depths": [2, 2, 2, 2],
                             "layer_type": "basic"})


def hf(config_name: str, kwargs: dict[str, Any], seed: int, n_labels: int = 10) -> nn.Module:
    import transformers

    torch.manual_seed(seed)
    config = getattr(transformers, config_name)(num_labels=n_labels, **kwargs)
    return tensor_output(transformers.AutoModelForImageClassification.from_config(config).eval())


def densenet_like(seed: int) -> nn.Module:
    class Dense(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Conv2d(3, 8, 3, padding=1)
            self.blocks = nn.ModuleList(nn.Sequential(nn.BatchNorm2d(8 + 4 * i), nn.ReLU(),
                                                      nn.Conv2d(8 + 4 * i, 4, 3, padding=1)) for i in range(3))
            self.head = nn.Linear(20, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            feats = [self.stem(x)]
            for block in self.blocks:
                feats.append(block(torch.cat(feats, 1)))
            return self.head(torch.cat(feats, 1).mean(dim=(2, 3)))

    torch.manual_seed(seed)
    return Dense().eval()


def seconds(fn: Callable[[], Any], repeats: int) -> float:
    """Median wall time of ``fn`` over ``repeats`` calls."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def measure(name: str, make: Callable[[int], nn.Module], size: int, n_ckpt: int, repeats: int,
            threads: int) -> dict[str, Any]:
    prep = Preprocessing(size=(size, size))
    model = make(0)
    params = sum(p.numel() for p in model.parameters())
    start = time.perf_counter()
    proto = export_model(model, prep)
    export_s = time.perf_counter() - start
    swapper = WeightSwapper(proto, model, reexport=True, notice=lambda _: None)
    states = [make(seed).state_dict() for seed in range(1, n_ckpt + 1)]
    x = prep.random_batch(16, seed=0)
    swap_times, worst = [], 0.0
    runner = None
    for state in states:
        model.load_state_dict(state)
        start = time.perf_counter()
        runner = OnnxRunner(swapper.model_bytes(model.state_dict()), output_kind="logits", threads=threads,
                            batch_size=16)
        swap_times.append(time.perf_counter() - start)
        worst = max(worst, float(np.abs(runner.raw(x) - torch_outputs(model, x, threads=threads)).max()))
    assert runner is not None
    ort_s = seconds(lambda: runner.raw(x), repeats)
    torch_s = seconds(lambda: torch_outputs(model, x, threads=threads, batch_size=16), repeats)
    return {"model": name, "size": size, "params": params, "exporter": exporter_of(proto),
            "swap": "swap" if swapper.swaps else "re-export", "export_s": export_s,
            "swap_s": float(np.median(swap_times)), "ort_img_s": 16 / ort_s, "torch_img_s": 16 / torch_s,
            "max_diff": worst}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 checkpoints, 3 repeats")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    torch.set_num_threads(args.threads)
    n_ckpt, repeats = (2, 3) if args.quick else (3, 10)
    rows = [measure(family, lambda seed, f=family: hf(*TINY_HF_CONFIGS[f], seed), 32, n_ckpt, repeats, args.threads)
            for family in TINY_HF_CONFIGS]
    rows.append(measure("densenet-style", densenet_like, 32, n_ckpt, repeats, args.threads))
    rows.append(measure("resnet18-size", lambda seed: hf(*RESNET18, seed, 1000), 224, n_ckpt,
                        max(repeats // 2, 2), args.threads))
    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, threads {args.threads}, "
          f"batch 16, {n_ckpt} checkpoints\n")
    print("| model | input | params | exporter | swap | export s | swap s/ckpt | ORT img/s | torch img/s "
          "| ORT/torch | max abs diff |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['size']} | {r['params']:,} | {r['exporter']} | {r['swap']} | "
              f"{r['export_s']:.2f} | {r['swap_s']:.3f} | {r['ort_img_s']:.0f} | {r['torch_img_s']:.0f} | "
              f"{r['ort_img_s'] / r['torch_img_s']:.2f} | {r['max_diff']:.1e} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
