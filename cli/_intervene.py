"""``epg intervene synthetic|edit|frames|list``: make gradual interventions into an interventions HDF5 file.

Thin wrappers over ``epg_bridges.interventions`` (designed edits, diffusion edits, captured frames). One command
takes several images (or frame folders) and makes one sequence per image, named ``<image>-<property>``; every
sequence records its ``property`` (the group key of a study) and ``image``. Without ``--append`` an existing
``-o`` file is refused (never replaced); with it the sequences are added and a name already in the file is
refused. Every check (paths, names, collisions) happens before the slow work and before anything is written.
Beside the file goes one contact-sheet PNG per sequence (``<file stem>.<sequence>.png``). Heavy imports
(torch, diffusers) happen inside the commands so ``epg --help`` stays fast.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ._errors import CliUsageError, EpgGroup
from ._extras import needs_extras
from ._intervene_files import LIST_COLUMNS, common_output_options, default_out, report, sequence_row
from ._options import executor_options, progress_bar, quiet_option, seed_option, threads_option
from ._types import SIZE, FiniteRange, FloatList, IntTuple

if TYPE_CHECKING:
    from collections.abc import Callable
    from contextlib import AbstractContextManager

    from epg_bridges.executors import Executor

_SYNTHETIC_KINDS = (
    "background", "darken-background", "brighten-background", "brightness", "hue", "patch", "rotation",
)
_METHODS = ("instruct-pix2pix", "ledits++", "cosxl", "flux-kontext", "qwen-image-edit", "mgie")


def _bars(quiet: bool, unit: str) -> Callable[[str], AbstractContextManager[Any]]:
    """One progress bar per sequence (the library calls it with the sequence's description)."""
    return lambda desc: progress_bar(desc, unit, quiet)


def _editor_options(pairs: Sequence[str]) -> dict[str, str]:
    """``-O KEY=VALUE`` pairs as a dict (values converted later by the editor's options dataclass)."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise CliUsageError(f"-O/--editor-option {pair!r}: use KEY=VALUE")
        out[key.strip()] = value
    return out


# -------------------------------------------------------------------------------------------- commands


@click.group("intervene", cls=EpgGroup)
def intervene() -> None:
    """Make gradual interventions (designed edits, diffusion edits, captured frames) into an HDF5 file.

    One sequence per image; several images per command; --append adds to an existing file.

    \b
    Example:
        epg intervene synthetic darken-background cat*.jpg --size 224 -o study.h5
        epg intervene synthetic hue cat*.jpg --property colour -o study.h5 --append
        epg intervene edit cat.jpg -i "make the cat black" -m ./instruct-pix2pix --size 512
        epg intervene frames turntable/ --values angles.csv --property angle --unit deg
        epg intervene list study.h5
    """


@intervene.command("edit")
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path), metavar="IMAGE...")
@click.option("--instruction", "-i", required=True, help="Edit instruction (LEDITS++: the editing prompt).")
@click.option("--model", "-m", required=True,
              help="Local diffusers pipeline folder, or a hub id already in the Hugging Face cache "
                   "(nothing is downloaded).")
@click.option("--method", type=str, default="instruct-pix2pix", show_default=True,
              help=f"Editor: {', '.join(_METHODS)}, or your own Editor subclass as package.module:Class. "
                   "Each sweeps its own scale: text guidance (instruct-pix2pix, cosxl, mgie), edit guidance "
                   "(ledits++), distilled guidance (flux-kontext), true CFG (qwen-image-edit).")
@click.option("--editor-option", "-O", "editor_option", multiple=True, metavar="KEY=VALUE",
              help="An option of the editor (repeatable), checked by its options dataclass; a wrong key lists "
                   "the valid ones. E.g. -O image_guidance_scale=1.5, -O true_cfg_scale=2 (flux-kontext).")
@click.option("--scales", type=FloatList(increasing=True), default=None,
              help="Comma-separated scales, strictly increasing, all above the editor's 'off' value (1, or 0 "
                   "for LEDITS++). Default: --n-scales values up to --max-scale.")
@click.option("--n-scales", type=click.IntRange(1, 10_000), default=100, show_default=True,
              help="Number of scales of the default grid.")
@click.option("--max-scale", type=FiniteRange(min=0, min_open=True), default=None,
              help="Largest scale of the default grid (default: the editor's, 15 for InstructPix2Pix).")
@click.option("--steps", type=click.IntRange(1, 10_000), default=None,
              help="Denoising steps (default: the editor's, 100 for InstructPix2Pix) or inversion steps "
                   "(LEDITS++, default 30).")
@click.option("--batch-size", type=click.IntRange(1, 4096), default=8, show_default=True,
              help="Scales denoised together (the most latents held at once); changes only speed and memory.")
@click.option("--size", type=SIZE, default=None,
              help="Edit resolution N or WIDTHxHEIGHT (default: the image's own, rounded down to the editor's "
                   "multiple).")
@click.option("--device", type=str, default="auto", show_default=True, help="torch device: auto, cpu, cuda, cuda:1...")
@click.option("--image-guidance", type=FiniteRange(min=1), default=None,
              help="Alias of -O image_guidance_scale=X (instruct-pix2pix 2.5, cosxl and mgie 1.5).")
@click.option("--skip", type=FiniteRange(0, 1, max_open=True), default=None,
              help="Alias of -O skip=X (LEDITS++: skipped share of the diffusion, default 0.15).")
@click.option("--edit-threshold", type=FiniteRange(0, 1), default=None,
              help="Alias of -O edit_threshold=X (LEDITS++: mask threshold, default 0.9).")
@click.option("--reverse", is_flag=True,
              help="Alias of -O reverse_editing_direction=true (LEDITS++: push away from the prompt).")
@click.option("--embeddings", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Alias of -O embeddings=FILE (mgie: .npz or .pt with prompt_embeds and optionally "
                   "negative_prompt_embeds, made with MGIE's code; {image} in the name: each image's own file).")
@common_output_options("Property name (default: the method, e.g. instruct-pix2pix or leditspp).")
@executor_options("Where images are edited: this process, or Ray workers, one image per task and one GPU per "
                  "worker when the cluster has GPUs (a local Ray instance, or --ray-address).")
@seed_option
@threads_option
@quiet_option
@needs_extras("intervene edit", "edit")
def edit_cmd(
    images: tuple[Path, ...], instruction: str, model: str, method: str, editor_option: tuple[str, ...],
    scales: list[float] | None, n_scales: int, max_scale: float | None, steps: int | None, batch_size: int,
    size: tuple[int, int] | None, device: str, image_guidance: float | None, skip: float | None,
    edit_threshold: float | None, reverse: bool, embeddings: Path | None, out: Path | None, append: bool,
    property_name: str | None, name: str | None, executor: Executor, ray_address: str | None, sheet_steps: int,
    seed: int, threads: int, quiet: bool,
) -> None:
    """Sweep an image editor's guidance scale on each image: step 0 is the original, then one edit per scale.

    The same seed is used for every step, so only the scale changes between steps. The pipeline is loaded once
    for all images. Each finished sequence is stored at once: rerunning a killed command resumes where it
    stopped (sequences already stored with the same options are kept, not recomputed).

    \b
    Example:
        epg intervene edit cat1.jpg cat2.jpg -i "make the background dark" -m ./instruct-pix2pix \\
            --size 512 --n-scales 100 --max-scale 15 --batch-size 8 --property dark-bg -o study.h5 --append
        epg intervene edit cat.jpg -i "dark background" -m ./sd-v1-5 --method ledits++ --scales 1,2,4,8
        epg intervene edit cat.jpg -i "make it snowy" -m ./flux-kontext --method flux-kontext --steps 28 \\
            --scales 1.5,2.5,3.5 -O true_cfg_scale=1
        epg intervene edit cat.jpg -i "make it a dog" -m ./my-editor --method mypkg.editors:MyEditor
        epg intervene edit photos/*.jpg -i "make it snow" -m ./instruct-pix2pix --executor ray --ray-address auto
    """
    from epg_bridges.executors import ExecutorOptions
    from epg_bridges.interventions import EditSpec, make_interventions

    options: dict[str, Any] = _editor_options(editor_option)
    aliases = {"image_guidance_scale": image_guidance, "skip": skip, "edit_threshold": edit_threshold,
               "reverse_editing_direction": True if reverse else None,
               "embeddings": str(embeddings) if embeddings is not None else None}
    options.update({k: v for k, v in aliases.items() if v is not None})
    spec = EditSpec(method=method, model=str(model), instruction=instruction,
                    scales=tuple(scales) if scales is not None else None, n_scales=n_scales, max_scale=max_scale,
                    steps=steps, seed=seed, size=size, batch_size=batch_size, options=options, device=device,
                    threads=threads)
    prop = property_name or _slug(method.replace("++", "pp"), "edit")
    target = out if out is not None else default_out(list(images), [p.stem for p in images], prop, name)
    if device != "auto":  # a bad device is a usage error found before the model is loaded
        from epg_bridges.interventions import select_device

        select_device(device)
    made = make_interventions(target, "edit", list(images), property=prop, options=spec, name=name, append=append,
                              sheet_steps=sheet_steps, inputs=[embeddings],
                              executor=ExecutorOptions(executor=executor, ray_address=ray_address),
                              bar=_bars(quiet, "step"))
    report(made, quiet)


def _slug(text: str, fallback: str = "value") -> str:
    from epg_bridges.interventions import slug

    return slug(text, fallback)


def _kind_and_images(args: Sequence[str], kind: str | None) -> tuple[str, list[Path]]:
    """The edit kind (``--kind``, else the first argument) and the image paths."""
    rest = list(args)
    if kind is None:
        if rest[0] not in _SYNTHETIC_KINDS:
            raise CliUsageError(f"the first argument {rest[0]!r} is not a kind; give KIND IMAGE... (or --kind) with "
                                f"KIND one of {', '.join(_SYNTHETIC_KINDS)}")
        kind, rest = rest[0], rest[1:]
    if not rest:
        raise CliUsageError(f"no IMAGE given after the kind {kind!r}")
    return kind, [Path(a) for a in rest]


@intervene.command("synthetic")
@click.argument("args", nargs=-1, required=True, metavar="KIND IMAGE...")
@click.option("--kind", type=click.Choice(_SYNTHETIC_KINDS), default=None,
              help="The designed edit, instead of the first argument: background (signed, -1..1), darken-/"
                   "brighten-background (0..1), brightness (signed, -1..1), hue (degrees), patch (opacity 0..1), "
                   "rotation (degrees, counter-clockwise).")
@click.option("--values", "values", type=FloatList(), default=None,
              help="Comma-separated property values (default: --n-steps values from 0, the original, to the "
                   "kind's end: -1 for background and brightness (towards black), 1 for the others in 0..1, "
                   "180 for hue and rotation).")
@click.option("--start", type=FiniteRange(), default=None,
              help="First value of the default grid (default: 0, the original).")
@click.option("--stop", type=FiniteRange(), default=None, help="Last value of the default grid (default: kind's).")
@click.option("--n-steps", type=click.IntRange(2, 100_000), default=50, show_default=True,
              help="Steps of the default grid.")
@click.option("--sigma", type=FiniteRange(min=0, min_open=True), default=0.5, show_default=True,
              help="Background edits: width of the protected centre (axes scaled to -1..1).")
@click.option("--patch", "patch_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Patch image to blend in (kind patch); its alpha channel is the mask unless --mask is given.")
@click.option("--mask", "mask_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Grey mask of the patch (white: patch, black: image).")
@click.option("--position", type=IntTuple(2, 0, None, "X,Y"), default=None,
              help="Patch top-left corner X,Y (default: random from --seed).")
@click.option("--fill", type=IntTuple(3, 0, 255, "R,G,B"), default="0,0,0", show_default=True,
              help="Rotation: R,G,B of uncovered corners.")
@click.option("--size", type=SIZE, default=None, help="Resize each image first: N or WIDTHxHEIGHT.")
@common_output_options("Property name (default: the kind, e.g. darken-background).")
@seed_option
@quiet_option
@needs_extras("intervene synthetic", "images")
def synthetic_cmd(
    args: tuple[str, ...], kind: str | None, values: list[float] | None, start: float | None, stop: float | None,
    n_steps: int, sigma: float, patch_path: Path | None, mask_path: Path | None, position: tuple[int, int] | None,
    fill: tuple[int, int, int], size: tuple[int, int] | None, out: Path | None, append: bool,
    property_name: str | None, name: str | None, sheet_steps: int, seed: int, quiet: bool,
) -> None:
    """Apply a designed gradual edit to each image at every property value (value 0 gives back the original).

    The default grid starts at 0, so step 0 of every sequence is the original image (includes_original).

    \b
    Example:
        epg intervene synthetic darken-background cat1.jpg cat2.jpg cat3.jpg --size 224 -o study.h5
        epg intervene synthetic brightness cat*.jpg -o study.h5 --append
        epg intervene synthetic patch lesion.png --patch sticker.png --values 0,0.25,0.5,0.75,1
        epg intervene synthetic rotation car.png --stop 355 --n-steps 72 --size 224  # 0, 5, ..., 355 deg
    """
    import numpy as np

    from epg_bridges.interventions import default_values, load_image, make_interventions
    from epg_core import UsageError

    kind, images = _kind_and_images(args, kind)
    if kind == "patch" and patch_path is None:
        raise CliUsageError("kind 'patch' needs --patch PATH")
    try:
        grid = np.asarray(values, np.float64) if values is not None else default_values(kind, n_steps, start=start,
                                                                                           stop=stop)
    except UsageError as exc:
        raise CliUsageError(f"--start/--stop: {exc}") from None
    if len(grid) < 2:
        raise CliUsageError(f"--values: a sequence needs at least 2 values, got {len(grid)}")
    prop = property_name or kind
    params: dict[str, Any] = {"values": grid, "size": size}
    if kind in ("background", "darken-background", "brighten-background"):
        params["sigma"] = sigma
    elif kind == "patch" and patch_path is not None:
        params.update(patch=_load_patch(patch_path), seed=seed, position=position)
        params["mask"] = load_image(mask_path, mode="L") if mask_path is not None else None
        params["attrs"] = {"patch_file": str(patch_path.resolve()),
                           "mask_file": str(mask_path.resolve()) if mask_path is not None else None}
    elif kind == "rotation":
        params["fill"] = fill
    target = out if out is not None else default_out(images, [p.stem for p in images], prop, name)
    made = make_interventions(target, kind, images, property=prop, options=params, name=name, append=append,
                              sheet_steps=sheet_steps, inputs=[patch_path, mask_path], bar=_bars(quiet, "img"))
    report(made, quiet)


def _load_patch(path: Path) -> Any:
    """A patch as RGBA when its file has a non-trivial alpha channel, else RGB."""
    from epg_bridges.interventions import load_image

    rgba = load_image(path, mode="RGBA")
    return rgba if int(rgba[..., 3].min()) < 255 else rgba[..., :3].copy()


@intervene.command("frames")
@click.argument("folders", nargs=-1, required=True, type=click.Path(file_okay=False, path_type=Path),
                metavar="FOLDER...")
@click.option("--values", "values_csv", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="CSV with one property value per frame, the same for every folder (header row allowed; "
                   "default: last column).")
@click.option("--column", type=str, default=None, help="CSV column by header name or 0-based index.")
@click.option("--size", type=SIZE, default=None,
              help="Resize every frame to N or WIDTHxHEIGHT (default: each folder's first frame's size).")
@click.option("--unit", type=str, default=None, help="Unit of the property values, e.g. deg.")
@common_output_options("Property name (default: the CSV header, 'value', or 'frame-index' without a CSV).")
@quiet_option
@needs_extras("intervene frames", "images")
def frames_cmd(
    folders: tuple[Path, ...], values_csv: Path | None, column: str | None, size: tuple[int, int] | None,
    unit: str | None, out: Path | None, append: bool, property_name: str | None, name: str | None,
    sheet_steps: int, quiet: bool,
) -> None:
    """Read captured sequences: one folder of frames per sequence, in natural order (frame_9 before frame_10).

    \b
    Example:
        epg intervene frames turntable/ --values angles.csv --property angle --unit deg --size 224
        epg intervene frames car1/ car2/ car3/ --values angles.csv --property angle -o turntables.h5
    """
    from epg_bridges.interventions import make_interventions, read_values_csv

    header = read_values_csv(values_csv, column=column)[1] if values_csv is not None else None
    prop = property_name or _slug(header or ("value" if values_csv is not None else "frame-index"))
    stems = [f.resolve().name or "frames" for f in folders]
    target = out if out is not None else default_out(list(folders), stems, prop, name)
    options = {"values_csv": values_csv, "column": column, "size": size, "unit": unit}
    made = make_interventions(target, "frames", list(folders), property=prop, options=options, name=name,
                              append=append, sheet_steps=sheet_steps, inputs=[values_csv], bar=_bars(quiet, "img"),
                              stems=stems)
    report(made, quiet)


@intervene.command("list")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@quiet_option
def list_cmd(file: Path, quiet: bool) -> None:
    """List the sequences of an interventions file: property, image, kind, steps, values, original at step 0.

    Reads only the values and attributes, never the images.

    \b
    Example:
        epg intervene list study.h5
    """
    from epg_core import read_interventions

    from ._table import echo_table

    del quiet  # nothing to silence: the table is the output
    sequences = read_interventions(file, images=False)
    echo_table([sequence_row(n, s) for n, s in sequences.items()], LIST_COLUMNS)


def register(group: click.Group) -> None:
    """Add the ``intervene`` group (synthetic, edit, frames, list) to ``group``."""
    group.add_command(intervene)
