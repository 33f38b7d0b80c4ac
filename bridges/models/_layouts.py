"""Checkpoint layouts: every way a trained model's tensors arrive, read without running foreign code.

Accepted: a plain state_dict; a dict holding one under ``state_dict``/``model_state_dict``/``model``
(Lightning, the paper's reference checkpoints with ``paras``, DeiT-style); timm's ``state_dict_ema`` (taken
in preference, as timm does; ``no_ema`` takes the raw weights); ``.safetensors`` files; TorchScript archives
(their tensors only); Hugging Face folders (``config.json`` plus ``model.safetensors`` or ``pytorch_model.bin``,
sharded or not). Pickled files are always read with ``torch.load(weights_only=True)``: a whole pickled model or
any other pickled object is refused with a message saying why, and is never executed.

Name prefixes (DataParallel ``module.``, Lightning ``model.``/``net.``) are stripped by :func:`match_state`
when that makes the names match the model, and a notice says so.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import pickletools
import re
import warnings
import zipfile
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any, cast

import torch

from epg_core import DataError, MissingFileError, UsageError

from ._checkpoints import Checkpoint as Checkpoint
from ._checkpoints import is_hf_folder, is_onnx_path
from ._preprocessing import Notice, default_notice, read_hf_preprocessing, read_json_object
from ._sources import load_hf_state
from ._spec import Preprocessing

__all__ = ["Checkpoint", "EMA_KEYS", "STATE_KEYS", "load_checkpoint", "match_state"]

EMA_KEYS = ("state_dict_ema", "model_ema", "ema_state_dict")
STATE_KEYS = ("state_dict", "model_state_dict", "model")
_HF_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
               "pytorch_model.bin.index.json")
_HF_VOLATILE = ("transformers_version", "torch_dtype", "dtype")  # may differ between epochs of one run
_SAFE_GLOBALS = [argparse.Namespace]  # timm training checkpoints store their arguments as a Namespace


def load_checkpoint(path: str | os.PathLike[str], *, no_ema: bool = False, notice: Notice | None = None) -> Checkpoint:
    """Read any supported layout (see the module doc) into a :class:`Checkpoint`; one-line errors name the file."""
    path = Path(path)
    say = notice or default_notice
    if not path.exists():
        raise MissingFileError(f"{path}: checkpoint not found")
    if is_onnx_path(path):
        raise UsageError(f"{path}: an .onnx file holds no torch weights; pass it to `epg predict` directly")
    if path.is_dir():
        return _load_hf_folder(path, say)
    if path.suffix.lower() == ".safetensors":
        return Checkpoint(path=path, state_dict=_tensors(_safetensors(path), path), layout="safetensors")
    if _is_torchscript(path):
        return Checkpoint(path=path, state_dict=_torchscript_state(path), layout="torchscript")
    return _split(_torch_load(path), path, no_ema, say)


# --------------------------------------------------------------------------- readers


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:200]


_SAFETENSORS_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
                       "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
                       "U8": torch.uint8, "BOOL": torch.bool}


def _safetensors(path: Path) -> dict[str, torch.Tensor]:
    """Read a ``.safetensors`` file (8-byte header length, JSON header, raw little-endian data); no code runs."""
    try:
        data = path.read_bytes()
        size = int.from_bytes(data[:8], "little")
        if len(data) < 8 or not 2 <= size <= len(data) - 8:
            raise ValueError("bad header length")
        header = json.loads(data[8:8 + size])
        body = memoryview(data)[8 + size:]
        state = {}
        for name, info in header.items():
            if name == "__metadata__":
                continue
            dtype = _SAFETENSORS_DTYPES[info["dtype"]]
            start, stop = (int(v) for v in info["data_offsets"])
            shape = [int(d) for d in info["shape"]]
            if not 0 <= start <= stop <= len(body):
                raise ValueError(f"tensor {name!r} lies outside the file")
            flat = torch.frombuffer(bytearray(body[start:stop]), dtype=dtype) if stop > start else \
                torch.zeros(0, dtype=dtype)
            state[name] = flat.reshape(shape)
        return state
    except (OSError, ValueError, KeyError, TypeError, RuntimeError, AttributeError) as exc:
        raise DataError(f"{path}: corrupt or unreadable safetensors file ({_first_line(exc)})") from None


def _is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    try:
        with zipfile.ZipFile(path) as archive:
            return any(n == "constants.pkl" or n.endswith("/constants.pkl") for n in archive.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def _torchscript_state(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a TorchScript archive (its code is never called)."""
    try:
        module = torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:  # noqa: BLE001 - the TorchScript loader raises many private types
        raise DataError(f"{path}: unreadable TorchScript archive ({_first_line(exc)})") from None
    return _tensors({k: v.detach() for k, v in module.state_dict().items()}, path)


