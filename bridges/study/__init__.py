"""Studies: one TOML file drives images x interventions x models x checkpoints x scores x report (``epg run``).

Parsing and the skip logic need only epg_core; the model and report stages load their extras when they run.
"""

from __future__ import annotations

from ._run import StudyResult as StudyResult
from ._run import run_study as run_study
from ._run import score_options as score_options
from ._run import study_outputs as study_outputs
from ._run import study_selection as study_selection
from ._run import verdict_rows as verdict_rows
from ._spec import InterventionSpec as InterventionSpec
from ._spec import ModelSpec as ModelSpec
from ._spec import Study as Study
from ._spec import load_study as load_study

__all__ = ["StudyResult", "run_study", "score_options", "study_outputs", "study_selection", "verdict_rows",
           "InterventionSpec", "ModelSpec", "Study",
           "load_study"]
