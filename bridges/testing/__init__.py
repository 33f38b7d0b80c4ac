"""Tiny models, checkpoints, pipelines and data that the tests, benchmarks and the demo build (seeded).

Needs the ``torch`` extra; the tiny editing pipelines also need the ``edit`` extra (imported when called).
"""

from __future__ import annotations

from ._models import TINY_CONVMIXER as TINY_CONVMIXER
from ._models import TINY_HF_CONFIGS as TINY_HF_CONFIGS
from ._models import ExportDisagrees as ExportDisagrees
from ._models import TwoLayer as TwoLayer
from ._models import make_disagreeing as make_disagreeing
from ._models import make_two_layer as make_two_layer
from ._models import noise_interventions as noise_interventions
from ._models import perturbed_checkpoints as perturbed_checkpoints
from ._models import save_tiny as save_tiny
from ._models import small_interventions as small_interventions
from ._models import tiny_model as tiny_model
from ._models import train_run as train_run
from ._pipelines import TINY_EDITORS as TINY_EDITORS
from ._pipelines import small_qwen_condition as small_qwen_condition
from ._pipelines import stock_edit as stock_edit
from ._pipelines import tiny_random_pipeline as tiny_random_pipeline
from ._pipelines import tiny_t5_tokenizer as tiny_t5_tokenizer
from ._pipelines import tiny_tokenizer as tiny_tokenizer
from ._scenario import SCENARIO_ARCH as SCENARIO_ARCH
from ._scenario import SCENARIO_CLASSES as SCENARIO_CLASSES
from ._scenario import make_dataset as make_dataset
from ._scenario import train_classifier as train_classifier

__all__ = [
    "TINY_CONVMIXER", "TINY_HF_CONFIGS", "ExportDisagrees", "TwoLayer", "make_disagreeing", "make_two_layer",
    "noise_interventions", "perturbed_checkpoints", "save_tiny", "small_interventions", "tiny_model", "train_run",
    "TINY_EDITORS", "small_qwen_condition", "stock_edit", "tiny_random_pipeline", "tiny_t5_tokenizer",
    "tiny_tokenizer", "SCENARIO_ARCH", "SCENARIO_CLASSES", "make_dataset", "train_classifier",
]
