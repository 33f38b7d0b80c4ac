"""The scores table ``/scores`` of an outputs file: one compound row per scored curve."""

from __future__ import annotations

import json
import os
from typing import Any

import h5py
import numpy as np

from epg_core._errors import DataError, UsageError
from epg_core._formats._atomic import file_lock
from epg_core._formats._common import OUTPUTS_FORMAT, SCORES, as_path, check_budget, reading
from epg_core._formats._outputs import _rebuilt_outputs
from epg_core._formats._store import fold_locked, require_writable


def _column_dtype(values: list[Any]) -> np.dtype:
    """Infer one column's dtype: bool, int64, float64 (None -> NaN) or a UTF-8 string."""
    present = [v for v in values if v is not None]
    if present and all(isinstance(v, (bool, np.bool_)) for v in present) and len(present) == len(values):
        return np.dtype(bool)
    numeric = all(isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))
                  for v in present)
    if numeric and present:
        if len(present) == len(values) and all(isinstance(v, (int, np.integer)) for v in present):
            return np.dtype(np.int64)
        return np.dtype(np.float64)
    return h5py.string_dtype("utf-8")


def write_scores(path: str | os.PathLike[str], rows: list[dict[str, Any]]) -> None:
    """Store a tidy table (one dict per row, same keys) as the compound dataset ``/scores``, atomically.

    The table goes into the outputs file ``path`` (created as an outputs file if missing); an existing
    ``/scores`` is replaced. Columns are bool, int64, float64 (``None`` -> NaN) or strings.
    """
    path = as_path(path)
    columns = list(rows[0]) if rows else []
    for i, row in enumerate(rows):
        if list(row) != columns:
            raise UsageError(f"scores row {i} has columns {list(row)}, expected {columns}")
    dtype = np.dtype([(c, _column_dtype([r[c] for r in rows])) for c in columns]) if columns else None
    table = _scores_array(rows, dtype) if dtype is not None else None
    with file_lock(path):
        require_writable(path)
        if path.exists():
            fold_locked(path)
        with _rebuilt_outputs(path, skip=lambda m, s: False, keep_scores=False) as handle:
            if table is None:
                dset = handle.create_dataset(SCORES, shape=(0,), dtype=np.uint8)
            else:
                dset = handle.create_dataset(SCORES, data=table)
            dset.attrs["columns"] = json.dumps(columns)


def _scores_array(rows: list[dict[str, Any]], dtype: np.dtype) -> np.ndarray:
    table = np.zeros(len(rows), dtype=dtype)
    for name in dtype.names or ():
        kind = dtype[name]
        column = [r[name] for r in rows]
        if kind == np.float64:
            table[name] = [np.nan if v is None else float(v) for v in column]
        elif kind.kind == "O":
            table[name] = ["" if v is None else str(v) for v in column]
        else:
            table[name] = column
    return table


def read_scores(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Read a scores table as a list of dicts (Python scalars): an outputs file's ``/scores`` (written by
    :func:`write_scores`), the scores CSV or the scores Parquet file (told apart by their first bytes); the
    three give the same rows."""
    path = as_path(path)
    from epg_core._formats._tables import read_scores_csv, read_scores_parquet, table_kind

    kind = table_kind(path) if path.exists() else "hdf5"
    if kind != "hdf5":
        return read_scores_parquet(path) if kind == "parquet" else read_scores_csv(path)
    with reading(path, OUTPUTS_FORMAT) as handle:
        dset = handle.get(SCORES)
        if not isinstance(dset, h5py.Dataset):
            raise DataError(f"{path}: no /{SCORES} table")
        try:
            columns = json.loads(dset.attrs.get("columns", "[]"))
        except (TypeError, ValueError):
            raise DataError(f"{path}: /{SCORES} attribute 'columns' is not a JSON list") from None
        if not columns:
            return []
        names = dset.dtype.names or ()
        missing = [c for c in columns if c not in names]
        if dset.ndim != 1 or missing:
            raise DataError(f"{path}: /{SCORES} lacks column {missing[0]!r}" if missing
                            else f"{path}: /{SCORES} must be a 1-D table, got shape {dset.shape}")
        check_budget(path, f"/{SCORES}", dset.shape, dset.dtype.itemsize)
        table = dset[()]
    rows = []
    for record in table:
        row = {}
        for name in columns:
            value = record[name]
            if isinstance(value, bytes):
                value = value.decode("utf-8")
            elif isinstance(value, np.generic):
                value = value.item()
            row[name] = value
        rows.append(row)
    return rows
