"""``make_interventions``: the one entry that makes sequences for ``epg intervene synthetic|edit|frames`` and
``epg run``.

One sequence per source (an image, or a folder of frames), named ``<image>-<property>`` (image ids from the file
stems, made valid names and de-duplicated in order). Every path and name is checked before the slow work. Each
finished sequence is stored at once (with its contact sheet, written just before the sequence is committed), and
records the fingerprint of what made it (``epg_request``: kind, options, the source's content): a rerun skips
the sequences already stored with the same fingerprint, so a killed run resumes where it stopped and a finished
one computes nothing. An existing file is never replaced: without ``append`` it is only resumed when every
sequence in it is one this call would make; a name already in the file for other inputs is refused.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import numpy as np

from epg_core import InterventionSequence, UsageError

from .._progress import Progress
from ._plan import EditSpec, Request, plan_requests, slug
from ._synthetic import KINDS as DESIGNED_KINDS

__all__ = ["Made", "make_interventions", "stored_requests", "REQUEST_ATTR"]

REQUEST_ATTR = "epg_request"
#: ``bar(description) -> context manager yielding a Progress callback`` (the CLI's tqdm bars)
Bar = Callable[[str], AbstractContextManager[Progress | None]]


@dataclasses.dataclass
class Made:
    """What a call wrote: the file, the names of every planned sequence, those made now and those kept."""

    path: Path
    names: list[str]
    made: list[str]
    kept: list[str]
    sheets: list[Path]


def stored_requests(path: Path) -> dict[str, str]:
    """Sequence name -> its recorded fingerprint ("" when it has none) of an existing file."""
    from epg_core import read_interventions

    seqs = read_interventions(path, images=False)
    return {n: str(s.attrs.get(REQUEST_ATTR, "")) for n, s in seqs.items()}


def _refuse_collisions(outputs: dict[str, Path], inputs: Sequence[str | os.PathLike[str] | None]) -> None:
    """An output path that equals an input or another output is refused before anything is written."""
    seen: dict[str, str] = {}
    for label, path in outputs.items():
        key = os.path.realpath(path)
        if key in seen:
            raise UsageError(f"{path}: {label} would overwrite the {seen[key]}; choose another --out")
        seen[key] = label
    for path in inputs:
        if path is not None and os.path.realpath(path) in seen:
            raise UsageError(f"{path}: the {seen[os.path.realpath(path)]} would overwrite this input; "
                             "choose another --out")


def _todo(path: Path, requests: Sequence[Request], append: bool) -> list[Request]:
    """The requests still to make; an existing file that is not this call's (without append) is refused."""
    if not path.exists():
        return list(requests)
    from epg_core import written_by_epg

    if not written_by_epg(path, "interventions"):  # never added to nor replaced: epg did not write it (issue 17)
        raise UsageError(f"{path}: exists and is not an epg interventions file; choose another --out")
    stored = stored_requests(path)
    ours = {r.name: r.fingerprint for r in requests}
    clash = [n for n in ours if n in stored and stored[n] != ours[n]]
    if not append and any(ours.get(n) != fp for n, fp in stored.items()):
        raise UsageError(f"{path}: the file exists; add --append to add sequences to it (nothing in it is "
                         "replaced) or choose another --out")
    if clash:
        raise UsageError(f"{path}: already holds sequence {clash[0]!r}; choose another --property or --name "
                         "(appending never replaces a sequence)")
    return [r for r in requests if r.name not in stored]


# ------------------------------------------------------------------------------------------------ make


