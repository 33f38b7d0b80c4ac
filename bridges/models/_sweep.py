"""Checkpoint sweeps by weight swap into the outputs HDF5 format; resumable and incremental.

A sweep exports the architecture once, then for each checkpoint replaces the ONNX initializers by name
(refusing checkpoints whose tensors do not map one-to-one onto them), checks the first swapped checkpoint
against torch eager, and stores every checkpoint's outputs as soon as they are done with
``epg_core.set_checkpoint_outputs`` (one shard, O(that checkpoint), under the file's lock).

Incremental: only missing (sequence, checkpoint) pairs are computed. A rerun skips finished checkpoints; more
interventions files (new sequences) add blocks; more checkpoints grow the model's blocks (finished ones kept).
The run options (classes, output kind, size, preprocessing, architecture) are stored with the model on its first
write; a rerun with other ones is refused naming the option, unless ``restart`` recomputes.

No statistics here: scoring is ``epg_core``'s job.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

import epg_core as E
from epg_core import DataError, OutputsBlock, UsageError

from .._images import natural_key
from .._progress import Counter, Progress
from ..executors import ExecutorOptions
from ._architectures import load_checkpoint, load_weights
from ._checkpoints import torch_checkpoints
from ._export import export_model, torch_outputs, verify_export
from ._inputs import InputSource, collect_inputs
from ._predict import n_outputs, provenance, text_matrix
from ._preprocessing import resolve_classes
from ._run_options import RunOptions
from ._runner import OnnxRunner, select_provider
from ._setup import load_for_run
from ._sweep_store import check_same_paras, check_swap, store_checkpoint
from ._weight_swap import WeightSwapper

__all__ = ["SweepResult", "sweep", "input_sources"]


@dataclass(frozen=True)
class SweepResult:
    """What a sweep did: the outputs file, this run's checkpoint names, which of them it computed and skipped."""

    path: Path
    model: str
    checkpoints: list[str]
    computed: list[int]
    skipped: list[int]
    provider: str | None
    seconds: float
    swap_check_diff: float | None = None
    sequences: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- inputs


def input_sources(
    inputs: Sequence[str | os.PathLike[str]] | InputSource, sequences: Sequence[str] | None = None
) -> list[InputSource]:
    """One source per interventions file (several allowed; sequence names unique across them), or image files."""
    if isinstance(inputs, InputSource):
        return [inputs]
    paths = [Path(p) for p in inputs]
    if len(paths) < 2 or not all(p.suffix.lower() in (".h5", ".hdf5", ".hdf") for p in paths):
        return [collect_inputs(paths, sequences=sequences)]
    wanted = list(dict.fromkeys(sequences)) if sequences else None
    owner: dict[str, Path] = {}
    sources = []
    for path in paths:
        pick = [n for n in E.list_sequences(path) if wanted is None or n in wanted]
        for name in pick:
            if name in owner:
                raise UsageError(f"{path}: sequence {name!r} is also in {owner[name]}; sequence names must be "
                                 "unique across the interventions files")
            owner[name] = path
        if pick:
            sources.append(collect_inputs([path], sequences=pick))
    missing = [n for n in wanted or [] if n not in owner]
    if missing:
        raise UsageError(f"sequence {missing[0]!r} is in none of the interventions files")
    return sources


# --------------------------------------------------------------------------- the outputs file's state


@dataclass
class _Plan:
    """What the outputs file holds for this model and what this run must add."""

    names: list[str]  # the model's checkpoint list after this run (natural order)
    existing: dict[str, tuple[list[str], np.ndarray]]  # sequence -> (its checkpoint names, done flags)
    rewrite: list[str]  # sequences of this run whose blocks must be (re)created with ``names``
    missing: dict[str, list[str]]  # checkpoint name of this run -> sequences still to compute
    stored: dict[str, Any]  # run options stored with the model ({} when none)


def _existing(out: Path, model: str) -> dict[str, tuple[list[str], np.ndarray, np.ndarray]]:
    """Per sequence of ``model``: checkpoint names, done flags and property values (cheap: one column read)."""
    if not out.exists() or model not in {m for m, _ in E.list_outputs(out)}:
        return {}
    found: dict[str, tuple[list[str], list[np.ndarray], np.ndarray]] = {}
    for chunk in E.iter_outputs(out, model, classes=[0], checkpoint_chunk=4096):
        names, dones, values = found.setdefault(chunk.sequence, ([], [], chunk.values))
        names.extend(chunk.checkpoints)
        dones.append(chunk.done)
    return {s: (n, np.concatenate(d), v) for s, (n, d, v) in found.items()}


