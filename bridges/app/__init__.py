"""The interactive explorer (``epg app``, the ``app`` extra: gradio): one curve at a time, scored on demand.

``resolve_source(STUDY_DIR | OUTPUTS.h5)`` finds and checks the files, ``Explorer`` reads and scores them in
memory (nothing is written), ``serve(explorer, port)`` starts the gradio page on 127.0.0.1 and returns at once.
Importing this package does not import gradio (only ``build_app``, ``serve`` and ``run_until`` do).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_getattr
from ._explore import PREDICTED as PREDICTED
from ._explore import Explorer as Explorer
from ._explore import View as View
from ._explore import stored_options as stored_options
from ._source import HOST as HOST
from ._source import AppSource as AppSource
from ._source import PortError as PortError
from ._source import check_port as check_port
from ._source import resolve_source as resolve_source

if TYPE_CHECKING:
    from ._ui import Served as Served
    from ._ui import build_app as build_app
    from ._ui import run_until as run_until
    from ._ui import serve as serve

__all__ = ["HOST", "PREDICTED", "AppSource", "Explorer", "PortError", "Served", "View", "build_app", "check_port",
           "resolve_source", "run_until", "serve", "stored_options"]

_LAZY = {"Served": "._ui", "build_app": "._ui", "run_until": "._ui", "serve": "._ui"}
__getattr__ = lazy_getattr(__name__, _LAZY, globals())
