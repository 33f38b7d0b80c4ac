"""epg_core: expected property gradient magnitudes, shuffle tests and the HDF5 formats (JAX + NumPy only)."""

from epg_core import _io
from epg_core._atomic import atomic_path as atomic_path
from epg_core._atomic import file_lock as file_lock
from epg_core._atomic import write_bytes_atomic as write_bytes_atomic
from epg_core._derivative import derivative as derivative
from epg_core._errors import MissingFileError as MissingFileError
from epg_core._examples import ExampleCurve as ExampleCurve
from epg_core._examples import example_curves as example_curves
from epg_core._fdr import FDRResult as FDRResult
from epg_core._fdr import fdr as fdr
from epg_core._flip_task import FlipTaskResult as FlipTaskResult
from epg_core._flip_task import flip_task as flip_task
from epg_core._fornberg import fornberg_weights as fornberg_weights
from epg_core._guard import discard_foreign as discard_foreign
from epg_core._guard import refuse_foreign as refuse_foreign
from epg_core._guard import written_by_epg as written_by_epg
from epg_core._io import FORMAT_VERSION as FORMAT_VERSION
from epg_core._io import INTERVENTIONS_FORMAT as INTERVENTIONS_FORMAT
from epg_core._io import LOCK_TIMEOUT as LOCK_TIMEOUT
from epg_core._io import MAX_READ_BYTES as MAX_READ_BYTES
from epg_core._io import OUTPUT_KINDS as OUTPUT_KINDS
from epg_core._io import OUTPUTS_FORMAT as OUTPUTS_FORMAT
from epg_core._io import DataError as DataError
from epg_core._io import EpgError as EpgError
from epg_core._io import InterventionSequence as InterventionSequence
from epg_core._io import OutputsBlock as OutputsBlock
from epg_core._io import StoreError as StoreError
from epg_core._io import UsageError as UsageError
from epg_core._io import append_interventions as append_interventions
from epg_core._io import check_run_options as check_run_options
from epg_core._io import fold_shards as fold_shards
from epg_core._io import iter_intervention_images as iter_intervention_images
from epg_core._io import iter_outputs as iter_outputs
from epg_core._io import list_checkpoints as list_checkpoints
from epg_core._io import list_outputs as list_outputs
from epg_core._io import list_sequences as list_sequences
from epg_core._io import pending_shards as pending_shards
from epg_core._io import read_interventions as read_interventions
from epg_core._io import read_outputs as read_outputs
from epg_core._io import read_run_options as read_run_options
from epg_core._io import read_scores as read_scores
from epg_core._io import remove_outputs as remove_outputs
from epg_core._io import set_checkpoint_outputs as set_checkpoint_outputs
from epg_core._io import shard_dir as shard_dir
from epg_core._io import write_interventions as write_interventions
from epg_core._io import write_outputs as write_outputs
from epg_core._io import write_scores as write_scores
from epg_core._io import write_shard as write_shard
from epg_core._io_parquet import write_scores_parquet as write_scores_parquet
from epg_core._io_tables import is_epg_parquet as is_epg_parquet
from epg_core._mi import ksg_mi as ksg_mi
from epg_core._moments import Moments as Moments
from epg_core._moments import permutation_moments as permutation_moments
from epg_core._permutation import PermutationResult as PermutationResult
from epg_core._permutation import permutation_test as permutation_test
from epg_core._permutation import use_precision as use_precision
from epg_core._score_options import Alternative as Alternative
from epg_core._score_options import GroupBy as GroupBy
from epg_core._score_options import Method as Method
from epg_core._score_options import Precision as Precision
from epg_core._score_options import Spacing as Spacing
from epg_core._scoring import SCORE_COLUMNS as SCORE_COLUMNS
from epg_core._scoring import ScoreOptions as ScoreOptions
from epg_core._scoring import Selection as Selection
from epg_core._scoring import score_outputs as score_outputs
from epg_core._scoring import write_scores_csv as write_scores_csv
from epg_core._scoring_groups import majority_target as majority_target
from epg_core._scoring_rows import verdict_rows as verdict_rows
from epg_core._stats import epg as epg
from epg_core._stats import flip_points as flip_points
from epg_core._stats import flips as flips
from epg_core._stats import mean_gradient as mean_gradient
from epg_core._stats import pearson as pearson

__all__ = [
    "fornberg_weights", "derivative", "epg", "mean_gradient", "pearson", "flips", "flip_points",
    "permutation_test", "PermutationResult", "permutation_moments", "Moments", "ksg_mi", "use_precision",
    "fdr", "FDRResult", "SCORE_COLUMNS", "ScoreOptions", "Selection", "majority_target", "score_outputs",
    "verdict_rows", "write_scores_csv",
    "Alternative", "GroupBy", "Method", "Precision", "Spacing",
    "MissingFileError", "written_by_epg", "refuse_foreign", "discard_foreign",
    "atomic_path", "file_lock", "write_bytes_atomic", "example_curves", "ExampleCurve",
]
__all__ += ["flip_task", "FlipTaskResult"]  # v3: the flip-prediction task (local baselines)
__all__ += _io.__all__  # the HDF5 formats: errors, files, store, scores
__all__ += ["write_scores_parquet", "is_epg_parquet"]  # v3: scores as Parquet (extra `tables`)