def _plan(out: Path, model: str, names: list[str], values: Mapping[str, np.ndarray], requested: dict[str, Any],
          restart: bool) -> _Plan:
    """Compare the file with this run: refuse other options or values, list what is missing."""
    have = _existing(out, model)
    stored: dict[str, Any] = {}
    if have:
        others = [s for s in have if s not in values]
        if restart and others:
            with _refusal(f"--restart recomputes only this run's sequences; {others[0]!r} would keep outputs "
                          "computed with other options; use another --model-name or --out"):
                E.check_run_options(out, model, requested)
        if restart:
            have = {s: v for s, v in have.items() if s not in values}
        else:
            E.check_run_options(out, model, requested)
        stored = E.read_run_options(out, model) if have else {}
    for seq, (_, _, old_values) in have.items():
        if seq in values and not np.array_equal(old_values, values[seq]):
            raise DataError(f"{out}: {model}/{seq} was computed for other property values; use --restart")
    lists = [have[s][0] for s in values if s in have]
    union = set(names).union(*lists)
    same = [n for n in lists if set(n) == union]
    merged = list(same[0]) if same else sorted(union, key=natural_key)  # nothing new: keep the stored order
    rewrite = [s for s in values if s not in have or have[s][0] != merged]
    done_of = {s: dict(zip(n, d, strict=True)) for s, (n, d, _) in have.items()}
    missing = {c: [s for s in values if not done_of.get(s, {}).get(c, False)] for c in names}
    return _Plan(merged, {s: (n, d) for s, (n, d, _) in have.items()}, rewrite,
                 {c: s for c, s in missing.items() if s}, stored)


@contextlib.contextmanager
def _refusal(message: str) -> Iterator[None]:
    try:
        yield
    except DataError as exc:
        raise UsageError(f"{message} ({exc})") from None


def _prepare_blocks(out: Path, model: str, plan: _Plan, fresh: dict[str, OutputsBlock],
                    record: dict[str, Any]) -> None:
    """Create the blocks of new sequences; grow existing ones to ``plan.names`` keeping their finished rows."""
    if not plan.rewrite:
        return
    blocks = []
    old = {b.sequence: b for b in E.read_outputs(out, model)} if plan.existing else {}
    for seq in plan.rewrite:
        block = fresh[seq]
        if seq in old:
            index = {c: i for i, c in enumerate(plan.names)}
            for j, name in enumerate(old[seq].checkpoints):
                if old[seq].done[j] and name in index and old[seq].outputs.shape[1:] == block.outputs.shape[1:]:
                    block.outputs[index[name]] = old[seq].outputs[j]
                    block.done[index[name]] = True
        blocks.append(block)
    E.write_outputs(out, blocks, run_options=record)


# --------------------------------------------------------------------------- sweep


