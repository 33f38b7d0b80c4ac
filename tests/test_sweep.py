"""Checkpoint sweeps by weight swap: equality with fresh exports, resume after interruption, refusals."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from torch import nn

from epg_bridges.models import build_model, conv_mixer
from epg_bridges.onnx_export import export_model, torch_outputs
from epg_bridges.runner import OnnxRunner, Preprocessing, collect_inputs, postprocess
from epg_bridges.sweep import (
    WeightSwapper,
    checkpoint_names,
    find_checkpoints,
    natural_sorted,
    sweep,
)
from epg_core import InterventionSequence, read_outputs, write_interventions

TINY = {"dim": 8, "depth": 1, "kernel_size": 3, "patch_size": 4, "n_classes": 3}
PREP = Preprocessing(size=(32, 32))
N_CKPT = 20


def _train_run(folder: Path, steps: int = N_CKPT, seed: int = 0) -> list[Path]:
    """A small ConvMixer trained for ``steps`` SGD steps, saved after each (BatchNorm stats move too)."""
    torch.manual_seed(seed)
    model = conv_mixer(**TINY)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    x = torch.randn(16, 3, 32, 32)
    y = torch.randint(0, 3, (16,))
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for step in range(1, steps + 1):
        model.train()
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        path = folder / f"epoch_{step}.pt"
        torch.save({"paras": dict(TINY), "state_dict": model.state_dict()}, path)
        paths.append(path)
    return paths


def _interventions(path: Path) -> Path:
    rng = np.random.default_rng(1)
    seqs = {
        "bright": InterventionSequence(rng.integers(0, 256, (5, 32, 32, 3), dtype=np.uint8), np.linspace(0, 1, 5),
                                       {"source": "synthetic", "property": "brightness", "unit": "",
                                        "includes_original": True}),
        "rotate": InterventionSequence(rng.integers(0, 256, (4, 40, 36, 3), dtype=np.uint8), [0.0, 10, 20, 45],
                                       {"source": "synthetic", "property": "angle", "unit": "deg",
                                        "includes_original": True}),
    }
    return write_interventions(path, seqs)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("sweep")
    _train_run(folder / "ckpts")
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
    proto = torch.onnx.export(model, (example,), dynamo=True, optimize=True, external_data=False, verbose=False,
                              dynamic_shapes=({0: torch.export.Dim("batch")},)).model_proto
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
    import epg_bridges.sweep as sweep_module

    out = tmp_path / "out.h5"
    out.write_bytes(full_sweep.read_bytes())
    real_bytes = sweep_module.WeightSwapper.model_bytes

    def stale_weights(self: WeightSwapper, state: dict[str, torch.Tensor]) -> bytes:
        return real_bytes(self, {k: v * 1.5 if v.is_floating_point() else v for k, v in state.items()})

    monkeypatch.setattr(sweep_module.WeightSwapper, "model_bytes", stale_weights)
    with pytest.raises(ValueError, match=r"epoch_1\.pt: swapped ONNX weights disagree with torch eager") as err:
        sweep(str(run_dir / "ckpts" / "epoch_*.pt"), [run_dir / "iv.h5"], out, preprocessing=PREP, quiet=True,
              model_name="other")
    assert "\n" not in str(err.value)
    assert not any(b.done.any() for b in read_outputs(out, "other"))  # nothing stored for the refused sweep
    for old, kept in zip(read_outputs(full_sweep), read_outputs(out, "convmixer")):
        np.testing.assert_array_equal(kept.outputs, old.outputs)  # the earlier model's outputs are kept
