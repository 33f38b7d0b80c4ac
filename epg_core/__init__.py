"""epg_core: expected property gradient magnitudes, shuffle tests, scoring and the file formats (JAX + NumPy only).

The one front door of the package: every public name, grouped by concept, imported from the module that
defines it (docs/ARCHITECTURE.md, "epg_core by concept").
"""

from epg_core._errors import DataError as DataError
from epg_core._errors import EpgError as EpgError
from epg_core._errors import MissingFileError as MissingFileError
from epg_core._errors import StoreError as StoreError
from epg_core._errors import UsageError as UsageError
from epg_core._examples import ExampleCurve as ExampleCurve
from epg_core._examples import example_curves as example_curves
from epg_core._formats._atomic import LOCK_TIMEOUT as LOCK_TIMEOUT
from epg_core._formats._atomic import atomic_path as atomic_path
from epg_core._formats._atomic import file_lock as file_lock
from epg_core._formats._atomic import shard_dir as shard_dir
from epg_core._formats._atomic import write_bytes_atomic as write_bytes_atomic
from epg_core._formats._common import FORMAT_VERSION as FORMAT_VERSION
from epg_core._formats._common import INTERVENTIONS_FORMAT as INTERVENTIONS_FORMAT
from epg_core._formats._common import MAX_READ_BYTES as MAX_READ_BYTES
from epg_core._formats._common import OUTPUT_KINDS as OUTPUT_KINDS
from epg_core._formats._common import OUTPUTS_FORMAT as OUTPUTS_FORMAT
from epg_core._formats._guard import discard_foreign as discard_foreign
from epg_core._formats._guard import refuse_foreign as refuse_foreign
from epg_core._formats._guard import written_by_epg as written_by_epg
from epg_core._formats._interventions import InterventionSequence as InterventionSequence
from epg_core._formats._interventions import append_interventions as append_interventions
from epg_core._formats._interventions import iter_intervention_images as iter_intervention_images
from epg_core._formats._interventions import list_sequences as list_sequences
from epg_core._formats._interventions import read_interventions as read_interventions
from epg_core._formats._interventions import write_interventions as write_interventions
from epg_core._formats._options import check_run_options as check_run_options
from epg_core._formats._options import read_run_options as read_run_options
from epg_core._formats._outputs import OutputsBlock as OutputsBlock
from epg_core._formats._outputs import iter_outputs as iter_outputs
from epg_core._formats._outputs import list_checkpoints as list_checkpoints
from epg_core._formats._outputs import list_outputs as list_outputs
from epg_core._formats._outputs import read_outputs as read_outputs
from epg_core._formats._outputs import write_outputs as write_outputs
from epg_core._formats._parquet import write_scores_parquet as write_scores_parquet
from epg_core._formats._remove import remove_outputs as remove_outputs
from epg_core._formats._scores import read_scores as read_scores
from epg_core._formats._scores import write_scores as write_scores
from epg_core._formats._store import fold_shards as fold_shards
from epg_core._formats._store import pending_shards as pending_shards
from epg_core._formats._store import set_checkpoint_outputs as set_checkpoint_outputs
from epg_core._formats._store import write_shard as write_shard
from epg_core._formats._tables import is_epg_parquet as is_epg_parquet
from epg_core._numerics._derivative import derivative as derivative
from epg_core._numerics._fdr import FDRResult as FDRResult
from epg_core._numerics._fdr import fdr as fdr
from epg_core._numerics._fornberg import fornberg_weights as fornberg_weights
from epg_core._numerics._mi import ksg_mi as ksg_mi
from epg_core._numerics._moments import Moments as Moments
from epg_core._numerics._moments import permutation_moments as permutation_moments
from epg_core._numerics._stats import epg as epg
from epg_core._numerics._stats import flip_points as flip_points
from epg_core._numerics._stats import flips as flips
from epg_core._numerics._stats import mean_gradient as mean_gradient
from epg_core._numerics._stats import pearson as pearson
from epg_core._permutation._engine import Alternative as Alternative
from epg_core._permutation._engine import PermutationResult as PermutationResult
from epg_core._permutation._engine import Precision as Precision
from epg_core._permutation._engine import permutation_test as permutation_test
from epg_core._permutation._engine import use_precision as use_precision
from epg_core._plugins import builtin_class as builtin_class
from epg_core._plugins import import_object as import_object
from epg_core._plugins import plugin_class as plugin_class
from epg_core._scoring._flip_task import FlipTaskResult as FlipTaskResult
from epg_core._scoring._flip_task import flip_task as flip_task
from epg_core._scoring._groups import majority_target as majority_target
from epg_core._scoring._options import GroupBy as GroupBy
from epg_core._scoring._options import Method as Method
from epg_core._scoring._options import ScoreOptions as ScoreOptions
from epg_core._scoring._options import Spacing as Spacing
from epg_core._scoring._rows import SCORE_COLUMNS as SCORE_COLUMNS
from epg_core._scoring._rows import verdict_rows as verdict_rows
from epg_core._scoring._score import score_outputs as score_outputs
from epg_core._scoring._score import write_scores_csv as write_scores_csv
from epg_core._scoring._selection import Selection as Selection
from epg_core._statistics._base import Statistic as Statistic
from epg_core._statistics._base import StatisticSetup as StatisticSetup
from epg_core._statistics._lookup import get_statistic as get_statistic
from epg_core._statistics._lookup import register_statistic as register_statistic
from epg_core._statistics._lookup import statistic_names as statistic_names

__all__ = [
    # numerics
    "fornberg_weights", "derivative", "epg", "mean_gradient", "pearson", "flips", "flip_points",
    "permutation_moments", "Moments", "ksg_mi", "fdr", "FDRResult", "flip_task", "FlipTaskResult", "example_curves",
    "ExampleCurve",
    # tested statistics (the registry)
    "Statistic", "StatisticSetup", "statistic_names", "get_statistic", "register_statistic",
    # the shuffle test
    "permutation_test", "PermutationResult", "use_precision", "Alternative", "Precision",
    # scoring
    "ScoreOptions", "GroupBy", "Method", "Spacing", "Selection", "score_outputs", "write_scores_csv",
    "majority_target", "SCORE_COLUMNS", "verdict_rows",
    # plug-ins named package.module:Name (every registry's import)
    "import_object", "plugin_class", "builtin_class",
    # errors
    "MissingFileError", "EpgError", "UsageError", "DataError", "StoreError",
    # formats: interventions, outputs, the store of finished checkpoints, scores tables
    "INTERVENTIONS_FORMAT", "OUTPUTS_FORMAT", "FORMAT_VERSION", "OUTPUT_KINDS", "MAX_READ_BYTES",
    "InterventionSequence", "write_interventions", "append_interventions", "read_interventions", "list_sequences",
    "iter_intervention_images", "OutputsBlock", "write_outputs", "read_outputs", "iter_outputs", "list_outputs",
    "list_checkpoints", "read_run_options", "check_run_options", "remove_outputs", "set_checkpoint_outputs",
    "write_shard", "fold_shards", "pending_shards", "write_scores", "read_scores", "write_scores_parquet",
    "is_epg_parquet",
    # file safety: atomic writes, locks, never replacing a file epg did not write
    "atomic_path", "file_lock", "write_bytes_atomic", "LOCK_TIMEOUT", "shard_dir", "written_by_epg", "refuse_foreign",
    "discard_foreign",
]
