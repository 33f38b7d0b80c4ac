"""Designed gradual interventions: small pure functions ``(image, value, **params) -> image``.

Every edit takes an RGB ``uint8`` image ``[H, W, 3]`` and a property value and returns a new ``uint8`` image of
the same shape. The value 0 returns the original pixels exactly, so a sweep that starts at 0 holds the unedited
image as its step 0. The edits follow the paper: background darkening / brightening with a centred Gaussian
weight (Appx. B.3), alpha-blending a colourful patch into the image (Sec. 4.3), plus global brightness, hue
shift and in-plane rotation for captured-like sweeps.

Sign conventions (documented once, used everywhere):

- ``background`` and ``brightness``: value in ``[-1, 1]``; positive brightens (blends towards white), negative
  darkens (blends towards black); ``|value|`` is the blended fraction where the weight is 1.
  ``darken-background`` / ``brighten-background`` take a non-negative amount in ``[0, 1]`` (monotone sweeps).
- ``hue``: degrees of rotation of the HSV hue circle (positive: red -> yellow -> green).
- ``patch``: opacity in ``[0, 1]`` of the patch at the pixels its mask covers fully.
- ``rotation``: degrees, counter-clockwise (PIL convention), same output size, uncovered corners filled.

Default grids (:func:`default_values`) start at the original: value 0 is step 0 for every kind, so the class
predicted at step 0 (the scoring's default target) is the class of the unedited image. The signed kinds
(``background``, ``brightness``) run from the original towards black (0 -> -1): the paper darkens, and a sweep
from black to white would put the original in the middle (or skip it for an even number of steps). Hue and
rotation stop at half a turn (180 degrees): a full turn would end on the original again. A sequence
records ``includes_original`` exactly when its step 0 applies the identity edit (value 0; for hue and rotation
any multiple of 360 degrees), which returns the input's pixels bit for bit.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from PIL import Image

from epg_core import MAX_READ_BYTES, InterventionSequence, UsageError

from .._progress import Counter, Progress
from ._color import hsv_to_rgb, rgb_to_hsv

__all__ = [
    "KINDS",
    "EditKind",
    "gaussian_weight",
    "background",
    "darken_background",
    "brighten_background",
    "brightness",
    "hue_shift",
    "blend_patch",
    "patch_position",
    "rotate",
    "default_values",
    "synthetic_sequence",
    "check_fits",
]


# --------------------------------------------------------------------------------------------- helpers


def _check_image(image: np.ndarray) -> np.ndarray:
    """Return ``image`` as a uint8 ``[H, W, 3]`` array, or raise a one-line UsageError."""
    arr = np.asarray(image)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
        raise UsageError(f"expected an RGB uint8 image [H, W, 3], got dtype {arr.dtype} and shape {arr.shape}")
    return arr


def _check_value(value: float, low: float, high: float, name: str) -> float:
    """Return ``value`` as a float inside ``[low, high]``, or raise a one-line UsageError."""
    v = float(value)
    if not np.isfinite(v) or v < low or v > high:
        raise UsageError(f"{name} must lie in [{low:g}, {high:g}], got {value!r}")
    return v


def check_fits(n_images: int, height: int, width: int, what: str) -> None:
    """Refuse (before allocating) ``n_images`` RGB images whose pixels exceed the memory budget of one array."""
    size = int(n_images) * int(height) * int(width) * 3
    if size > MAX_READ_BYTES:
        raise UsageError(f"{what}: {n_images} images of {width}x{height} need {size / 2**30:.3g} GiB, more than "
                         f"the budget of {MAX_READ_BYTES / 2**30:.3g} GiB; use fewer steps or a smaller size")


def _to_uint8(x: np.ndarray) -> np.ndarray:
    """Round float pixel values to the nearest uint8 (clipped to [0, 255])."""
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def _blend_towards(image: np.ndarray, value: float, weight: np.ndarray | float) -> np.ndarray:
    """Blend towards white (value > 0) or black (value < 0) by ``|value| * weight`` per pixel."""
    img = image.astype(np.float64)
    w = np.asarray(weight, dtype=np.float64)
    if w.ndim == 2:
        w = w[..., None]
    if value > 0:
        out = img + value * w * (255.0 - img)
    else:
        out = img * (1.0 + value * w)
    return _to_uint8(out)


# ----------------------------------------------------------------------------------------------- edits


def gaussian_weight(shape: tuple[int, int], sigma: float = 0.5) -> np.ndarray:
    """Background weight ``1 - exp(-r^2 / (2 sigma^2))`` on an ``[H, W]`` grid: 0 at the centre, near 1 far away.

    ``r`` is the distance from the image centre with both axes scaled to ``[-1, 1]`` (the edge midpoints sit at
    ``r = 1``), so the weight follows the image's aspect ratio. A smaller ``sigma`` shrinks the protected centre.
    """
    h, w = int(shape[0]), int(shape[1])
    if h < 1 or w < 1:
        raise UsageError(f"shape must be positive, got {shape!r}")
    if not np.isfinite(sigma) or sigma <= 0:
        raise UsageError(f"sigma must be > 0, got {sigma!r}")
    ys = np.linspace(-1.0, 1.0, h) if h > 1 else np.zeros(1)
    xs = np.linspace(-1.0, 1.0, w) if w > 1 else np.zeros(1)
    r2 = ys[:, None] ** 2 + xs[None, :] ** 2
    return 1.0 - np.exp(-r2 / (2.0 * sigma**2))


def background(image: np.ndarray, value: float, *, sigma: float = 0.5) -> np.ndarray:
    """Brighten (value > 0) or darken (value < 0) the background with a centred Gaussian weight (Appx. B.3).

    Pixels far from the centre change most: each pixel moves ``value * gaussian_weight`` of the way to white
    (or black). ``value`` lies in ``[-1, 1]``; 0 returns the original exactly.
    """
    img = _check_image(image)
    v = _check_value(value, -1.0, 1.0, "background value")
    if v == 0.0:
        return img.copy()
    return _blend_towards(img, v, gaussian_weight(img.shape[:2], sigma))


def darken_background(image: np.ndarray, value: float, *, sigma: float = 0.5) -> np.ndarray:
    """Darken the background by ``value`` in ``[0, 1]`` (``background(image, -value)``), for monotone sweeps."""
    v = _check_value(value, 0.0, 1.0, "darkening amount")
    return background(image, -v, sigma=sigma)


def brighten_background(image: np.ndarray, value: float, *, sigma: float = 0.5) -> np.ndarray:
    """Brighten the background by ``value`` in ``[0, 1]`` (``background(image, value)``)."""
    v = _check_value(value, 0.0, 1.0, "brightening amount")
    return background(image, v, sigma=sigma)


def brightness(image: np.ndarray, value: float) -> np.ndarray:
    """Global brightness: every pixel moves ``value`` of the way to white (> 0) or black (< 0), value in [-1, 1]."""
    img = _check_image(image)
    v = _check_value(value, -1.0, 1.0, "brightness value")
    if v == 0.0:
        return img.copy()
    return _blend_towards(img, v, 1.0)


def _finite(value: float, what: str) -> float:
    """``value`` as a float; a UsageError naming ``what`` when it is not finite."""
    v = float(value)
    if not np.isfinite(v):
        raise UsageError(f"{what} must be finite, got {value!r}")
    return v


def hue_shift(image: np.ndarray, value: float) -> np.ndarray:
    """Rotate the HSV hue of every pixel by ``value`` degrees (saturation and value unchanged).

    Multiples of 360 return the original exactly; grey pixels (no saturation) do not change.
    """
    img, v = _check_image(image), _finite(value, "hue shift")
    if v % 360.0 == 0.0:
        return img.copy()
    hsv = rgb_to_hsv(img.astype(np.float64) / 255.0)
    hsv[..., 0] = (hsv[..., 0] + v / 360.0) % 1.0
    return _to_uint8(hsv_to_rgb(hsv) * 255.0)


def _patch_and_mask(patch: np.ndarray, mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Split a patch (RGB or RGBA uint8) and its optional mask into float RGB and a float mask in [0, 1]."""
    p = np.asarray(patch)
    if p.dtype != np.uint8 or p.ndim != 3 or p.shape[2] not in (3, 4):
        raise UsageError(f"patch must be an RGB or RGBA uint8 image, got dtype {p.dtype} and shape {p.shape}")
    if mask is None:
        m = p[..., 3].astype(np.float64) / 255.0 if p.shape[2] == 4 else np.ones(p.shape[:2])
    else:
        m = np.asarray(mask)
        if m.ndim == 3 and m.shape[2] in (1, 3, 4):
            m = m[..., 0]
        if m.shape != p.shape[:2]:
            raise UsageError(f"mask shape {m.shape} does not match the patch's {p.shape[:2]}")
        if m.dtype == np.bool_:
            m = m.astype(np.float64)
        elif m.dtype == np.uint8:
            m = m.astype(np.float64) / 255.0
        else:
            m = m.astype(np.float64)
            if m.min() < 0 or m.max() > 1:
                raise UsageError(f"a float mask must lie in [0, 1], got range [{m.min():g}, {m.max():g}]")
    return p[..., :3].astype(np.float64), m


