"""The study's bridges to the model and report stages (kept apart so the study logic stays torch-free)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import epg_core as E

from ..executors import ExecutorOptions
from ._spec import PREPROCESSING_KEYS, RUN_KEYS, ModelSpec


def _preprocessing(model: ModelSpec) -> dict[str, Any]:
    """The preprocessing fields the study gives (``size`` = N or [width, height]); the rest comes from what the
    checkpoint carries, else the defaults (as on the command line)."""
    opts = {k: model.options[k] for k in PREPROCESSING_KEYS if k in model.options}
    if "size" in opts:
        size = opts["size"]
        pair = isinstance(size, list) and len(size) == 2 and all(isinstance(v, int) for v in size)
        if not (isinstance(size, int) or pair):
            raise E.UsageError(f"model {model.name!r}: 'size' must be N or [width, height], got {size!r}")
        w, h = (size, size) if isinstance(size, int) else (size[0], size[1])
        opts["size"] = (h, w)  # Preprocessing stores (height, width)
    for key in ("mean", "std"):
        if isinstance(opts.get(key), list):
            opts[key] = tuple(opts[key])
    return opts


def sweep_model(model: ModelSpec, interventions: Path, outputs: Path, *, restart: bool, say: Callable[[str], None],
                executor: ExecutorOptions | None = None) -> None:
    """All checkpoints of one model on every sequence; only missing (sequence, checkpoint) pairs are computed."""
    from ..models import RunOptions, sweep

    unknown = sorted(set(model.options) - set(PREPROCESSING_KEYS) - set(RUN_KEYS))
    if unknown:
        valid = ("name", "arch", "checkpoints", "classes", *PREPROCESSING_KEYS, *RUN_KEYS)
        raise E.UsageError(f"model {model.name!r}: unknown option {unknown[0]!r}; use {', '.join(valid)}")
    run = {k: model.options[k] for k in RUN_KEYS if k in model.options}
    try:
        options = RunOptions(architecture=model.arch, model_name=model.name,
                             classes=list(model.classes) if model.classes else None,
                             preprocessing_options=_preprocessing(model), **run)
    except TypeError as exc:
        raise E.UsageError(f"model {model.name!r}: {exc}") from None
    sweep(list(model.checkpoints), [interventions], outputs, options, restart=restart, executor=executor)


def build_study_report(outputs: Path, folder: Path, interventions: Path, options: E.ScoreOptions,
                       report: dict[str, Any], say: Callable[[str], None], *,
                       rows: list[dict[str, Any]] | None = None, select: E.Selection | None = None) -> Path:
    """The study's report (``[report]`` options: ``checkpoints``, ``max_null_plots``, ``title``) of the
    selected part of the outputs (``rows``: its scores, if already computed)."""
    from ..report import ReportOptions, build_report

    unknown = sorted(set(report) - {"checkpoints", "max_null_plots", "title"})
    if unknown:
        raise E.UsageError(f"[report]: unknown option {unknown[0]!r}; use checkpoints, max_null_plots, title")
    opts = ReportOptions(score=options, **report).checked()
    result = build_report(outputs, folder, opts, interventions=[interventions], progress=say, rows=rows,
                          select=select)
    return Path(result["index"])
