"""Diffusion edits of several images on an executor (Ray): one image per work item, the editor loaded once
per worker.

Each Ray worker (an actor with one GPU when the cluster has GPUs and the device is not ``cpu``) loads the
editor's pipeline from the model folder or the Hugging Face cache of its node, then edits the images it is given
exactly as the local loop does (the same :class:`EditSpec`: options, seed, size and torch threads), so the
sequences equal the local ones. The pictures travel to the workers and the sequences back to the driver through
Ray's object store; the driver stores each sequence as it arrives (a killed run resumes). A worker that dies is
restarted and its image edited again.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from epg_core import InterventionSequence

from .._progress import Counter, Progress
from ..executors import ExecutorOptions, run_items

__all__ = ["EditJob", "EditWorker", "edit_images"]


@dataclass
class EditJob:
    """What every worker needs: the pictures and the edit (pickled once, shared)."""

    pictures: list[np.ndarray]
    spec: Any  # EditSpec
    images: list[str] | None = None  # the pictures' ids (per-image inputs such as MGIE's embeddings)


class EditWorker:
    """Loads the editor once, then edits picture ``i`` of the job per call."""

    def __init__(self, job: EditJob) -> None:
        from ._editing import load_editor

        self.job = job
        self.editor = load_editor(job.spec)

    def __call__(self, index: int) -> InterventionSequence:
        from ._editing import edit_with_spec

        job = self.job
        return edit_with_spec(self.editor, job.spec, job.pictures[index], image=job.images[index] if job.images
                              else None)


def edit_images(
    job: EditJob, executor: ExecutorOptions, progress: Progress | None = None, *,
    on_sequence: Callable[[int, InterventionSequence], None] | None = None,
) -> list[InterventionSequence]:
    """Every picture of ``job`` edited on ``executor``: ``on_sequence(i, seq)`` as each arrives (in any order;
    nothing is kept then), else the sequences in the job's order; ``progress`` counts images."""
    if job.spec.device == "cpu" and executor.gpus_per_worker is None:
        executor = dataclasses.replace(executor, gpus_per_worker=0.0)
    counter = Counter(progress, len(job.pictures))
    done: dict[int, InterventionSequence] = {}

    def on_result(index: int, seq: InterventionSequence) -> None:
        if on_sequence is not None:
            on_sequence(index, seq)  # handed on (stored), not kept here
        else:
            done[index] = seq
        counter.add()

    run_items(functools.partial(EditWorker, job), list(range(len(job.pictures))), executor, on_result=on_result)
    return [done[i] for i in sorted(done)]
