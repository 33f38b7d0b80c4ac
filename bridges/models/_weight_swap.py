"""Weight swap: replace the initializers of one exported ONNX model by the tensors of another checkpoint.

Initializers are matched to state_dict keys by name; ``torch.onnx.export(dynamo=True, optimize=False)`` keeps
those names one-to-one (see ``_export.py``).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torch import nn

__all__ = ["WeightSwapper", "initializer_map"]

_UNUSED_BUFFER_SUFFIXES = ("num_batches_tracked",)  # integer BatchNorm counters, unused in eval mode


class WeightSwapper:
    """The exported ONNX model plus a one-to-one map from its initializers to state_dict keys.

    Initializers whose names are not state_dict keys are graph constants and stay as exported. Every
    floating-point state_dict tensor must be an initializer (or share storage with one, i.e. a tied weight);
    otherwise the exporter folded or renamed it and swapping by name would silently use stale weights.
    """

    def __init__(self, proto: onnx.ModelProto, model: nn.Module) -> None:
        self.proto = onnx.ModelProto()
        self.proto.CopyFrom(proto)
        self.mapping = initializer_map(self.proto, model)
        self._slots = {init.name: i for i, init in enumerate(self.proto.graph.initializer) if init.name in self.mapping}

    def model_bytes(self, state: Mapping[str, torch.Tensor]) -> bytes:
        """Serialized ONNX model with every mapped initializer replaced by ``state[name]``."""
        initializers = self.proto.graph.initializer
        for name, index in self._slots.items():
            old = initializers[index]
            array = state[self.mapping[name]].detach().cpu().numpy()
            if tuple(array.shape) != tuple(old.dims):
                raise ValueError(f"tensor {name!r} has shape {tuple(array.shape)}, "
                                 f"the ONNX initializer {tuple(old.dims)}")
            new = numpy_helper.from_array(np.ascontiguousarray(array.astype(
                onnx.helper.tensor_dtype_to_np_dtype(old.data_type), copy=False)), name)
            initializers[index].CopyFrom(new)
        return self.proto.SerializeToString()


def initializer_map(proto: onnx.ModelProto, model: nn.Module) -> dict[str, str]:
    """``{initializer name: state_dict key}``; one-line ValueError when the map is not one-to-one."""
    state = model.state_dict(keep_vars=False)
    names = {init.name for init in proto.graph.initializer}
    mapping = {name: name for name in names if name in state}
    by_storage = {state[k].untyped_storage().data_ptr(): k for k in mapping if state[k].numel()}
    unmapped = []
    for key, tensor in state.items():
        if key in mapping:
            continue
        if not tensor.is_floating_point() and key.endswith(_UNUSED_BUFFER_SUFFIXES):
            continue
        if tensor.numel() and tensor.untyped_storage().data_ptr() in by_storage:
            continue  # tied weight: swapped through the key it shares storage with
        unmapped.append(key)
    if unmapped:
        raise ValueError(
            f"checkpoint tensors do not map one-to-one onto the ONNX initializers: {len(unmapped)} tensor(s) "
            f"such as {unmapped[0]!r} have no initializer of that name (folded or renamed by the exporter)"
        )
    if not mapping:
        raise ValueError("the exported ONNX model has no initializer named after a checkpoint tensor")
    return mapping
