"""``epg run study.toml``: images x interventions x models x checkpoints x scoring x report, in one folder.

Each stage is skipped when its result exists for the same inputs and options (``_state``); a changed option
recomputes only what it affects: one property's sequences, one model's outputs, the scores, the report.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import epg_core as E
from epg_core import verdict_rows as verdict_rows

from ..executors import ExecutorOptions
from ._interventions import run_interventions, wanted
from ._spec import ModelSpec, Study, load_study
from ._state import State, file_stamp, fingerprint

Say = Callable[[str], None]
SCORE_KEYS = {"target", "spacing", "group_by", "n_permutations", "alternative", "seed", "alpha", "fdr",
              "all_classes", "precision", "min_effect", "method", "risk", "statistic", "statistic_options"}


@dataclass
class StudyResult:
    """What a run wrote and which stages it (re)computed."""

    out: Path
    interventions: Path
    outputs: Path
    scores_csv: Path
    report: Path | None
    rows: list[dict[str, Any]]
    computed: dict[str, list[str]] = field(default_factory=dict)


def score_options(study: Study) -> E.ScoreOptions:
    """The study's ``[score]`` table as ``ScoreOptions`` (groups by property unless told otherwise)."""
    table = dict(study.score)
    unknown = sorted(set(table) - SCORE_KEYS)
    if unknown:
        raise E.UsageError(f"{study.path}: [score]: unknown option {unknown[0]!r}; use {', '.join(sorted(SCORE_KEYS))}")
    if "fdr" in table:
        table["use_fdr"] = bool(table.pop("fdr"))
    table.setdefault("group_by", "property")
    try:
        return E.ScoreOptions(**table).checked()
    except E.UsageError as exc:
        raise E.UsageError(f"{study.path}: [score]: {exc}") from None


# ------------------------------------------------------------------------------------------- interventions


# made by make_interventions (every kind: designed, edit, frames); see _interventions.py
_wanted = wanted


# ------------------------------------------------------------------------------------------------- models


def _model_fingerprint(model: ModelSpec, interventions: dict[str, str]) -> str:
    return fingerprint(model.arch, model.classes, model.options, [file_stamp(p) for p in model.checkpoints],
                       sorted(interventions.items()))


def study_selection(study: Study) -> E.Selection:
    """What the study file asks for now: its models with their checkpoints' names, and its sequences. Nothing
    else in the study's files (cached blocks of removed models, images or checkpoints) enters a score or report."""
    from ..models import checkpoint_names, find_checkpoints

    models = {m.name: tuple(checkpoint_names(find_checkpoints(list(m.checkpoints)))) for m in study.models}
    return E.Selection(models=models, sequences=frozenset(_wanted(study)))


def _complete(outputs: Path, model: str, select: E.Selection) -> bool:
    """Whether every selected sequence of ``model`` has every selected checkpoint finished in ``outputs``."""
    if not outputs.exists():
        return False
    wanted = set(select.sequences or ())
    have = {s for m, s in E.list_outputs(outputs) if m == model}
    if not wanted <= have:
        return False
    for seq in wanted:  # names and done flags only (one output of one step is read)
        meta = next(E.iter_outputs(outputs, model, seq, steps=slice(0, 1), classes=[0], checkpoint_chunk=1 << 30))
        mask = select.checkpoint_mask(model, meta.checkpoints)
        if int(mask.sum()) != len((select.models or {}).get(model) or ()) or not np.all(np.asarray(meta.done)[mask]):
            return False
    return True


def run_models(study: Study, state: State, interventions: Path, say: Say,
               executor: ExecutorOptions | None = None) -> tuple[Path, list[str]]:
    """Sweep every model whose checkpoints, options or interventions changed (resumable inside a model), or whose
    outputs lack anything the study asks for (a model removed from the study file and restored later)."""
    from ._models import sweep_model

    outputs = study.out / "outputs.h5"
    seqs = state.get("interventions", {})
    recorded = state.get("models", {}) if outputs.exists() else {}
    current = {m.name for m in study.models}
    recorded = {name: fp for name, fp in recorded.items() if name in current}  # a removed model is forgotten
    select = study_selection(study)
    used = state.get("outputs_interventions", {}) if outputs.exists() else {}
    changed = sorted(n for n, fp in used.items() if seqs.get(n) != fp)
    if changed:  # outputs of images that are no longer the study's must not survive
        say(f"removing outputs of {len(changed)} changed or removed sequence(s)")
        E.remove_outputs(outputs, changed)
    state.set("outputs_interventions", dict(seqs))
    done: list[str] = []
    for model in study.models:
        fp = f"{_options_fp(model)}:{_model_fingerprint(model, seqs)}"
        old = recorded.get(model.name)
        if old == fp and _complete(outputs, model.name, select):
            continue
        restart = old is not None and old.split(":")[0] != fp.split(":")[0]
        say(f"model {model.name}: {len(model.checkpoints)} checkpoint(s)" + (" (options changed)" if restart else ""))
        sweep_model(model, interventions, outputs, restart=restart, say=say, executor=executor)
        recorded = {**recorded, model.name: fp}
        state.set("models", recorded)
        done.append(model.name)
    return outputs, done