def patch_position(
    image_shape: Sequence[int], patch_shape: Sequence[int], position: tuple[int, int] | None = None, seed: int = 0
) -> tuple[int, int]:
    """Top-left corner ``(x, y)`` of a patch: ``position`` checked against the image, or drawn with ``seed``.

    The random draw is uniform over all positions where the patch fits, so the same seed gives the same place.
    """
    h, w = int(image_shape[0]), int(image_shape[1])
    ph, pw = int(patch_shape[0]), int(patch_shape[1])
    if ph > h or pw > w:
        raise UsageError(f"patch of size {pw}x{ph} does not fit into the image of size {w}x{h}")
    if position is None:
        rng = np.random.default_rng(seed)
        return int(rng.integers(0, w - pw + 1)), int(rng.integers(0, h - ph + 1))
    x, y = int(position[0]), int(position[1])
    if not (0 <= x <= w - pw and 0 <= y <= h - ph):
        raise UsageError(f"patch position {(x, y)} puts the {pw}x{ph} patch outside the {w}x{h} image")
    return x, y


def blend_patch(
    image: np.ndarray,
    value: float,
    *,
    patch: np.ndarray,
    mask: np.ndarray | None = None,
    position: tuple[int, int] | None = None,
    seed: int = 0,
) -> np.ndarray:
    """Alpha-blend ``patch`` into ``image`` at opacity ``value`` in [0, 1] (paper Sec. 4.3).

    ``out = (1 - value * mask) * image + value * mask * patch`` inside the patch's box, untouched elsewhere.
    ``mask`` (``[h, w]``: bool, uint8 0..255 or float 0..1; an RGBA patch's alpha by default) shapes the patch;
    ``position`` is the top-left ``(x, y)``, or None for a random place drawn with ``seed``.
    """
    img = _check_image(image)
    v = _check_value(value, 0.0, 1.0, "patch opacity")
    p, m = _patch_and_mask(patch, mask)
    x, y = patch_position(img.shape, p.shape, position, seed)
    if v == 0.0:
        return img.copy()
    out = img.copy()
    ph, pw = p.shape[:2]
    region = img[y : y + ph, x : x + pw].astype(np.float64)
    a = (v * m)[..., None]
    out[y : y + ph, x : x + pw] = _to_uint8((1.0 - a) * region + a * p)
    return out


