"""Fingerprints of a study's stages: a stage is skipped when the fingerprint of its inputs and options equals
the one recorded when its result was written (``<out>/study.state.json``, written atomically)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import epg_core as E

STATE_FILE = "study.state.json"


def file_stamp(path: Path) -> list[Any]:
    """A cheap identity of a file or folder: path, size and modification time (as make uses)."""
    if path.is_dir():
        return [str(path.resolve()), [file_stamp(p) for p in sorted(path.iterdir()) if not p.name.startswith(".")]]
    st = path.stat()
    return [str(path.resolve()), st.st_size, st.st_mtime_ns]


def fingerprint(*parts: Any) -> str:
    """SHA-256 of the parts as canonical JSON (paths as strings)."""
    text = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


class State:
    """The recorded fingerprints of a study's outputs; saved after every stage, so a kill loses one stage."""

    def __init__(self, out: Path) -> None:
        self.path = out / STATE_FILE
        self.data: dict[str, Any] = {}
        if self.path.exists():
            try:
                loaded = json.loads(self.path.read_text())
                self.data = loaded if isinstance(loaded, dict) else {}
            except (json.JSONDecodeError, UnicodeDecodeError):
                self.data = {}  # a damaged state only costs a recomputation

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    def set(self, key: str, value: Any) -> None:
        self.data[key] = value
        E.write_bytes_atomic(self.path, json.dumps(self.data, indent=1, sort_keys=True).encode())

    def forget(self, *keys: str) -> None:
        for key in keys:
            self.data.pop(key, None)
        E.write_bytes_atomic(self.path, json.dumps(self.data, indent=1, sort_keys=True).encode())
