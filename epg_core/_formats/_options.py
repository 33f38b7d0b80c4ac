"""Run options of an outputs file: what a model's blocks were computed with, so a rerun can be checked.

``write_outputs(..., run_options=...)`` stores them on ``/models/<model>``; :func:`check_run_options`
compares them with a new run's and names the first option that differs.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import h5py

from epg_core._errors import DataError
from epg_core._formats._common import (
    MODELS,
    OUTPUTS_FORMAT,
    RUN_OPTIONS_ATTR,
    as_path,
    block_meta,
    read_attrs,
    reading,
    to_jsonable,
)


def _model_group(handle: h5py.File, path: Path, model: str) -> h5py.Group:
    models = handle.get(MODELS)
    if not isinstance(models, h5py.Group):
        raise DataError(f"{path}: no /{MODELS} group (no outputs written yet)")
    group = models.get(model) if isinstance(model, str) and model else None
    if not isinstance(group, h5py.Group):
        raise DataError(f"{path}: no model {model!r}")
    return group


def read_run_options(path: str | os.PathLike[str], model: str) -> dict[str, Any]:
    """The options a model's blocks were computed with (files before v2: classes, output_kind, preprocessing)."""
    path = as_path(path)
    with reading(path, OUTPUTS_FORMAT) as handle:
        group = _model_group(handle, path, model)
        if RUN_OPTIONS_ATTR in group.attrs:
            try:
                options = json.loads(str(read_attrs(group, path).get(RUN_OPTIONS_ATTR)))
            except (TypeError, ValueError):
                options = None
            if not isinstance(options, dict):
                raise DataError(f"{path}: {group.name} attribute {RUN_OPTIONS_ATTR!r} is not a JSON mapping")
            return options
        for name, block in group.items():
            meta = block_meta(block, path, model, name)
            return {"classes": meta.classes, "output_kind": meta.output_kind, "preprocessing": meta.preprocessing}
        return {}


def check_run_options(path: str | os.PathLike[str], model: str, options: Mapping[str, Any]) -> None:
    """Refuse to resume ``model`` in ``path`` with other options; the message names the first that differs.

    Keys the file does not record (files before v2 record only classes, output_kind, preprocessing) are
    not compared. Raises :class:`DataError`.
    """
    path = as_path(path)
    stored = read_run_options(path, model)
    wanted = json.loads(json.dumps(to_jsonable(dict(options))))
    for key, value in wanted.items():
        if key in stored and stored[key] != value:
            raise DataError(f"{path}: model {model!r} was computed with {key}={_short(stored[key])}, this run "
                            f"uses {key}={_short(value)}; use --restart to recompute, or another output file")


def _short(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."
