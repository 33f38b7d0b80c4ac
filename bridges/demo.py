"""The embedded demo: a known-bias scenario like the paper's Sec. 4.1, through every real stage.

A small generated data set of disks and squares in which background brightness is correlated with the label
(biased) or not (unbiased). Two ConvMixers are trained on it in seconds (seeded) and saved per epoch; held-out
squares on bright backgrounds are then edited gradually: the background is darkened (the biased property) and
the hue is rotated (an irrelevant property). Interventions go to HDF5, both training runs are swept through
ONNX Runtime by weight swapping, scored by epg_core with the shuffle test, and drawn by the report.
Expected (paper Table 2): the biased model's EPG for the background is >= 10x its EPG for hue, significant,
with a prediction flip; the unbiased model does not flip.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

import epg_core as E

from .interventions import load_image, synthetic_sequence, write_contact_sheet
from .models import Preprocessing, predict, sweep
from .report import build_report
from .testing import SCENARIO_ARCH as ARCH
from .testing import SCENARIO_CLASSES as CLASSES
from .testing import make_dataset, train_classifier

__all__ = ["DemoConfig", "DemoResult", "run_demo", "run_reference", "table2_check"]


@dataclass(frozen=True)
class DemoConfig:
    """Sizes of the demo (``quick`` shrinks everything for tests)."""

    size: int = 32
    n_train: int = 1600
    epochs: int = 5
    n_images: int = 3
    n_steps: int = 41
    n_permutations: int = 10_000
    seed: int = 0
    threads: int = 1

    @classmethod
    def quick(cls) -> DemoConfig:
        return cls(n_train=1200, epochs=4, n_images=2, n_steps=31, n_permutations=2_000)


@dataclass
class DemoResult:
    """Paths the demo wrote, its scores, and the Table-2 check."""

    out_dir: Path
    interventions: Path
    outputs: Path
    scores_csv: Path
    report: Path
    rows: list[dict[str, Any]]
    check: dict[str, Any]


# ----------------------------------------------------------------------------------------------- pipeline


def _interventions(cfg: DemoConfig, out: Path) -> Path:
    """Held-out squares on bright backgrounds, darkened (biased property) and hue-rotated (irrelevant)."""

    images, _ = make_dataset(cfg.n_images, biased=False, seed=cfg.seed + 999, size=cfg.size, label=1, bright=True)
    seqs = {}
    for i, img in enumerate(images):
        seqs[f"background_{i}"] = synthetic_sequence(img, "darken-background", np.linspace(0, 1, cfg.n_steps))
        seqs[f"hue_{i}"] = synthetic_sequence(img, "hue", np.linspace(0, 180, cfg.n_steps))
    path = E.write_interventions(out / "interventions.h5", seqs, attrs={"demo": "known-bias scenario"})
    for name in ("background_0", "hue_0"):
        write_contact_sheet(seqs[name], out / f"interventions_{name}.png", n=8, thumb=64)
    return path


def _train_runs(cfg: DemoConfig, out: Path, prep: Preprocessing, say: Callable[[str], None]) -> dict[str, list[Path]]:
    """Train the biased and the unbiased model, saving a checkpoint after every epoch."""
    runs: dict[str, list[Path]] = {}
    for name, biased in (("biased", True), ("unbiased", False)):
        images, labels = make_dataset(cfg.n_train, biased=biased, seed=cfg.seed + (1 if biased else 2), size=cfg.size)
        folder = out / "checkpoints" / name
        folder.mkdir(parents=True, exist_ok=True)
        paths: list[Path] = []

        def save(epoch: int, model: nn.Module, folder: Path = folder, paths: list[Path] = paths) -> None:
            path = folder / f"epoch_{epoch}.pth"
            torch.save({"paras": dict(ARCH), "state_dict": model.state_dict()}, path)
            paths.append(path)

        say(f"training the {name} model ({cfg.n_train} images, {cfg.epochs} epochs)")
        train_classifier(images, labels, prep, epochs=cfg.epochs, seed=cfg.seed, threads=cfg.threads, on_epoch=save)
        runs[name] = paths
    return runs


def table2_check(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The paper's Table-2 pattern on the final checkpoints: biased EPG(background) >= 10x EPG(hue),
    significant, with a flip; the unbiased model does not flip under either intervention."""
    def final(model: str) -> list[dict[str, Any]]:
        last = [r["checkpoint"] for r in rows if r["model"] == model][-1]
        return [r for r in rows if r["model"] == model and r["checkpoint"] == last]

    def mean(rs: list[dict[str, Any]], prop: str, key: str) -> float:
        return float(np.mean([r[key] for r in rs if r["sequence"].startswith(prop)]))

    b, u = final("biased"), final("unbiased")
    bg = [r for r in b if r["sequence"].startswith("background")]
    ratio = mean(b, "background", "epg") / max(mean(b, "hue", "epg"), 1e-12)
    check = {
        "biased_epg_background": mean(b, "background", "epg"),
        "biased_epg_hue": mean(b, "hue", "epg"),
        "ratio": ratio,
        "biased_background_significant": all(r["significant"] for r in bg),
        "biased_background_flips": all(r["flips"] > 0 for r in bg),
        "unbiased_flips": int(sum(r["flips"] for r in u)),
        "unbiased_epg_background": mean(u, "background", "epg"),
    }
    check["reproduces_table2"] = bool(ratio >= 10 and check["biased_background_significant"]
                                      and check["biased_background_flips"] and check["unbiased_flips"] == 0)
    return check


