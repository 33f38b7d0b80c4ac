"""HDF5 formats of epg: interventions files, outputs files, the store of finished checkpoints, scores.

The public names live in private modules (``_io_common``, ``_io_interventions``, ``_io_outputs``,
``_store``, ``_io_scores``, ``_errors``, ``_atomic``) and are re-exported here; ``epg_core`` re-exports
``__all__``. Every writer is atomic (temporary file renamed into place) and holds the file's lock;
every reader checks each field it reads and answers a bad file with one line naming the file and field.
Only numpy, h5py and the standard library are used, so the files are readable without torch.
"""

from __future__ import annotations

from epg_core._atomic import LOCK_TIMEOUT as LOCK_TIMEOUT
from epg_core._atomic import shard_dir as shard_dir
from epg_core._errors import DataError as DataError
from epg_core._errors import EpgError as EpgError
from epg_core._errors import StoreError as StoreError
from epg_core._errors import UsageError as UsageError
from epg_core._io_common import FORMAT_VERSION as FORMAT_VERSION
from epg_core._io_common import INTERVENTIONS_FORMAT as INTERVENTIONS_FORMAT
from epg_core._io_common import MAX_READ_BYTES as MAX_READ_BYTES
from epg_core._io_common import OUTPUT_KINDS as OUTPUT_KINDS
from epg_core._io_common import OUTPUTS_FORMAT as OUTPUTS_FORMAT
from epg_core._io_interventions import InterventionSequence as InterventionSequence
from epg_core._io_interventions import append_interventions as append_interventions
from epg_core._io_interventions import iter_intervention_images as iter_intervention_images
from epg_core._io_interventions import list_sequences as list_sequences
from epg_core._io_interventions import read_interventions as read_interventions
from epg_core._io_interventions import write_interventions as write_interventions
from epg_core._io_options import check_run_options as check_run_options
from epg_core._io_options import read_run_options as read_run_options
from epg_core._io_outputs import OutputsBlock as OutputsBlock
from epg_core._io_outputs import iter_outputs as iter_outputs
from epg_core._io_outputs import list_checkpoints as list_checkpoints
from epg_core._io_outputs import list_outputs as list_outputs
from epg_core._io_outputs import read_outputs as read_outputs
from epg_core._io_outputs import write_outputs as write_outputs
from epg_core._io_remove import remove_outputs as remove_outputs
from epg_core._io_scores import read_scores as read_scores
from epg_core._io_scores import write_scores as write_scores
from epg_core._store import fold_shards as fold_shards
from epg_core._store import pending_shards as pending_shards
from epg_core._store import set_checkpoint_outputs as set_checkpoint_outputs
from epg_core._store import write_shard as write_shard

__all__ = [
    # errors
    "EpgError",
    "UsageError",
    "DataError",
    "StoreError",
    # formats
    "INTERVENTIONS_FORMAT",
    "OUTPUTS_FORMAT",
    "FORMAT_VERSION",
    "OUTPUT_KINDS",
    "MAX_READ_BYTES",
    "LOCK_TIMEOUT",
    # interventions
    "InterventionSequence",
    "write_interventions",
    "append_interventions",
    "read_interventions",
    "list_sequences",
    "iter_intervention_images",
    # outputs
    "OutputsBlock",
    "remove_outputs",
    "write_outputs",
    "read_outputs",
    "iter_outputs",
    "list_outputs",
    "list_checkpoints",
    "read_run_options",
    "check_run_options",
    # store of finished checkpoints
    "set_checkpoint_outputs",
    "write_shard",
    "fold_shards",
    "pending_shards",
    "shard_dir",
    # scores
    "write_scores",
    "read_scores",
]
