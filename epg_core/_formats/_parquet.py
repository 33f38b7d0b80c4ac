"""The scores table as Parquet: the same long table as the CSV, with typed columns and the scoring options.

Column types come from the rows themselves (the same inference as ``/scores``: bool, int64, float64 with ``None``
as NaN, or UTF-8 text), so a column the scorer gains later is written without a change here. The file's
key-value metadata holds ``epg_format = "epg-scores"`` (how :func:`is_epg_parquet` recognises epg's files),
``epg_format_version``, ``epg_columns`` (the column order), ``epg_options`` (the scoring options as JSON) and
``epg_version``. pyarrow (the ``tables`` extra) is imported only when a file is written or read.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from epg_core._errors import UsageError
from epg_core._formats._atomic import atomic_path
from epg_core._formats._common import to_jsonable
from epg_core._formats._scores import _column_dtype
from epg_core._formats._tables import PARQUET_FORMAT, PARQUET_FORMAT_KEY, PARQUET_FORMAT_VERSION, REQUIRED_COLUMNS

__all__ = ["write_scores_parquet", "scores_arrow_table"]


def _epg_version() -> str:
    try:
        from importlib.metadata import version

        return version("epg")
    except Exception:  # noqa: BLE001 - not installed as a distribution (a source checkout)
        return ""


def _options_dict(options: Any) -> dict[str, Any] | None:
    if options is None:
        return None
    if dataclasses.is_dataclass(options) and not isinstance(options, type):
        return to_jsonable(dataclasses.asdict(options))
    if isinstance(options, Mapping):
        return to_jsonable(dict(options))
    raise UsageError(f"scoring options must be a ScoreOptions or a mapping, got {type(options).__name__}")


def scores_arrow_table(rows: list[dict[str, Any]], options: Any = None) -> Any:
    """The rows as a ``pyarrow.Table`` with typed columns and epg's key-value metadata (see the module doc)."""
    import pyarrow as pa

    columns = list(rows[0]) if rows else list(REQUIRED_COLUMNS)
    for i, row in enumerate(rows):
        if list(row) != columns:
            raise UsageError(f"scores row {i} has columns {list(row)}, expected {columns}")
    arrays = {}
    for name in columns:
        values = [r[name] for r in rows]
        dtype = _column_dtype(values) if rows else np.dtype(object)
        if dtype == np.dtype(bool):
            arrays[name] = pa.array([bool(v) for v in values], pa.bool_())
        elif dtype == np.dtype(np.int64):
            arrays[name] = pa.array([int(v) for v in values], pa.int64())
        elif dtype == np.dtype(np.float64):
            arrays[name] = pa.array([np.nan if v is None else float(v) for v in values], pa.float64())
        else:
            arrays[name] = pa.array(["" if v is None else str(v) for v in values], pa.string())
    meta = {PARQUET_FORMAT_KEY: PARQUET_FORMAT, "epg_format_version": json.dumps(PARQUET_FORMAT_VERSION),
            "epg_columns": json.dumps(columns), "epg_options": json.dumps(_options_dict(options)),
            "epg_version": _epg_version()}
    return pa.table(arrays).replace_schema_metadata(meta)


def write_scores_parquet(path: str | os.PathLike[str], rows: list[dict[str, Any]], options: Any = None) -> Path:
    """Write the scores table as Parquet, atomically (temporary file renamed into place); ``options`` (the
    ``ScoreOptions`` or a mapping) go into the file's key-value metadata as ``epg_options``."""
    import pyarrow.parquet as pq

    table = scores_arrow_table(rows, options)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
    return Path(path)
