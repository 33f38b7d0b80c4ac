"""Intervention sources: designed edits, captured frames, diffusion edits, and contact sheets to look at them.

Designed edits, frames and contact sheets need NumPy and Pillow (the ``images`` extra). The diffusion editor
(``edit_sequence`` and its helpers) needs the ``edit`` extra; its names load torch/diffusers on first use only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._images import IMAGE_SUFFIXES as IMAGE_SUFFIXES
from .._images import load_image as load_image
from .._images import natural_key as natural_key
from .._lazy import lazy_getattr
from .._progress import Progress as Progress
from ._color import hsv_to_rgb as hsv_to_rgb
from ._color import rgb_to_hsv as rgb_to_hsv
from ._contact_sheet import contact_sheet_image as contact_sheet_image
from ._contact_sheet import steps_to_show as steps_to_show
from ._contact_sheet import write_contact_sheet as write_contact_sheet
from ._frames import frames_sequence as frames_sequence
from ._frames import list_frames as list_frames
from ._frames import read_values_csv as read_values_csv
from ._synthetic import KINDS as KINDS
from ._synthetic import EditKind as EditKind
from ._synthetic import background as background
from ._synthetic import blend_patch as blend_patch
from ._synthetic import brighten_background as brighten_background
from ._synthetic import brightness as brightness
from ._synthetic import darken_background as darken_background
from ._synthetic import default_values as default_values
from ._synthetic import gaussian_weight as gaussian_weight
from ._synthetic import hue_shift as hue_shift
from ._synthetic import patch_position as patch_position
from ._synthetic import rotate as rotate
from ._synthetic import synthetic_sequence as synthetic_sequence

if TYPE_CHECKING:  # loaded lazily at run time (the ``edit`` extra)
    from ._edit_ray import EditJob as EditJob
    from ._edit_ray import edit_images as edit_images
    from ._edit_setup import METHOD_INFO as METHOD_INFO
    from ._edit_setup import METHODS as METHODS
    from ._edit_setup import EditOptions as EditOptions
    from ._edit_setup import LeditsOptions as LeditsOptions
    from ._edit_setup import Method as Method
    from ._edit_setup import Pix2PixOptions as Pix2PixOptions
    from ._edit_setup import check_method as check_method
    from ._edit_setup import check_tokenizer as check_tokenizer
    from ._edit_setup import default_guidance_scales as default_guidance_scales
    from ._edit_setup import load_pipeline as load_pipeline
    from ._edit_setup import options_for as options_for
    from ._edit_setup import pipeline_class as pipeline_class
    from ._edit_setup import quiet_libraries as quiet_libraries
    from ._edit_setup import select_device as select_device
    from ._edit_setup import validate_scales as validate_scales
    from ._edit_sweeps import ledits_sweep as ledits_sweep
    from ._edit_sweeps import pix2pix_sweep as pix2pix_sweep
    from ._edit_sweeps import prepare_edit_image as prepare_edit_image
    from ._editing import edit_sequence as edit_sequence

_LAZY = {
    **dict.fromkeys(
        ("METHOD_INFO", "METHODS", "Method", "EditOptions", "LeditsOptions", "Pix2PixOptions", "check_method",
         "check_tokenizer", "default_guidance_scales", "load_pipeline", "options_for", "pipeline_class",
         "quiet_libraries", "select_device", "validate_scales"), "._edit_setup"),
    **dict.fromkeys(("ledits_sweep", "pix2pix_sweep", "prepare_edit_image"), "._edit_sweeps"),
    "edit_sequence": "._editing",
    **dict.fromkeys(("EditJob", "edit_images"), "._edit_ray"),
}
__getattr__ = lazy_getattr(__name__, _LAZY, globals())

__all__ = [
    "IMAGE_SUFFIXES", "Progress", "load_image", "natural_key", "hsv_to_rgb", "rgb_to_hsv",
    "contact_sheet_image", "steps_to_show", "write_contact_sheet",
    "frames_sequence", "list_frames", "read_values_csv",
    "KINDS", "EditKind", "background", "blend_patch", "brighten_background", "brightness", "darken_background",
    "default_values", "gaussian_weight", "hue_shift", "patch_position", "rotate", "synthetic_sequence",
    *_LAZY,
]
