"""Scores tables outside HDF5: reading the scores CSV and the scores Parquet file as typed rows, and telling an
epg Parquet file from any other without pyarrow.

``read_scores`` (``epg_core._formats._scores``) sends every file that is not HDF5 here, so one call returns the same
rows from a CSV, a Parquet file or an outputs file's ``/scores``. pyarrow (the ``tables`` extra) is imported only
to read Parquet; the core never needs it.
"""

from __future__ import annotations

import csv
import json
import math
import os
import struct
from pathlib import Path
from typing import Any

from epg_core._errors import DataError, MissingFileError

__all__ = ["PARQUET_FORMAT", "PARQUET_FORMAT_KEY", "PARQUET_FORMAT_VERSION", "is_epg_parquet", "parquet_metadata",
           "read_scores_csv", "read_scores_parquet", "table_kind"]

#: Key-value metadata of every Parquet file epg writes: ``epg_format = "epg-scores"`` marks it as epg's.
PARQUET_FORMAT_KEY = "epg_format"
PARQUET_FORMAT = "epg-scores"
PARQUET_FORMAT_VERSION = 1
PARQUET_MAGIC = b"PAR1"
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
#: A scores table has at least these columns (the same test as the overwrite guard's).
REQUIRED_COLUMNS = ("model", "sequence", "epg", "pvalue")
#: Columns that hold names: always text when read back from a CSV, even where every value looks like a number
#: (a checkpoint called "3", an image called "007"). Every other column is typed by its values.
TEXT_COLUMNS = frozenset({"model", "checkpoint", "sequence", "property", "image", "label", "aggregate", "output",
                          "alternative", "spacing", "correction", "note", "verdict", "statistic"})
# The footer of a Parquet file is thrift metadata; more than this is no scores table of ours.
_MAX_FOOTER = 64 << 20


def _thrift_string(value: str) -> bytes:
    """A string field (id delta 1, type binary) of thrift's compact protocol: header, varint length, bytes."""
    raw = value.encode("utf-8")
    n, varint = len(raw), b""
    while True:
        byte = n & 0x7F
        n >>= 7
        varint += bytes([byte | (0x80 if n else 0)])
        if not n:
            break
    return b"\x18" + varint + raw


# The KeyValue ``epg_format = "epg-scores"`` exactly as it is stored in a Parquet footer.
_MARKER = _thrift_string(PARQUET_FORMAT_KEY) + _thrift_string(PARQUET_FORMAT)


def _footer(path: Path) -> bytes | None:
    """The thrift footer of a Parquet file, or None when ``path`` is no (readable, plain) Parquet file."""
    try:
        with open(path, "rb") as fh:
            if fh.read(4) != PARQUET_MAGIC:
                return None
            size = os.fstat(fh.fileno()).st_size
            if size < 12:
                return None
            fh.seek(size - 8)
            tail = fh.read(8)
            (length,) = struct.unpack("<I", tail[:4])
            if tail[4:] != PARQUET_MAGIC or not 0 < length <= min(size - 12, _MAX_FOOTER):
                return None
            fh.seek(size - 8 - length)
            return fh.read(length)
    except OSError:
        return None


