"""Checkpoint sweeps by weight swap: equality with fresh exports, resume, incremental additions, refusals."""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from helpers import assert_same_content

from epg_bridges.models import (
    OnnxRunner,
    Preprocessing,
    RunOptions,
    WeightSwapper,
    build_model,
    checkpoint_names,
    collect_inputs,
    conv_mixer,
    export_model,
    find_checkpoints,
    natural_sorted,
    postprocess,
    sweep,
    torch_outputs,
)
from epg_bridges.testing import TINY_CONVMIXER as TINY
from epg_bridges.testing import small_interventions as _interventions
from epg_bridges.testing import train_run
from epg_core import (
    DataError,
    InterventionSequence,
    UsageError,
    read_outputs,
    read_run_options,
    write_interventions,
    write_outputs,
)

PREP = Preprocessing(size=(32, 32))
OPTS = RunOptions(preprocessing=PREP, classes=["a", "b", "c"])
N_CKPT = 20


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("sweep")
    train_run(folder / "ckpts")
    _interventions(folder / "iv.h5")
    return folder


@pytest.fixture(scope="module")
def full_sweep(run_dir: Path) -> Path:
    """The uninterrupted reference sweep."""
    out = run_dir / "full.h5"
    result = sweep(str(run_dir / "ckpts" / "epoch_*.pt"), [run_dir / "iv.h5"], out, OPTS)
    assert result.computed == list(range(N_CKPT)) and result.skipped == []
    assert result.swap_check_diff is not None and result.swap_check_diff < 1e-4
    return out


# --------------------------------------------------------------------------- listing


def test_natural_sort_and_names(run_dir: Path, tmp_path: Path) -> None:
    found = find_checkpoints(str(run_dir / "ckpts" / "*.pt"))
    names = checkpoint_names(found)
    assert names == [f"epoch_{i}" for i in range(1, N_CKPT + 1)]
    assert [p.name for p in natural_sorted(["e10.pt", "e9.pt", "e1.pt"])] == ["e1.pt", "e9.pt", "e10.pt"]
    listing = tmp_path / "list.txt"
    listing.write_text("# run\n" + "\n".join(str(p) for p in reversed(found[:3])) + "\n")
    assert find_checkpoints(listing) == found[:3]
    with pytest.raises(ValueError, match="no checkpoints match"):
        find_checkpoints(str(tmp_path / "nothing_*.pt"))
    (tmp_path / "gone.txt").write_text("missing.pt\n")
    with pytest.raises(ValueError, match="missing.pt: checkpoint not found"):
        find_checkpoints(tmp_path / "gone.txt")


# --------------------------------------------------------------------------- equality with fresh exports


@pytest.mark.slow
def test_sweep_equals_fresh_export_of_every_checkpoint(run_dir: Path, full_sweep: Path) -> None:
    blocks = {b.sequence: b for b in read_outputs(full_sweep, "convmixer")}
    assert sorted(blocks) == ["bright", "rotate"]
    block = blocks["bright"]
    assert block.checkpoints == [f"epoch_{i}" for i in range(1, N_CKPT + 1)]
    assert block.done.all() and block.classes == ["a", "b", "c"] and block.output_kind == "probabilities"
    assert block.preprocessing == PREP.to_dict() and block.attrs["property"] == "brightness"
    source = collect_inputs([run_dir / "iv.h5"])
    inputs = {name: source.preprocessed(name, PREP) for name in blocks}
    distinct = set()
    for index in range(N_CKPT):
        model = build_model("convmixer", run_dir / "ckpts" / f"epoch_{index + 1}.pt")
        runner = OnnxRunner(export_model(model, PREP), output_kind="probabilities")
        for name, x in inputs.items():
            fresh = runner.outputs(x)
            np.testing.assert_allclose(blocks[name].outputs[index], fresh, atol=1e-5, rtol=0)
            eager = postprocess(torch_outputs(model, x), "probabilities")
            np.testing.assert_allclose(blocks[name].outputs[index], eager, atol=1e-4, rtol=0)
        distinct.add(blocks["bright"].outputs[index].tobytes())
    assert len(distinct) == N_CKPT  # training moved the outputs: a stale-weights bug could not pass


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::FutureWarning")  # raw torch.onnx.export chatter
def test_swapper_refuses_optimised_export_that_folds_tensors() -> None:
    model = conv_mixer(**TINY).eval()
    example = torch.from_numpy(PREP.random_batch(2))
    program = torch.onnx.export(model, (example,), dynamo=True, optimize=True, external_data=False, verbose=False,
                                dynamic_shapes=({0: torch.export.Dim("batch")},))
    assert program is not None
    proto = program.model_proto
    with pytest.raises(ValueError, match="do not map one-to-one onto the ONNX initializers") as err:
        WeightSwapper(proto, model)
    assert "\n" not in str(err.value)
    renamed = export_model(model, PREP)
    renamed.graph.initializer[0].name = "folded_0"
    with pytest.raises(ValueError, match="'0.weight' have no initializer"):
        WeightSwapper(renamed, model)
    assert len(WeightSwapper(export_model(model, PREP), model).mapping) == len(
        [k for k in model.state_dict() if not k.endswith("num_batches_tracked")])


