"""The embedded demo: a known-bias scenario like the paper's Sec. 4.1, run as a built-in study.

A small generated data set of disks and squares in which background brightness is correlated with the label
(biased) or not (unbiased). Two ConvMixers are trained on it in seconds (seeded) and saved per epoch; held-out
squares on bright backgrounds are written as images. The built-in study file (``epg_bridges/study/demo.toml``)
is then filled in and run like any study (``epg run``): the background is darkened (the biased property) and
the hue is rotated (an irrelevant property), every epoch of both runs is swept through ONNX Runtime by weight
swapping, the mean behaviour over the images of each property is scored with the shuffle test, and the report
is drawn. Expected (paper Table 2): the biased model's EPG for the background is >= 10x its EPG for hue,
significant, with prediction flips; the unbiased model does not flip.

``run_reference`` runs the paper's three ConvMixer checkpoints on its four photos with two properties (the
built-in ``reference.toml``).
"""

from __future__ import annotations

import json
import os
import string
from collections.abc import Callable
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

import epg_core as E

from .models import Preprocessing
from .study import run_study, verdict_rows
from .testing import SCENARIO_ARCH as ARCH
from .testing import make_dataset, train_classifier

__all__ = ["DemoConfig", "DemoResult", "default_out", "run_demo", "run_reference", "table2_check", "study_template"]


@dataclass(frozen=True)
class DemoConfig:
    """Sizes of the demo (``quick`` shrinks everything but the number of images, for tests)."""

    size: int = 32
    n_train: int = 1600
    epochs: int = 5
    n_images: int = 4
    n_steps: int = 41
    n_permutations: int = 10_000
    seed: int = 0
    threads: int = 1
    precision: str = "float32"
    #: Local baselines of the flip task (``epg attribute`` methods); empty: no flip task.
    flip_methods: tuple[str, ...] = ("saliency", "integrated-gradients", "deeplift", "guided-gradcam", "occlusion",
                                     "lime", "kernel-shap")

    @classmethod
    def quick(cls) -> DemoConfig:
        return cls(n_train=1200, epochs=4, n_steps=25, n_permutations=2_000,
                   flip_methods=("saliency", "integrated-gradients", "deeplift", "guided-gradcam", "occlusion"))


@dataclass
class DemoResult:
    """Paths the demo wrote, its scores, its verdict rows and the Table-2 check."""

    out_dir: Path
    study: Path
    interventions: Path
    outputs: Path
    scores_csv: Path
    report: Path | None
    rows: list[dict[str, Any]]
    verdict: list[dict[str, Any]]
    check: dict[str, Any]
    computed: dict[str, list[str]]
    flip_task: Any = None  # epg_bridges.baselines.FlipTaskTable of the demo's models (None: not run)


def default_out(reference: bool) -> Path:
    """Where ``epg demo`` writes by default: the built-in study and the reference study each have their own
    folder (one study per folder: a folder's files hold one study's results)."""
    return Path("epg-out/reference" if reference else "epg-out/demo")


def study_template(name: str) -> str:
    """The text of a built-in study file (``demo`` or ``reference``) with its ``$`` fields unfilled."""
    return resources.files("epg_bridges.study").joinpath(f"{name}.toml").read_text(encoding="utf-8")


def _write_study(path: Path, name: str, fields: dict[str, Any]) -> Path:
    """Fill in a built-in study file and write it (atomically) where the demo runs it."""
    text = string.Template(study_template(name)).substitute({k: str(v) for k, v in fields.items()})
    E.write_bytes_atomic(path, text.encode())
    return path


# ----------------------------------------------------------------------------------------------- scenario


def _images(cfg: DemoConfig, out: Path) -> None:
    """Held-out squares on bright backgrounds as PNG files (the study's images)."""
    from PIL import Image

    images, _ = make_dataset(cfg.n_images, biased=False, seed=cfg.seed + 999, size=cfg.size, label=1, bright=True)
    folder = out / "images"
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("square_*.png"):
        if int(old.stem.split("_")[-1]) >= cfg.n_images:
            old.unlink()
    for i, img in enumerate(images):
        path = folder / f"square_{i}.png"
        if not path.exists() or not np.array_equal(np.asarray(Image.open(path).convert("RGB")), img):
            Image.fromarray(img).save(path)  # rewritten only when different: the study then keeps its results


def _train_runs(cfg: DemoConfig, out: Path, say: Callable[[str], None]) -> None:
    """Train the biased and the unbiased model, a checkpoint per epoch (skipped when already trained alike)."""
    prep = Preprocessing(size=(cfg.size, cfg.size))
    recipe = {k: v for k, v in asdict(cfg).items() if k in ("size", "n_train", "epochs", "seed")}
    for name, biased in (("biased", True), ("unbiased", False)):
        folder = out / "checkpoints" / name
        marker = folder / "trained.json"
        if marker.exists() and json.loads(marker.read_text()) == recipe and all(
                (folder / f"epoch_{e}.pth").exists() for e in range(1, cfg.epochs + 1)):
            continue
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob("epoch_*.pth"):
            old.unlink()  # the demo's own files: a retrain replaces every epoch
        images, labels = make_dataset(cfg.n_train, biased=biased, seed=cfg.seed + (1 if biased else 2), size=cfg.size)

        def save(epoch: int, model: nn.Module, folder: Path = folder) -> None:
            torch.save({"paras": dict(ARCH), "state_dict": model.state_dict()}, folder / f"epoch_{epoch}.pth")

        say(f"training the {name} model ({cfg.n_train} images, {cfg.epochs} epochs)")
        train_classifier(images, labels, prep, epochs=cfg.epochs, seed=cfg.seed, threads=cfg.threads, on_epoch=save)
        E.write_bytes_atomic(marker, json.dumps(recipe).encode())


