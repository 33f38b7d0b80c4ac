"""A sweep's checkpoint loop on an executor (Ray): one worker per process, shards written by the workers.

The driver (``sweep``) plans, exports and probes the model once, creates the outputs blocks, then hands every
worker a :class:`SweepJob`: the weight swapper (exported ONNX graph + torch model), the preprocessed inputs
(shipped once through Ray's object store) and the run settings. A worker loads the model once and then, per
checkpoint, loads the weights from the shared filesystem, swaps them into the graph, runs ONNX Runtime with the
same threads and batch size as the local loop (so the outputs are bit-identical) and stores the rows as its own
shards (``epg_core.write_shard``, atomic; at the checkpoint's row in the blocks as they are then, under the
file's lock). The driver folds the shards into the outputs file after each result (idempotent) and counts
progress. A worker that dies is restarted and its checkpoint retried; shards already
written stay, and a rerun skips every folded (or pending) checkpoint.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

import epg_core as E

from .._progress import Counter
from ..executors import ExecutorOptions, check_visible, run_items
from ._architectures import Checkpoint, load_checkpoint, load_weights
from ._runner import OnnxRunner, select_provider
from ._sweep_store import check_same_paras, check_swap, store_checkpoint
from ._weight_swap import WeightSwapper

__all__ = ["SweepJob", "SweepItem", "SweepDone", "SweepWorker", "run_sweep_items"]


@dataclass
class SweepJob:
    """Everything a worker needs, built once by the driver (pickled once, shared by every worker)."""

    swapper: WeightSwapper
    first: Checkpoint  # the reference checkpoint without its tensors (architecture check)
    paths: list[Path]
    prepared: dict[str, np.ndarray]
    out: Path
    model_name: str
    output_kind: str
    text: np.ndarray | None
    threads: int
    batch_size: int
    atol: float
    no_ema: bool = False  # take the raw weights, not timm's EMA copy


@dataclass(frozen=True)
class SweepItem:
    """One checkpoint: its index in this run's list, its name (its row in the blocks is looked up when the rows are
    stored), the sequences it misses."""

    index: int
    name: str
    sequences: tuple[str, ...]


@dataclass(frozen=True)
class SweepDone:
    """A finished checkpoint: its shards, the provider that ran it, the swap check (first item of a worker)."""

    index: int
    shards: tuple[Path, ...]
    provider: str
    check_diff: float | None
    pid: int


class SweepWorker:
    """Runs checkpoints of one job in one process; the model is exported once, checkpoints are swapped in."""

    def __init__(self, job: SweepJob) -> None:
        check_visible([job.out, *job.paths])
        self.job = job
        if job.threads > 0:
            torch.set_num_threads(job.threads)
        self.provider = select_provider(report=False)
        self.checked = False

    def __call__(self, item: SweepItem) -> SweepDone:
        job = self.job
        model = job.swapper.model
        ckpt = load_checkpoint(job.paths[item.index], no_ema=job.no_ema)
        check_same_paras(ckpt, job.first)
        load_weights(model, ckpt.state_dict, ckpt.path)
        runner = OnnxRunner(job.swapper.model_bytes(model.state_dict()), output_kind=job.output_kind,
                            text_embeddings=job.text, threads=job.threads, batch_size=job.batch_size,
                            provider=self.provider)
        diff = None
        if not self.checked:
            diff = check_swap(runner, model, job.prepared, job.batch_size, job.atol, ckpt.path, job.threads)
            self.checked = True
        rows = {s: runner.outputs(job.prepared[s]) for s in item.sequences}
        shards = store_checkpoint(job.out, job.model_name, item.name, rows, fold=False)
        return SweepDone(item.index, tuple(shards), self.provider, diff, os.getpid())


def run_sweep_items(
    job: SweepJob,
    items: Sequence[SweepItem],
    executor: ExecutorOptions,
    counter: Counter,
    on_done: Callable[[SweepDone], None] | None = None,
) -> tuple[list[int], float | None, str | None]:
    """Run ``items`` on ``executor``; fold each worker's shard in the driver. Returns (computed indices, the
    swap check of the first computed checkpoint, the provider)."""
    job = dataclasses.replace(job, first=dataclasses.replace(job.first, state_dict={}),
                              prepared={k: v for k, v in job.prepared.items()
                                        if any(k in i.sequences for i in items)})
    done: dict[int, SweepDone] = {}

    def on_result(_item: object, result: SweepDone) -> None:
        E.fold_shards(job.out)
        done[result.index] = result
        counter.add()
        if on_done is not None:
            on_done(result)

    try:
        run_items(functools.partial(SweepWorker, job), list(items), executor, on_result=on_result)
    finally:
        with contextlib.suppress(E.EpgError):  # best effort: shards that are not folded stay visible
            E.fold_shards(job.out)
    computed = sorted(done)
    checks = {i: d.check_diff for i, d in done.items() if d.check_diff is not None}
    check = checks[min(checks)] if checks else None
    return computed, check, done[computed[0]].provider if computed else None


def items_of(names: Sequence[str], missing: Mapping[str, list[str]]) -> list[SweepItem]:
    """The work items of a sweep: every checkpoint of this run that misses outputs, in list order."""
    return [SweepItem(i, n, tuple(missing[n])) for i, n in enumerate(names) if n in missing]
