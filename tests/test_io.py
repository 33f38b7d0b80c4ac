"""HDF5 formats: round trips, atomic writes, wrong-kind errors and checkpoint slicing."""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np
import pytest

import epg_core._io as io_module
from epg_core import (
    InterventionSequence,
    OutputsBlock,
    iter_intervention_images,
    list_outputs,
    list_sequences,
    read_interventions,
    read_outputs,
    read_scores,
    set_checkpoint_outputs,
    write_interventions,
    write_outputs,
    write_scores,
)


def _sequence(n: int = 5, size: int = 8, seed: int = 0, **attrs: object) -> InterventionSequence:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, size, size + 1, 3), dtype=np.uint8)
    base = {"source": "synthetic", "property": "brightness", "unit": "", "includes_original": True}
    return InterventionSequence(images=images, values=np.linspace(0.0, 1.0, n), attrs={**base, **attrs})


def _block(model: str = "m", sequence: str = "s", m: int = 4, n: int = 5, c: int = 2,
           seed: int = 0) -> OutputsBlock:
    rng = np.random.default_rng(seed)
    return OutputsBlock(
        model=model, sequence=sequence,
        outputs=rng.random((m, n, c), dtype=np.float32),
        done=np.arange(m) % 2 == 0,
        checkpoints=[f"epoch_{i}" for i in range(m)],
        classes=[f"class_{j}" for j in range(c)],
        values=np.linspace(0, 2, n),
        output_kind="probabilities",
        preprocessing={"size": [32, 32], "mean": [0.5] * 3, "std": [0.5] * 3},
        attrs={"source": "edit", "guidance_scales": [1.0, 2.0], "seed": 3},
    )


def _no_temp_files(directory: Path) -> bool:
    return not any(".tmp-" in p.name for p in directory.iterdir())


# --------------------------------------------------------------------------- interventions


def test_interventions_round_trip_keeps_pixels_values_attrs_and_order(tmp_path: Path) -> None:
    seqs = {"zeta": _sequence(seed=1, instruction="make it dark", guidance_scales=[1.0, 1.5]),
            "alpha": _sequence(n=3, seed=2, seed_value=None)}
    path = write_interventions(tmp_path / "iv.h5", seqs, attrs={"created_by": "test", "grid": [1, 2]})
    assert list_sequences(path) == ["zeta", "alpha"]  # insertion order, not alphabetical
    back = read_interventions(path)
    for name, seq in seqs.items():
        np.testing.assert_array_equal(back[name].images, seq.images)
        np.testing.assert_array_equal(back[name].values, seq.values)
        assert back[name].values.dtype == np.float64
        assert back[name].attrs == seq.attrs
    assert back["zeta"].attrs["includes_original"] is True
    assert back["zeta"].attrs["guidance_scales"] == [1.0, 1.5]
    with h5py.File(path) as handle:
        assert handle.attrs["format"] == "epg-interventions"
        assert handle.attrs["format_version"] == 1
        assert handle["zeta/images"].chunks == (1, 8, 9, 3)
        assert handle["zeta/images"].compression is not None
    assert _no_temp_files(tmp_path)


def test_read_interventions_without_images_and_by_name(tmp_path: Path) -> None:
    path = write_interventions(tmp_path / "iv.h5", {"a": _sequence(), "b": _sequence(n=7)})
    only = read_interventions(path, ["b"], images=False)
    assert list(only) == ["b"]
    assert only["b"].images.shape == (0, 8, 9, 3)
    assert not only["b"].images_loaded and only["b"].n_steps == 7
    with pytest.raises(ValueError, match="no images loaded"):
        write_interventions(tmp_path / "again.h5", only)


def test_iter_intervention_images_streams_in_order(tmp_path: Path) -> None:
    seq = _sequence(n=7)
    path = write_interventions(tmp_path / "iv.h5", {"a": seq})
    batches = list(iter_intervention_images(path, "a", batch_size=3))
    assert [b.shape[0] for b in batches] == [3, 3, 1]
    np.testing.assert_array_equal(np.concatenate(batches), seq.images)


