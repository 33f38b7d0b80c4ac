"""``epg attribute`` and ``epg flip-task``: local baselines along interventions (thin over epg_bridges.baselines)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import click

from ._errors import CliUsageError, Interrupted
from ._extras import needs_extras, require_extra
from ._models import _architecture_options, _classes_options, _preprocessing_options, _run_options
from ._options import (
    force_option,
    out_option,
    progress_bar,
    quiet_option,
    refuse_collisions,
    seed_option,
    threads_option,
)
from ._table import format_table
from ._types import FiniteRange

_ALL_METHODS = "saliency,integrated-gradients,deeplift,guided-gradcam,occlusion,lime,kernel-shap"


def _parse_steps(value: str) -> tuple[int, ...] | str:
    """``all`` or comma-separated step indices (negative count from the end)."""
    text = value.strip()
    if text == "all":
        return "all"
    try:
        steps = tuple(int(p) for p in text.split(",") if p.strip())
    except ValueError:
        raise click.BadParameter(f"expected 'all' or comma-separated step indices (e.g. 0,-1), got {value!r}",
                                 param_hint="--steps") from None
    if not steps:
        raise click.BadParameter("give at least one step index", param_hint="--steps")
    return steps


def _parse_methods(value: str) -> list[str]:
    from epg_bridges.baselines import METHOD_NAMES

    names = [p.strip() for p in value.split(",") if p.strip()]
    bad = [n for n in names if n not in METHOD_NAMES]
    if not names or bad:
        raise CliUsageError(f"--methods: unknown method {bad[0]!r}; use {', '.join(METHOD_NAMES)}" if bad else
                            "--methods: give at least one method")
    return list(dict.fromkeys(names))


@click.command("attribute")
@click.argument("interventions", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("checkpoints", nargs=-1, required=True)
@click.option("--methods", default=_ALL_METHODS, show_default=True, metavar="A,B,...",
              help="Attribution methods (Captum), comma-separated.")
@click.option("--class", "target", required=True, metavar="NAME|INDEX",
              help="The output explained (a class name of --classes or the model's, or an index).")
@click.option("--layer", default=None, metavar="NAME",
              help="Guided Grad-CAM's layer (a module name of the model) [default: the last Conv2d].")
@click.option("--steps", "steps_text", default="0,-1", show_default=True, metavar="I,J,...|all",
              help="Steps of each sequence to explain (negative: from the end): the original and the most "
                   "intervened image by default.")
@click.option("-O", "--method-option", "method_option", multiple=True, metavar="METHOD.KEY=VALUE",
              help="Change one option of one method (repeatable), e.g. occlusion.window=15, lime.samples=200, "
                   "integrated-gradients.steps=32; a wrong key names the valid ones.")
@click.option("--explain", type=click.Choice(["logits", "probabilities"]), default="logits", show_default=True,
              help="Explain the model's raw output or its softmax probabilities.")
@click.option("--sequence", "sequences", multiple=True, help="Only this sequence (repeatable).")
@click.option("--model-name", default=None,
              help="Model name in the attributions file; use the sweep's, so that flip-task pairs them "
                   "[default: the architecture, like sweep].")
@click.option("--batch-size", type=click.IntRange(1, 65_536), default=32, show_default=True,
              help="Images per forward pass; Occlusion, LIME and Kernel SHAP: perturbations per pass.")
@click.option("--restart", is_flag=True,
              help="Recompute what is stored instead of resuming (also with other options, class or steps).")
@out_option("The attributions HDF5 file (epg-attributions; other models' and checkpoints' entries are kept).",
            default=Path("attributions.h5"))
@_classes_options
@_architecture_options
@_preprocessing_options
@seed_option
@threads_option
@force_option
@quiet_option
@needs_extras("attribute", "baselines", "torch")
def attribute_command(interventions: Path, checkpoints: tuple[str, ...], methods: str, target: str,
                      layer: str | None, steps_text: str, method_option: tuple[str, ...], explain: str,
                      restart: bool, seed: int, out: Path, quiet: bool, force: bool, **kw: Any) -> None:
    """Explain the original and the intervened images of every sequence with local attribution methods.

    For every checkpoint (loaded exactly like `epg sweep` loads them: every --arch and checkpoint layout)
    and every sequence of INTERVENTIONS, the stored --steps are explained with Captum: saliency,
    integrated-gradients, deeplift, guided-gradcam, occlusion, lime, kernel-shap. The paper's settings
    (appendix B.4) are the defaults: Guided Grad-CAM on the last convolution; Occlusion 9x9, stride 4,
    mean grey baseline; LIME and Kernel SHAP on SLIC superpixels (100 segments, compactness 1), seeded
    with --seed. CHECKPOINTS are files, quoted globs, a .txt list or a folder. Each checkpoint is stored
    as soon as it is done; a rerun computes only what is missing. Maps are per input pixel at the model's
    input size (channels summed; superpixel and window methods take their one value per pixel).

    \b
    Example:
        epg attribute background.h5 'runs/convmixer/*.pth' --class cat --classes cat,dog -o attributions.h5
        epg attribute background.h5 ckpt.pth --class cat --methods saliency,occlusion -O occlusion.window=15
        epg flip-task outputs.h5 attributions.h5 --class cat
    """
    require_extra("attribute", "baselines", ["torch", "captum", "skimage", "sklearn"])
    from epg_bridges.baselines import attribute, parse_method_options

    chosen = _parse_methods(methods)
    steps = _parse_steps(steps_text)
    options = _run_options(kw)
    method_options = parse_method_options(method_option)
    refuse_collisions({"attributions file": out}, [interventions, options.classes_file])
    specs: list[str] = list(checkpoints)
    try:
        with progress_bar("attribute", "map", quiet) as progress:
            result = attribute([interventions], specs if len(specs) > 1 else specs[0], out, target=target,
                               methods=chosen, method_options=method_options, options=options, layer=layer,
                               steps=steps, output=explain, seed=seed, restart=restart, force=force,
                               progress=progress)
    except KeyboardInterrupt:
        raise Interrupted(f"interrupted: finished checkpoints are stored in {out}; run the same command to "
                          "resume") from None
    click.echo(str(result.path))
    row = {"model": result.model, "class": result.target, "checkpoints": len(result.checkpoints),
           "sequences": len(result.sequences), "methods": len(result.methods), "computed": result.computed,
           "skipped": result.skipped, "seconds": round(result.seconds, 2)}
    click.echo(format_table([row], list(row)))


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "–"
        return "inf" if math.isinf(value) else f"{value:.4g}"
    return str(value)


def echo_flip_table(table: Any) -> None:
    """Print a ``FlipTaskTable``: one line on the units, then one row per score (EPG first)."""
    rows = [{"score": r["score"], "n": r["n"], "flips": r["positives"], "accuracy": _fmt(r["accuracy"]),
             "threshold": _fmt(r["threshold"]), "AUROC": _fmt(r["auroc"]),
             "95% CI": f"[{_fmt(r['auroc_low'])}, {_fmt(r['auroc_high'])}]"} for r in table.rows()]
    seen = f"; scores from the first {table.predict_from:g} of the steps" if table.predict_from is not None else ""
    click.echo(f"flip task, class {table.target}: {len(table.units)} units (model x checkpoint x sequence), "
               f"{sum(u.label for u in table.units)} with a flip{seen}")
    click.echo(format_table(rows, list(rows[0])))


@click.command("flip-task")
@click.argument("outputs", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("attributions", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--class", "target", default=None, metavar="NAME|INDEX",
              help="The class the attributions explain and EPG scores [default: the one in ATTRIBUTIONS].")
@click.option("--predict-from", type=FiniteRange(0, 1, min_open=True, max_open=True), default=None, metavar="F",
              help="Scores see only the first fraction F of the steps (EPG of that part; baselines at the last "
                   "stored step in it); labels are flips from there on.")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the table as CSV (an existing file that is not such a table is refused).")
@click.option("--bootstrap", type=click.IntRange(0, 1_000_000), default=2000, show_default=True,
              help="Bootstrap resamples of the AUROC's 95% interval (0: none).")
@seed_option
@force_option
@quiet_option
@needs_extras("flip-task", "baselines")
def flip_task_command(outputs: Path, attributions: Path, target: str | None, predict_from: float | None,
                      csv_path: Path | None, bootstrap: int, seed: int, quiet: bool, force: bool) -> None:
    """Predict whether an intervention flips the prediction: EPG against local explanations.

    The project page's protocol: one unit per model x checkpoint x sequence; label = the prediction
    (argmax) changes along the sequence; EPG's score = the curve's EPG for --class; a method's score =
    the mean squared difference of its explanation between the original (step 0) and the intervened image
    (last stored step). Per score: n, positives, accuracy at the optimal threshold (the one maximising
    accuracy, for every score alike), that threshold (predict a flip where score >= it), AUROC with a
    95% bootstrap interval. Model, checkpoint and sequence names pair the two files (same --model-name
    for sweep and attribute).

    \b
    Example:
        epg flip-task outputs.h5 attributions.h5 --class cat
        epg flip-task outputs.h5 attributions.h5 --class cat --predict-from 0.5 --csv flip.csv
    """
    from epg_bridges.baselines import flip_task_table, write_flip_csv

    if csv_path is not None:
        refuse_collisions({"CSV": csv_path}, [outputs, attributions])
    table = flip_task_table(outputs, attributions, target=target, predict_from=predict_from, n_bootstrap=bootstrap,
                            seed=seed)
    echo_flip_table(table)
    if table.skipped:
        click.echo(f"note: {table.skipped} attributed unit(s) have no finished outputs in {outputs}; skipped",
                   err=True)
    if csv_path is not None:
        click.echo(str(write_flip_csv(table, csv_path, force=force)))


def register(group: click.Group) -> None:
    """Add ``attribute`` and ``flip-task`` to ``group``."""
    group.add_command(attribute_command)
    group.add_command(flip_task_command)