# --------------------------------------------------------------------------- interruption and resume


@pytest.mark.slow
def test_interrupted_sweep_resumes_without_recomputing(run_dir: Path, full_sweep: Path, tmp_path: Path) -> None:
    out = tmp_path / "partial.h5"
    calls: list[tuple[int, int]] = []

    def ctrl_c_after_eight(done: int, total: int) -> None:
        calls.append((done, total))
        if done == 8:
            raise KeyboardInterrupt

    glob = str(run_dir / "ckpts" / "epoch_*.pt")
    with pytest.raises(KeyboardInterrupt):
        sweep(glob, [run_dir / "iv.h5"], out, OPTS, progress=ctrl_c_after_eight)
    assert calls == [(i, N_CKPT) for i in range(9)]
    partial = read_outputs(out, "convmixer", "bright")[0]
    assert partial.done.sum() == 8 and partial.done[:8].all()
    assert np.isnan(partial.outputs[8:]).all()

    again: list[tuple[int, int]] = []
    result = sweep(glob, [run_dir / "iv.h5"], out, OPTS, progress=lambda d, t: again.append((d, t)))
    assert result.skipped == list(range(8)) and result.computed == list(range(8, N_CKPT))
    assert again == [(i, N_CKPT) for i in range(8, N_CKPT + 1)]  # 12 computed, none of the 8 finished ones
    assert_same_content(out, full_sweep)

    third = sweep(glob, [run_dir / "iv.h5"], out, OPTS)
    assert third.computed == [] and len(third.skipped) == N_CKPT and third.provider is None  # no export at all


@pytest.mark.slow
def test_rerun_with_other_options_is_refused_naming_the_option(run_dir: Path, full_sweep: Path,
                                                               tmp_path: Path) -> None:
    out = tmp_path / "copy.h5"
    out.write_bytes(full_sweep.read_bytes())
    glob = str(run_dir / "ckpts" / "epoch_*.pt")
    assert read_run_options(out, "convmixer")["size"] == "32x32"
    for change, option in [({"classes": ["x", "y", "z"]}, "classes"), ({"output_kind": "logits"}, "output_kind"),
                           ({"preprocessing": Preprocessing(size=(24, 32))}, "size"),
                           ({"preprocessing": Preprocessing(size=(32, 32), mean=(0.4, 0.4, 0.4))}, "preprocessing")]:
        with pytest.raises(DataError, match=f"computed with {option}=.*use --restart") as err:
            sweep(glob, [run_dir / "iv.h5"], out, dataclasses.replace(OPTS, **change))
        assert "\n" not in str(err.value)
    assert out.read_bytes() == full_sweep.read_bytes()
    same = sweep(glob, [run_dir / "iv.h5"], out, dataclasses.replace(OPTS, classes=None))  # stored classes kept
    assert same.computed == [] and read_outputs(out, "convmixer", "bright")[0].classes == ["a", "b", "c"]

    logits = sweep(glob, [run_dir / "iv.h5"], out, dataclasses.replace(OPTS, output_kind="logits"), restart=True)
    assert logits.computed == list(range(N_CKPT))
    block, old = read_outputs(out, "convmixer", "bright")[0], read_outputs(full_sweep, "convmixer", "bright")[0]
    assert block.output_kind == "logits" and block.done.all()
    softmax = np.exp(block.outputs) / np.exp(block.outputs).sum(-1, keepdims=True)
    np.testing.assert_allclose(softmax, old.outputs, atol=1e-5)


def test_a_subset_of_finished_checkpoints_computes_nothing(run_dir: Path, full_sweep: Path, tmp_path: Path) -> None:
    out = tmp_path / "copy.h5"
    out.write_bytes(full_sweep.read_bytes())
    subset = find_checkpoints(str(run_dir / "ckpts" / "epoch_*.pt"))[:5]
    result = sweep(subset, [run_dir / "iv.h5"], out, OPTS)
    assert result.computed == [] and result.skipped == list(range(5)) and result.provider is None
    only = sweep(str(run_dir / "ckpts" / "epoch_*.pt"), [run_dir / "iv.h5"], out,
                 dataclasses.replace(OPTS, sequences=["bright"]))
    assert only.computed == [] and only.sequences == ["bright"]
    assert out.read_bytes() == full_sweep.read_bytes()