@pytest.mark.parametrize(
    ("images", "values", "match"),
    [
        (np.zeros((2, 4, 4, 3), np.float32), np.zeros(2), "uint8"),
        (np.zeros((2, 4, 4), np.uint8), np.zeros(2), r"\[N, H, W, 3\]"),
        (np.zeros((2, 4, 4, 3), np.uint8), np.zeros(3), "2 images but 3 values"),
        (np.zeros((2, 4, 4, 3), np.uint8), np.zeros((2, 1)), "1-D"),
    ],
)
def test_intervention_sequence_validates(images: np.ndarray, values: np.ndarray, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        InterventionSequence(images=images, values=values, attrs={})


# --------------------------------------------------------------------------- outputs


def test_outputs_round_trip_and_list(tmp_path: Path) -> None:
    blocks = [_block("convmixer", "cat_001"), _block("convmixer", "dog_001", seed=1), _block("vit", "cat_001", c=3)]
    path = write_outputs(tmp_path / "out.h5", blocks)
    assert list_outputs(path) == [("convmixer", "cat_001"), ("convmixer", "dog_001"), ("vit", "cat_001")]
    back = read_outputs(path)
    assert len(back) == 3
    for want, got in zip(blocks, back):
        np.testing.assert_array_equal(got.outputs, want.outputs)
        np.testing.assert_array_equal(got.done, want.done)
        np.testing.assert_array_equal(got.values, want.values)
        assert got.outputs.dtype == np.float32 and got.done.dtype == bool
        assert (got.model, got.sequence, got.checkpoints, got.classes) == (
            want.model, want.sequence, want.checkpoints, want.classes)
        assert got.preprocessing == want.preprocessing
        assert got.output_kind == "probabilities"
        assert got.attrs == want.attrs
    only = read_outputs(path, model="convmixer", sequence="dog_001")
    assert [(b.model, b.sequence) for b in only] == [("convmixer", "dog_001")]


def test_write_outputs_replaces_named_blocks_and_keeps_others(tmp_path: Path) -> None:
    path = write_outputs(tmp_path / "out.h5", [_block("m", "a"), _block("m", "b", seed=1)])
    write_scores(path, [{"model": "m", "epg": 0.5}])
    new_a = _block("m", "a", seed=9, m=2)
    write_outputs(path, [new_a])
    a, b = read_outputs(path, "m", "a")[0], read_outputs(path, "m", "b")[0]
    np.testing.assert_array_equal(a.outputs, new_a.outputs)
    np.testing.assert_array_equal(b.outputs, _block("m", "b", seed=1).outputs)
    assert read_scores(path) == [{"model": "m", "epg": 0.5}]


def test_read_outputs_checkpoint_slice(tmp_path: Path) -> None:
    block = _block(m=10)
    path = write_outputs(tmp_path / "out.h5", [block])
    chunks = [read_outputs(path, checkpoints=slice(i, i + 4))[0] for i in range(0, 10, 4)]
    assert [c.outputs.shape[0] for c in chunks] == [4, 4, 2]
    assert chunks[1].checkpoints == ["epoch_4", "epoch_5", "epoch_6", "epoch_7"]
    np.testing.assert_array_equal(np.concatenate([c.outputs for c in chunks]), block.outputs)
    np.testing.assert_array_equal(np.concatenate([c.done for c in chunks]), block.done)


def test_set_checkpoint_outputs_marks_done(tmp_path: Path) -> None:
    block = _block("m", "a", m=3)
    other = _block("m", "b", m=3, seed=5)
    path = write_outputs(tmp_path / "out.h5", [block, other])
    rows = np.full((5, 2), 0.25, dtype=np.float32)
    set_checkpoint_outputs(path, "m", 1, {"a": rows})
    got = read_outputs(path, "m", "a")[0]
    np.testing.assert_array_equal(got.outputs[1], rows)
    np.testing.assert_array_equal(got.outputs[0], block.outputs[0])
    assert got.done.tolist() == [True, True, True]
    assert read_outputs(path, "m", "b")[0].done.tolist() == [True, False, True]
    with pytest.raises(ValueError, match=r"shape \(4, 2\), expected \(5, 2\)"):
        set_checkpoint_outputs(path, "m", 1, {"a": rows[:4]})
    with pytest.raises(ValueError, match="out of range"):
        set_checkpoint_outputs(path, "m", 3, {"a": rows})
    assert _no_temp_files(tmp_path)


def test_outputs_block_validates() -> None:
    with pytest.raises(ValueError, match="output_kind"):
        OutputsBlock("m", "s", np.zeros((1, 2, 2)), np.zeros(1, bool), ["c"], ["a", "b"], np.zeros(2), "softmax")
    with pytest.raises(ValueError, match="1 class names for 2 outputs"):
        OutputsBlock("m", "s", np.zeros((1, 2, 2)), np.zeros(1, bool), ["c"], ["a"], np.zeros(2))
    with pytest.raises(ValueError, match="invalid model name"):
        OutputsBlock("a/b", "s", np.zeros((1, 2, 2)), np.zeros(1, bool), ["c"], ["a", "b"], np.zeros(2))


# --------------------------------------------------------------------------- scores


def test_scores_round_trip_types(tmp_path: Path) -> None:
    rows = [
        {"model": "convmixer", "checkpoint": "epoch_1", "epg": 0.125, "pvalue": 0.01, "significant": True,
         "flips": 2, "pearson": None, "n_steps": 11},
        {"model": "vit", "checkpoint": "epoch_2", "epg": 1.5, "pvalue": 0.5, "significant": False,
         "flips": 0, "pearson": -0.25, "n_steps": 11},
    ]
    path = tmp_path / "out.h5"
    write_scores(path, rows)  # creates an outputs file holding only the table
    back = read_scores(path)
    assert back[0]["pearson"] != back[0]["pearson"]  # None -> NaN
    back[0]["pearson"] = None
    assert back == rows
    assert isinstance(back[0]["significant"], bool) and isinstance(back[0]["flips"], int)
    write_scores(path, [])
    assert read_scores(path) == []
    with pytest.raises(ValueError, match="columns"):
        write_scores(path, [{"a": 1}, {"b": 2}])


# --------------------------------------------------------------------------- errors and atomicity


def test_wrong_kind_missing_file_and_missing_group(tmp_path: Path) -> None:
    iv = write_interventions(tmp_path / "iv.h5", {"a": _sequence()})
    out = write_outputs(tmp_path / "out.h5", [_block()])
    with pytest.raises(ValueError, match=r"iv\.h5: not an epg-outputs file") as err:
        read_outputs(iv)
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match=r"out\.h5: not an epg-interventions file"):
        read_interventions(out)
    with pytest.raises(ValueError, match="file not found"):
        read_outputs(tmp_path / "nope.h5")
    with pytest.raises(ValueError, match="no intervention sequence 'b'"):
        read_interventions(iv, ["b"])
    with pytest.raises(ValueError, match="no model 'x'"):
        read_outputs(out, model="x")
    with pytest.raises(ValueError, match="has no sequence 'zz'"):
        read_outputs(out, model="m", sequence="zz")
    with pytest.raises(ValueError, match="no /scores table"):
        read_scores(out)
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"not hdf5 at all")
    with pytest.raises(ValueError, match="not an HDF5 file"):
        list_outputs(junk)
    with pytest.raises(ValueError, match="not an epg-outputs file"):
        write_outputs(iv, [_block()])  # refuses to overwrite a file of another kind


