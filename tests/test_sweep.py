"""Checkpoint sweeps by weight swap: equality with fresh exports, resume after interruption, refusals."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from epg_bridges.models import (
    OnnxRunner,
    Preprocessing,
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
from epg_core import read_outputs

PREP = Preprocessing(size=(32, 32))
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
    result = sweep(str(run_dir / "ckpts" / "epoch_*.pt"), [run_dir / "iv.h5"], out, preprocessing=PREP,
                   classes=["a", "b", "c"], quiet=True)
    assert result.computed == list(range(N_CKPT)) and result.skipped == []
    assert result.swap_check_diff is not None and result.swap_check_diff < 1e-4
    return out


def _content(path: Path) -> dict[str, object]:
    """Every dataset and attribute of an HDF5 file (for 'identical file' comparisons)."""
    found: dict[str, object] = {}
    with h5py.File(path) as handle:
        found["/attrs"] = dict(handle.attrs)

        def visit(name: str, obj: object) -> None:
            if isinstance(obj, h5py.Dataset):
                found[name] = obj[()]
            found[name + "/attrs"] = {k: v for k, v in obj.attrs.items()}  # type: ignore[attr-defined]

        handle.visititems(visit)
    return found


def _assert_same_content(a: Path, b: Path) -> None:
    ca, cb = _content(a), _content(b)
    assert ca.keys() == cb.keys()
    for key in ca:
        if isinstance(ca[key], np.ndarray):
            np.testing.assert_array_equal(ca[key], cb[key], err_msg=key)
        else:
            assert str(ca[key]) == str(cb[key]), key


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


def test_interrupted_sweep_resumes_without_recomputing(run_dir: Path, full_sweep: Path, tmp_path: Path) -> None:
    out = tmp_path / "partial.h5"
    stored: list[int] = []

    def ctrl_c_after_eight(index: int, name: str) -> None:
        stored.append(index)
        if len(stored) == 8:
            raise KeyboardInterrupt

    glob = str(run_dir / "ckpts" / "epoch_*.pt")
    with pytest.raises(KeyboardInterrupt):
        sweep(glob, [run_dir / "iv.h5"], out, preprocessing=PREP, classes=["a", "b", "c"], quiet=True,
              on_checkpoint=ctrl_c_after_eight)
    partial = read_outputs(out, "convmixer", "bright")[0]
    assert partial.done.sum() == 8 and partial.done[:8].all()
    assert np.isnan(partial.outputs[8:]).all()

    again: list[int] = []
    result = sweep(glob, [run_dir / "iv.h5"], out, preprocessing=PREP, classes=["a", "b", "c"], quiet=True,
                   on_checkpoint=lambda i, n: again.append(i))
    assert result.skipped == list(range(8)) and result.computed == list(range(8, N_CKPT))
    assert again == list(range(8, N_CKPT))  # 12 computed, none of the 8 finished ones again
    _assert_same_content(out, full_sweep)

    third = sweep(glob, [run_dir / "iv.h5"], out, preprocessing=PREP, classes=["a", "b", "c"], quiet=True)
    assert third.computed == [] and len(third.skipped) == N_CKPT and third.provider is None  # no export at all


def test_resume_refuses_a_different_run(run_dir: Path, full_sweep: Path, tmp_path: Path) -> None:
    out = tmp_path / "copy.h5"
    out.write_bytes(full_sweep.read_bytes())
    with pytest.raises(ValueError, match="swept over other checkpoints"):
        sweep(find_checkpoints(str(run_dir / "ckpts" / "epoch_*.pt"))[:5], [run_dir / "iv.h5"], out,
              preprocessing=PREP, quiet=True)
    with pytest.raises(ValueError, match="already holds sequences"):
        sweep(str(run_dir / "ckpts" / "epoch_*.pt"), [run_dir / "iv.h5"], out, preprocessing=PREP,
              sequences=["bright"], quiet=True)
    assert out.read_bytes() == full_sweep.read_bytes()


def test_bad_checkpoint_mid_sweep_keeps_finished_ones(run_dir: Path, full_sweep: Path, tmp_path: Path) -> None:
    folder = tmp_path / "ckpts"
    folder.mkdir()
    for path in find_checkpoints(str(run_dir / "ckpts" / "epoch_*.pt"))[:6]:
        (folder / path.name).write_bytes(path.read_bytes())
    good = (folder / "epoch_4.pt").read_bytes()
    (folder / "epoch_4.pt").write_bytes(good[:100])
    out = tmp_path / "out.h5"
    with pytest.raises(ValueError, match=r"epoch_4\.pt: corrupt or unreadable checkpoint"):
        sweep(str(folder / "*.pt"), [run_dir / "iv.h5"], out, preprocessing=PREP, quiet=True)
    assert read_outputs(out, "convmixer", "bright")[0].done.tolist() == [True] * 3 + [False] * 3

    state = torch.load(run_dir / "ckpts" / "epoch_4.pt", weights_only=True)
    del state["state_dict"]["3.3.running_var"]
    torch.save(state, folder / "epoch_4.pt")
    with pytest.raises(ValueError, match=r"epoch_4\.pt: missing tensor '3\.3\.running_var'"):
        sweep(str(folder / "*.pt"), [run_dir / "iv.h5"], out, preprocessing=PREP, quiet=True)

    torch.save({"paras": {**TINY, "dim": 4}, "state_dict": conv_mixer(**{**TINY, "dim": 4}).state_dict()},
               folder / "epoch_4.pt")
    with pytest.raises(ValueError, match=r"epoch_4\.pt: wrong architecture"):
        sweep(str(folder / "*.pt"), [run_dir / "iv.h5"], out, preprocessing=PREP, quiet=True)
    assert read_outputs(out, "convmixer", "bright")[0].done.tolist() == [True] * 3 + [False] * 3

    (folder / "epoch_4.pt").write_bytes(good)
    result = sweep(str(folder / "*.pt"), [run_dir / "iv.h5"], out, preprocessing=PREP, quiet=True)
    assert result.computed == [3, 4, 5]
    full = read_outputs(full_sweep, "convmixer", "bright")[0]
    np.testing.assert_array_equal(read_outputs(out, "convmixer", "bright")[0].outputs, full.outputs[:6])


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
        sweep(str(run_dir / "ckpts" / "epoch_*.pt"), [run_dir / "iv.h5"], out, preprocessing=PREP, quiet=True,
              model_name="other")
    assert "\n" not in str(err.value)
    assert not any(b.done.any() for b in read_outputs(out, "other"))  # nothing stored for the refused sweep
    for old, kept in zip(read_outputs(full_sweep), read_outputs(out, "convmixer"), strict=True):
        np.testing.assert_array_equal(kept.outputs, old.outputs)  # the earlier model's outputs are kept
