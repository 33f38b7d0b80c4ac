"""The built-in method names (torch-free, so reading attributions and the flip task need no torch)."""

from __future__ import annotations

__all__ = ["METHOD_NAMES"]

#: Every built-in method, in the paper's order (appendix B.4), Saliency first.
METHOD_NAMES = ("saliency", "integrated-gradients", "deeplift", "guided-gradcam", "occlusion", "lime", "kernel-shap")
