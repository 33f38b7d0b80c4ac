"""Diffusion edits of several images on an executor (Ray): one image per work item, the pipeline loaded once
per worker.

Each Ray worker (an actor with one GPU when the cluster has GPUs and the device is not ``cpu``) loads the
editing pipeline from the model folder or the Hugging Face cache of its node, then edits the images it is given
exactly as the local loop does (``edit_sequence`` with the same options, seed, size and torch threads), so the
sequences equal the local ones. The pictures travel to the workers and the sequences back to the driver through
Ray's object store; the driver writes the interventions file. A worker that dies is restarted and its image
edited again.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from typing import Any

import numpy as np

from epg_core import InterventionSequence

from .._progress import Counter, Progress
from ..executors import ExecutorOptions, run_items

__all__ = ["EditJob", "EditWorker", "edit_images"]


@dataclass
class EditJob:
    """What every worker needs: the pictures, the editor and how to run it (pickled once, shared)."""

    pictures: list[np.ndarray]
    instruction: str
    model: str
    method: str
    device: str
    options: Any  # Pix2PixOptions | LeditsOptions
    guidance_scales: np.ndarray
    seed: int
    size: tuple[int, int] | None
    threads: int


class EditWorker:
    """Loads the pipeline once, then edits picture ``i`` of the job per call."""

    def __init__(self, job: EditJob) -> None:
        from ._edit_setup import load_pipeline

        if job.threads:
            import torch

            torch.set_num_threads(job.threads)
        self.job = job
        self.pipe = load_pipeline(job.model, method=job.method, device=job.device)  # type: ignore[arg-type]

    def __call__(self, index: int) -> InterventionSequence:
        from ._editing import edit_sequence

        job = self.job
        return edit_sequence(job.pictures[index], job.instruction, pipe=self.pipe, model=job.model,
                             options=job.options, guidance_scales=job.guidance_scales, seed=job.seed, size=job.size)


def edit_images(
    job: EditJob, executor: ExecutorOptions, progress: Progress | None = None
) -> list[InterventionSequence]:
    """Every picture of ``job`` edited on ``executor``, in the job's order; ``progress`` counts images."""
    if job.device == "cpu" and executor.gpus_per_worker is None:
        executor = dataclasses.replace(executor, gpus_per_worker=0.0)
    counter = Counter(progress, len(job.pictures))
    done: dict[int, InterventionSequence] = {}

    def on_result(index: int, seq: InterventionSequence) -> None:
        done[index] = seq
        counter.add()

    run_items(functools.partial(EditWorker, job), list(range(len(job.pictures))), executor, on_result=on_result)
    return [done[i] for i in range(len(job.pictures))]