def sweep(  # noqa: C901 - the driver: plan, export, probe the swap, run locally or on Ray
    checkpoints: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    inputs: Sequence[str | os.PathLike[str]] | InputSource,
    out: str | os.PathLike[str],
    options: RunOptions | None = None,
    *,
    restart: bool = False,
    progress: Progress | None = None,
    executor: ExecutorOptions | None = None,
) -> SweepResult:
    """Outputs of every checkpoint (one architecture) on the inputs, by one export and weight swaps.

    ``inputs`` are interventions files (several allowed) or image files. Only missing (sequence, checkpoint)
    pairs are computed (see the module doc); ``restart`` recomputes this run's sequences. ``progress(done,
    total)`` counts this run's checkpoints (finished ones included). A bad checkpoint stops the sweep with a
    one-line error; everything stored before it stays. ``executor`` (``ExecutorOptions(executor="ray")``) runs
    the checkpoints on Ray workers that write shards, folded here (``_sweep_ray``); outputs are bit-identical.
    """
    start = time.perf_counter()
    opts = options or RunOptions()
    if opts.output_kind == "cosine" and opts.text_embeddings is None:
        raise UsageError("output kind 'cosine' needs text embeddings (--text-embeddings FILE.npy)")
    out = Path(out)
    if opts.threads > 0:
        torch.set_num_threads(opts.threads)
    paths, names = torch_checkpoints(checkpoints, "a sweep swaps torch weights")
    model_name = opts.model_name or opts.architecture.rsplit(":", 1)[-1]
    sources = input_sources(inputs, opts.sequences)
    seqs = {name: seq for s in sources for name, seq in s.sequences.items()}
    if not seqs:
        raise DataError("the interventions files hold no sequences to run the model on")
    values = {name: seq.values for name, seq in seqs.items()}
    # The first checkpoint of the list fixes the architecture and the preprocessing (also when resuming), so a
    # wrong checkpoint later in the list is reported as such instead of becoming the reference.
    loaded = load_for_run(paths[0], opts)
    first, model, kwargs, prep = loaded.checkpoint, loaded.model, loaded.kwargs, loaded.preprocessing
    given = opts.given_classes()
    requested = opts.record(prep, given or [])
    if given is None:
        del requested["classes"]
    plan = _plan(out, model_name, names, values, requested, restart)
    skipped = [i for i, c in enumerate(names) if c not in plan.missing]
    counter = Counter(progress, len(names), len(skipped))
    if not plan.missing:
        return SweepResult(out, model_name, names, [], skipped, None, time.perf_counter() - start,
                           sequences=list(seqs))

    proto = export_model(model, prep)
    verify_export(model, proto, prep.random_batch(2), atol=opts.atol, threads=opts.threads,
                  what="the sweep's export")
    swapper = WeightSwapper(proto, model, reexport=True, atol=opts.atol)  # unproven swap: re-export, with a notice
    prepared: dict[str, np.ndarray] = {}
    attrs: dict[str, dict[str, Any]] = {}
    for source in sources:
        attrs.update(provenance(source, opts.architecture, kwargs))

    def prepare(needed: Mapping[str, list[str]]) -> None:
        """Preprocess the sequences that still miss outputs (once; kept in memory for every checkpoint)."""
        for source in sources:
            for name in source.sequences:
                if name not in prepared and any(name in s for s in needed.values()):
                    prepared[name] = source.preprocessed(name, prep)

    prepare(plan.missing)
    provider = select_provider()
    text = text_matrix(opts.text_embeddings, opts.prompt_average)
    raw_dim = int(torch_outputs(model, next(iter(prepared.values()))[:1]).shape[-1])
    n_out = n_outputs(opts.output_kind, raw_dim, text)

    with E.file_lock(out):  # the file's state is read and blocks are created by one writer at a time
        plan = _plan(out, model_name, names, values, requested, restart)  # the file may have changed meanwhile
        prepare(plan.missing)
        stored = plan.stored.get("classes")
        own = stored if isinstance(stored, list) and len(stored) == n_out else \
            first.classes if opts.output_kind != "cosine" else None
        class_names = resolve_classes(n_out, opts.classes, classes_file=opts.classes_file, model_classes=own,
                                      source=str(paths[0]))
        fresh = {s: OutputsBlock(model=model_name, sequence=s,
                                 outputs=np.full((len(plan.names), len(values[s]), n_out), np.nan, np.float32),
                                 done=np.zeros(len(plan.names), bool), checkpoints=plan.names, classes=class_names,
                                 values=values[s], output_kind=opts.output_kind, preprocessing=prep.to_dict(),
                                 attrs=attrs[s])
                 for s in plan.rewrite}
        _prepare_blocks(out, model_name, plan, fresh, opts.record(prep, class_names))

    if executor is not None and executor.executor != "local":  # workers write shards, this process folds them
        from ._sweep_ray import SweepJob, items_of, run_sweep_items

        job = SweepJob(swapper, first, paths, prepared, out, model_name, opts.output_kind, text, opts.threads,
                       opts.batch_size, opts.atol, opts.no_ema)
        done, diff, used = run_sweep_items(job, items_of(names, plan.missing), executor, counter)
        return SweepResult(out, model_name, names, done, skipped, used or provider, time.perf_counter() - start,
                           diff, list(seqs))
    computed: list[int] = []
    check_diff: float | None = None
    for index, name in enumerate(names):
        if name not in plan.missing:
            continue
        ckpt = first if index == 0 else load_checkpoint(paths[index], no_ema=opts.no_ema)
        check_same_paras(ckpt, first)
        load_weights(model, ckpt.state_dict, ckpt.path)
        runner = OnnxRunner(swapper.model_bytes(model.state_dict()), output_kind=opts.output_kind,
                            text_embeddings=text, threads=opts.threads, batch_size=opts.batch_size,
                            provider=provider)
        if check_diff is None:
            check_diff = check_swap(runner, model, prepared, opts.batch_size, opts.atol, ckpt.path, opts.threads)
        rows = {s: runner.outputs(prepared[s]) for s in plan.missing[name]}
        store_checkpoint(out, model_name, name, rows)
        computed.append(index)
        counter.add()
    return SweepResult(out, model_name, names, computed, skipped, provider, time.perf_counter() - start,
                       check_diff, list(seqs))
