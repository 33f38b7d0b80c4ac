"""What ``epg app`` explores: a study folder (the ``out`` folder of ``epg run``) or an outputs file, checked before
any server starts, and a free local port.

Every problem is one line naming the file or the port (an :class:`epg_core.EpgError`), the same lines the other
commands print; nothing here imports gradio, so a bad input is answered in a fraction of a second.
"""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

import epg_core as E

__all__ = ["AppSource", "HOST", "PortError", "STUDY_INTERVENTIONS", "STUDY_OUTPUTS", "check_port", "resolve_source"]

#: The only address the explorer binds to: it serves the files of this machine to this machine.
HOST = "127.0.0.1"
#: The names ``epg run`` gives a study's files in its ``out`` folder (``epg_bridges.study.study_outputs``).
STUDY_OUTPUTS = "outputs.h5"
STUDY_INTERVENTIONS = "interventions.h5"


class PortError(E.EpgError, OSError):
    """The port cannot be served on (another program listens there, or it is not ours to bind): exit 1."""

    kind: ClassVar[Literal["usage", "data", "io"]] = "io"


@dataclass(frozen=True)
class AppSource:
    """The files the explorer reads: one outputs file and the interventions files with its frames (maybe none)."""

    outputs: Path
    interventions: tuple[Path, ...]

    @property
    def label(self) -> str:
        """How the page names what it shows."""
        return str(self.outputs)


def resolve_source(source: str | os.PathLike[str], interventions: Sequence[str | os.PathLike[str]] = ()) -> AppSource:
    """The outputs file (and interventions) of ``source``: a study folder holding ``outputs.h5`` (its
    ``interventions.h5`` is used when no ``interventions`` are given) or an outputs file. Every file is checked to
    be epg's and readable by the library's readers, whose one-line errors name the first that is not (a missing
    file is a usage error, exit 2; a file that is not epg's is a data error, exit 1)."""
    src = Path(source)
    found: list[Path] = [Path(p) for p in interventions]
    if src.is_dir():
        outputs = src / STUDY_OUTPUTS
        if not outputs.is_file():
            raise E.DataError(f"{src}: a folder without {STUDY_OUTPUTS}; give the out folder of `epg run` or an "
                              "outputs file")
        if not found and (src / STUDY_INTERVENTIONS).is_file():
            found = [src / STUDY_INTERVENTIONS]
    else:
        outputs = src
    pairs = E.list_outputs(outputs)  # the library's one line for a missing file or one that is not epg's
    if not pairs:
        raise E.DataError(f"{outputs}: holds no model outputs to explore")
    for path in found:
        E.list_sequences(path)
    return AppSource(outputs, tuple(found))


def check_port(port: int, host: str = HOST) -> None:
    """Raise :class:`PortError` (one line) unless ``host:port`` can be bound now."""
    if not 1 <= int(port) <= 65535:
        raise E.UsageError(f"--port {port}: must be in 1..65535")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server does: TIME_WAIT is no conflict
        try:
            sock.bind((host, int(port)))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise PortError(f"port {port} on {host} is busy (another program listens there); choose another "
                                "with --port") from None
            raise PortError(f"port {port} on {host}: cannot listen there ({exc.strerror or exc})") from None
