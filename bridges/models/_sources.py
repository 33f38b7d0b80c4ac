"""What every model family builds with: bounded keyword arguments, checked builds, tensor outputs, imports.

The families (``families/``: convmixer, hf, timm, torchvision, a user's factory) decide *what* to build; the
helpers here are *how*, the same for all of them. Keyword arguments from a checkpoint are bounded before a model is
built (:func:`check_kwargs`, and a parameter count taken on the ``meta`` device by :func:`bound_parameters`), so a
corrupt ``paras`` cannot make the process allocate terabytes. A model whose forward returns an output object
(``.logits``), a tuple or a dict is given a forward that returns the tensor (:func:`tensor_output`, without
renaming its state_dict keys, so weight swaps still match by name). Hugging Face folders are read by
:func:`load_hf_state` (used by the checkpoint layouts) with transformers' logs silenced (:func:`quiet_transformers`).
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import logging
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn

from epg_core import DataError, UsageError, import_object

from ._preprocessing import Notice, default_notice

__all__ = ["MAX_PARAMETERS", "import_package", "import_target", "first_line", "known_model_name", "check_kwargs",
           "accepted_kwargs", "transformers_auto_config", "bound_parameters", "checked_build", "infer_num_classes",
           "quiet_transformers", "hf_class", "load_hf_state", "tensor_output"]

MAX_PARAMETERS = 3_000_000_000  # refuse to build a model with more parameters (12 GB of float32)
_MAX_KWARGS, _MAX_INT, _MAX_STR, _MAX_LIST = 128, 10_000_000, 512, 256


def import_package(package: str, architecture: str, module: str | None = None) -> Any:
    """Import ``module`` (default: ``package``) for ``--arch architecture``; a missing one is a usage error, a
    broken one a data error (one line each: a broken install must not print the package's traceback)."""
    try:
        return importlib.import_module(module or package)
    except ImportError as exc:
        raise UsageError(f"--arch {architecture}: the {package!r} package is not installed or does not import "
                         f"({first_line(exc)}); pip install {package}") from None
    except Exception as exc:  # noqa: BLE001 - a broken install raises anything at import time
        raise DataError(f"--arch {architecture}: the {package!r} package is installed but fails to import "
                        f"({type(exc).__name__}: {first_line(exc)}); reinstall it") from None


def import_target(architecture: str) -> Any:
    """The callable ``package.module:name`` names (a factory, or a model family class); one-line errors."""
    found = import_object(architecture, "architecture")
    if not callable(found):
        module_name, _, attr = architecture.partition(":")
        raise UsageError(f"architecture {architecture!r}: {module_name} has no callable {attr!r}")
    return found


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type when empty), at most 160 characters."""
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:160]


def known_model_name(factory: Callable[..., nn.Module], package: Any, name: str, arch: str) -> Callable[..., nn.Module]:
    """Refuse an unknown model name up front when the package can list its models (timm's ``list_models``)."""
    lister = getattr(package, "list_models", None)
    if callable(lister):
        try:
            names = {str(n) for n in cast(Iterable[Any], lister())}
        except Exception:  # noqa: BLE001 - a package that cannot list its models is checked at build time
            return factory
        if names and name not in names:
            raise UsageError(f"--arch {arch}: no model {name!r} in {arch.partition(':')[0]}")
    return factory


# --------------------------------------------------------------------------- kwargs, bounded


def check_kwargs(kwargs: Mapping[str, Any], source: str) -> dict[str, Any]:
    """Architecture kwargs from a checkpoint, checked to be small plain values before anything is built."""
    if len(kwargs) > _MAX_KWARGS:
        raise DataError(f"{source}: {len(kwargs)} architecture arguments (at most {_MAX_KWARGS})")
    for key, value in kwargs.items():
        _check_value(value, f"{source}: architecture argument {key!r}", 0)
    return dict(kwargs)


def _check_value(value: Any, where: str, depth: int) -> None:
    if value is None or isinstance(value, (bool, float)):
        return
    if isinstance(value, int):
        if abs(value) > _MAX_INT:
            raise DataError(f"{where} is {value}, beyond the bound {_MAX_INT:,}")
        return
    if isinstance(value, str):
        if len(value) > _MAX_STR:
            raise DataError(f"{where} is a string of {len(value)} characters (at most {_MAX_STR})")
        return
    if isinstance(value, (list, tuple)) and depth < 2:
        if len(value) > _MAX_LIST:
            raise DataError(f"{where} is a list of {len(value)} items (at most {_MAX_LIST})")
        for item in value:
            _check_value(item, where, depth + 1)
        return
    raise DataError(f"{where} is a {type(value).__name__}; expected numbers, strings or short lists")


def accepted_kwargs(
    factory: Callable[..., Any], hyper_parameters: Mapping[str, Any], source: str, notice: Notice | None = None
) -> dict[str, Any]:
    """The Lightning ``hyper_parameters`` that name a parameter of ``factory`` (the rest: one notice)."""
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return {}
    named = {n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    kept = {k: v for k, v in hyper_parameters.items() if k in named}
    dropped = sorted(set(hyper_parameters) - set(kept))
    if dropped and kept:
        (notice or default_notice)(f"{source}: architecture arguments from the Lightning hyper_parameters: "
                                   f"{sorted(kept)}; ignored: {dropped[:8]}")
    return kept


def transformers_auto_config(folder: Path) -> Any:
    """``AutoConfig.from_pretrained`` of a local folder."""
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(str(folder))


def bound_parameters(factory: Callable[..., Any], kwargs: Mapping[str, Any], source: str, arch: str) -> None:
    """Count the parameters ``factory(**kwargs)`` would have on the ``meta`` device; DataError beyond the bound."""
    try:
        with torch.device("meta"):
            probe = factory(**kwargs)
        count = sum(p.numel() for p in probe.parameters()) if isinstance(probe, nn.Module) else 0
        del probe
    except Exception:  # noqa: BLE001 - a factory that cannot build on meta is built (and fails) for real below
        count = 0
    if count > MAX_PARAMETERS:
        raise DataError(f"{source}: {arch} with {dict(kwargs)} would have {count:,} parameters "
                        f"(more than {MAX_PARAMETERS:,}); refusing to build it")


def checked_build(factory: Callable[..., nn.Module], kwargs: Mapping[str, Any], source: str, arch: str) -> nn.Module:
    """``factory(**kwargs)`` after :func:`bound_parameters`; one-line errors for kwargs it refuses."""
    bound_parameters(factory, kwargs, source, arch)
    try:
        model = factory(**kwargs)
    except TypeError as exc:
        raise DataError(f"{source}: wrong architecture: {arch} does not accept {dict(kwargs)} ({exc})") from None
    except (RuntimeError, ValueError, KeyError, AssertionError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{source}: {arch} cannot be built with {dict(kwargs)} ({first[:200]})") from None
    if not isinstance(model, nn.Module):
        raise UsageError(f"architecture {arch!r} returned a {type(model).__name__}, not a torch nn.Module")
    return model


def infer_num_classes(model: nn.Module, state: Mapping[str, torch.Tensor]) -> int | None:
    """The checkpoint's class count when only the model's last linear layer disagrees with it, else None."""
    last = None
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            last = name
    key = f"{last}.weight" if last else None
    if key is None or key not in state:
        return None
    want, have = state[key].shape, model.state_dict()[key].shape
    if len(want) == 2 and want[1] == have[1] and want[0] != have[0]:
        return int(want[0])
    return None


# --------------------------------------------------------------------------- Hugging Face


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers' loading logs, load reports and progress bars for a while."""
    from transformers.utils import logging as hf_logging

    logger = logging.getLogger("transformers")
    level, bars = logger.level, hf_logging.is_progress_bar_enabled()
    verbosity = hf_logging.get_verbosity()
    logger.setLevel(logging.ERROR)
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def hf_class(config: Mapping[str, Any]) -> Any:
    """The model class a folder's config names (``architectures``), else AutoModelForImageClassification."""
    import transformers

    names = config.get("architectures") or []
    cls = getattr(transformers, str(names[0]), None) if isinstance(names, list) and names else None
    if isinstance(cls, type) and issubclass(cls, transformers.PreTrainedModel):
        return cls
    return transformers.AutoModelForImageClassification


def load_hf_state(folder: Path, config: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """The tensors of an HF folder in the names of the model transformers builds (strict: nothing missing)."""
    try:
        cls = hf_class(config)
        with quiet_transformers():
            hf_config = transformers_auto_config(folder)
            bound_parameters(lambda: cls.from_config(hf_config) if hasattr(cls, "from_config") else cls(hf_config),
                             {}, str(folder), "hf")
            model, info = cls.from_pretrained(str(folder), output_loading_info=True)
    except ImportError as exc:
        raise UsageError(f"{folder}: the 'transformers' package does not import ({exc})") from None
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{folder}: cannot load the model ({first[:200]})") from None
    for key, what in (("missing_keys", "missing tensor"), ("unexpected_keys", "wrong architecture: unexpected "
                      "tensor"), ("mismatched_keys", "wrong architecture: tensor of another shape")):
        found = sorted(str(k) for k in info.get(key, ()) or ())
        if found:
            more = f" and {len(found) - 1} more" if len(found) > 1 else ""
            raise DataError(f"{folder}: {what} {found[0]!r}{more}")
    return {k: v.detach() for k, v in model.state_dict().items()}


# --------------------------------------------------------------------------- outputs as a tensor


def _forward_tensor(self: nn.Module, x: torch.Tensor) -> torch.Tensor:
    out = type(self).__bases__[0].forward(self, x)
    return _as_tensor(out)


def _as_tensor(out: Any) -> torch.Tensor:
    if isinstance(out, torch.Tensor):
        return out
    logits = getattr(out, "logits", None)
    if isinstance(logits, torch.Tensor):
        return logits
    if isinstance(out, Mapping) and isinstance(out.get("logits"), torch.Tensor):
        return cast(torch.Tensor, out["logits"])
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    raise DataError(f"the model returned a {type(out).__name__}, not a tensor or an output with .logits")


_SUBCLASSES: dict[type, type] = {}


def tensor_output(model: nn.Module) -> nn.Module:
    """Give ``model`` a forward returning a tensor (``.logits``, a tuple's first item); keys stay the same.

    Done by switching the instance to a subclass that overrides ``forward`` only, so the state_dict, the
    ONNX initializer names and weight swaps are unaffected.
    """
    cls = type(model)
    if getattr(cls, "_epg_tensor_output", False) or isinstance(model, nn.Sequential):
        return model
    sub = _SUBCLASSES.get(cls)
    if sub is None:
        sub = type(cls.__name__, (cls,), {"forward": _forward_tensor, "_epg_tensor_output": True,
                                          "__module__": cls.__module__, "__qualname__": cls.__qualname__})
        _SUBCLASSES[cls] = sub
    model.__class__ = sub
    return model
