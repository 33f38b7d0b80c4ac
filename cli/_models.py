"""``epg export``, ``epg export-clip``, ``epg predict`` and ``epg sweep``: thin wrappers over ``epg_bridges``."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from ._errors import Interrupted
from ._extras import needs_extras
from ._options import (
    executor_options,
    force_option,
    out_option,
    progress_bar,
    quiet_option,
    refuse_collisions,
    refuse_foreign_outputs,
    threads_option,
)
from ._table import format_table
from ._types import SIZE, FiniteRange, Floats3, JsonObject, NameList

if TYPE_CHECKING:
    from epg_bridges.executors import Executor
    from epg_bridges.models import RunOptions

F = TypeVar("F", bound=Callable[..., Any])

_KINDS = ("probabilities", "logits", "cosine")


# --------------------------------------------------------------------------- option groups


def _architecture_options(func: F) -> F:
    func = click.option("--no-ema", is_flag=True,
                        help="Take a timm checkpoint's raw weights instead of its EMA weights (state_dict_ema).")(func)
    func = click.option("--arch-kwargs", type=JsonObject(), default=None,
                        help="Keyword arguments for the architecture, overriding the checkpoint's 'paras' (for "
                             "--arch hf: config fields).")(func)
    return click.option("--arch", "architecture", default="convmixer", show_default=True, metavar="NAME",
                        help="convmixer | hf (a transformers model folder from save_pretrained) | timm:NAME | "
                             "torchvision:NAME | package.module:function (any callable returning an nn.Module) | "
                             "package.module:Class (your own ModelFamily subclass) | the name of a family "
                             "registered with register_model_family.")(func)


def _preprocessing_options(func: F) -> F:
    func = click.option("--channel-order", type=click.Choice(["RGB", "BGR"]), default=None,
                        help="Channel order of the model input [default: RGB].")(func)
    func = click.option("--interpolation", type=click.Choice(["bilinear", "bicubic", "nearest", "lanczos"]),
                        default=None, help="Resize filter [default: bilinear].")(func)
    func = click.option("--crop-pct", type=FiniteRange(0.05, 1), default=None,
                        help="Fraction of the resized image the centre crop keeps (ImageNet: 0.875, i.e. 256 -> "
                             "224; CLIP: 1) [default: 1].")(func)
    func = click.option("--crop", type=click.Choice(["none", "center"]), default=None,
                        help="Centre-crop --size out of the resized image [default: none].")(func)
    func = click.option("--resize", type=click.Choice(["stretch", "shortest"]), default=None,
                        help="stretch: scale to --size ignoring the aspect ratio; shortest: scale the shorter side "
                             "to size / crop-pct keeping it (use with --crop center, the torchvision/timm/CLIP "
                             "evaluation transform) [default: stretch]. The filter is --interpolation.")(func)
    func = click.option("--std", type=Floats3(positive=True), default=None, metavar="S[,S,S]",
                        help="Per-channel std after scaling to [0, 1] [default: 0.5].")(func)
    func = click.option("--mean", type=Floats3(), default=None, metavar="M[,M,M]",
                        help="Per-channel mean after scaling to [0, 1] [default: 0.5].")(func)
    return click.option("--size", type=SIZE, default=None,
                        help="Model input size, N or WIDTHxHEIGHT. A model that carries its preprocessing (the "
                             "spec beside an .onnx file, an HF folder's preprocessor_config.json, a checkpoint's "
                             "'preprocessing', timm/torchvision metadata) is run with it; options given here replace "
                             "its fields, and the run says so. Other models need --size (ConvMixer: 128, with a "
                             "notice).")(func)


def _output_options(func: F) -> F:
    func = click.option("--batch-size", type=click.IntRange(1, 65_536), default=32, show_default=True,
                        help="Images per ONNX Runtime call.")(func)
    func = click.option("--sequence", "sequences", multiple=True,
                        help="Only this sequence of the interventions file(s) (repeatable).")(func)
    func = click.option("--model-name", default=None, help="Name of the model group in the outputs file.")(func)
    func = click.option("--prompt-average", type=click.Choice(["cosine", "embedding"]), default="cosine",
                        show_default=True,
                        help="With [C, K, D] text embeddings: the mean over a class's K prompts of the cosine (the "
                             "paper's, as export-clip stores it) or the cosine with their normalised mean "
                             "embedding.")(func)
    func = click.option("--text-embeddings", type=click.Path(dir_okay=False, path_type=Path), default=None,
                        help="Text embeddings .npy [C, D] or [C, K, D] for --kind cosine (a CLIP export of "
                             "export-clip carries its own).")(func)
    func = click.option("--kind", "output_kind", type=click.Choice(_KINDS), default="probabilities",
                        show_default=True, help="Stored outputs: softmax probabilities, logits or cosine.")(func)
    func = _classes_options(func)
    return out_option("Outputs HDF5 file (blocks of other models are kept).", default=Path("outputs.h5"))(func)


def _classes_options(func: F) -> F:
    func = click.option("--classes-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
                        help="Output names, one a line (e.g. the 1,000 ImageNet classes); instead of --classes.")(func)
    return click.option("--classes", type=NameList(), default=None,
                        help="Output names (default: the model's own, e.g. an HF config's id2label or the spec "
                             "beside an .onnx model, else class_0, class_1, ...).")(func)


_PREPROCESSING_KEYS = ("size", "mean", "std", "resize", "crop", "crop_pct", "interpolation", "channel_order")


def _preprocessing_given(kw: dict[str, Any]) -> dict[str, Any]:
    """The preprocessing options given on the command line (pops them from ``kw``).

    ``--size`` comes as (width, height); Preprocessing stores (height, width).
    """
    given = {k: kw.pop(k) for k in _PREPROCESSING_KEYS}
    if given["size"] is not None:
        given["size"] = (given["size"][1], given["size"][0])
    return {k: v for k, v in given.items() if v is not None}


def _run_options(kw: dict[str, Any]) -> RunOptions:
    """``RunOptions`` from the shared options of export, predict and sweep (pops them from ``kw``)."""
    from epg_bridges.models import RunOptions

    fields = {f.name for f in dataclasses.fields(RunOptions)}
    values = {k: kw.pop(k) for k in list(kw) if k in fields}
    if "sequences" in values:
        values["sequences"] = list(values["sequences"]) or None
    return RunOptions(preprocessing_options=_preprocessing_given(kw), **values)


def _path_or_none(value: Any) -> Path | None:
    """``value`` as a path when it is one (``--text-embeddings`` may also arrive as an array), else None."""
    return Path(value) if isinstance(value, (str, os.PathLike)) else None


def _atol_option(func: F) -> F:
    return click.option("--atol", type=FiniteRange(min=0), default=1e-4, show_default=True,
                        help="Largest allowed |ONNX Runtime - torch eager| of the export check per unit of output "
                             "scale (the limit is atol x max(1, max |torch output|)).")(func)


# --------------------------------------------------------------------------- commands


@click.command("export")
@click.argument("checkpoint", type=click.Path(path_type=Path))
@out_option("The .onnx file to write [default: CHECKPOINT with suffix .onnx]; its spec goes beside it.")
@_architecture_options
@_preprocessing_options
@_classes_options
@_atol_option
@threads_option
@force_option
@quiet_option
@needs_extras("export", "torch")
def export_command(checkpoint: Path, out: Path | None, quiet: bool, force: bool, **kw: Any) -> None:
    """Export a torch checkpoint (a file or an HF model folder) to one ONNX file plus its preprocessing spec.

    The export is run by torch and ONNX Runtime on the same random batch and refused if they differ
    by more than --atol. The spec (preprocessing, classes) is written beside the model as
    MODEL.onnx.json and used by `epg predict`. A model that carries its preprocessing (HF folder,
    timm/torchvision, a checkpoint's 'preprocessing') keeps it unless options here replace it.

    \b
    Example:
        epg export convmixer_unbiased.pth -o convmixer.onnx --classes cat,dog
        epg export runs/vit/checkpoint-500 --arch hf -o vit.onnx
        epg export run/epoch_10.pt --arch mypkg.nets:resnet18 --size 224 --resize shortest --crop center \\
            --crop-pct 0.875 --mean 0.485,0.456,0.406 --std 0.229,0.224,0.225 --classes-file imagenet.txt
    """
    from epg_bridges.models import (
        export_onnx,
        load_for_run,
        output_classes,
        select_provider,
        spec_path,
        torch_outputs,
    )

    target = out or (checkpoint.with_name(f"{checkpoint.name}.onnx") if checkpoint.is_dir()
                     else checkpoint.with_suffix(".onnx"))
    options = _run_options(kw)
    refuse_collisions({"exported model": target, "model spec": spec_path(target)},
                      [checkpoint, options.classes_file])
    refuse_foreign_outputs({target: "onnx", spec_path(target): "model-spec"}, force)
    loaded = load_for_run(checkpoint, options)
    prep = loaded.preprocessing
    n_out = int(torch_outputs(loaded.model, prep.random_batch(1)).shape[-1])
    classes = output_classes(options, n_out, loaded.checkpoint.classes, str(checkpoint))
    named = options.classes is not None or options.classes_file is not None or bool(loaded.checkpoint.classes)
    result = export_onnx(loaded.model, target, preprocessing=prep, classes=classes if named else None,
                         atol=options.atol, threads=options.threads,
                         info={"architecture": options.architecture, "checkpoint": str(checkpoint),
                               "layout": loaded.checkpoint.layout, "no_ema": options.no_ema})
    click.echo(str(result.onnx_path))
    click.echo(str(result.spec_path))
    h, w = prep.size
    row = {"model": result.onnx_path.name, "input": f"[batch, 3, {h}, {w}]",
           "max |ort - torch|": result.max_abs_diff, "atol": options.atol, "provider": select_provider()}
    click.echo(format_table([row], list(row)))


@click.command("predict")
@click.argument("model", type=click.Path(path_type=Path))
@click.argument("inputs", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@_output_options
@_architecture_options
@_preprocessing_options
@_atol_option
@threads_option
@force_option
@quiet_option
@needs_extras("predict", "onnx", "torch")
def predict_command(model: Path, inputs: tuple[Path, ...], out: Path, quiet: bool, force: bool, **kw: Any) -> None:
    """Run one model on an interventions file or on image files; store its outputs.

    MODEL is an exported .onnx file (its spec beside it gives the preprocessing), a CLIP export of
    `epg export-clip` (outputs: per class the mean over its prompts of the cosine; every prompt's cosine
    is kept beside them), or a checkpoint (a file or an HF model folder), exported in memory and
    checked against torch. INPUTS is one interventions .h5 file or image files (one sequence, in the
    given order).

    \b
    Example:
        epg predict convmixer.onnx interventions.h5 -o outputs.h5
        epg predict clip.onnx turntable.h5 -o outputs.h5
        epg predict convmixer_unbiased.pth cat_001.jpg dog_001.jpg --classes cat,dog --size 128
        epg predict runs/vit/checkpoint-500 interventions.h5 --arch hf
    """
    from epg_bridges.models import predict, spec_path

    options = _run_options(kw)
    refuse_collisions({"outputs file": out}, [model, spec_path(model), *inputs, options.classes_file,
                                              _path_or_none(options.text_embeddings)])
    refuse_foreign_outputs({out: "outputs"}, force)
    with progress_bar("predict", "seq", quiet) as progress:
        result = predict(model, list(inputs), out, options, progress=progress)
    click.echo(str(result.path))
    click.echo(f"model {result.model} on {result.provider}")
    classes_out = result.blocks[0].classes if result.blocks else []
    first_col = f"first step ({','.join(classes_out)})"
    rows = [{"sequence": b.sequence, "steps": b.outputs.shape[1],
             first_col: " ".join(f"{v:.3f}" for v in b.outputs[0, 0]),
             "last step": " ".join(f"{v:.3f}" for v in b.outputs[0, -1])} for b in result.blocks]
    click.echo(format_table(rows, ["sequence", "steps", first_col, "last step"]))


@click.command("sweep")
@click.argument("checkpoints")
@click.argument("inputs", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@_output_options
@_architecture_options
@_preprocessing_options
@_atol_option
@click.option("--restart", is_flag=True,
              help="Recompute this model's outputs of these sequences instead of resuming (also with other "
                   "--classes/--kind/--size/preprocessing than the stored run).")
@executor_options("Where checkpoints run: this process, or Ray workers (a local Ray instance, or --ray-address); "
                  "with ray, checkpoints and the outputs file must be on a filesystem every node sees.")
@threads_option
@force_option
@quiet_option
@needs_extras("sweep", "torch")
def sweep_command(checkpoints: str, inputs: tuple[Path, ...], out: Path, restart: bool, executor: Executor,
                  ray_address: str | None, quiet: bool, force: bool, **kw: Any) -> None:
    """Run every checkpoint of one training run on the inputs: one export, then weight swaps.

    CHECKPOINTS is a quoted glob, a .txt list file (one path a line) or a folder (of checkpoint files,
    or of HF model folders, one per epoch, for --arch hf); they are sorted naturally
    (epoch_9 before epoch_10). INPUTS are interventions files (several allowed; sequence names must be
    unique across them) or image files. Each checkpoint's outputs are stored as soon as it is done, and only
    what is missing is computed: an interrupted sweep resumes, more interventions files or more checkpoints
    for the same model add only their outputs. A rerun with other --classes/--kind/--size or preprocessing is
    refused naming the option; --restart recomputes instead. A model whose weight swap cannot be
    proven safe is re-exported for every checkpoint instead (slower; the run says so).

    \b
    Example:
        epg sweep 'runs/convmixer/epoch_*.pth' interventions.h5 -o outputs.h5 --classes cat,dog
        epg sweep 'runs/convmixer/epoch_*.pth' cats.h5 dogs.h5 -o outputs.h5 --size 128
        epg sweep checkpoints.txt interventions.h5 --arch mypkg.nets:resnet18 --model-name resnet18
        epg sweep runs/vit interventions.h5 --arch hf --model-name vit
        epg sweep 'runs/convmixer/epoch_*.pth' interventions.h5 --executor ray --ray-address auto
    """
    from epg_bridges.executors import ExecutorOptions
    from epg_bridges.models import find_checkpoints, sweep

    options = _run_options(kw)
    refuse_collisions({"outputs file": out}, [*find_checkpoints(checkpoints), *inputs, options.classes_file,
                                              _path_or_none(options.text_embeddings)])
    refuse_foreign_outputs({out: "outputs"}, force)
    try:
        with progress_bar("sweep", "ckpt", quiet) as progress:
            result = sweep(checkpoints, list(inputs), out, options, restart=restart, progress=progress,
                           executor=ExecutorOptions(executor=executor, ray_address=ray_address))
    except KeyboardInterrupt:
        raise Interrupted(f"interrupted: finished checkpoints are stored in {out}; run the same command to "
                          "resume") from None
    click.echo(str(result.path))
    row = {"model": result.model, "checkpoints": len(result.checkpoints), "computed": len(result.computed),
           "skipped": len(result.skipped), "sequences": len(result.sequences), "provider": result.provider or "-",
           "seconds": round(result.seconds, 2)}
    click.echo(format_table([row], list(row)))


@click.command("export-clip")
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
@click.option("--prompts", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="TOML file with a [classes] table: class = [\"prompt\", ...] (e.g. ten descriptions per class).")
@out_option("The .onnx file to write (image tower and projection); its spec (.onnx.json) and prompt embeddings "
            "(.onnx.text.npz) go beside it.", default=Path("clip.onnx"))
@_atol_option
@threads_option
@force_option
@quiet_option
@needs_extras("export-clip", "torch")
def export_clip_command(folder: Path, prompts: Path, out: Path, atol: float, threads: int, quiet: bool,
                        force: bool) -> None:
    """Export a transformers CLIPModel folder for zero-shot outputs with a set of prompts per class.

    The image tower with its projection goes to ONNX (checked against torch like every export); every
    prompt of every class is embedded (unit vectors) and stored beside it with the logit scale. `epg
    predict` with the .onnx file then stores, per class, the mean over its prompts of the cosine (the
    paper's value) and every prompt's cosine. Preprocessing comes from the folder's
    preprocessor_config.json, else CLIP's own (shortest side, centre crop, bicubic).

    \b
    Example:
        epg export-clip clip-vit-base-patch32 --prompts prompts.toml -o clip.onnx
        epg predict clip.onnx turntable.h5 -o outputs.h5
    """
    from epg_bridges.models import export_clip, spec_path, text_path

    inputs = [prompts, folder, *(sorted(folder.iterdir()) if folder.is_dir() else [])]
    refuse_collisions({"exported model": out, "model spec": spec_path(out), "prompt embeddings": text_path(out)},
                      inputs)
    refuse_foreign_outputs({out: "onnx", spec_path(out): "model-spec", text_path(out): "clip-text"}, force)
    with progress_bar("export-clip", "step", quiet) as progress:
        result = export_clip(folder, prompts, out, atol=atol, threads=threads, progress=progress)
    for path in (result.onnx_path, result.spec_path, result.text_path):
        click.echo(str(path))
    spec = result.text
    row = {"model": result.onnx_path.name, "classes": len(spec.classes), "prompts": len(spec.prompts),
           "embedding": int(spec.embeddings.shape[1]), "logit scale": round(spec.logit_scale, 4),
           "max |ort - torch|": result.max_abs_diff}
    click.echo(format_table([row], list(row)))


def register(group: click.Group) -> None:
    """Add ``export``, ``export-clip``, ``predict`` and ``sweep`` to ``group``."""
    group.add_command(export_command)
    group.add_command(export_clip_command)
    group.add_command(predict_command)
    group.add_command(sweep_command)
