"""Local baselines: Captum attributions along interventions and the flip-prediction task (extra ``baselines``).

``attribute(...)`` explains the stored steps (default: first and last) of every sequence x checkpoint with
Saliency, Integrated Gradients, DeepLift, Guided Grad-CAM, Occlusion, LIME and Kernel SHAP (the paper's settings,
appendix B.4, as defaults) into an ``epg-attributions`` file; ``flip_task_table(outputs, attributions)`` scores
how well EPG and each explanation predict that an intervention flips the prediction (``epg_core.flip_task``).
Reading attributions and the flip task need no torch; ``attribute`` and the methods load it on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_getattr
from ._flip import FLIP_COLUMNS as FLIP_COLUMNS
from ._flip import FlipTaskTable as FlipTaskTable
from ._flip import FlipUnit as FlipUnit
from ._flip import flip_task_table as flip_task_table
from ._flip import steps_seen as steps_seen
from ._flip import write_flip_csv as write_flip_csv
from ._names import METHOD_NAMES as METHOD_NAMES
from ._report_data import BaselinesReport as BaselinesReport
from ._report_data import Example as Example
from ._report_data import baselines_report as baselines_report
from ._store import ATTRIBUTIONS_FORMAT as ATTRIBUTIONS_FORMAT
from ._store import ATTRIBUTIONS_VERSION as ATTRIBUTIONS_VERSION
from ._store import Attribution as Attribution
from ._store import AttributionKey as AttributionKey
from ._store import list_attributions as list_attributions
from ._store import read_attributions as read_attributions
from ._store import write_attributions as write_attributions

if TYPE_CHECKING:  # loaded lazily (torch, captum)
    from ._attribute import DEFAULT_STEPS as DEFAULT_STEPS
    from ._attribute import OUTPUTS as OUTPUTS
    from ._attribute import AttributeResult as AttributeResult
    from ._attribute import attribute as attribute
    from ._attribute import resolve_layer as resolve_layer
    from ._method import Context as Context
    from ._method import Method as Method
    from ._methods import METHODS as METHODS
    from ._methods import make_method as make_method
    from ._methods import parse_method_options as parse_method_options

_LAZY = {
    **dict.fromkeys(("DEFAULT_STEPS", "OUTPUTS", "AttributeResult", "attribute", "resolve_layer"), "._attribute"),
    **dict.fromkeys(("Context", "Method"), "._method"),
    **dict.fromkeys(("METHODS", "make_method", "parse_method_options"), "._methods"),
}
__getattr__ = lazy_getattr(__name__, _LAZY, globals())

__all__ = ["FLIP_COLUMNS", "FlipTaskTable", "FlipUnit", "flip_task_table", "steps_seen", "write_flip_csv",
           "METHOD_NAMES", "BaselinesReport", "Example", "baselines_report",
           "ATTRIBUTIONS_FORMAT", "ATTRIBUTIONS_VERSION", "Attribution", "AttributionKey",
           "list_attributions", "read_attributions", "write_attributions",
           "DEFAULT_STEPS", "OUTPUTS", "AttributeResult", "attribute", "resolve_layer", "Context", "Method", "METHODS",
           "make_method", "parse_method_options"]
assert set(_LAZY) <= set(__all__)
