"""epg_core: expected property gradient magnitudes, shuffle tests and the HDF5 formats (JAX + NumPy only)."""

from epg_core._fornberg import fornberg_weights
from epg_core._derivative import derivative
from epg_core._stats import epg, pearson, flips, flip_points
from epg_core._permutation import PermutationResult, permutation_test
from epg_core._fdr import FDRResult, fdr

# --- HDF5 formats (epg_core/_io.py) ---
from epg_core._io import *  # noqa: F401,F403  (explicit list in _io.__all__)
from epg_core import _io as _io_module

__all__ = [
    "fornberg_weights",
    "derivative",
    "epg",
    "pearson",
    "flips",
    "flip_points",
    "permutation_test",
    "PermutationResult",
    "fdr",
    "FDRResult",
    *_io_module.__all__,
]

from epg_core._scoring import SCORE_COLUMNS, ScoreOptions, score_outputs, write_scores_csv  # noqa: E402

__all__ += ["SCORE_COLUMNS", "ScoreOptions", "score_outputs", "write_scores_csv"]