def test_failed_writes_leave_the_old_file_intact(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_outputs(tmp_path / "out.h5", [_block("m", "a", m=3)])
    before = path.read_bytes()
    real_write_block = io_module._write_block

    def explode(*args: object, **kwargs: object) -> None:
        real_write_block(*args, **kwargs)  # half the work is done in the temporary file
        raise KeyboardInterrupt("killed mid-write")

    monkeypatch.setattr(io_module, "_write_block", explode)
    with pytest.raises(KeyboardInterrupt):
        write_outputs(path, [_block("m", "a", seed=7, m=3), _block("m", "b")])
    assert path.read_bytes() == before
    assert _no_temp_files(tmp_path)

    def fail_replace(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(io_module.os, "replace", fail_replace)
    with pytest.raises(OSError, match="disk full"):
        set_checkpoint_outputs(path, "m", 1, {"a": np.zeros((5, 2), np.float32)})
    with pytest.raises(OSError, match="disk full"):
        write_interventions(tmp_path / "iv.h5", {"a": _sequence()})
    with pytest.raises(OSError, match="disk full"):
        write_scores(path, [{"a": 1}])
    assert path.read_bytes() == before
    assert not (tmp_path / "iv.h5").exists()
    assert _no_temp_files(tmp_path)
    np.testing.assert_array_equal(read_outputs(path)[0].done, [True, False, True])


def test_atomic_write_goes_through_a_temporary_file_in_the_same_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[tuple[str, str]] = []
    real_replace = os.replace

    def spy(src: str, dst: str) -> None:
        seen.append((str(src), str(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(io_module.os, "replace", spy)
    path = write_interventions(tmp_path / "iv.h5", {"a": _sequence()})
    (src, dst), = seen
    assert Path(dst) == path and Path(src).parent == tmp_path and Path(src).name.startswith("iv.h5.tmp-")