def _torch_load(path: Path) -> Any:
    """``torch.load(weights_only=True)``; pickled objects are refused with the reason, never executed."""
    try:
        with warnings.catch_warnings(), torch.serialization.safe_globals(cast(Any, _SAFE_GLOBALS)):
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(exc))
        if found:
            raise DataError(_refusal(path, found.group(1))) from None
        detail = re.search(r"WeightsUnpickler error:\s*([^\n]+)", str(exc))
        reason = detail.group(1).strip() if detail else "not a torch checkpoint"
        raise DataError(f"{path}: corrupt or unreadable checkpoint ({reason[:160]})") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError, KeyError, IndexError) as exc:
        raise DataError(f"{path}: corrupt or unreadable checkpoint ({_first_line(exc)[:160]})") from None


def _refusal(path: Path, name: str) -> str:
    """Why a pickle was refused: a whole model (say how to re-save it) or any other object."""
    if _pickles_module(path):
        return (f"{path}: refused: the file holds a whole pickled model ({name}), not a plain tensor checkpoint; "
                "torch.load(weights_only=True) does not unpickle objects because that can run arbitrary code. "
                "Re-save the weights with torch.save(model.state_dict(), path)")
    return (f"{path}: refused: not a plain tensor checkpoint (weights_only): it pickles {name}, "
            "which could run arbitrary code")