def rotate(image: np.ndarray, value: float, *, fill: tuple[int, int, int] = (0, 0, 0)) -> np.ndarray:
    """Rotate by ``value`` degrees counter-clockwise about the centre (bilinear, same size, corners ``fill``).

    Multiples of 360 return the original exactly.
    """
    img, v = _check_image(image), _finite(value, "rotation angle")
    if v % 360.0 == 0.0:
        return img.copy()
    rotated = Image.fromarray(img).rotate(v, resample=Image.Resampling.BILINEAR, fillcolor=tuple(int(c) for c in fill))
    return np.asarray(rotated, dtype=np.uint8).copy()


# -------------------------------------------------------------------------------------------- registry


@dataclasses.dataclass(frozen=True)
class EditKind:
    """One designed edit: its function, what it changes (in words), the unit, and the default sweep.

    ``default_range`` is ``(start, stop)`` of the default grid; ``start`` is always the identity value 0, so the
    default grid's step 0 is the original. ``period`` (degrees) marks edits whose every multiple of it is also
    the identity (hue, rotation).
    """

    func: Callable[..., np.ndarray]
    description: str
    unit: str
    default_range: tuple[float, float]
    period: float | None = None

    def is_identity(self, value: float) -> bool:
        """True when the edit at ``value`` returns the input's pixels exactly (value 0, or a whole period)."""
        v = float(value)
        return v == 0.0 or (self.period is not None and v % self.period == 0.0)


KINDS: dict[str, EditKind] = {
    "background": EditKind(background, "background brightness (signed)", "fraction", (0.0, -1.0)),
    "darken-background": EditKind(darken_background, "background darkening", "fraction", (0.0, 1.0)),
    "brighten-background": EditKind(brighten_background, "background brightening", "fraction", (0.0, 1.0)),
    "brightness": EditKind(brightness, "brightness (signed)", "fraction", (0.0, -1.0)),
    "hue": EditKind(hue_shift, "hue shift", "deg", (0.0, 180.0), period=360.0),
    "patch": EditKind(blend_patch, "patch opacity", "fraction", (0.0, 1.0)),
    "rotation": EditKind(rotate, "rotation angle", "deg", (0.0, 180.0), period=360.0),  # 360 is the original again
}


