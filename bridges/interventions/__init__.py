"""Intervention sources: designed edits, captured frames, diffusion edits, and contact sheets to look at them.

Designed edits, frames and contact sheets need NumPy and Pillow (the ``images`` extra). The diffusion editors
(``editors/``, ``edit_sequence``) need the ``edit`` extra; their names load torch/diffusers on first use only.
``make_interventions`` is the one entry for every kind (``epg intervene`` and ``epg run``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._images import IMAGE_SUFFIXES as IMAGE_SUFFIXES
from .._images import load_image as load_image
from .._images import natural_key as natural_key
from .._lazy import lazy_getattr
from .._progress import Counter as Counter
from .._progress import Progress as Progress
from ._color import hsv_to_rgb as hsv_to_rgb
from ._color import rgb_to_hsv as rgb_to_hsv
from ._contact_sheet import contact_sheet_image as contact_sheet_image
from ._contact_sheet import steps_to_show as steps_to_show
from ._contact_sheet import write_contact_sheet as write_contact_sheet
from ._frames import frames_sequence as frames_sequence
from ._frames import list_frames as list_frames
from ._frames import read_values_csv as read_values_csv
from ._make import Made as Made
from ._make import make_interventions as make_interventions
from ._make import stored_requests as stored_requests
from ._plan import NAME_RULE as NAME_RULE
from ._plan import EditSpec as EditSpec
from ._plan import Request as Request
from ._plan import image_ids as image_ids
from ._plan import plan_requests as plan_requests
from ._plan import slug as slug
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
    from ._edit_setup import check_tokenizer as check_tokenizer
    from ._edit_setup import default_guidance_scales as default_guidance_scales
    from ._edit_setup import quiet_libraries as quiet_libraries
    from ._edit_setup import select_device as select_device
    from ._edit_setup import validate_scales as validate_scales
    from ._edit_sweeps import prepare_edit_image as prepare_edit_image
    from ._editing import edit_sequence as edit_sequence
    from ._editing import load_editor as load_editor
    from ._editing import load_pipeline as load_pipeline
    from .editors import Editor as Editor
    from .editors import EditorOptions as EditorOptions
    from .editors import editor_names as editor_names
    from .editors import get_editor as get_editor
    from .editors import make_editor as make_editor

_LAZY = {
    **dict.fromkeys(("check_tokenizer", "default_guidance_scales", "quiet_libraries", "select_device",
                     "validate_scales"), "._edit_setup"),
    "prepare_edit_image": "._edit_sweeps",
    **dict.fromkeys(("edit_sequence", "load_editor", "load_pipeline"), "._editing"),
    **dict.fromkeys(("EditJob", "edit_images"), "._edit_ray"),
    **dict.fromkeys(("Editor", "EditorOptions", "editor_names", "get_editor", "make_editor"), ".editors"),
}
__getattr__ = lazy_getattr(__name__, _LAZY, globals())

__all__ = [
    "IMAGE_SUFFIXES", "Counter", "Progress", "load_image", "natural_key", "hsv_to_rgb", "rgb_to_hsv",
    "contact_sheet_image", "steps_to_show", "write_contact_sheet",
    "frames_sequence", "list_frames", "read_values_csv",
    "KINDS", "EditKind", "background", "blend_patch", "brighten_background", "brightness", "darken_background",
    "default_values", "gaussian_weight", "hue_shift", "patch_position", "rotate", "synthetic_sequence",
    "EditSpec", "Made", "NAME_RULE", "Request", "image_ids", "make_interventions", "plan_requests", "slug",
    "stored_requests",
    # loaded on first use (``_LAZY``: the ``edit`` extra)
    "check_tokenizer", "default_guidance_scales", "quiet_libraries", "select_device", "validate_scales",
    "prepare_edit_image", "edit_sequence", "load_editor", "load_pipeline", "EditJob", "edit_images", "Editor",
    "EditorOptions", "editor_names", "get_editor", "make_editor",
]