def _pickles_module(path: Path) -> bool:
    """True when the pickle (read as opcodes, never executed) holds an ``nn.Module``'s attribute dict."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                name = next((n for n in archive.namelist() if n.endswith("data.pkl")), None)
                data = archive.read(name) if name else b""
        else:
            data = path.read_bytes()
        strings = {arg for op, arg, _ in pickletools.genops(data) if isinstance(arg, str)
                   and op.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE")}
    except Exception:  # noqa: BLE001 - a malformed pickle simply is not a recognisable module
        return False
    return {"_modules", "_parameters"} <= strings


# --------------------------------------------------------------------------- layouts


def _tensors(state: Mapping[Any, Any], path: Path) -> dict[str, torch.Tensor]:
    out = {str(k): v for k, v in state.items()}
    bad = [k for k, v in out.items() if not isinstance(v, torch.Tensor)]
    if bad or not out:
        what = f"non-tensor entry {bad[0]!r}" if bad else "no tensors"
        raise DataError(f"{path}: not a state_dict ({what})")
    return out


def _is_tensor_map(value: Any) -> bool:
    return isinstance(value, Mapping) and bool(value) and all(isinstance(v, torch.Tensor) for v in value.values())


def _split(obj: Any, path: Path, no_ema: bool, say: Notice) -> Checkpoint:
    """A plain state_dict, or a dict holding one (EMA preferred) plus paras/hyper_parameters/preprocessing."""
    if not isinstance(obj, Mapping):
        raise DataError(f"{path}: checkpoint holds a {type(obj).__name__}, expected a state_dict or a dict "
                        "with 'state_dict'")
    if _is_tensor_map(obj):
        return Checkpoint(path=path, state_dict=_tensors(obj, path))
    ema = next((k for k in EMA_KEYS if _is_tensor_map(obj.get(k))), None)
    raw = next((k for k in STATE_KEYS if isinstance(obj.get(k), Mapping)), None)
    if ema is not None and (raw is None or not no_ema):
        key, layout = ema, "ema"
        if raw is not None:
            say(f"{path}: using the EMA weights ({ema!r}), as timm does; --no-ema takes {raw!r}")
    elif raw is not None:
        key, layout = raw, "lightning" if "pytorch-lightning_version" in obj or "hyper_parameters" in obj \
            else "state_dict"
    else:
        keys = ", ".join(repr(k) for k in list(obj)[:6])
        raise DataError(f"{path}: no state_dict in the checkpoint (keys {keys}; expected a tensor dict or one of "
                        f"{', '.join(STATE_KEYS + EMA_KEYS)})")
    return Checkpoint(path=path, state_dict=_tensors(obj[key], path), paras=_mapping(obj, "paras", path),
                      hyper_parameters=_mapping(obj, "hyper_parameters", path),
                      preprocessing=_carried_preprocessing(obj, path), classes=_classes(obj.get("classes"), path),
                      layout=layout)


def _mapping(obj: Mapping[str, Any], key: str, path: Path) -> dict[str, Any]:
    value = obj.get(key, {})
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise DataError(f"{path}: {key!r} is a {type(value).__name__}, expected a dict of keyword arguments")
    return {str(k): v for k, v in value.items()}


def _carried_preprocessing(obj: Mapping[str, Any], path: Path) -> Preprocessing | None:
    value = obj.get("preprocessing")
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise DataError(f"{path}: 'preprocessing' is a {type(value).__name__}, expected a dict")
    try:
        return Preprocessing.from_dict(value)
    except (ValueError, TypeError) as exc:
        raise DataError(f"{path}: bad 'preprocessing' entry ({_first_line(exc)})") from None


def _classes(value: Any, path: Path) -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, (list, tuple)) or not all(isinstance(c, str) for c in value):
        raise DataError(f"{path}: 'classes' must be a list of names")
    return list(value)


def _load_hf_folder(folder: Path, say: Notice) -> Checkpoint:
    """An HF ``save_pretrained`` folder: config, weights (sharded or not), id2label and image processor.

    The tensors are those of the model transformers builds from the folder (its loader renames legacy names,
    e.g. Swin's), in the model's own names; anything missing, unexpected or misshapen is refused.
    """
    if not is_hf_folder(folder):
        raise DataError(f"{folder}: a folder checkpoint must be a Hugging Face model folder (config.json)")
    config = read_json_object(folder / "config.json", "model config", _first_line)
    if not any((folder / n).is_file() for n in _HF_WEIGHTS):
        raise DataError(f"{folder}: no weights ({' or '.join(_HF_WEIGHTS)})")
    state = load_hf_state(folder, config)  # transformers renames some tensors on load: let it, then check strictly
    labels = config.get("id2label")
    classes = None
    if isinstance(labels, dict) and labels:
        try:
            classes = [str(labels[k]) for k in sorted(labels, key=int)]
        except (ValueError, TypeError):
            classes = None
    paras = {k: v for k, v in config.items() if not k.startswith("_") and k not in _HF_VOLATILE}
    return Checkpoint(path=folder, state_dict=state, paras=paras, config=config, classes=classes,
                      preprocessing=read_hf_preprocessing(folder, say), layout="hf")


# --------------------------------------------------------------------------- names


def match_state(
    expected: Collection[str], state: Mapping[str, torch.Tensor], source: str | Path, notice: Notice | None = None
) -> dict[str, torch.Tensor]:
    """``state`` with a common name prefix stripped when that (and only that) makes its names match ``expected``.

    Tries every prefix of one or two dotted components (``module.``, ``model.``, ``net.``, ``model.module.``);
    tensors outside the prefix (a Lightning module's loss weights, say) are ignored and counted in the notice.
    Returns ``state`` unchanged when no prefix matches (the caller then reports the mismatch).
    """
    wanted = set(expected)
    if not wanted or set(state) == wanted:
        return dict(state)
    prefixes: dict[str, int] = {}
    for key in state:
        parts = key.split(".")
        for depth in (1, 2):
            if len(parts) > depth:
                prefix = ".".join(parts[:depth]) + "."
                prefixes[prefix] = prefixes.get(prefix, 0) + 1
    for prefix in sorted(prefixes, key=lambda p: (-prefixes[p], len(p))):
        stripped = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        if set(stripped) == wanted:
            ignored = [k for k in state if not k.startswith(prefix)]
            extra = f"; ignored {len(ignored)} other tensor(s) such as {ignored[0]!r}" if ignored else ""
            (notice or default_notice)(f"{source}: stripped the prefix {prefix!r} from the checkpoint's tensor "
                                       f"names{extra}")
            return stripped
    return dict(state)
