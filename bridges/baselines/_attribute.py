"""``attribute``: local explanations (Captum) of the stored steps of every sequence, for every checkpoint.

Models are loaded exactly like a sweep loads them (``epg_bridges.models.load_for_run`` for the first checkpoint:
every ``--arch`` and checkpoint layout, the preprocessing the model carries; then each further checkpoint's
weights are loaded strictly into the same module). Each method runs batched (gradient methods over the images,
perturbation methods over their perturbations); every checkpoint's attributions are stored at once (atomic), and
only what is missing is computed, so an interrupted run resumes. A stored attribution made with other options,
another target or other steps is refused (``restart`` recomputes).
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from epg_core import DataError, UsageError

from .._progress import Counter, Progress
from ..models import RunOptions, torch_checkpoints
from ..models._architectures import load_checkpoint, load_weights
from ..models._preprocessing import resolve_classes
from ..models._setup import load_for_run
from ..models._spec import Preprocessing
from ..models._sweep import input_sources
from ._method import Context, Method
from ._methods import METHODS, make_method
from ._store import (
    Attribution,
    AttributionKey,
    check_writable,
    is_attributions_file,
    list_attributions,
    read_run_record,
    write_attributions,
)

__all__ = ["AttributeResult", "attribute", "DEFAULT_STEPS", "resolve_steps", "resolve_layer", "OUTPUTS"]

#: The stored steps by default: the original (first) and the most intervened (last) image.
DEFAULT_STEPS: tuple[int, ...] = (0, -1)
#: What is explained: the model's raw output (logits, Captum's usual target) or its softmax probabilities.
OUTPUTS = ("logits", "probabilities")


@dataclass(frozen=True)
class AttributeResult:
    """What a run did: the file, the model, its checkpoint names, and per checkpoint computed/skipped items."""

    path: Path
    model: str
    checkpoints: list[str]
    methods: list[str]
    target: str
    computed: int
    skipped: int
    seconds: float
    sequences: list[str] = field(default_factory=list)
    seconds_by_method: dict[str, float] = field(default_factory=dict)


def resolve_steps(steps: Sequence[int] | str, n: int, sequence: str) -> tuple[int, ...]:
    """Step indices (negative count from the end; ``"all"``) as sorted distinct indices into ``n`` steps."""
    if isinstance(steps, str):
        if steps != "all":
            raise UsageError(f"steps must be indices or 'all', got {steps!r}")
        return tuple(range(n))
    out = set()
    for s in steps:
        i = int(s) + n if int(s) < 0 else int(s)
        if not 0 <= i < n:
            raise UsageError(f"step {s} is outside sequence {sequence!r} ({n} steps)")
        out.add(i)
    if not out:
        raise UsageError("give at least one step to store")
    return tuple(sorted(out))


def resolve_layer(model: nn.Module, name: str | None) -> tuple[nn.Module | None, str | None]:
    """The named layer, or the last ``Conv2d`` (the paper's Guided Grad-CAM layer; None when there is none)."""
    modules = dict(model.named_modules())
    if name is not None:
        if name not in modules or name == "":
            convs = [n for n, m in modules.items() if isinstance(m, nn.Conv2d)][-5:]
            hint = f"; last convolutions: {', '.join(convs)}" if convs else ""
            raise UsageError(f"--layer {name!r}: the model has no layer of that name{hint}")
        return modules[name], name
    convs = [(n, m) for n, m in modules.items() if isinstance(m, nn.Conv2d)]
    return (convs[-1][1], convs[-1][0]) if convs else (None, None)


def _target_index(target: str | int, classes: Sequence[str]) -> tuple[int, str]:
    if isinstance(target, str) and target in classes:
        return list(classes).index(target), target
    try:
        index = int(target)
    except (TypeError, ValueError):
        raise UsageError(f"--class {target!r} is not one of the model's classes ({', '.join(classes)})") from None
    if not 0 <= index < len(classes):
        raise UsageError(f"--class {target}: the model has {len(classes)} outputs")
    return index, classes[index]


def _to_image(prep: Preprocessing) -> Any:
    mean = torch.tensor(prep.mean, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(prep.std, dtype=torch.float32).view(1, 3, 1, 1)

    def to_image(x: torch.Tensor) -> np.ndarray:
        img = (x.detach().cpu() * std + mean).permute(0, 2, 3, 1).numpy()
        return img[..., ::-1] if prep.channel_order == "BGR" else img

    return to_image, (0.5 - mean) / std


class _Probabilities(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.model(x), dim=-1)


def attribute(  # noqa: C901 - the driver: load, plan, resume, batch, store per checkpoint (one path each)
    inputs: Sequence[str | os.PathLike[str]],
    checkpoints: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    *,
    target: str | int,
    methods: Sequence[str] = tuple(METHODS),
    method_options: Mapping[str, Mapping[str, Any]] | None = None,
    options: RunOptions | None = None,
    layer: str | None = None,
    steps: Sequence[int] | str = DEFAULT_STEPS,
    output: str = "logits",
    seed: int = 0,
    restart: bool = False,
    force: bool = False,
    progress: Progress | None = None,
) -> AttributeResult:
    """Attributions of output ``target`` (class name or index) for ``steps`` of every sequence x checkpoint.

    ``inputs``: interventions files (``options.sequences`` selects sequences); ``checkpoints``: a glob, a list
    file, a folder or a list (one architecture, like a sweep); ``methods``: names of :data:`METHODS`;
    ``method_options``: per method, options replacing the paper's defaults (e.g. ``{"occlusion": {"window":
    15}}``); ``layer``: Guided Grad-CAM's layer (default the last convolution); ``output``: explain logits or
    probabilities; ``seed`` seeds LIME and Kernel SHAP per image. ``progress(done, total)`` counts (checkpoint,
    sequence, method) items, stored ones included. ``force``: replace an existing ``out`` that is not an
    attributions file (refused otherwise).
    """
    start = time.perf_counter()
    opts = options or RunOptions()
    out = Path(out)
    if output not in OUTPUTS:
        raise UsageError(f"output must be one of {', '.join(OUTPUTS)}, got {output!r}")
    unknown = [m for m in (method_options or {}) if m not in methods]
    if unknown:
        raise UsageError(f"options given for {unknown[0]!r}, which is not among the methods run "
                         f"({', '.join(methods)})")
    chosen: list[Method] = [make_method(m, (method_options or {}).get(m, {})) for m in dict.fromkeys(methods)]
    if not chosen:
        raise UsageError("give at least one method")
    check_writable(out, force)
    foreign = out.exists() and not is_attributions_file(out)  # replaced (force) on the first write
    if opts.threads > 0:
        torch.set_num_threads(opts.threads)
    paths, names = torch_checkpoints(checkpoints, "attributions need gradients of the torch model")
    model_name = opts.model_name or opts.architecture.rsplit(":", 1)[-1]
    sources = input_sources(list(inputs), opts.sequences)
    seqs = {name: (source, seq) for source in sources for name, seq in source.sequences.items()}
    if not seqs:
        raise DataError("the interventions files hold no sequences to explain")
    if any(source.h5_path is None for source in sources):
        raise UsageError("attribute explains the sequences of interventions files; give .h5 files")
    step_of = {name: resolve_steps(steps, len(seq.values), name) for name, (_, seq) in seqs.items()}

    loaded = load_for_run(paths[0], opts)
    first, base_model, prep = loaded.checkpoint, loaded.model, loaded.preprocessing
    with torch.no_grad():
        n_out = int(base_model(torch.zeros(1, 3, *prep.size)).shape[-1])
    classes = resolve_classes(n_out, opts.classes, classes_file=opts.classes_file, model_classes=first.classes,
                              source=str(paths[0]))
    target_index, target_name = _target_index(target, classes)
    model = _Probabilities(base_model) if output == "probabilities" else base_model
    record = {"architecture": opts.architecture, "arch_kwargs": dict(opts.arch_kwargs or {}), "classes": classes,
              "preprocessing": prep.to_dict(), "output": output}
    stored_record = {} if foreign else read_run_record(out, model_name)
    drop = None
    if stored_record and stored_record != record:
        if not restart:
            diff = next(k for k in sorted(set(record) | set(stored_record))
                        if record.get(k) != stored_record.get(k))
            raise UsageError(f"{out}: model {model_name!r} was explained with another {diff}; use --restart to "
                             "recompute or another --model-name / --out")
        drop = model_name

    layer_module, layer_name = resolve_layer(base_model, layer)
    to_image, grey = _to_image(prep)
    ctx = Context(model=model, grey=grey, to_image=to_image, layer=layer_module, layer_name=layer_name,
                  batch_size=opts.batch_size, seed=seed)
    option_json = {m.name: _options_json(m, layer_name) for m in chosen}
    have = {} if drop or foreign else {(k.checkpoint, k.sequence, k.method): k for k in list_attributions(out)
                                       if k.model == model_name}

    def wanted(checkpoint: str, sequence: str, method: Method) -> AttributionKey:
        return AttributionKey(model_name, checkpoint, sequence, method.name, option_json[method.name], target_name,
                              target_index, step_of[sequence], seed if method.stochastic else 0)

    todo: dict[str, list[tuple[str, Method]]] = {}
    skipped = 0
    for checkpoint in names:
        for sequence in seqs:
            for method in chosen:
                key = wanted(checkpoint, sequence, method)
                old = have.get((checkpoint, sequence, method.name))
                if old is not None and old.same_request(key) and not restart:
                    skipped += 1
                    continue
                if old is not None and not restart:
                    raise UsageError(f"{out}: {model_name}/{checkpoint}/{sequence}/{method.name} was computed with "
                                     "other options, target or steps; use --restart to recompute or another --out")
                todo.setdefault(checkpoint, []).append((sequence, method))
    counter = Counter(progress, len(names) * len(seqs) * len(chosen), skipped)
    prepared: dict[str, torch.Tensor] = {}
    timing: dict[str, float] = {}
    computed = 0
    for index, checkpoint in enumerate(names):
        items = todo.get(checkpoint)
        if not items:
            continue
        if index > 0:
            ckpt = load_checkpoint(paths[index], no_ema=opts.no_ema)
            if ckpt.paras and first.paras and ckpt.paras != first.paras:
                raise DataError(f"{ckpt.path}: wrong architecture: paras {ckpt.paras} differ from "
                                f"{first.path.name}'s {first.paras}")
            load_weights(base_model, ckpt.state_dict, ckpt.path)
            base_model.eval()
        for sequence, _ in items:
            if sequence not in prepared:
                source, _seq = seqs[sequence]
                x = source.preprocessed(sequence, prep)[list(step_of[sequence])]
                prepared[sequence] = torch.from_numpy(np.ascontiguousarray(x, np.float32))
        results: list[Attribution] = []
        for method in chosen:
            mine = [s for s, m in items if m is method]
            if not mine:
                continue
            t0 = time.perf_counter()
            maps = _batched(method, [prepared[s] for s in mine], target_index, ctx)
            timing[method.name] = timing.get(method.name, 0.0) + time.perf_counter() - t0
            for sequence, m in zip(mine, maps, strict=True):
                values = seqs[sequence][1].values[list(step_of[sequence])]
                results.append(Attribution(wanted(checkpoint, sequence, method), m, values))
                counter.add()
        write_attributions(out, results, run_record=record, drop_model=drop, force=force)
        drop = None
        computed += len(results)
    return AttributeResult(out, model_name, names, [m.name for m in chosen], target_name, computed, skipped,
                           time.perf_counter() - start, list(seqs), timing)


def _options_json(method: Method, layer_name: str | None) -> str:
    """The options stored with a method's maps (Guided Grad-CAM also records its layer)."""
    text = method.options_json()
    if method.needs_layer:
        import json

        text = json.dumps({**json.loads(text), "layer": layer_name}, sort_keys=True)
    return text


def _batched(method: Method, inputs: list[torch.Tensor], target: int, ctx: Context) -> list[np.ndarray]:
    """``method``'s maps for several sequences' images, in batches of ``ctx.batch_size`` images."""
    flat = torch.cat(inputs)
    step = max(1, ctx.batch_size) if not method.stochastic and method.channels == "sum" else len(flat) or 1
    parts = [method.maps(flat[i:i + step], target, ctx) for i in range(0, len(flat), step)]
    maps = np.concatenate(parts) if parts else np.zeros((0, *flat.shape[2:]), np.float32)
    bounds = np.cumsum([0] + [len(x) for x in inputs])
    return [maps[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
