"""Where a model's preprocessing and class names come from, and which wins (no torch needed).

The rule (documented for users in the CLI help):

1. A model that carries its preprocessing (the spec beside an ``.onnx`` file, an HF folder's
   ``preprocessor_config.json``, a checkpoint's ``preprocessing`` entry, timm/torchvision metadata) is run
   with it. Options the user gives explicitly replace the matching fields; each one that contradicts the
   carried value is reported through ``notice`` (one line), never silently applied or dropped.
2. A model that carries none needs at least the input size from the user (``--size``); the other fields
   then take :class:`Preprocessing`'s defaults (mean = std = 0.5, stretch). There is no silent 128-px default.
3. ``fallback`` (e.g. an HF config's ``image_size``) is used, with a notice, when the user gives no size.

Class names: the user's list, else a classes file (one per line), else the model's (``id2label``), else
``class_0 ...``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, cast

from epg_core import DataError, UsageError

from ._spec import Preprocessing

__all__ = [
    "Notice",
    "PREPROCESSING_OPTIONS",
    "contradictions",
    "default_notice",
    "preprocessing_from_hf",
    "read_hf_preprocessing",
    "read_json_object",
    "resolve_preprocessing",
    "read_classes_file",
    "resolve_classes",
]

Notice = Callable[[str], None]
LOG = logging.getLogger("epg_bridges")
PREPROCESSING_OPTIONS = ("size", "resize", "crop", "crop_pct", "interpolation", "mean", "std", "channel_order")
_PIL_FILTERS = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic"}
_SAID: set[str] = set()


def default_notice(message: str) -> None:
    """Log ``message`` (WARNING on the ``epg_bridges`` logger) once per process and per text after its source.

    So a sweep says "stripped the prefix 'model.'" once, not once per checkpoint.
    """
    key = message.split(": ", 1)[-1]
    if key not in _SAID:
        _SAID.add(key)
        LOG.warning("%s", message)


def _pair(value: Any, where: str) -> tuple[int, int]:
    if isinstance(value, Mapping):
        if "height" in value and "width" in value:
            return int(value["height"]), int(value["width"])
        if "shortest_edge" in value:
            side = int(value["shortest_edge"])
            return side, side
        raise DataError(f"{where}: size {dict(value)} has neither height/width nor shortest_edge")
    if isinstance(value, int):
        return value, value
    raise DataError(f"{where}: size {value!r} is not understood")


def preprocessing_from_hf(config: Mapping[str, Any], where: str, notice: Notice | None = None) -> Preprocessing:
    """A transformers image-processor config (``preprocessor_config.json``) as a :class:`Preprocessing`.

    Handles ``size`` as height/width (stretch) or ``shortest_edge`` (with ``crop_size`` or ConvNeXt's
    ``crop_pct``), ``resample``, ``do_rescale``/``rescale_factor``/``rescale_offset`` and ``image_mean``/
    ``image_std`` (folded into an equivalent mean/std on [0, 1] pixels). Keys it cannot reproduce are named
    in a notice (EfficientNet's ``include_top``).
    """
    say = notice or default_notice
    if not config.get("do_resize", True):
        raise DataError(f"{where}: do_resize is false; the input size is then the image's own: give --size")
    size = config.get("size")
    if size is None:
        raise DataError(f"{where}: no 'size'")
    resample = config.get("resample", 2)
    if resample not in _PIL_FILTERS:
        raise DataError(f"{where}: resample filter {resample!r} is not supported ({sorted(_PIL_FILTERS)})")
    crop_size = config.get("crop_size") if config.get("do_center_crop", False) else None
    kwargs: dict[str, Any] = {"interpolation": _PIL_FILTERS[resample]}
    if isinstance(size, Mapping) and "shortest_edge" in size:
        short = int(size["shortest_edge"])
        if crop_size is not None:
            h, w = _pair(crop_size, where)
            kwargs.update(size=(h, w), resize="shortest", crop="center", crop_pct=max(h, w) / short)
        elif config.get("crop_pct") is not None and short < 384:  # ConvNeXt: resize short/crop_pct, crop short
            kwargs.update(size=(short, short), resize="shortest", crop="center", crop_pct=float(config["crop_pct"]))
        elif "crop_pct" in config:  # ConvNeXt at >= 384 px: a plain stretch
            kwargs.update(size=(short, short))
        else:
            raise DataError(f"{where}: shortest_edge resize without a crop gives inputs of varying size; "
                            "give --size and --resize")
    else:
        h, w = _pair(size, where)
        if crop_size is not None:
            ch, cw = _pair(crop_size, where)
            if abs(ch / h - cw / w) > 1e-6:
                raise DataError(f"{where}: crop {ch}x{cw} of a {h}x{w} resize is not supported (unequal ratios)")
            kwargs.update(size=(ch, cw), crop="center", crop_pct=ch / h)
        else:
            kwargs.update(size=(h, w))
    gain = 255.0 * float(config.get("rescale_factor", 1 / 255)) if config.get("do_rescale", True) else 255.0
    offset = -1.0 if config.get("rescale_offset", False) else 0.0
    mean, std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    if config.get("do_normalize", True):
        mean = _triple(config.get("image_mean", (0.5, 0.5, 0.5)), where, "image_mean")
        std = _triple(config.get("image_std", (0.5, 0.5, 0.5)), where, "image_std")
    kwargs["mean"] = tuple((m - offset) / gain for m in mean)
    kwargs["std"] = tuple(s / gain for s in std)
    if config.get("include_top", False) and "EfficientNet" in str(config.get("image_processor_type", "")):
        say(f"{where}: include_top (a second division by image_std) is not reproduced")
    try:
        return Preprocessing(**kwargs)
    except UsageError as exc:
        raise DataError(f"{where}: {exc}") from None


def _triple(value: Any, where: str, key: str) -> tuple[float, float, float]:
    values = [float(v) for v in (value if isinstance(value, (list, tuple)) else [value] * 3)]
    if len(values) != 3:
        raise DataError(f"{where}: {key} needs 3 values, got {value!r}")
    return values[0], values[1], values[2]


def read_hf_preprocessing(folder: str | os.PathLike[str], notice: Notice | None = None) -> Preprocessing | None:
    """The preprocessing of an HF model folder (``preprocessor_config.json``), or None when it has none."""
    path = Path(folder) / "preprocessor_config.json"
    if not path.is_file():
        return None
    return preprocessing_from_hf(read_json_object(path, "image-processor config"), str(path), notice)


def read_json_object(path: Path, what: str, detail: Callable[[BaseException], str] = str) -> dict[str, Any]:
    """The JSON object stored in ``path`` (UTF-8); ``DataError`` naming ``what`` when unreadable or not an object."""
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: unreadable {what} ({detail(exc)})") from None
    if not isinstance(config, dict):
        raise DataError(f"{path}: not a JSON object")
    return config


def resolve_preprocessing(
    carried: Preprocessing | None,
    options: Mapping[str, Any] | None = None,
    *,
    source: str,
    fallback: Preprocessing | None = None,
    fallback_from: str = "its config",
    notice: Notice | None = None,
) -> Preprocessing:
    """The preprocessing to run a model with (see the module doc for the rule).

    ``carried``: what the model carries (None: nothing); ``options``: only the fields the user gave
    explicitly (``None`` values are ignored; keys from :data:`PREPROCESSING_OPTIONS`); ``source`` names the
    model in messages; ``fallback``: a model-derived default used, with a notice naming ``fallback_from``, when
    the user gives no size. Every given field that contradicts the carried one is named in one notice line.
    """
    say = notice or default_notice
    given = {k: v for k, v in (options or {}).items() if v is not None}
    unknown = sorted(set(given) - set(PREPROCESSING_OPTIONS))
    if unknown:
        raise UsageError(f"unknown preprocessing option {unknown[0]!r} (known: {', '.join(PREPROCESSING_OPTIONS)})")
    if "size" in given:
        size = given["size"]
        given["size"] = (int(size), int(size)) if isinstance(size, int) else tuple(int(s) for s in size)
    base = carried
    if base is None:
        if "size" not in given:
            if fallback is None:
                raise UsageError(f"{source}: the model carries no preprocessing; give its input size (--size N or "
                                 "WIDTHxHEIGHT) and, if it was trained with them, --mean/--std/--resize")
            say(f"{source}: no preprocessing stored with the model; using {_describe(fallback)} from "
                f"{fallback_from}")
            base = fallback
        else:
            base = Preprocessing(size=cast(tuple[int, int], given["size"]))
    else:
        contradicted = contradictions(base, dataclasses.replace(base, **given), given)
        if contradicted:
            say(f"{source}: {contradicted}")
    return dataclasses.replace(base, **given)


def contradictions(carried: Preprocessing, used: Preprocessing, keys: Iterable[str] | None = None) -> str:
    """'the model was made for size 224x224; running it with 160x160 as asked' for the ``keys`` that differ.

    Several fields: 'the model was made for size 224x224, crop none; running it with size 160x160, crop center
    as asked'. Empty when nothing differs. (``used`` went through __post_init__, so v1 spellings compare equal.)
    """
    names = list(keys) if keys is not None else list(PREPROCESSING_OPTIONS)
    differ = [k for k in names if getattr(carried, k) != getattr(used, k)]
    if not differ:
        return ""
    if len(differ) == 1:
        key = differ[0]
        return f"the model was made for {key} {_show(getattr(carried, key))}; running it with " \
               f"{_show(getattr(used, key))} as asked"
    made = ", ".join(f"{k} {_show(getattr(carried, k))}" for k in differ)
    run = ", ".join(f"{k} {_show(getattr(used, k))}" for k in differ)
    return f"the model was made for {made}; running it with {run} as asked"


def _show(value: Any) -> str:
    if isinstance(value, tuple) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return f"{value[1]}x{value[0]}"
    if isinstance(value, tuple):
        return ",".join(f"{v:.4g}" for v in value)
    return str(value)


def _describe(prep: Preprocessing) -> str:
    crop = f", {prep.resize} resize, centre crop {prep.crop_pct:g}" if prep.crop == "center" else ""
    return f"size {_show(prep.size)}{crop}, mean {_show(prep.mean)}, std {_show(prep.std)}"


def read_classes_file(path: str | os.PathLike[str], notice: Notice | None = None) -> list[str]:
    """Class names, one per line (blank lines and surrounding spaces ignored).

    Repeated names (ImageNet has two 'crane' and two 'maillot') get their line number appended, with a
    notice, so every output keeps a distinct name.
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise UsageError(f"{path}: classes file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: unreadable classes file ({exc})") from None
    names = [(i + 1, ln.strip()) for i, ln in enumerate(lines) if ln.strip()]
    if not names:
        raise UsageError(f"{path}: classes file is empty")
    counts: dict[str, int] = {}
    for _, name in names:
        counts[name] = counts.get(name, 0) + 1
    repeated = sorted(n for n, c in counts.items() if c > 1)
    if repeated:
        (notice or default_notice)(f"{path}: repeated class names {repeated[:3]} get their line number appended")
    return [f"{name} ({line})" if counts[name] > 1 else name for line, name in names]


def resolve_classes(
    n: int,
    given: Sequence[str] | None = None,
    *,
    classes_file: str | os.PathLike[str] | None = None,
    model_classes: Sequence[str] | None = None,
    source: str = "the model",
    notice: Notice | None = None,
) -> list[str]:
    """Names for ``n`` outputs: ``given``, else ``classes_file``, else the model's own, else ``class_i``."""
    if given and classes_file is not None:
        raise UsageError("give class names either as a list (--classes) or as a file (--classes-file), not both")
    names = list(given) if given else read_classes_file(classes_file, notice) if classes_file is not None else None
    if names is not None:
        if len(names) != n:
            what = f"{classes_file}: " if classes_file is not None else ""
            raise UsageError(f"{what}{len(names)} class names given but {source} has {n} outputs")
        return [str(c) for c in names]
    if model_classes and len(model_classes) == n:
        return [str(c) for c in model_classes]
    return [f"class_{i}" for i in range(n)]