def table2_check(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The paper's Table-2 pattern on the mean behaviour at the last checkpoint: the biased model's EPG for the
    background >= 10x its EPG for hue, significant, with prediction flips on the images; no flips for the
    unbiased model under either property."""
    verdict = {(r["model"], r["property"]): r for r in verdict_rows(rows)}
    last = {m: r["checkpoint_index"] for (m, _), r in verdict.items()}
    flips = {(r["model"], r["property"]): int(r["flips"]) for r in rows
             if r["aggregate"] == "mean_epg" and r["checkpoint_index"] == last.get(r["model"])}
    bg, hue = verdict[("biased", "background")], verdict[("biased", "hue")]
    ratio = float(bg["epg"]) / max(float(hue["epg"]), 1e-12)
    check = {
        "biased_epg_background": float(bg["epg"]),
        "biased_epg_hue": float(hue["epg"]),
        "ratio": ratio,
        "biased_background_significant": bool(bg["significant"]),
        "biased_background_flips": flips[("biased", "background")],
        "unbiased_flips": flips[("unbiased", "background")] + flips[("unbiased", "hue")],
        "unbiased_epg_background": float(verdict[("unbiased", "background")]["epg"]),
    }
    check["reproduces_table2"] = bool(ratio >= 10 and check["biased_background_significant"]
                                      and check["biased_background_flips"] > 0 and check["unbiased_flips"] == 0)
    return check


def _result(out: Path, study: Path, res: Any, check: dict[str, Any]) -> DemoResult:
    return DemoResult(out, study.resolve(), res.interventions, res.outputs, res.scores_csv, res.report, res.rows,
                      verdict_rows(res.rows), check, res.computed)


def run_demo(out_dir: str | os.PathLike[str], cfg: DemoConfig = DemoConfig(), *,
             say: Callable[[str], None] | None = None, report: bool = True) -> DemoResult:
    """Build the scenario, write the built-in study into ``out_dir`` and run it; return paths, scores, the
    verdict rows and the Table-2 check. A rerun recomputes only what changed (as ``epg run``).

    ``say(message)`` reports each stage as it starts (the CLI prints it unless ``--quiet``).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    say = say or (lambda _m: None)
    say(f"drawing {cfg.n_images} held-out images")
    _images(cfg, out)
    _train_runs(cfg, out, say)
    fields = {k: getattr(cfg, k) for k in ("n_steps", "size", "threads", "n_permutations", "seed", "precision")}
    study = _write_study(out / "study.toml", "demo", fields)
    res = run_study(study, say=say, report=report)
    result = _result(out, study, res, table2_check(res.rows))
    result.flip_task = _flip_task(out, cfg, res, say)
    return result


def _flip_task(out: Path, cfg: DemoConfig, res: Any, say: Callable[[str], None]) -> Any:
    """The flip task on the demo's two runs (every epoch, both properties): EPG against the local explanations of
    ``cfg.flip_methods`` (paper defaults), class "square". None without the ``baselines`` extra or methods."""
    if not cfg.flip_methods:
        return None
    try:
        import captum  # noqa: F401
        import skimage  # noqa: F401
        import sklearn  # noqa: F401

        from .baselines import attribute, flip_task_table
        from .models import RunOptions
    except ImportError:
        say("flip task skipped: pip install 'epg[baselines]' for the local explanations")
        return None
    path = out / "attributions.h5"
    inputs = [res.interventions, *sorted((out / "checkpoints").glob("*/epoch_*.pth"))]
    if path.exists() and any(p.stat().st_mtime > path.stat().st_mtime for p in inputs):
        path.unlink()  # the demo's own file, made from older checkpoints or interventions
    for name in ("biased", "unbiased"):
        say(f"local explanations of the {name} model: {', '.join(cfg.flip_methods)}")
        attribute([res.interventions], str(out / "checkpoints" / name / "epoch_*.pth"), path, target="square",
                  methods=cfg.flip_methods, seed=cfg.seed,
                  options=RunOptions(model_name=name, classes=["disk", "square"], threads=cfg.threads,
                                     preprocessing_options={"size": (cfg.size, cfg.size)}, batch_size=64))
    return flip_task_table(res.outputs, path, target="square", seed=cfg.seed)


def run_reference(out_dir: str | os.PathLike[str], reference: str | os.PathLike[str], cfg: DemoConfig = DemoConfig(),
                  *, say: Callable[[str], None] | None = None, report: bool = True) -> DemoResult:
    """The paper's three ConvMixer checkpoints on its four photos (``reference`` = the propgrad folder), with two
    properties: background darkening and hue rotation. ``check`` holds the verdict per model and property."""
    ref = Path(reference).resolve()
    if not list((ref / "checkpoints" / "cats-vs-dogs").glob("*.pth")) or not list(
            (ref / "example_images" / "cvd").glob("*.jpg")):
        raise E.DataError(f"{ref}: expected checkpoints/cats-vs-dogs/*.pth and example_images/cvd/*.jpg")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    fields = {"reference": ref.as_posix(), "n_steps": cfg.n_steps, "threads": cfg.threads,
              "n_permutations": cfg.n_permutations, "seed": cfg.seed, "precision": cfg.precision}
    study = _write_study(out / "study.toml", "reference", fields)
    res = run_study(study, say=say, report=report)
    check = {f"{r['model']} / {r['property']}": {k: r[k] for k in ("epg", "pvalue", "significant", "flips")}
             for r in verdict_rows(res.rows)}
    return _result(out, study, res, check)
