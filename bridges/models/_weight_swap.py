"""Weight swap: replace the initializers of one exported ONNX model by the tensors of another checkpoint.

Initializers are matched to state_dict keys by name; ``torch.onnx.export(dynamo=True, optimize=False)`` keeps
those names one-to-one (see ``_export.py``). A swap is used only when it is proven safe for the model: the
map must be one-to-one, and a probe (every tensor perturbed, swapped in, run by ONNX Runtime and by torch)
must agree. Otherwise (the TorchScript exporter's folded constants, a weight the graph bakes in) every
checkpoint is re-exported and verified instead, with a one-line notice: slower, never silently wrong.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torch import nn

from epg_core import DataError

from ._export import export_model, torch_outputs, verify_export
from ._preprocessing import Notice, default_notice
from ._runner import DEFAULT_ATOL, make_session
from ._spec import Preprocessing

__all__ = ["WeightSwapper", "initializer_map", "input_size"]

_UNUSED_BUFFER_SUFFIXES = ("num_batches_tracked",)  # integer BatchNorm counters, unused in eval mode


def input_size(proto: onnx.ModelProto) -> tuple[int, int]:
    """The fixed (height, width) of an exported model's ``[batch, 3, h, w]`` input."""
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    if len(dims) != 4 or not all(d.HasField("dim_value") for d in dims[2:]):
        raise DataError("the ONNX model's input is not [batch, 3, height, width] with a fixed size")
    return int(dims[2].dim_value), int(dims[3].dim_value)


class WeightSwapper:
    """The exported ONNX model plus a one-to-one map from its initializers to state_dict keys.

    Initializers whose names are not state_dict keys are graph constants and stay as exported. Every
    floating-point state_dict tensor must be an initializer (or share storage with one, i.e. a tied weight).
    ``probe`` additionally swaps in perturbed weights and compares ORT with torch. When the swap cannot be
    proven safe: with ``reexport`` False a one-line DataError; with ``reexport`` True a notice, and
    ``reexport_reason`` says why and :meth:`model_bytes` re-exports ``model`` for every checkpoint.
    """

    def __init__(
        self,
        proto: onnx.ModelProto,
        model: nn.Module,
        *,
        reexport: bool = False,
        probe: bool = True,
        atol: float = DEFAULT_ATOL,
        notice: Notice | None = None,
    ) -> None:
        self.proto = onnx.ModelProto()
        self.proto.CopyFrom(proto)
        self.model = model
        self.atol = float(atol)
        self.size = input_size(self.proto)
        self.reexport_reason: str | None = None
        self.mapping: dict[str, str] = {}
        try:
            self.mapping = initializer_map(self.proto, model)
        except DataError as exc:
            self.reexport_reason = str(exc)
        self._slots = {init.name: i for i, init in enumerate(self.proto.graph.initializer) if init.name in self.mapping}
        if self.reexport_reason is None and probe:
            self.reexport_reason = self._probe()
        if self.reexport_reason is not None:
            if not reexport:
                raise DataError(self.reexport_reason)
            self.mapping, self._slots = {}, {}
            (notice or default_notice)(f"{type(model).__name__}: weight swap not proven safe "
                                       f"({self.reexport_reason[:300]}); re-exporting every checkpoint instead")

    @property
    def swaps(self) -> bool:
        """True when checkpoints are swapped into one export, False when each is re-exported."""
        return self.reexport_reason is None

    def model_bytes(self, state: Mapping[str, torch.Tensor]) -> bytes:
        """Serialized ONNX model computing ``model`` with the tensors ``state``.

        A swap replaces every mapped initializer; in re-export mode ``state`` is loaded into ``model``, which is
        exported and verified against torch (one-line DataError above ``atol``).
        """
        if not self.swaps:
            if any(state[k] is not v for k, v in self.model.state_dict().items() if k in state):
                self.model.load_state_dict(state, strict=True)
            prep = Preprocessing(size=self.size)
            data = export_model(self.model, prep).SerializeToString()
            verify_export(self.model, data, prep.random_batch(2, seed=1), atol=self.atol, what="the re-export")
            return data
        return self._swapped(state).SerializeToString()

    def _swapped(self, state: Mapping[str, torch.Tensor]) -> onnx.ModelProto:
        initializers = self.proto.graph.initializer
        for name, index in self._slots.items():
            old = initializers[index]
            array = state[self.mapping[name]].detach().cpu().numpy()
            if tuple(array.shape) != tuple(old.dims):
                raise DataError(f"tensor {name!r} has shape {tuple(array.shape)}, "
                                f"the ONNX initializer {tuple(old.dims)}")
            new = numpy_helper.from_array(np.ascontiguousarray(array.astype(
                onnx.helper.tensor_dtype_to_np_dtype(old.data_type), copy=False)), name)
            initializers[index].CopyFrom(new)
        return self.proto

    def _probe(self) -> str | None:
        """Swap perturbed weights in and compare ORT with torch; the reason it failed, or None."""
        original = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        generator = torch.Generator().manual_seed(1234)
        perturbed = {k: _perturbed(k, v, generator) for k, v in original.items()}
        x = Preprocessing(size=self.size).random_batch(2, seed=2)
        try:
            self.model.load_state_dict(perturbed, strict=True)
            ref = torch_outputs(self.model, x)
            session = make_session(self._swapped(self.model.state_dict()).SerializeToString(), threads=1)
            out = np.asarray(session.run(None, {session.get_inputs()[0].name: x})[0], np.float32).reshape(len(x), -1)
        finally:
            self.model.load_state_dict(original, strict=True)
            self._swapped(original)
        if out.shape != ref.shape:
            return f"swapped output shape {out.shape} differs from torch {ref.shape}"
        diff = float(np.max(np.abs(out - ref))) if ref.size else 0.0
        tolerance = self.atol * max(1.0, float(np.max(np.abs(ref))) if ref.size else 1.0)
        if not np.isfinite(diff) or diff > tolerance:
            return f"perturbed weights swapped into the ONNX graph differ from torch by {diff:.3g}"
        return None


def _perturbed(key: str, tensor: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A nearby tensor: variances scaled by up to 10 %, other floats shifted by ~5 % of their mean size."""
    if not tensor.is_floating_point() or tensor.numel() == 0:
        return tensor.clone()
    noise = torch.rand(tensor.shape, generator=generator, dtype=torch.float32).to(tensor.dtype)
    if key.endswith("running_var"):
        return tensor * (0.9 + 0.2 * noise)
    scale = float(tensor.abs().mean()) + 1e-2
    return tensor + 0.05 * scale * (2 * noise - 1)


def initializer_map(proto: onnx.ModelProto, model: nn.Module) -> dict[str, str]:
    """``{initializer name: state_dict key}``; one-line DataError when the map is not one-to-one."""
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
        raise DataError(
            f"checkpoint tensors do not map one-to-one onto the ONNX initializers: {len(unmapped)} tensor(s) "
            f"such as {unmapped[0]!r} have no initializer of that name (folded or renamed by the exporter)"
        )
    if not mapping:
        raise DataError("the exported ONNX model has no initializer named after a checkpoint tensor")
    return mapping