def make_interventions(
    out: str | os.PathLike[str],
    kind: str,
    sources: Sequence[str | os.PathLike[str]],
    *,
    property: str | None = None,
    options: Mapping[str, Any] | EditSpec | None = None,
    name: str | None = None,
    append: bool = False,
    sheet_steps: int | None = 8,
    inputs: Sequence[str | os.PathLike[str] | None] = (),
    executor: Any = None,
    bar: Bar | None = None,
    say: Callable[[str], None] | None = None,
    stems: Sequence[str] | None = None,
    extra_attrs: Sequence[Mapping[str, Any]] | None = None,
) -> Made:
    """Make one sequence per source into the interventions file ``out``; store each as soon as it is done.

    ``kind``: a designed kind (``options``: ``values`` plus the edit's parameters, ``size``, ``attrs``), ``"edit"``
    (``options``: an :class:`EditSpec`) or ``"frames"`` (``sources`` are folders; ``options``: ``values_csv``,
    ``column``, ``size``, ``unit``). ``property`` defaults to the kind (the editor's name for edits).
    ``sheet_steps``: steps on each contact sheet ``<out stem>.<sequence>.png`` (None: no sheets). ``executor``
    (:class:`epg_bridges.executors.ExecutorOptions`): where edits run (Ray: one image per task, each sequence
    stored as it arrives). ``extra_attrs``: attributes per source for its sequence (a study's labels).
    Returns what was made and what was already there.
    """
    path = Path(out)
    srcs = [Path(s) for s in sources]
    if not srcs:
        raise UsageError("no input given")
    opts: Mapping[str, Any] | EditSpec = options if options is not None else {}
    if kind == "edit" and not isinstance(opts, EditSpec):
        opts = EditSpec(**dict(opts))
    prop = property or (slug(opts.method.replace("++", "pp"), "edit") if isinstance(opts, EditSpec) else kind)
    requests = plan_requests(kind, srcs, property=prop, options=opts, name=name, stems=stems, extra_attrs=extra_attrs)
    sheets = {r.name: path.with_name(f"{path.stem}.{r.name}.png") for r in requests} if sheet_steps else {}
    extra_inputs = list(inputs) + list(srcs)
    if kind == "frames":
        from ._frames import list_frames

        extra_inputs += [p for s in srcs for p in list_frames(s)]
    _refuse_collisions({"interventions file": path, **{f"contact sheet of {n}": s for n, s in sheets.items()}},
                       extra_inputs)
    todo = _todo(path, requests, append)
    done = [r.name for r in requests if r not in todo]
    say = say or (lambda _m: None)
    bar = bar or (lambda _d: contextlib.nullcontext(None))
    made: list[str] = []

    def store(req: Request, seq: InterventionSequence) -> None:
        attrs = {**seq.attrs, **req.attrs, "property": prop, "image": req.image, REQUEST_ATTR: req.fingerprint}
        if kind in DESIGNED_KINDS or kind == "edit":
            attrs["image_file"] = str(req.source.resolve())
        if kind == "edit":
            attrs["description"] = seq.attrs.get("property", "")
        _store(path, req.name, dataclasses.replace(seq, attrs=attrs), sheets.get(req.name), sheet_steps)
        made.append(req.name)

    if todo:
        if kind == "edit":
            assert isinstance(opts, EditSpec)
            _make_edits(opts, todo, store, executor, bar, say)
        else:
            assert not isinstance(opts, EditSpec)
            for i, req in enumerate(todo, 1):
                say(f"intervention {i}/{len(todo)}: {req.name}")
                with bar(f"{kind} {req.name}") as progress:
                    store(req, _make_one(kind, req, prop, opts, progress))
    return Made(path, [r.name for r in requests], made, done, list(sheets.values()))


def _store(path: Path, name: str, seq: InterventionSequence, sheet: Path | None, sheet_steps: int | None) -> None:
    """Add one sequence to ``path`` (created if missing), its contact sheet written just before the commit."""
    from epg_core import append_interventions, write_interventions

    from . import write_contact_sheet

    created: list[Path] = []

    def write_sheet() -> None:
        if sheet is None or not sheet_steps:
            return
        existed = sheet.exists()
        try:
            write_contact_sheet(seq, sheet, n=sheet_steps)
        except Exception:
            if not existed:
                sheet.unlink(missing_ok=True)
            raise
        if not existed:
            created.append(sheet)

    try:
        if path.exists():
            append_interventions(path, {name: seq}, before_commit=write_sheet)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_interventions(path, {name: seq}, before_commit=write_sheet)
    except BaseException:
        for p in created:
            p.unlink(missing_ok=True)
        raise


def _make_one(kind: str, req: Request, prop: str, options: Mapping[str, Any],
              progress: Progress | None) -> InterventionSequence:
    """A designed or frames sequence."""
    opts = dict(options)
    if kind == "frames":
        from ._frames import frames_sequence

        return frames_sequence(req.source, values_csv=opts.get("values_csv"), column=opts.get("column"),
                               size=opts.get("size"), property=prop, unit=opts.get("unit"),
                               attrs={"image": req.image}, progress=progress)
    from .._images import load_image
    from ._synthetic import default_values, synthetic_sequence

    values = opts.pop("values", None)
    n_steps = int(opts.pop("n_steps", 50))
    grid = np.asarray(values, np.float64) if values is not None else default_values(kind, n_steps)
    picture = load_image(req.source, size=opts.pop("size", None))
    attrs = {"property": prop, "image": req.image, **dict(opts.pop("attrs", None) or {})}
    return synthetic_sequence(picture, kind, grid, attrs=attrs, progress=progress, **opts)


def _make_edits(spec: EditSpec, todo: Sequence[Request], store: Callable[[Request, InterventionSequence], None],
                executor: Any, bar: Bar, say: Callable[[str], None]) -> None:
    """Edit every image of ``todo`` locally (the editor loaded once) or on Ray; store each as it is done."""
    from .._images import load_image

    pictures = [load_image(r.source) for r in todo]  # every image read before the model is loaded
    if executor is not None and getattr(executor, "executor", "local") == "ray":
        from ._edit_ray import EditJob, edit_images

        job = EditJob(pictures, spec, [r.image for r in todo])
        pending: dict[int, InterventionSequence] = {}
        nxt = [0]

        def in_order(i: int, seq: InterventionSequence) -> None:
            """Store each sequence once every earlier one is stored: the file's order is the command's."""
            pending[i] = seq
            while nxt[0] in pending:
                store(todo[nxt[0]], pending.pop(nxt[0]))
                nxt[0] += 1

        with bar(f"{spec.method} edits") as progress:
            edit_images(job, executor, progress, on_sequence=in_order)
        return
    from ._editing import edit_with_spec, load_editor

    editor = load_editor(spec)
    for i, (req, picture) in enumerate(zip(todo, pictures, strict=True), 1):
        say(f"edit {i}/{len(todo)}: {req.name}")
        with bar(f"{spec.method} {req.name}") as progress:
            store(req, edit_with_spec(editor, spec, picture, progress, image=req.image))