def _kind(kind: str) -> EditKind:
    """Look up an edit kind, or raise a one-line UsageError listing the known ones."""
    try:
        return KINDS[kind]
    except KeyError:
        raise UsageError(f"unknown synthetic edit {kind!r}; choose one of {', '.join(KINDS)}") from None


def default_values(kind: str, n: int = 50, *, start: float | None = None, stop: float | None = None) -> np.ndarray:
    """``n`` evenly spaced values from ``start`` to ``stop`` (defaults: the kind's range, which starts at 0).

    Without ``start`` step 0 is value 0, the original image (e.g. 0..1 for patch opacity, 0..-1 for brightness:
    from the original towards black).
    """
    if n < 2:
        raise UsageError(f"need at least 2 steps, got {n}")
    low, high = _kind(kind).default_range
    first = low if start is None else float(start)
    last = high if stop is None else float(stop)
    if not (np.isfinite(first) and np.isfinite(last)):
        raise UsageError(f"the grid's start and stop must be finite, got {first!r} and {last!r}")
    if first == last:
        raise UsageError(f"the grid's start and stop must differ, both are {first:g}")
    return np.linspace(first, last, n)


def _check_values(values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Values as a finite 1-D float64 array with at least one entry."""
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1 or v.size == 0:
        raise UsageError(f"values must be a non-empty 1-D sequence, got shape {v.shape}")
    if not np.all(np.isfinite(v)):
        raise UsageError(f"values must be finite, got {v[~np.isfinite(v)][0]!r}")
    return v


def _attr_value(value: Any) -> Any:
    """Make a parameter storable as an HDF5 attribute (tuples to lists, paths to strings)."""
    if isinstance(value, (tuple, list)):
        return [_attr_value(v) for v in value]
    if isinstance(value, (str, bool, int, float, np.generic, np.ndarray)):
        return value
    return str(value)


def synthetic_sequence(
    image: np.ndarray,
    kind: str,
    values: Sequence[float] | np.ndarray,
    *,
    attrs: Mapping[str, Any] | None = None,
    progress: Progress | None = None,
    **params: Any,
) -> InterventionSequence:
    """Apply the designed edit ``kind`` at every value: one image per value, with provenance attributes.

    ``params`` go to the edit function (``sigma`` for the background, ``patch``/``mask``/``position``/``seed``
    for the patch, ``fill`` for rotation). A patch's position is drawn once, so every step edits the same place.
    ``attrs`` adds provenance (e.g. the patch file's path) and overrides the defaults: ``property`` (the group
    key of a study; default: the kind) and ``image`` (the source image's id). ``includes_original`` is True
    exactly when step 0 is the identity edit (its pixels are the input's). ``progress(done, total)`` is called
    after each step.
    """
    img = _check_image(image)
    spec = _kind(kind)
    vals = _check_values(values)
    params = dict(params)
    extra: dict[str, Any] = {}
    if kind == "patch":
        if params.get("patch") is None:
            raise UsageError("the patch edit needs a patch image (patch=...)")
        p, _ = _patch_and_mask(params["patch"], params.get("mask"))
        x, y = patch_position(img.shape, p.shape, params.get("position"), int(params.get("seed", 0)))
        params["position"] = (x, y)
        extra.update(
            patch_x=x, patch_y=y, patch_width=p.shape[1], patch_height=p.shape[0],
            patch_has_mask=params.get("mask") is not None or np.asarray(params["patch"]).shape[2] == 4,
            seed=int(params.get("seed", 0)),
        )
    check_fits(vals.size, img.shape[0], img.shape[1], f"synthetic {kind}")
    images = np.empty((vals.size, *img.shape), dtype=np.uint8)
    counter = Counter(progress, vals.size)
    for i, v in enumerate(vals):
        images[i] = spec.func(img, float(v), **params)
        counter.add()
    scalar_params = {
        k: _attr_value(v) for k, v in params.items() if k not in ("patch", "mask", "position") and v is not None
    }
    seq_attrs: dict[str, Any] = {
        "source": "synthetic",
        "edit": kind,
        "property": kind,  # the group key of a study; attrs={"property": ...} names it otherwise
        "description": spec.description,
        "unit": spec.unit,
        "includes_original": spec.is_identity(vals[0]),
        **scalar_params,
        **extra,
    }
    seq_attrs.update({k: _attr_value(v) for k, v in (attrs or {}).items() if v is not None})
    return InterventionSequence(images=images, values=vals, attrs=seq_attrs)
