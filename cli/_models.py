"""``epg export``, ``epg predict`` and ``epg sweep``: thin wrappers over ``epg_bridges``."""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from ._extras import needs_extras
from ._options import data_errors, quiet_option, threads_option
from ._table import format_table

F = TypeVar("F", bound=Callable[..., Any])

_KINDS = ("probabilities", "logits", "cosine")


# --------------------------------------------------------------------------- option groups


def _floats3(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[float, float, float] | None:
    """'0.5' -> (0.5, 0.5, 0.5); '0.485,0.456,0.406' -> a triple."""
    if value is None:
        return None
    try:
        parts = [float(v) for v in value.split(",")]
    except ValueError:
        raise click.BadParameter(f"expected one number or three comma-separated numbers, got {value!r}") from None
    if len(parts) == 1:
        parts *= 3
    if len(parts) != 3:
        raise click.BadParameter(f"expected one number or three comma-separated numbers, got {value!r}")
    return (parts[0], parts[1], parts[2])


def _size(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[int, int] | None:
    """'128' -> (128, 128); '224x160' -> (224, 160) as height x width."""
    if value is None:
        return None
    try:
        parts = [int(v) for v in value.lower().split("x")]
    except ValueError:
        raise click.BadParameter(f"expected SIZE or HEIGHTxWIDTH, got {value!r}") from None
    if len(parts) == 1:
        parts *= 2
    if len(parts) != 2 or min(parts) < 1:
        raise click.BadParameter(f"expected SIZE or HEIGHTxWIDTH with positive numbers, got {value!r}")
    return (parts[0], parts[1])


def _names(ctx: click.Context, param: click.Parameter, value: str | None) -> list[str] | None:
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


def _json_kwargs(ctx: click.Context, param: click.Parameter, value: str | None) -> dict[str, Any] | None:
    if value is None:
        return None
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not valid JSON ({exc.msg}): {value!r}") from None
    if not isinstance(parsed, dict):
        raise click.BadParameter(f"expected a JSON object of keyword arguments, got {value!r}")
    return parsed


def _architecture_options(func: F) -> F:
    func = click.option("--arch-kwargs", callback=_json_kwargs, default=None, metavar="JSON",
                        help="Keyword arguments for the architecture, overriding the checkpoint's 'paras'.")(func)
    return click.option("--arch", "architecture", default="convmixer", show_default=True, metavar="NAME",
                        help="'convmixer' or a 'package.module:function' factory returning an nn.Module.")(func)


def _preprocessing_options(func: F) -> F:
    func = click.option("--channel-order", type=click.Choice(["RGB", "BGR"]), default=None,
                        help="Channel order of the model input [default: RGB].")(func)
    func = click.option("--resize", type=click.Choice(["bilinear", "bicubic", "nearest", "lanczos"]),
                        default=None, help="Resize filter [default: bilinear].")(func)
    func = click.option("--std", callback=_floats3, default=None, metavar="S[,S,S]",
                        help="Per-channel std after scaling to [0, 1] [default: 0.5].")(func)
    func = click.option("--mean", callback=_floats3, default=None, metavar="M[,M,M]",
                        help="Per-channel mean after scaling to [0, 1] [default: 0.5].")(func)
    return click.option("--size", callback=_size, default=None, metavar="N|HxW",
                        help="Model input size [default: 128, or the spec beside an .onnx model].")(func)


def _output_options(func: F) -> F:
    func = click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True,
                        help="Images per ONNX Runtime call.")(func)
    func = click.option("--sequence", "sequences", multiple=True,
                        help="Only this sequence of the interventions file (repeatable).")(func)
    func = click.option("--model-name", default=None, help="Name of the model group in the outputs file.")(func)
    func = click.option("--text-embeddings", type=click.Path(dir_okay=False), default=None,
                        help="Text embeddings .npy [C, D] or [C, K, D] for --kind cosine.")(func)
    func = click.option("--kind", "output_kind", type=click.Choice(_KINDS), default="probabilities",
                        show_default=True, help="Stored outputs: softmax probabilities, logits or cosine.")(func)
    func = click.option("--classes", callback=_names, default=None, metavar="A,B,...",
                        help="Output names (default: from the model spec, else class_0, class_1, ...).")(func)
    return click.option("--out", "-o", type=click.Path(dir_okay=False), default="outputs.h5", show_default=True,
                        help="Outputs HDF5 file (blocks of other models are kept).")(func)


def _preprocessing(base: Any, size: Any, mean: Any, std: Any, resize: Any, channel_order: Any) -> Any:
    """``base`` (a Preprocessing, or None for the defaults) with the given options replaced."""
    from epg_bridges.models import Preprocessing

    base = base or Preprocessing()
    changes = {k: v for k, v in {"size": size, "mean": mean, "std": std, "resize": resize,
                                 "channel_order": channel_order}.items() if v is not None}
    return dataclasses.replace(base, **changes)


# --------------------------------------------------------------------------- commands


@click.command("export")
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@click.option("--out", "-o", type=click.Path(dir_okay=False), default=None,
              help="The .onnx file to write [default: CHECKPOINT with suffix .onnx].")
@_architecture_options
@_preprocessing_options
@click.option("--classes", callback=_names, default=None, metavar="A,B,...", help="Output names stored in the spec.")
@click.option("--atol", type=click.FloatRange(min=0), default=1e-4, show_default=True,
              help="Largest allowed |ONNX Runtime - torch| on a random batch.")
@threads_option
@data_errors
@needs_extras("export", "torch")
def export_command(checkpoint: str, out: str | None, architecture: str, arch_kwargs: dict[str, Any] | None,
                   size: Any, mean: Any, std: Any, resize: Any, channel_order: Any, classes: list[str] | None,
                   atol: float, threads: int) -> None:
    """Export a torch checkpoint to one ONNX file (dynamic batch) plus its preprocessing spec.

    The export is run by torch and ONNX Runtime on the same random batch and refused if they differ
    by more than --atol. The spec (resize, mean/std, channel order, classes) is written beside the
    model as MODEL.onnx.json and used by `epg predict`.

    \b
    Example:
        epg export convmixer_unbiased.pth -o convmixer.onnx --classes cat,dog
        epg export run/epoch_10.pt --arch mypkg.nets:resnet18 --size 224 \\
            --mean 0.485,0.456,0.406 --std 0.229,0.224,0.225
    """
    from epg_bridges.models import build_model, export_onnx, select_provider

    model = build_model(architecture, checkpoint, arch_kwargs)
    prep = _preprocessing(None, size, mean, std, resize, channel_order)
    target = Path(out) if out else Path(checkpoint).with_suffix(".onnx")
    result = export_onnx(model, target, preprocessing=prep, classes=classes, atol=atol, threads=threads,
                         info={"architecture": architecture, "checkpoint": str(checkpoint)})
    click.echo(str(result.onnx_path))
    click.echo(str(result.spec_path))
    h, w = prep.size
    row = {"model": result.onnx_path.name, "input": f"[batch, 3, {h}, {w}]",
           "max |ort - torch|": result.max_abs_diff, "atol": atol, "provider": select_provider()}
    click.echo(format_table([row], list(row)))


@click.command("predict")
@click.argument("model", type=click.Path(dir_okay=False))
@click.argument("inputs", nargs=-1, required=True, type=click.Path(dir_okay=False))
@_output_options
@_architecture_options
@_preprocessing_options
@threads_option
@quiet_option
@data_errors
@needs_extras("predict", "onnx", "torch")
def predict_command(model: str, inputs: tuple[str, ...], out: str, classes: list[str] | None, output_kind: str,
                    text_embeddings: str | None, model_name: str | None, sequences: tuple[str, ...],
                    batch_size: int, architecture: str, arch_kwargs: dict[str, Any] | None, size: Any, mean: Any,
                    std: Any, resize: Any, channel_order: Any, threads: int, quiet: bool) -> None:
    """Run one model on an interventions file or on image files; store its outputs.

    MODEL is an exported .onnx file (its spec beside it gives the preprocessing) or a checkpoint,
    exported in memory and checked against torch. INPUTS is one interventions .h5 file or image
    files (one sequence, in the given order).

    \b
    Example:
        epg predict convmixer.onnx interventions.h5 -o outputs.h5
        epg predict convmixer_unbiased.pth cat_001.jpg dog_001.jpg --classes cat,dog
    """
    from epg_bridges.models import is_onnx_path, predict, read_spec

    spec = read_spec(model) if is_onnx_path(model) else None
    prep = _preprocessing(spec.preprocessing if spec else None, size, mean, std, resize, channel_order)
    result = predict(model, list(inputs), out, architecture=architecture, arch_kwargs=arch_kwargs,
                     model_name=model_name, preprocessing=prep, classes=classes, output_kind=output_kind,
                     text_embeddings=text_embeddings, sequences=list(sequences) or None, batch_size=batch_size,
                     threads=threads)
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
@click.argument("inputs", nargs=-1, required=True, type=click.Path(dir_okay=False))
@_output_options
@_architecture_options
@_preprocessing_options
@click.option("--atol", type=click.FloatRange(min=0), default=1e-4, show_default=True,
              help="Largest allowed |ONNX Runtime - torch| for the export and the first swapped checkpoint.")
@click.option("--restart", is_flag=True, help="Discard this model's earlier (partial) outputs instead of resuming.")
@threads_option
@quiet_option
@data_errors
@needs_extras("sweep", "torch")
def sweep_command(checkpoints: str, inputs: tuple[str, ...], out: str, classes: list[str] | None,
                  output_kind: str, text_embeddings: str | None, model_name: str | None, sequences: tuple[str, ...],
                  batch_size: int, architecture: str, arch_kwargs: dict[str, Any] | None, size: Any, mean: Any,
                  std: Any, resize: Any, channel_order: Any, atol: float, restart: bool, threads: int,
                  quiet: bool) -> None:
    """Run every checkpoint of one training run on the inputs: one export, then weight swaps.

    CHECKPOINTS is a quoted glob or a .txt list file (one path a line); they are sorted naturally
    (epoch_9 before epoch_10). Each checkpoint's outputs are stored as soon as it is done, so an
    interrupted sweep resumes where it stopped when run again with the same arguments.

    \b
    Example:
        epg sweep 'runs/convmixer/epoch_*.pth' interventions.h5 -o outputs.h5 --classes cat,dog
        epg sweep checkpoints.txt interventions.h5 --arch mypkg.nets:resnet18 --model-name resnet18
    """
    from epg_bridges.models import sweep

    prep = _preprocessing(None, size, mean, std, resize, channel_order)
    try:
        result = sweep(checkpoints, list(inputs), out, architecture=architecture, arch_kwargs=arch_kwargs,
                       model_name=model_name, preprocessing=prep, classes=classes, output_kind=output_kind,
                       text_embeddings=text_embeddings, sequences=list(sequences) or None, batch_size=batch_size,
                       threads=threads, atol=atol, quiet=quiet, restart=restart)
    except KeyboardInterrupt:
        click.echo(f"interrupted: finished checkpoints are stored in {out}; run the same command to resume",
                   err=True)
        sys.exit(130)
    click.echo(str(result.path))
    row = {"model": result.model, "checkpoints": len(result.checkpoints), "computed": len(result.computed),
           "skipped": len(result.skipped), "sequences": len(result.sequences), "provider": result.provider or "-",
           "seconds": round(result.seconds, 2)}
    click.echo(format_table([row], list(row)))


def register(group: click.Group) -> None:
    """Add ``export``, ``predict`` and ``sweep`` to ``group``."""
    group.add_command(export_command)
    group.add_command(predict_command)
    group.add_command(sweep_command)
