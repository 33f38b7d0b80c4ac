"""Never replace a file epg did not write: every writing command checks its outputs here before writing anything.

A path that does not exist is always fine. An existing path is replaced only when epg wrote it as the same kind
of output (an HDF5 file's ``format`` attribute, the scores CSV header, the report's generator marker, the model
spec's ``format``); anything else is refused with one line naming ``--force`` (:class:`UsageError`, exit 2).
With ``force`` every check passes (the writers still replace atomically and never touch a read-only file).
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from epg_core._errors import UsageError
from epg_core._formats._tables import is_epg_parquet

__all__ = ["OutputKind", "REPORT_MARKER", "DEMO_MARKER", "written_by_epg", "refuse_foreign", "discard_foreign",
           "describe_kind"]

#: What a command is about to write at a path (each kind has its own "epg wrote this" test).
OutputKind = Literal["interventions", "outputs", "scores-csv", "scores-parquet", "report", "onnx", "model-spec",
                     "clip-text", "demo", "json"]

#: The line every report's index.html carries in its <head> (checked before a report folder is reused).
REPORT_MARKER = '<meta name="generator" content="epg report">'
_REPORT_LEGACY = "<title>epg report</title>"  # reports written before the marker
#: The start of the first line of the study file ``epg demo`` (and ``--reference``) writes into its folder.
DEMO_MARKER = "# The built-in study of `epg demo"
#: Everything ``epg demo`` writes into its folder (a run killed before the study file exists leaves only some).
DEMO_NAMES = frozenset({"images", "checkpoints", "study.toml", "study.state.json", "interventions.h5", "outputs.h5",
                        "scores.csv", "scores.parquet", "report"})
_SCORES_COLUMNS = {"model", "sequence", "epg", "pvalue"}  # a scores table has at least these columns
_ONNX_MARKER = b"epg_exporter"  # metadata key of every epg export (near the end of the protobuf)
_TAIL = 1 << 20

_WHAT: dict[str, str] = {
    "interventions": "an epg interventions file", "outputs": "an epg outputs file",
    "scores-csv": "an epg scores CSV", "scores-parquet": "an epg scores Parquet file",
    "report": "an epg report folder", "onnx": "an epg ONNX export", "model-spec": "an epg model spec",
    "clip-text": "epg prompt embeddings", "demo": "an epg demo folder", "json": "an epg JSON file",
}
_HDF5_FORMATS = {"epg-interventions": "interventions", "epg-outputs": "outputs"}


def describe_kind(kind: str) -> str:
    """``"an epg scores CSV"`` for ``"scores-csv"`` (used in messages)."""
    return _WHAT.get(kind, f"an epg {kind} file")


def _hdf5_format(path: Path) -> str | None:
    """The ``format`` root attribute of an HDF5 file, None when it is no HDF5 file or has none."""
    try:
        with open(path, "rb") as fh:
            if fh.read(8) != b"\x89HDF\r\n\x1a\n":
                return None
    except OSError:
        return None
    try:
        import h5py

        with h5py.File(path, "r", locking=False) as handle:
            value = handle.attrs.get("format")
    except Exception:  # noqa: BLE001 - a damaged file is simply not ours
        return None
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return value if isinstance(value, str) else None


def _head(path: Path, size: int = 1 << 16) -> bytes:
    with open(path, "rb") as fh:
        return fh.read(size)


def _csv_header(path: Path) -> set[str]:
    try:
        text = _head(path).decode("utf-8")
    except (OSError, UnicodeDecodeError):
        return set()
    first = text.splitlines()[0] if text.strip() else ""
    try:
        return {c.strip() for c in next(csv.reader(io.StringIO(first)), [])}
    except csv.Error:
        return set()


def _json_format(path: Path) -> str | None:
    try:
        data = json.loads(path.read_bytes()[: 64 << 20])
    except (OSError, ValueError):
        return None
    value = data.get("format") if isinstance(data, dict) else None
    return value if isinstance(value, str) else None


def _onnx_is_ours(path: Path) -> bool:
    """An epg export: its metadata ``epg_exporter`` (stored near the end) or an epg spec beside it."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            fh.seek(max(0, size - _TAIL))
            if _ONNX_MARKER in fh.read():
                return True
    except OSError:
        return False
    spec = path.with_name(path.name + ".json")
    return spec.is_file() and _json_format(spec) == "epg-model-spec"


