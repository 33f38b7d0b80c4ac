"""Where independent work items run: in this process (``local``) or on a Ray cluster (``ray``).

A *worker factory* builds a worker once per process (it loads the exported model, prepares the inputs); the
worker maps one item (a checkpoint index, an image) to a result. Results come back to the driver in completion
order; ``on_result`` runs in the driver (progress, storing shards). On Ray, workers are actors
(``max_restarts``/``max_task_retries``: a worker whose process dies is restarted and its item retried);
factories and results travel through Ray's object store, so only the paths a worker opens itself must be on a
filesystem it can see (checked first, with a clear error).
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import epg_core as E

#: Where work runs: this process, or Ray tasks and actors (a local instance or a cluster).
Executor = Literal["local", "ray"]
EXECUTORS: tuple[Executor, ...] = ("local", "ray")


class Worker(Protocol):
    """Maps one work item to its result."""

    def __call__(self, item: Any, /) -> Any: ...


@dataclass(frozen=True)
class ExecutorOptions:
    """``executor`` "local" | "ray"; ``ray_address`` None (a local Ray instance), "auto" or "HOST:PORT";
    ``workers`` (Ray actors; default: the cluster's CPUs / ``cpus_per_worker``, and no more than its GPUs /
    ``gpus_per_worker`` when that is > 0), resources per worker (``gpus_per_worker`` None: one GPU per worker when
    the cluster has GPUs, else none), and retries of an item whose worker died."""

    executor: Executor = "local"
    ray_address: str | None = None
    workers: int | None = None
    cpus_per_worker: float = 1.0
    gpus_per_worker: float | None = None
    retries: int = 3

    def __post_init__(self) -> None:
        if self.executor not in EXECUTORS:
            raise E.UsageError(f"unknown executor {self.executor!r}; use one of {', '.join(EXECUTORS)}")
        if self.ray_address is not None and self.executor != "ray":
            raise E.UsageError("--ray-address needs --executor ray")
        if self.workers is not None and self.workers < 1:
            raise E.UsageError(f"workers must be >= 1, got {self.workers}")


def check_visible(paths: Iterable[str | os.PathLike[str]]) -> None:
    """Raise a DataError naming the host and path when a worker cannot see a file it must open."""
    for p in paths:
        if not Path(p).exists():
            raise E.DataError(f"worker on {socket.gethostname()} cannot see {p}: put inputs and outputs on a "
                              "filesystem shared by every node (see the README, 'Many machines')")


def run_items(
    factory: Callable[[], Worker],
    items: Sequence[Any],
    options: ExecutorOptions = ExecutorOptions(),
    *,
    on_result: Callable[[Any, Any], None] | None = None,
) -> None:
    """Run ``factory()(item)`` for every item and hand ``(item, result)`` to ``on_result`` in the driver."""
    if not items:
        return
    if options.executor == "local":
        worker = factory()
        for item in items:
            result = worker(item)
            if on_result is not None:
                on_result(item, result)
        return
    _run_ray(factory, items, options, on_result)


def ray_init(address: str | None, num_cpus: int | None = None) -> Any:
    """Connect to (or start) Ray once per process; a one-line error when it is not installed."""
    try:
        import ray
    except ImportError:
        raise E.DataError("the ray executor needs the 'ray' extra: pip install 'epg[ray]'") from None
    if not ray.is_initialized():
        kwargs: dict[str, Any] = {"ignore_reinit_error": True, "log_to_driver": False,
                                  "include_dashboard": False, "logging_level": logging.ERROR}
        if address is None:
            kwargs["num_cpus"] = num_cpus or os.cpu_count() or 1
        try:
            ray.init(address=address, **kwargs)
        except ConnectionError as exc:
            raise E.DataError(f"cannot reach the Ray cluster at {address!r}: {exc}") from None
    return ray


class _Actor:
    """Holds one worker for the actor's lifetime (the model is loaded once, checkpoints are swapped).

    The worker is built on the first item from the factory in the object store (a nested reference, fetched
    only then), so a restarted actor builds it again. A user error while building it (a path the worker cannot
    see) is raised by ``run`` as itself, so the driver gets the one-line error instead of a dead actor.
    """

    def __init__(self) -> None:
        self.worker: Worker | None = None

    def run(self, shared: list[Any], item: Any) -> tuple[Any, Any]:
        worker = self.worker
        if worker is None:
            import ray

            factory: Callable[[], Worker] = ray.get(shared[0])
            worker = self.worker = factory()
        return item, worker(item)

    def pid(self) -> int:
        return os.getpid()


def _run_ray(factory: Callable[[], Worker], items: Sequence[Any], options: ExecutorOptions,
             on_result: Callable[[Any, Any], None] | None) -> None:
    ray = ray_init(options.ray_address)
    n, gpus = _workers(ray.cluster_resources(), options)
    n = max(1, min(n, len(items)))
    remote = ray.remote(num_cpus=options.cpus_per_worker, num_gpus=gpus,
                        max_restarts=options.retries, max_task_retries=options.retries)(_Actor)
    # pickled once (inputs included) and read by every actor from the object store; the driver holds the
    # reference until the end, so a restarted actor finds it again
    shared = [ray.put(factory)]
    actors = [remote.remote() for _ in range(n)]
    pending: dict[Any, Any] = {}
    queue = list(items)
    free = list(actors)
    try:
        while queue or pending:
            while queue and free:
                actor = free.pop()
                pending[actor.run.remote(shared, queue.pop(0))] = actor
            ready, _ = ray.wait(list(pending), num_returns=1)
            for r in ready:
                actor = pending.pop(r)
                free.append(actor)
                item, result = _result(ray, r, options)
                if on_result is not None:
                    on_result(item, result)
    finally:
        for actor in actors:
            ray.kill(actor)


def _workers(resources: dict[str, float], options: ExecutorOptions) -> tuple[int, float]:
    """How many actors, and GPUs per actor, for a cluster with ``resources``."""
    gpus = float(resources.get("GPU", 0.0))
    per_gpu = options.gpus_per_worker if options.gpus_per_worker is not None else (1.0 if gpus >= 1 else 0.0)
    n = int(float(resources.get("CPU", 1.0)) // max(options.cpus_per_worker, 1e-9))
    if per_gpu > gpus:
        raise E.UsageError(f"each worker asks for {per_gpu:g} GPU(s) but the Ray cluster has {gpus:g}")
    if per_gpu > 0:
        n = min(n, int(gpus // per_gpu))
    return max(1, options.workers or n), per_gpu


def _result(ray: Any, ref: Any, options: ExecutorOptions) -> tuple[Any, Any]:
    """``ray.get(ref)``; a user error raised in the worker comes back as itself, a worker that died more often
    than ``retries`` as a one-line error."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as exc:
        cause = exc.cause if isinstance(getattr(exc, "cause", None), BaseException) else exc
        if isinstance(cause, E.EpgError):
            raise cause from None
        raise
    except ray.exceptions.RayActorError as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise E.DataError(f"a Ray worker died {options.retries + 1} times; giving up ({first})") from None