def run_demo(out_dir: str | os.PathLike[str], cfg: DemoConfig = DemoConfig(), *, quiet: bool = False,
             say: Callable[[str], None] | None = None) -> DemoResult:
    """Build the scenario and run every stage; returns paths, scores and the Table-2 check."""

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    say = say or (lambda _m: None)
    prep = Preprocessing(size=(cfg.size, cfg.size))
    say("making interventions (darken background, rotate hue)")
    interventions = _interventions(cfg, out)
    runs = _train_runs(cfg, out, prep, say)
    outputs = out / "outputs.h5"
    for name, paths in runs.items():
        say(f"sweeping {len(paths)} checkpoints of the {name} model through ONNX Runtime")
        sweep(paths, [interventions], outputs, model_name=name, preprocessing=prep, classes=CLASSES,
              threads=cfg.threads, quiet=quiet)
    say(f"scoring with {cfg.n_permutations} shuffles")
    opts = E.ScoreOptions(n_permutations=cfg.n_permutations, seed=cfg.seed)
    rows = E.score_outputs(outputs, opts)
    scores_csv = E.write_scores_csv(out / "scores.csv", rows)
    E.write_scores(outputs, rows)
    say("drawing the report")
    rep = build_report(outputs, out / "report", options=opts, interventions_path=interventions, rows=rows,
                       max_null_plots=4)
    return DemoResult(out, interventions, outputs, scores_csv, rep["index"], rows, table2_check(rows))


def run_reference(out_dir: str | os.PathLike[str], reference: str | os.PathLike[str], cfg: DemoConfig = DemoConfig(),
                  *, quiet: bool = False, say: Callable[[str], None] | None = None) -> DemoResult:
    """The same pipeline with the paper's three ConvMixer checkpoints and photos (``reference`` = propgrad dir).

    Interventions: background darkening and brightening (the paper's Appx. B.3 edit) and hue rotation, on
    every photo at 128x128; each checkpoint is one model. The Table-2 check does not apply (no ``hue``-vs-
    ``background`` ground truth for photos), so ``check`` holds the mean EPG per model and property.
    """

    ref = Path(reference)
    ckpts = sorted((ref / "checkpoints" / "cats-vs-dogs").glob("*.pth"))
    photos = sorted((ref / "example_images" / "cvd").glob("*.jpg"))
    if not ckpts or not photos:
        raise ValueError(f"{ref}: expected checkpoints/cats-vs-dogs/*.pth and example_images/cvd/*.jpg")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    say = say or (lambda _m: None)
    say(f"making interventions on {len(photos)} photos")
    seqs = {}
    for photo in photos:
        img = load_image(photo, size=(128, 128))
        seqs[f"darken_{photo.stem}"] = synthetic_sequence(img, "darken-background", np.linspace(0, 1, cfg.n_steps))
        seqs[f"brighten_{photo.stem}"] = synthetic_sequence(img, "brighten-background", np.linspace(0, 1, cfg.n_steps))
        seqs[f"hue_{photo.stem}"] = synthetic_sequence(img, "hue", np.linspace(0, 180, cfg.n_steps))
    interventions = E.write_interventions(out / "interventions.h5", seqs, attrs={"demo": "paper reference"})
    write_contact_sheet(next(iter(seqs.values())), out / "interventions_example.png", n=8, thumb=64)
    outputs = out / "outputs.h5"
    for ckpt in ckpts:
        name = ckpt.stem.replace("convmixer_", "")
        say(f"running {name} through ONNX Runtime")
        predict(ckpt, [interventions], outputs, model_name=name, classes=["cat", "dog"], threads=cfg.threads)
    opts = E.ScoreOptions(n_permutations=cfg.n_permutations, seed=cfg.seed)
    say(f"scoring with {cfg.n_permutations} shuffles")
    rows = E.score_outputs(outputs, opts)
    scores_csv = E.write_scores_csv(out / "scores.csv", rows)
    E.write_scores(outputs, rows)
    rep = build_report(outputs, out / "report", options=opts, interventions_path=interventions, rows=rows,
                       max_null_plots=6)
    check = {f"{m} / {p}": float(np.mean([r["epg"] for r in rows if r["model"] == m and r["sequence"].startswith(p)]))
             for m in dict.fromkeys(r["model"] for r in rows) for p in ("darken", "brighten", "hue")}
    return DemoResult(out, interventions, outputs, scores_csv, rep["index"], rows, check)
