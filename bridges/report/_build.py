"""``build_report``: score (or take the scores), gather the study, draw every figure and write index.html."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import epg_core as E

from ._baselines_view import baselines_section, plot_baselines
from ._clip_view import plot_clip_prompts
from ._common import ReportOptions
from ._curves import plot_behaviour, plot_sequences
from ._figures import plot_epg_vs_flips, plot_null, plot_over_checkpoints, plot_strip
from ._page import Figures, write_page
from ._study import Study, load_study

__all__ = ["build_report"]

PathLike = str | os.PathLike[str]
#: Names of the files this module writes (kind_slug_hash.png); older ones of these are removed from the folder.
OWN_PNG = re.compile(r"^(curves|sequences|null|epg|strip|clip)_[a-z0-9-]*_[0-9a-f]{8}\.png$")


def _options(options: ReportOptions | E.ScoreOptions | None, max_null_plots: int | None) -> ReportOptions:
    if options is None:
        opts = ReportOptions()
    elif isinstance(options, E.ScoreOptions):
        opts = ReportOptions(score=options)
    else:
        opts = options
    if max_null_plots is not None:
        opts = replace(opts, max_null_plots=max_null_plots)
    return opts.checked()


def _intervention_files(interventions: PathLike | Sequence[PathLike] | None,
                        interventions_path: PathLike | None) -> list[Path]:
    if interventions is None:
        files: list[PathLike] = []
    elif isinstance(interventions, (str, os.PathLike)):
        files = [interventions]
    else:
        files = list(interventions)
    if interventions_path is not None:
        files.append(interventions_path)
    return [Path(f) for f in files]


def _index_interventions(files: list[Path]) -> tuple[dict[str, str], dict[str, Path]]:
    """Unit and file of every sequence in the interventions files (the first file that has a name wins)."""
    units: dict[str, str] = {}
    where: dict[str, Path] = {}
    for f in files:
        for name, seq in E.read_interventions(f, images=False).items():
            if name not in where:
                where[name] = f
                units[name] = str(seq.attrs.get("unit", "") or "")
    return units, where


def _strips(study: Study, where: dict[str, Path], out: Path, say: Callable[[str], None]) -> dict[str, list[Any]]:
    strips: dict[str, list[Any]] = {}
    done: set[str] = set()
    for section in study.sections:
        for track in sorted(study.section_tracks(section), key=lambda t: (t.image, t.sequence)):
            name = track.sequence
            if name in done or name not in where:
                continue
            done.add(name)
            say(f"strip {name}")
            seq = E.read_interventions(where[name], [name])[name]
            strips.setdefault(section, []).append((name, plot_strip(seq, name, study.options.strip_frames, out)))
    return strips


def build_report(
    outputs_path: PathLike,
    out_dir: PathLike,
    options: ReportOptions | E.ScoreOptions | None = None,
    *,
    interventions: PathLike | Sequence[PathLike] | None = None,
    interventions_path: PathLike | None = None,
    rows: list[dict[str, Any]] | None = None,
    max_null_plots: int | None = None,
    baselines: Any | None = None,
    progress: Callable[[str], None] | None = None,
    select: E.Selection | None = None,
) -> dict[str, Any]:
    """Write the figures and ``index.html`` of an outputs file into ``out_dir``; return their paths.

    ``options``: a :class:`ReportOptions` (an ``E.ScoreOptions`` alone means the default report with those
    scoring options). ``interventions``: files for the strips and the units (``interventions_path`` is the
    older single-file name). ``rows``: scores already computed with ``options.score`` (else they are computed
    here); every drawn null distribution is re-run and its p-value checked against them (``null_checks``).
    ``baselines``: an ``epg_bridges.baselines.baselines_report(...)``: adds the flip task (EPG against local
    explanations, ROC curves) and the explanations of the original and the intervened image (paper Fig. 18).
    ``select``: the models, checkpoints and sequences to report (a study's current contents; default all).
    """
    opts = _options(options, max_null_plots)
    say = progress or (lambda _m: None)
    rows = rows if rows is not None else E.score_outputs(outputs_path, opts.score, select=select)
    units, where = _index_interventions(_intervention_files(interventions, interventions_path))
    study = load_study(outputs_path, rows, opts, units, select)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    figs = Figures()
    for section in study.sections:
        say(f"curves {section}")
        figs.behaviour[section] = plot_behaviour(study, section, out)
        figs.sequences[section] = plot_sequences(study, section, out)
    figs.strips = _strips(study, where, out, say)
    for verdict in study.verdicts[:opts.max_null_plots]:
        say(f"null {verdict.model}/{verdict.label}")
        figs.nulls.append(plot_null(study, verdict, out))
    for model in study.models:
        path = plot_over_checkpoints(study, model, out)
        if path is not None:
            figs.over_checkpoints.append(path)
    if figs.over_checkpoints:
        figs.epg_vs_flips = plot_epg_vs_flips(study, out)
    figs.clip = plot_clip_prompts(outputs_path, out, units, select)  # CLIP blocks only (paper Fig. 8)
    if baselines is not None:  # local baselines and the flip task
        say("local explanations")
        figs.baselines_html = baselines_section(plot_baselines(baselines, out, where=where))
    index = write_page(study, figs, out)
    written = _all_paths(figs)
    for stale in out.iterdir():
        if OWN_PNG.match(stale.name) and stale not in written:
            stale.unlink(missing_ok=True)
    return {
        "index": index, "curves": [p for ps in figs.behaviour.values() for p in ps],
        "sequences": [p for ps in figs.sequences.values() for p in ps],
        "strips": [p for s in figs.strips.values() for _, p in s], "nulls": [n.path for n in figs.nulls],
        "null_checks": figs.nulls, "over_checkpoints": figs.over_checkpoints,
        "epg_vs_flips": [figs.epg_vs_flips] if figs.epg_vs_flips else [], "clip": figs.clip,
        "verdicts": [v.row for v in study.verdicts], "rows": rows,
    }


def _all_paths(figs: Figures) -> set[Path]:
    paths = {p for ps in [*figs.behaviour.values(), *figs.sequences.values()] for p in ps}
    paths |= {p for s in figs.strips.values() for _, p in s} | {n.path for n in figs.nulls}
    paths |= set(figs.over_checkpoints) | ({figs.epg_vs_flips} if figs.epg_vs_flips else set()) | set(figs.clip)
    return paths