def _report_is_ours(folder: Path) -> bool:
    """An empty folder, or one whose index.html carries the report marker."""
    if not any(folder.iterdir()):
        return True
    index = folder / "index.html"
    try:
        head = _head(index).decode("utf-8", "replace")
    except OSError:
        return False
    return REPORT_MARKER in head or REPORT_MARKER.replace('"', "'") in head or _REPORT_LEGACY in head


def _demo_is_ours(folder: Path) -> bool:
    """An empty folder, one whose study.toml is a built-in study, or one holding only what the demo writes."""
    try:
        head = _head(folder / "study.toml", 4096).decode("utf-8", "replace")
    except OSError:
        head = None
    if head is not None:
        return head.startswith(DEMO_MARKER)
    return all(e.name in DEMO_NAMES or e.name.startswith(".") or ".tmp-" in e.name or e.name.endswith(".lock")
               for e in folder.iterdir())


def written_by_epg(path: str | os.PathLike[str], kind: str) -> bool:
    """True when ``path`` exists and epg wrote it as ``kind`` (one of :data:`OutputKind`; see the module doc)."""
    path = Path(path)
    if kind in ("report", "demo"):
        if not path.is_dir():
            return False
        return _report_is_ours(path) if kind == "report" else _demo_is_ours(path)
    if not path.is_file():
        return False
    if kind in ("interventions", "outputs"):
        return _HDF5_FORMATS.get(_hdf5_format(path) or "") == kind
    if kind == "scores-csv":
        return _SCORES_COLUMNS <= _csv_header(path)
    if kind == "scores-parquet":  # the epg marker in the footer's key-value metadata (no pyarrow needed)
        return is_epg_parquet(path)
    if kind == "onnx":
        return _onnx_is_ours(path)
    if kind == "model-spec":
        return _json_format(path) == "epg-model-spec"
    if kind == "clip-text":
        return _npz_is_ours(path)
    if kind == "json":
        return _json_format(path) is not None and str(_json_format(path)).startswith("epg")
    raise ValueError(f"unknown output kind {kind!r}")


def _npz_is_ours(path: Path) -> bool:
    """Prompt embeddings of ``epg export-clip``: a .npz archive of ``meta``, ``embeddings``, ``prompt_class``."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
    except (OSError, zipfile.BadZipFile):
        return False
    return {"meta.npy", "embeddings.npy", "prompt_class.npy"} <= names


def _what_it_is(path: Path) -> str:
    """A few words on what an existing path is, for the refusal."""
    if path.is_dir():
        return "a folder epg did not write" if any(path.iterdir()) else "an empty folder"
    fmt = _hdf5_format(path)
    if fmt in _HDF5_FORMATS:
        return describe_kind(_HDF5_FORMATS[fmt])
    return "a file epg did not write"


def refuse_foreign(paths: Mapping[Path, str] | None, *, force: bool = False) -> None:
    """Refuse (``UsageError``, exit 2) before anything is written when one of ``paths`` exists and epg did not
    write it as the kind it is about to write there; ``force`` lets every path through."""
    if force or not paths:
        return
    for raw, kind in paths.items():
        path = Path(raw)
        if not os.path.lexists(path):
            continue
        if path.is_file() and kind in ("report", "demo"):
            raise UsageError(f"{path}: is a file, not a folder; choose another --out (or pass --force to replace "
                             "it)")
        if path.is_dir() and kind not in ("report", "demo"):
            raise UsageError(f"{path}: is a folder; choose another --out")
        if written_by_epg(path, kind):
            continue
        raise UsageError(f"{path}: exists and is {_what_it_is(path)}, not {describe_kind(kind)}; refusing to "
                         "replace it (choose another --out, or pass --force to replace it)")


def discard_foreign(paths: Mapping[Path, str]) -> None:
    """With ``--force``: remove existing epg-foreign files that a writer would otherwise read and add to (HDF5
    outputs and interventions files); every other kind is replaced atomically by its writer."""
    for raw, kind in paths.items():
        path = Path(raw)
        if kind in ("interventions", "outputs") and path.is_file() and not written_by_epg(path, kind):
            path.unlink()