def is_epg_parquet(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` is a Parquet file that epg wrote (its key-value metadata holds ``epg_format =
    "epg-scores"``). Reads only the file's footer and needs no pyarrow, so the overwrite guard can ask it."""
    footer = _footer(Path(path))
    return footer is not None and _MARKER in footer


def table_kind(path: Path) -> str:
    """``"hdf5"``, ``"parquet"`` or ``"csv"`` by the file's first bytes (any other file is read as CSV)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
    except FileNotFoundError:
        raise MissingFileError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise DataError(f"{path}: not a file") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if head == HDF5_MAGIC:
        return "hdf5"
    if head[:4] == PARQUET_MAGIC:
        return "parquet"
    return "csv"


def _check_columns(path: Path, columns: list[str], what: str) -> None:
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise DataError(f"{path}: not an epg scores {what} (no column {missing[0]!r})")


def _typed_column(name: str, texts: list[str]) -> list[Any]:
    """One CSV column as Python values: names stay text; else all ``True``/``False`` -> bool, all integers that
    print back the same -> int, all numbers (``nan`` included; an empty cell is NaN) -> float, otherwise text."""
    if name in TEXT_COLUMNS or not texts:
        return list(texts)
    if all(t in ("True", "False") for t in texts):
        return [t == "True" for t in texts]
    try:
        ints = [int(t) for t in texts]
        if all(str(i) == t for i, t in zip(ints, texts, strict=True)):
            return ints
    except ValueError:
        pass
    try:
        return [math.nan if t == "" else float(t) for t in texts]
    except ValueError:
        return list(texts)


def read_scores_csv(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Read a scores CSV (``epg score``'s) as typed rows, the same values ``/scores`` and the Parquet file hold."""
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            body = list(reader)
    except UnicodeDecodeError:
        raise DataError(f"{path}: not an epg scores table (not UTF-8 text)") from None
    except csv.Error as exc:
        raise DataError(f"{path}: not a readable CSV ({exc})") from None
    if header is None:
        raise DataError(f"{path}: empty file, not an epg scores CSV")
    _check_columns(path, header, "CSV")
    for i, line in enumerate(body):
        if len(line) != len(header):
            raise DataError(f"{path}: line {i + 2} has {len(line)} fields, the header has {len(header)}")
    columns = {name: _typed_column(name, [line[j] for line in body]) for j, name in enumerate(header)}
    return [{name: columns[name][i] for name in header} for i in range(len(body))]


def _parquet_file(path: Path) -> Any:
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(path)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for a damaged file
        raise DataError(f"{path}: not a readable Parquet file ({str(exc).splitlines()[0] if str(exc) else exc})") \
            from None


def parquet_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The epg key-value metadata of a scores Parquet file: ``format``, ``format_version``, ``columns``,
    ``options`` (the scoring options, a dict) and ``epg_version``; a DataError for a file epg did not write."""
    path = Path(path)
    meta = _parquet_file(path).schema_arrow.metadata or {}
    text = {k.decode("utf-8", "replace"): v.decode("utf-8", "replace") for k, v in meta.items()}
    if text.get(PARQUET_FORMAT_KEY) != PARQUET_FORMAT:
        raise DataError(f"{path}: a Parquet file epg did not write (no {PARQUET_FORMAT_KEY} = {PARQUET_FORMAT!r} "
                        "in its metadata)")
    out: dict[str, Any] = {"format": PARQUET_FORMAT}
    for key in ("format_version", "columns", "options"):
        try:
            out[key] = json.loads(text.get(f"epg_{key}", "null"))
        except ValueError:
            raise DataError(f"{path}: metadata epg_{key} is not JSON") from None
    out["epg_version"] = text.get("epg_version", "")
    return out


def read_scores_parquet(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Read a scores Parquet file that epg wrote as rows of Python scalars (needs pyarrow: the ``tables`` extra)."""
    path = Path(path)
    meta = parquet_metadata(path)
    try:
        table = _parquet_file(path).read()
    except Exception as exc:  # noqa: BLE001
        raise DataError(f"{path}: cannot read the table ({str(exc).splitlines()[0] if str(exc) else exc})") from None
    columns = meta["columns"] if isinstance(meta["columns"], list) else table.column_names
    missing = [c for c in columns if c not in table.column_names]
    if missing:
        raise DataError(f"{path}: lacks column {missing[0]!r}")
    _check_columns(path, list(columns), "Parquet file")
    data = {c: table.column(c).to_pylist() for c in columns}
    for c, values in data.items():
        if any(v is None for v in values):  # floats are stored NaN, never null; anything else is not epg's
            raise DataError(f"{path}: column {c!r} holds nulls")
    return [{c: data[c][i] for c in columns} for i in range(table.num_rows)]