def _options_fp(model: ModelSpec) -> str:
    """What invalidates a model's stored outputs (not adding checkpoints or sequences)."""
    return fingerprint(model.arch, model.classes, model.options)[:12]


# ---------------------------------------------------------------------------------------- scores, report


def run_scores(study: Study, state: State, outputs: Path, say: Say) -> tuple[Path, list[dict[str, Any]], bool]:
    """Score the outputs when they or the score options changed; else read the recorded table."""
    opts = score_options(study)
    csv_path = study.out / "scores.csv"
    select = study_selection(study)
    fp = fingerprint(opts.__dict__, state.get("models", {}), state.get("interventions", {}), select.fingerprint())
    if state.get("scores") == fp and csv_path.exists():
        return csv_path, E.read_scores(outputs), False
    say("scoring")
    rows = E.score_outputs(outputs, opts, select=select)
    E.write_scores_csv(csv_path, rows)
    E.write_scores(outputs, rows)
    state.set("scores", fp)
    return csv_path, rows, True


def run_report(study: Study, state: State, outputs: Path, interventions: Path, rows: list[dict[str, Any]],
               say: Say) -> tuple[Path, bool]:
    """Draw the report (of the study's current contents only) when the scores or the report options changed."""
    from ._models import build_study_report

    folder = study.out / "report"
    fp = fingerprint(state.get("scores"), study.report)
    if state.get("report") == fp and (folder / "index.html").exists():
        return folder / "index.html", False
    say("report")
    index = build_study_report(outputs, folder, interventions, score_options(study), study.report, say,
                               rows=rows, select=study_selection(study))
    state.set("report", fp)
    return index, True


EXECUTOR_KEYS = ("executor", "ray_address", "workers", "cpus_per_worker", "gpus_per_worker", "retries")


def executor_options(study: Study, executor: str | None, ray_address: str | None) -> ExecutorOptions:
    """The study's ``[executor]`` table, with the command line's ``--executor``/``--ray-address`` on top."""
    table = dict(study.executor)
    unknown = sorted(set(table) - set(EXECUTOR_KEYS))
    if unknown:
        raise E.UsageError(f"{study.path}: [executor]: unknown option {unknown[0]!r}; use {', '.join(EXECUTOR_KEYS)}")
    if executor is not None:
        table["executor"] = executor
    if ray_address is not None:
        table["ray_address"] = ray_address
    try:
        return ExecutorOptions(**table)
    except TypeError as exc:
        raise E.UsageError(f"{study.path}: [executor]: {exc}") from None
    except E.UsageError as exc:
        raise E.UsageError(f"{study.path}: [executor]: {exc}") from None


def study_outputs(study: Study) -> dict[Path, str]:
    """Every path a run of ``study`` writes, with the kind of epg output it is (for ``epg_core._formats._guard``)."""
    return {study.out / "interventions.h5": "interventions", study.out / "outputs.h5": "outputs",
            study.out / "scores.csv": "scores-csv", study.out / "report": "report"}


def run_study(path: str | os.PathLike[str], *, say: Say | None = None, report: bool = True,
              executor: str | None = None, ray_address: str | None = None) -> StudyResult:
    """Run every stage of the study file at ``path`` that is not up to date; return what was written."""
    study = load_study(path)
    say = say or (lambda _m: None)
    study.out.mkdir(parents=True, exist_ok=True)
    state = State(study.out)
    on = executor_options(study, executor, ray_address)
    interventions, seqs = run_interventions(study, state, say, on)
    outputs, models = run_models(study, state, interventions, say, on)
    scores_csv, rows, scored = run_scores(study, state, outputs, say)
    index, reported = run_report(study, state, outputs, interventions, rows, say) if report else (None, False)
    computed = {"interventions": seqs, "models": models, "scores": ["scores"] if scored else [],
                "report": ["report"] if reported else []}
    return StudyResult(study.out, interventions, outputs, scores_csv, index, rows, computed)