def _counting_runs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Spy on OnnxRunner.outputs: the number of images of every call."""
    sizes: list[int] = []
    real = OnnxRunner.outputs

    def outputs(self: OnnxRunner, x: np.ndarray, *args: Any, **kwargs: Any) -> np.ndarray:
        sizes.append(len(x))
        return real(self, x, *args, **kwargs)

    monkeypatch.setattr(OnnxRunner, "outputs", outputs)
    return sizes


@pytest.mark.slow
def test_more_checkpoints_and_files_later_compute_only_what_is_missing(
    run_dir: Path, full_sweep: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = find_checkpoints(str(run_dir / "ckpts" / "epoch_*.pt"))
    out = tmp_path / "grow.h5"
    first = sweep(paths[:12:2], [run_dir / "iv.h5"], out, OPTS)  # epochs 1, 3, ..., 11
    assert first.computed == list(range(6))
    sizes = _counting_runs(monkeypatch)
    grown = sweep(paths, [run_dir / "iv.h5"], out, OPTS)
    assert grown.skipped == list(range(0, 12, 2)) and grown.computed == [i for i in range(N_CKPT) if i % 2 or i >= 12]
    assert len(sizes) == 2 * 14  # two sequences x the 14 new checkpoints, nothing else
    for new, ref in zip(read_outputs(out), read_outputs(full_sweep), strict=True):
        assert new.checkpoints == ref.checkpoints and new.done.all()
        np.testing.assert_array_equal(new.outputs, ref.outputs)

    rng = np.random.default_rng(9)
    extra = write_interventions(tmp_path / "more.h5", {"dark": InterventionSequence(
        rng.integers(0, 256, (3, 32, 32, 3), dtype=np.uint8), np.linspace(0, 1, 3),
        {"source": "synthetic", "property": "darkness", "includes_original": True})})
    sizes.clear()
    added = sweep(paths, [run_dir / "iv.h5", extra], out, OPTS)
    assert added.computed == list(range(N_CKPT)) and added.sequences == ["bright", "rotate", "dark"]
    assert sizes == [3] * N_CKPT  # only the new sequence ran
    for new, ref in zip(read_outputs(out, "convmixer")[:2], read_outputs(full_sweep), strict=True):
        np.testing.assert_array_equal(new.outputs, ref.outputs)  # the old blocks are untouched
    fresh = sweep(paths, [extra], tmp_path / "fresh.h5", OPTS)
    assert fresh.computed == list(range(N_CKPT))
    np.testing.assert_array_equal(read_outputs(out, "convmixer", "dark")[0].outputs,
                                  read_outputs(tmp_path / "fresh.h5", "convmixer", "dark")[0].outputs)
    with pytest.raises(UsageError, match="'bright' is also in"):
        sweep(paths, [run_dir / "iv.h5", run_dir / "iv.h5"], out, OPTS)


def _regrow(out: Path, earlier: list[str]) -> None:
    """What a concurrent sweep with an earlier checkpoint list does to the blocks: grow them in front."""
    grown = []
    for block in read_outputs(out, "convmixer"):
        outputs = np.full((len(earlier) + len(block.checkpoints), *block.outputs.shape[1:]), np.nan, np.float32)
        outputs[len(earlier):] = block.outputs
        grown.append(dataclasses.replace(block, outputs=outputs, checkpoints=earlier + block.checkpoints,
                                         done=np.concatenate([np.zeros(len(earlier), bool), block.done])))
    write_outputs(out, grown, run_options=read_run_options(out, "convmixer"))


@pytest.mark.slow
def test_blocks_regrown_by_another_writer_mid_sweep_get_every_row_in_its_place(
    run_dir: Path, full_sweep: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another writer regrows the blocks (4 checkpoints in front) while this sweep stores its second checkpoint.
    Its rows are looked up by checkpoint name under the file's lock, so the regrow waits for the store (or comes
    before it), and every row lands in its checkpoint's place; none is lost or written over another's."""
    import epg_core

    paths = find_checkpoints(str(run_dir / "ckpts" / "epoch_*.pt"))
    out = tmp_path / "regrown.h5"
    real = epg_core.set_checkpoint_outputs
    threads: list[threading.Thread] = []

    def store(*args: Any, **kwargs: Any) -> None:
        if len(threads) == 0 and read_outputs(out, "convmixer", "bright")[0].done.any():
            threads.append(threading.Thread(target=_regrow, args=(out, checkpoint_names(paths[:4]))))
            threads[0].start()
            threads[0].join(timeout=1.0)  # a regrow the store does not block finishes meanwhile
        real(*args, **kwargs)

    monkeypatch.setattr(epg_core, "set_checkpoint_outputs", store)
    result = sweep(paths[4:8], [run_dir / "iv.h5"], out, OPTS)
    threads[0].join()
    assert result.computed == [0, 1, 2, 3]
    for got, want in zip(read_outputs(out), read_outputs(full_sweep), strict=True):
        assert got.checkpoints == want.checkpoints[:8]
        assert got.done.tolist() == [False] * 4 + [True] * 4
        np.testing.assert_array_equal(got.outputs[4:], want.outputs[4:8])


