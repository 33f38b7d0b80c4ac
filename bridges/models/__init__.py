"""Models: architectures and checkpoints, the preprocessing spec, ONNX export, the ORT runner, predict and sweep.

Running an exported ``.onnx`` file (``predict``, ``OnnxRunner``) needs the ``onnx`` extra only and never imports
torch. Architectures, checkpoints, export and sweeps need the ``torch`` extra; their names load torch on first use.
Model families (``--arch``) are plug-ins (``families/``): :func:`model_family_names` lists them without torch,
:func:`register_model_family` adds the user's own :class:`ModelFamily`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_getattr
from .._progress import Progress as Progress
from ._checkpoints import CHECKPOINT_SUFFIXES as CHECKPOINT_SUFFIXES
from ._checkpoints import LIST_SUFFIXES as LIST_SUFFIXES
from ._checkpoints import ONNX_SUFFIXES as ONNX_SUFFIXES
from ._checkpoints import checkpoint_names as checkpoint_names
from ._checkpoints import find_checkpoints as find_checkpoints
from ._checkpoints import is_hf_folder as is_hf_folder
from ._checkpoints import is_onnx_path as is_onnx_path
from ._checkpoints import natural_sorted as natural_sorted
from ._checkpoints import torch_checkpoints as torch_checkpoints
from ._clip import ClipText as ClipText
from ._clip import load_clip_text as load_clip_text
from ._clip import predict_clip as predict_clip
from ._clip import prompt_block as prompt_block
from ._clip import read_prompts as read_prompts
from ._clip import text_path as text_path
from ._inputs import InputSource as InputSource
from ._inputs import collect_inputs as collect_inputs
from ._predict import PredictResult as PredictResult
from ._predict import output_classes as output_classes
from ._predict import predict as predict
from ._preprocessing import PREPROCESSING_OPTIONS as PREPROCESSING_OPTIONS
from ._preprocessing import contradictions as contradictions
from ._preprocessing import preprocessing_from_hf as preprocessing_from_hf
from ._preprocessing import read_classes_file as read_classes_file
from ._preprocessing import resolve_classes as resolve_classes
from ._preprocessing import resolve_preprocessing as resolve_preprocessing
from ._run_options import OutputKind as OutputKind
from ._run_options import PromptAverage as PromptAverage
from ._run_options import RunOptions as RunOptions
from ._run_options import run_preprocessing as run_preprocessing
from ._runner import DEFAULT_ATOL as DEFAULT_ATOL
from ._runner import OUTPUT_KINDS as OUTPUT_KINDS
from ._runner import OnnxRunner as OnnxRunner
from ._runner import default_classes as default_classes
from ._runner import load_text_embeddings as load_text_embeddings
from ._runner import make_session as make_session
from ._runner import postprocess as postprocess
from ._runner import select_provider as select_provider
from ._spec import ChannelOrder as ChannelOrder
from ._spec import CropMode as CropMode
from ._spec import Interpolation as Interpolation
from ._spec import ModelSpec as ModelSpec
from ._spec import Preprocessing as Preprocessing
from ._spec import ResizeMode as ResizeMode
from ._spec import read_spec as read_spec
from ._spec import spec_path as spec_path
from ._spec import write_spec as write_spec
from .families import get_model_family as get_model_family
from .families import model_family as model_family
from .families import model_family_names as model_family_names
from .families import register_model_family as register_model_family

if TYPE_CHECKING:  # the torch side, loaded on first use (the ``torch`` extra)
    from ._architectures import Checkpoint as Checkpoint
    from ._architectures import arch_kind as arch_kind
    from ._architectures import architecture_kwargs as architecture_kwargs
    from ._architectures import build_model as build_model
    from ._architectures import check_state_dict as check_state_dict
    from ._architectures import load_checkpoint as load_checkpoint
    from ._architectures import load_weights as load_weights
    from ._architectures import resolve_factory as resolve_factory
    from ._clip import ClipExport as ClipExport
    from ._clip import export_clip as export_clip
    from ._export import ExportResult as ExportResult
    from ._export import export_model as export_model
    from ._export import export_onnx as export_onnx
    from ._export import exporter_of as exporter_of
    from ._export import torch_outputs as torch_outputs
    from ._export import verify_export as verify_export
    from ._setup import LoadedModel as LoadedModel
    from ._setup import carried_preprocessing as carried_preprocessing
    from ._setup import load_for_run as load_for_run
    from ._setup import model_preprocessing as model_preprocessing
    from ._sources import tensor_output as tensor_output
    from ._sweep import SweepResult as SweepResult
    from ._sweep import input_sources as input_sources
    from ._sweep import sweep as sweep
    from ._weight_swap import WeightSwapper as WeightSwapper
    from ._weight_swap import initializer_map as initializer_map
    from .families import ModelFamily as ModelFamily
    from .families.convmixer import ConvMixer as ConvMixer
    from .families.convmixer import Residual as Residual
    from .families.convmixer import conv_mixer as conv_mixer
    from .families.convmixer import infer_convmixer_paras as infer_convmixer_paras
    from .families.hf import fallback_preprocessing as fallback_preprocessing

#: Names loaded on first use: torch is imported only when one of them is asked for.
_LAZY = {
    "Checkpoint": "._architectures",
    "arch_kind": "._architectures",
    "architecture_kwargs": "._architectures",
    "build_model": "._architectures",
    "check_state_dict": "._architectures",
    "load_checkpoint": "._architectures",
    "load_weights": "._architectures",
    "resolve_factory": "._architectures",
    "ClipExport": "._clip",
    "export_clip": "._clip",
    "ExportResult": "._export",
    "export_model": "._export",
    "export_onnx": "._export",
    "exporter_of": "._export",
    "torch_outputs": "._export",
    "verify_export": "._export",
    "LoadedModel": "._setup",
    "carried_preprocessing": "._setup",
    "load_for_run": "._setup",
    "model_preprocessing": "._setup",
    "tensor_output": "._sources",
    "SweepResult": "._sweep",
    "input_sources": "._sweep",
    "sweep": "._sweep",
    "WeightSwapper": "._weight_swap",
    "initializer_map": "._weight_swap",
    "ModelFamily": ".families",
    "ConvMixer": ".families.convmixer",
    "Residual": ".families.convmixer",
    "conv_mixer": ".families.convmixer",
    "infer_convmixer_paras": ".families.convmixer",
    "fallback_preprocessing": ".families.hf",
}
__getattr__ = lazy_getattr(__name__, _LAZY, globals())

__all__ = [
    "Progress",
    "CHECKPOINT_SUFFIXES", "LIST_SUFFIXES", "ONNX_SUFFIXES", "checkpoint_names", "find_checkpoints", "is_hf_folder",
    "is_onnx_path", "natural_sorted", "torch_checkpoints",
    "ClipText", "load_clip_text", "predict_clip", "prompt_block", "read_prompts", "text_path", "ClipExport",
    "export_clip",
    "InputSource", "collect_inputs",
    "PredictResult", "output_classes", "predict",
    "PREPROCESSING_OPTIONS", "contradictions", "preprocessing_from_hf", "read_classes_file", "resolve_classes",
    "resolve_preprocessing",
    "OutputKind", "PromptAverage", "RunOptions", "run_preprocessing",
    "DEFAULT_ATOL", "OUTPUT_KINDS", "OnnxRunner", "default_classes", "load_text_embeddings", "make_session",
    "postprocess", "select_provider",
    "ChannelOrder", "CropMode", "Interpolation", "ModelSpec", "Preprocessing", "ResizeMode", "read_spec", "spec_path",
    "write_spec",
    "get_model_family", "model_family", "model_family_names", "register_model_family", "ModelFamily",
    "Checkpoint", "arch_kind", "architecture_kwargs", "build_model", "check_state_dict", "load_checkpoint",
    "load_weights", "resolve_factory",
    "ExportResult", "export_model", "export_onnx", "exporter_of", "torch_outputs", "verify_export",
    "LoadedModel", "carried_preprocessing", "load_for_run", "model_preprocessing",
    "tensor_output",
    "SweepResult", "input_sources", "sweep",
    "WeightSwapper", "initializer_map",
    "ConvMixer", "Residual", "conv_mixer", "infer_convmixer_paras",
    "fallback_preprocessing",
]
