"""The picture an editor sees (re-exported from ``editors._base``, where every editor prepares its input)."""

from __future__ import annotations

from .editors._base import prepare_edit_image

__all__ = ["prepare_edit_image"]