@pytest.mark.slow
def test_bad_checkpoint_mid_sweep_keeps_finished_ones(run_dir: Path, full_sweep: Path, tmp_path: Path) -> None:
    folder = tmp_path / "ckpts"
    folder.mkdir()
    for path in find_checkpoints(str(run_dir / "ckpts" / "epoch_*.pt"))[:6]:
        (folder / path.name).write_bytes(path.read_bytes())
    good = (folder / "epoch_4.pt").read_bytes()
    (folder / "epoch_4.pt").write_bytes(good[:100])
    out = tmp_path / "out.h5"
    with pytest.raises(ValueError, match=r"epoch_4\.pt: corrupt or unreadable checkpoint"):
        sweep(str(folder / "*.pt"), [run_dir / "iv.h5"], out, RunOptions(preprocessing=PREP))
    assert read_outputs(out, "convmixer", "bright")[0].done.tolist() == [True] * 3 + [False] * 3

    state = torch.load(run_dir / "ckpts" / "epoch_4.pt", weights_only=True)
    del state["state_dict"]["3.3.running_var"]
    torch.save(state, folder / "epoch_4.pt")
    with pytest.raises(ValueError, match=r"epoch_4\.pt: missing tensor '3\.3\.running_var'"):
        sweep(str(folder / "*.pt"), [run_dir / "iv.h5"], out, RunOptions(preprocessing=PREP))

    torch.save({"paras": {**TINY, "dim": 4}, "state_dict": conv_mixer(**{**TINY, "dim": 4}).state_dict()},
               folder / "epoch_4.pt")
    with pytest.raises(ValueError, match=r"epoch_4\.pt: wrong architecture"):
        sweep(str(folder / "*.pt"), [run_dir / "iv.h5"], out, RunOptions(preprocessing=PREP))
    assert read_outputs(out, "convmixer", "bright")[0].done.tolist() == [True] * 3 + [False] * 3

    (folder / "epoch_4.pt").write_bytes(good)
    result = sweep(str(folder / "*.pt"), [run_dir / "iv.h5"], out, RunOptions(preprocessing=PREP))
    assert result.computed == [3, 4, 5]
    full = read_outputs(full_sweep, "convmixer", "bright")[0]
    np.testing.assert_array_equal(read_outputs(out, "convmixer", "bright")[0].outputs, full.outputs[:6])


@pytest.mark.slow
def test_sweep_refuses_swap_that_disagrees_with_torch(
    run_dir: Path, full_sweep: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out.h5"
    out.write_bytes(full_sweep.read_bytes())
    real_bytes = WeightSwapper.model_bytes

    def stale_weights(self: WeightSwapper, state: dict[str, torch.Tensor]) -> bytes:
        return real_bytes(self, {k: v * 1.5 if v.is_floating_point() else v for k, v in state.items()})

    monkeypatch.setattr(WeightSwapper, "model_bytes", stale_weights)
    with pytest.raises(ValueError, match=r"epoch_1\.pt: swapped ONNX weights disagree with torch eager") as err:
        sweep(str(run_dir / "ckpts" / "epoch_*.pt"), [run_dir / "iv.h5"], out,
              RunOptions(preprocessing=PREP, model_name="other"))
    assert "\n" not in str(err.value)
    assert not any(b.done.any() for b in read_outputs(out, "other"))  # nothing stored for the refused sweep
    for old, kept in zip(read_outputs(full_sweep), read_outputs(out, "convmixer"), strict=True):
        np.testing.assert_array_equal(kept.outputs, old.outputs)  # the earlier model's outputs are kept
