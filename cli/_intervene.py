"""``epg intervene edit|synthetic|frames``: make gradual interventions into an interventions HDF5 file.

Thin wrappers over ``epg_bridges.interventions`` (diffusion edits, designed edits, frames). Each command
writes the HDF5 file atomically plus a contact-sheet PNG beside it (same name, ``.png``), then prints the paths
and a one-row table. Heavy imports (torch, diffusers, jax) happen inside the commands so ``epg --help`` stays fast.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ._extras import needs_extras
from ._options import data_errors, quiet_option, seed_option, threads_option

if TYPE_CHECKING:
    from epg_core import InterventionSequence

_SYNTHETIC_KINDS = (
    "background", "darken-background", "brighten-background", "brightness", "hue", "patch", "rotation",
)
_METHODS = ("instruct-pix2pix", "ledits++")


# --------------------------------------------------------------------------------------------- parsing


def _parse_floats(text: str, what: str) -> list[float]:
    """``"1.5, 2, 3"`` -> ``[1.5, 2.0, 3.0]``; a one-line ValueError for anything else."""
    parts = [p.strip() for p in text.replace(";", ",").split(",") if p.strip()]
    if not parts:
        raise ValueError(f"{what} is empty: {text!r}")
    try:
        return [float(p) for p in parts]
    except ValueError:
        raise ValueError(f"{what} must be comma-separated numbers, got {text!r}") from None


def _parse_size(text: str | None) -> tuple[int, int] | None:
    """``"512"`` -> (512, 512); ``"640x480"`` -> (640, 480) as (width, height)."""
    if text is None:
        return None
    parts = text.lower().replace("×", "x").split("x")
    try:
        wh = [int(p) for p in parts]
    except ValueError:
        raise ValueError(f"size must be N or WIDTHxHEIGHT, got {text!r}") from None
    if len(wh) == 1:
        wh = wh * 2
    if len(wh) != 2 or min(wh) < 1:
        raise ValueError(f"size must be N or WIDTHxHEIGHT with positive numbers, got {text!r}")
    return wh[0], wh[1]


def _parse_ints(text: str | None, n: int, what: str) -> tuple[int, ...] | None:
    """``"10,20"`` -> (10, 20) with exactly ``n`` integers."""
    if text is None:
        return None
    values = _parse_floats(text, what)
    if len(values) != n or any(v != int(v) for v in values):
        raise ValueError(f"{what} must be {n} comma-separated integers, got {text!r}")
    return tuple(int(v) for v in values)


# ---------------------------------------------------------------------------------------------- output


def _output_path(output: Path | None, name: str) -> Path:
    """The HDF5 path: ``--output`` or ``epg-out/<name>.h5``."""
    return output if output is not None else Path("epg-out") / f"{name}.h5"


def _write(name: str, seq: InterventionSequence, output: Path, sheet_steps: int) -> tuple[Path, Path]:
    """Write the interventions file (atomically) and the contact sheet beside it; return both paths."""
    from epg_bridges.interventions import write_contact_sheet
    from epg_core import write_interventions

    h5 = write_interventions(output, {name: seq})
    png = write_contact_sheet(seq, output.with_suffix(".png"), n=sheet_steps)
    return h5, png


def _report(name: str, seq: InterventionSequence, paths: tuple[Path, ...]) -> None:
    """Print the produced paths and a one-row table describing the sequence."""
    from ._table import echo_table

    for p in paths:
        click.echo(f"wrote {p}")
    unit = f" {seq.attrs.get('unit')}" if seq.attrs.get("unit") else ""
    row = {
        "sequence": name, "source": str(seq.attrs.get("source", "")), "steps": seq.n_steps,
        "property": str(seq.attrs.get("property", "")), "values": f"{seq.values[0]:.4g} .. {seq.values[-1]:.4g}{unit}",
        "size": f"{seq.images.shape[2]}x{seq.images.shape[1]}", "original": bool(seq.attrs.get("includes_original")),
    }
    echo_table([row], list(row))


def _progress_bar(total: int, quiet: bool, desc: str) -> Any:
    """A tqdm bar on stderr (silenced by ``--quiet``)."""
    from tqdm.auto import tqdm

    return tqdm(total=total, disable=quiet, desc=desc, unit="img", leave=False)


def _common_output_options(func: Any) -> Any:
    """``--output``, ``--name`` and ``--sheet-steps``, shared by every intervene command."""
    func = click.option("--sheet-steps", type=click.IntRange(min=1), default=8, show_default=True,
                        help="Steps shown on the contact-sheet PNG.")(func)
    func = click.option("--name", type=str, default=None,
                        help="Sequence name inside the file (default: from the input's name).")(func)
    func = click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), default=None,
                        help="Interventions HDF5 file to write (default: epg-out/<name>.h5); "
                             "the contact sheet goes beside it as .png.")(func)
    return func


# -------------------------------------------------------------------------------------------- commands


@click.group("intervene")
def intervene() -> None:
    """Make gradual interventions (diffusion edits, designed edits, captured frames) into an HDF5 file.

    \b
    Example:
        epg intervene synthetic cat.jpg --kind darken-background
        epg intervene edit cat.jpg -i "make the cat black" -m ./instruct-pix2pix --size 512
        epg intervene frames turntable/ --values angles.csv --unit deg
    """


@intervene.command("edit")
@click.argument("image", type=click.Path(path_type=Path))
@click.option("--instruction", "-i", required=True, help="Edit instruction (LEDITS++: the editing prompt).")
@click.option("--model", "-m", required=True,
              help="Local diffusers pipeline folder, or a hub id already in the Hugging Face cache "
                   "(nothing is downloaded).")
@click.option("--method", type=click.Choice(_METHODS), default="instruct-pix2pix", show_default=True,
              help="Editor: InstructPix2Pix (batched text-guidance sweep) or LEDITS++ (one inversion, "
                   "edit-guidance sweep).")
@click.option("--scales", type=str, default=None,
              help="Comma-separated guidance scales, strictly increasing, all > 1 (InstructPix2Pix) or > 0 "
                   "(LEDITS++). Default: --n-scales values up to --max-scale.")
@click.option("--n-scales", type=click.IntRange(min=1), default=100, show_default=True,
              help="Number of guidance scales of the default grid.")
@click.option("--max-scale", type=float, default=15.0, show_default=True, help="Largest scale of the default grid.")
@click.option("--image-guidance", type=float, default=2.5, show_default=True,
              help="Fixed image guidance scale (InstructPix2Pix, >= 1).")
@click.option("--steps", type=click.IntRange(min=1), default=None,
              help="Denoising steps (InstructPix2Pix, default 100) or inversion steps (LEDITS++, default 30).")
@click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True,
              help="Guidance scales per batched denoising loop (InstructPix2Pix).")
@click.option("--size", type=str, default=None,
              help="Edit resolution N or WIDTHxHEIGHT (default: the image's own, rounded down to the editor's "
                   "multiple).")
@click.option("--device", type=str, default="auto", show_default=True, help="torch device: auto, cpu, cuda, cuda:1...")
@click.option("--skip", type=float, default=0.15, show_default=True, help="LEDITS++: skipped share of the diffusion.")
@click.option("--edit-threshold", type=float, default=0.9, show_default=True, help="LEDITS++: mask threshold.")
@click.option("--reverse", is_flag=True, help="LEDITS++: push away from the prompt instead of towards it.")
@_common_output_options
@seed_option
@threads_option
@quiet_option
@data_errors
@needs_extras("intervene edit", "edit")
def edit_cmd(
    image: Path, instruction: str, model: str, method: str, scales: str | None, n_scales: int, max_scale: float,
    image_guidance: float, steps: int | None, batch_size: int, size: str | None, device: str, skip: float,
    edit_threshold: float, reverse: bool, output: Path | None, name: str | None, sheet_steps: int, seed: int,
    threads: int, quiet: bool,
) -> None:
    """Sweep an image editor's guidance scale: step 0 is the original, then one edit per scale.

    The same seed is used for every step, so only the guidance scale changes between steps.

    \b
    Example:
        epg intervene edit cat.jpg -i "make the background dark" -m ./instruct-pix2pix \\
            --size 512 --n-scales 100 --max-scale 15 --batch-size 8 -o epg-out/cat-dark.h5
        epg intervene edit cat.jpg -i "dark background" -m ./sd-v1-5 --method ledits++ --scales 1,2,4,8
    """
    from epg_bridges.interventions import (
        default_guidance_scales,
        edit_sequence,
        load_image,
        load_pipeline,
        validate_scales,
    )

    start = 1.0 if method == "instruct-pix2pix" else 0.0
    grid = validate_scales(  # checked before the (slow) model loading
        _parse_floats(scales, "--scales") if scales is not None else default_guidance_scales(n_scales, max_scale,
                                                                                            start=start),
        minimum=start, name="--scales" if scales is not None else "guidance scales",
    )
    if method == "instruct-pix2pix" and image_guidance < 1.0:
        raise ValueError(f"--image-guidance must be >= 1 (guidance is off below 1), got {image_guidance:g}")
    edit_size = _parse_size(size)
    picture = load_image(image)
    if threads:
        import torch

        torch.set_num_threads(threads)
    pipe = load_pipeline(model, method=method, device=device)  # type: ignore[arg-type]
    seq = edit_sequence(
        picture, instruction, pipe=pipe, model=model, method=method, guidance_scales=grid,  # type: ignore[arg-type]
        image_guidance_scale=image_guidance, num_inference_steps=steps, seed=seed, batch_size=batch_size,
        size=edit_size, quiet=quiet, skip=skip, edit_threshold=edit_threshold,
        reverse_editing_direction=reverse,
    )
    seq = dataclasses.replace(seq, attrs={**seq.attrs, "image_file": str(image.resolve())})
    seq_name = name or f"{image.stem}-{method.replace('++', 'pp')}"
    paths = _write(seq_name, seq, _output_path(output, seq_name), sheet_steps)
    _report(seq_name, seq, paths)


@intervene.command("synthetic")
@click.argument("image", type=click.Path(path_type=Path))
@click.option("--kind", "-k", type=click.Choice(_SYNTHETIC_KINDS), required=True,
              help="Designed edit: background (signed, -1..1), darken-/brighten-background (0..1), brightness "
                   "(-1..1), hue (degrees), patch (opacity 0..1), rotation (degrees, counter-clockwise).")
@click.option("--values", "values_text", type=str, default=None,
              help="Comma-separated property values (default: --n-steps values over the kind's range).")
@click.option("--start", type=float, default=None, help="First value of the default grid (default: kind's).")
@click.option("--stop", type=float, default=None, help="Last value of the default grid (default: kind's).")
@click.option("--n-steps", type=click.IntRange(min=2), default=50, show_default=True, help="Steps of the default grid.")
@click.option("--sigma", type=click.FloatRange(min=0, min_open=True), default=0.5, show_default=True,
              help="Background edits: width of the protected centre (axes scaled to -1..1).")
@click.option("--patch", "patch_path", type=click.Path(path_type=Path), default=None,
              help="Patch image to blend in (kind patch); its alpha channel is the mask unless --mask is given.")
@click.option("--mask", "mask_path", type=click.Path(path_type=Path), default=None,
              help="Grey mask of the patch (white: patch, black: image).")
@click.option("--position", type=str, default=None, help="Patch top-left corner X,Y (default: random from --seed).")
@click.option("--fill", type=str, default="0,0,0", show_default=True, help="Rotation: R,G,B of uncovered corners.")
@click.option("--size", type=str, default=None, help="Resize the image first: N or WIDTHxHEIGHT.")
@_common_output_options
@seed_option
@quiet_option
@data_errors
@needs_extras("intervene synthetic", "images")
def synthetic_cmd(
    image: Path, kind: str, values_text: str | None, start: float | None, stop: float | None, n_steps: int,
    sigma: float, patch_path: Path | None, mask_path: Path | None, position: str | None, fill: str,
    size: str | None, output: Path | None, name: str | None, sheet_steps: int, seed: int, quiet: bool,
) -> None:
    """Apply a designed gradual edit at every property value (value 0 gives back the original).

    \b
    Example:
        epg intervene synthetic cat.jpg --kind darken-background --n-steps 50
        epg intervene synthetic lesion.png --kind patch --patch sticker.png --values 0,0.25,0.5,0.75,1
        epg intervene synthetic car.png --kind rotation --start 0 --stop 355 --n-steps 72
    """
    import numpy as np

    from epg_bridges.interventions import KINDS, load_image, synthetic_sequence

    picture = load_image(image, size=_parse_size(size))
    if values_text is not None:
        grid = np.asarray(_parse_floats(values_text, "--values"))
    else:
        low, high = KINDS[kind].default_range
        grid = np.linspace(low if start is None else start, high if stop is None else stop, n_steps)
    params: dict[str, Any] = {}
    attrs: dict[str, Any] = {"image_file": str(image.resolve())}
    if kind in ("background", "darken-background", "brighten-background"):
        params["sigma"] = sigma
    elif kind == "patch":
        if patch_path is None:
            raise ValueError("--kind patch needs --patch PATH")
        params.update(patch=_load_patch(patch_path), seed=seed, position=_parse_ints(position, 2, "--position"))
        params["mask"] = load_image(mask_path, mode="L") if mask_path is not None else None
        attrs.update(patch_file=str(patch_path.resolve()),
                     mask_file=str(mask_path.resolve()) if mask_path is not None else None)
    elif kind == "rotation":
        params["fill"] = _parse_ints(fill, 3, "--fill")
    with _progress_bar(len(grid), quiet, f"synthetic {kind}") as bar:
        seq = synthetic_sequence(picture, kind, grid, attrs=attrs, progress=bar.update, **params)
    seq_name = name or f"{image.stem}-{kind}"
    paths = _write(seq_name, seq, _output_path(output, seq_name), sheet_steps)
    _report(seq_name, seq, paths)


def _load_patch(path: Path) -> Any:
    """A patch as RGBA when its file has a non-trivial alpha channel, else RGB."""
    from epg_bridges.interventions import load_image

    rgba = load_image(path, mode="RGBA")
    return rgba if int(rgba[..., 3].min()) < 255 else rgba[..., :3].copy()


@intervene.command("frames")
@click.argument("folder", type=click.Path(path_type=Path))
@click.option("--values", "values_csv", type=click.Path(path_type=Path), default=None,
              help="CSV with one property value per frame (header row allowed; default: last column).")
@click.option("--column", type=str, default=None, help="CSV column by header name or 0-based index.")
@click.option("--size", type=str, default=None,
              help="Resize every frame to N or WIDTHxHEIGHT (default: the first frame's size).")
@click.option("--property", "property_name", type=str, default=None,
              help="Property name (default: CSV header, or 'frame index').")
@click.option("--unit", type=str, default=None, help="Unit of the property values, e.g. deg.")
@_common_output_options
@quiet_option
@data_errors
@needs_extras("intervene frames", "images")
def frames_cmd(
    folder: Path, values_csv: Path | None, column: str | None, size: str | None, property_name: str | None,
    unit: str | None, output: Path | None, name: str | None, sheet_steps: int, quiet: bool,
) -> None:
    """Read a captured sequence: a folder of frames in natural order (frame_9 before frame_10).

    \b
    Example:
        epg intervene frames turntable/ --values angles.csv --property angle --unit deg --size 224
    """
    from epg_bridges.interventions import frames_sequence, list_frames

    n = len(list_frames(folder))
    with _progress_bar(n, quiet, "frames") as bar:
        seq = frames_sequence(folder, values_csv=values_csv, column=column, size=_parse_size(size),
                              property=property_name, unit=unit, progress=bar.update)
    seq_name = name or (folder.resolve().name or "frames")
    paths = _write(seq_name, seq, _output_path(output, seq_name), sheet_steps)
    _report(seq_name, seq, paths)


def register(group: click.Group) -> None:
    """Add the ``intervene`` group (edit, synthetic, frames) to ``group``."""
    group.add_command(intervene)
