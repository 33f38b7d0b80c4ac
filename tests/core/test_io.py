"""HDF5 formats: round trips, atomic writes, wrong-kind errors and checkpoint slicing."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from helpers import set_h5_attr

import epg_core._formats._atomic as atomic_module
import epg_core._formats._common as common_module
import epg_core._formats._outputs as outputs_module
from epg_core import (
    DataError,
    EpgError,
    InterventionSequence,
    OutputsBlock,
    StoreError,
    UsageError,
    append_interventions,
    check_run_options,
    iter_intervention_images,
    iter_outputs,
    list_checkpoints,
    list_outputs,
    list_sequences,
    read_interventions,
    read_outputs,
    read_run_options,
    read_scores,
    set_checkpoint_outputs,
    shard_dir,
    write_interventions,
    write_outputs,
    write_scores,
)
from epg_core._formats._atomic import write_bytes_atomic


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
    """No temporary file, lock file or shard folder left behind."""
    return not any(".tmp-" in p.name or p.name.endswith((".lock", ".shards")) for p in directory.iterdir())


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
        assert back[name].attrs == {**seq.attrs, "image": name}  # every sequence records its image
    assert back["zeta"].attrs["includes_original"] is True
    assert back["zeta"].attrs["guidance_scales"] == [1.0, 1.5]
    with h5py.File(path) as handle:
        assert handle.attrs["format"] == "epg-interventions"
        assert handle.attrs["format_version"] == 2
        images: Any = handle["zeta/images"]
        assert images.chunks == (1, 8, 9, 3)
        assert images.compression is not None
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


def test_list_checkpoints_reads_each_blocks_names(tmp_path: Path) -> None:
    blocks = [_block("convmixer", "cat", m=3), _block("convmixer", "dog", m=5), _block("vit", "cat", m=2)]
    path = write_outputs(tmp_path / "out.h5", blocks)
    assert list_checkpoints(path, "convmixer") == {"cat": [f"epoch_{i}" for i in range(3)],
                                                   "dog": [f"epoch_{i}" for i in range(5)]}
    assert list_checkpoints(path, "vit", ["cat"]) == {"cat": ["epoch_0", "epoch_1"]}
    with pytest.raises(DataError, match="no sequence 'bird'"):
        list_checkpoints(path, "convmixer", ["bird"])
    with pytest.raises(DataError, match="no model 'resnet'"):
        list_checkpoints(path, "resnet")


def test_outputs_round_trip_and_list(tmp_path: Path) -> None:
    blocks = [_block("convmixer", "cat_001"), _block("convmixer", "dog_001", seed=1), _block("vit", "cat_001", c=3)]
    path = write_outputs(tmp_path / "out.h5", blocks)
    assert list_outputs(path) == [("convmixer", "cat_001"), ("convmixer", "dog_001"), ("vit", "cat_001")]
    back = read_outputs(path)
    assert len(back) == 3
    for want, got in zip(blocks, back, strict=True):
        np.testing.assert_array_equal(got.outputs, want.outputs)
        np.testing.assert_array_equal(got.done, want.done)
        np.testing.assert_array_equal(got.values, want.values)
        assert got.outputs.dtype == np.float32 and got.done.dtype == bool
        assert (got.model, got.sequence, got.checkpoints, got.classes) == (
            want.model, want.sequence, want.checkpoints, want.classes)
        assert got.preprocessing == want.preprocessing
        assert got.output_kind == "probabilities"
        assert got.attrs == {**want.attrs, "property": "value", "image": want.sequence}
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
    real_write_block = outputs_module._write_block

    def explode(*args: Any, **kwargs: Any) -> None:
        real_write_block(*args, **kwargs)  # half the work is done in the temporary file
        raise KeyboardInterrupt("killed mid-write")

    monkeypatch.setattr(outputs_module, "_write_block", explode)
    with pytest.raises(KeyboardInterrupt):
        write_outputs(path, [_block("m", "a", seed=7, m=3), _block("m", "b")])
    assert path.read_bytes() == before
    assert _no_temp_files(tmp_path)

    def fail_replace(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(atomic_module.os, "replace", fail_replace)
    with pytest.raises(StoreError, match=r"out\.h5: cannot store checkpoint 'epoch_1' of model 'm' \(disk full\)"):
        set_checkpoint_outputs(path, "m", 1, {"a": np.zeros((5, 2), np.float32)})
    with pytest.raises(StoreError, match=r"iv\.h5: cannot write \(disk full\)"):
        write_interventions(tmp_path / "iv.h5", {"a": _sequence()})
    with pytest.raises(OSError, match="disk full"):  # StoreError is an OSError (and an EpgError)
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

    monkeypatch.setattr(atomic_module.os, "replace", spy)
    path = write_interventions(tmp_path / "iv.h5", {"a": _sequence()})
    (src, dst), = seen
    assert Path(dst) == path and Path(src).parent == tmp_path and Path(src).name.startswith("iv.h5.tmp-")


# --------------------------------------------------------------------------- validation of every field on read


def _mutated_outputs(tmp_path: Path, change: Callable[[h5py.File], None], **block: Any) -> Path:
    """A valid outputs file (model m, sequence s) changed by ``change`` through h5py."""
    path = write_outputs(tmp_path / "outputs.h5", [_block(**block)])
    with h5py.File(path, "r+") as handle:
        change(handle)
    return path


def _replace(name: str, data: Any = None, **kwargs: Any) -> Callable[[h5py.File], None]:
    def change(handle: h5py.File) -> None:
        group: Any = handle["models/m/s"]
        del group[name]
        if data is not None or kwargs:
            group.create_dataset(name, data=data, **kwargs)
    return change


def _set_attr(key: str, value: Any, where: str = "models/m/s") -> Callable[[h5py.File], None]:
    return set_h5_attr(where, key, value)


def _set_row(index: int, step: int, col: int, value: float) -> Callable[[h5py.File], None]:
    def change(handle: h5py.File) -> None:
        outputs: Any = handle["models/m/s/outputs"]
        outputs[index, step, col] = value
    return change


OUTPUT_FIELD_CASES = [
    ("values 1 step", _replace("values", np.zeros(1)), {}, r"/models/m/s/values has 1 step; a curve needs at least 2"),
    ("values 0 steps", _replace("values", np.zeros(0)), {}, r"/m/s/values has 0 steps; a curve needs at least 2"),
    ("values NaN", _replace("values", np.array([0, 1, np.nan, 3, 4.0])), {}, r"/models/m/s/values has NaN at step 2"),
    ("values Inf", _replace("values", np.array([0, np.inf, 2, 3, 4.0])), {}, r"/models/m/s/values has Inf at step 1"),
    ("values text", _replace("values", np.array([b"a"] * 5)), {}, r"/models/m/s/values must be 1-D real numbers"),
    ("values 2-D", _replace("values", np.zeros((5, 1))), {}, r"/models/m/s/values must be 1-D real numbers"),
    ("values length", _replace("values", np.zeros(4)), {}, r"/models/m/s/outputs has 5 steps but values has 4"),
    ("missing values", _replace("values"), {}, r"/models/m/s/values is missing"),
    ("missing outputs", _replace("outputs"), {}, r"/models/m/s/outputs is missing"),
    ("missing done", _replace("done"), {}, r"/models/m/s/done is missing"),
    ("outputs a group", lambda h: (h["models/m/s"].__delitem__("outputs"), h["models/m/s"].create_group("outputs")),
     {}, r"/models/m/s/outputs is not a dataset"),
    ("outputs int", _replace("outputs", np.zeros((4, 5, 2), np.int32)), {}, r"/models/m/s/outputs must be float"),
    ("outputs 2-D", _replace("outputs", np.zeros((4, 5), np.float32)), {}, r"/m/s/outputs must be float \[M, N, C\]"),
    ("no checkpoints", lambda h: (_replace("outputs", np.zeros((0, 5, 2), np.float32))(h),
                                  _replace("done", np.zeros(0, bool))(h)), {}, r"/m/s/outputs has no checkpoints"),
    ("no columns", _replace("outputs", np.zeros((4, 5, 0), np.float32)), {}, r"/m/s/outputs has no output columns"),
    ("done shape", _replace("done", np.zeros(3, bool)), {}, r"/models/m/s/done must be bool \[4\]"),
    ("done float", _replace("done", np.zeros(4)), {}, r"/models/m/s/done must be bool \[4\]"),
    ("missing classes", _set_attr("classes", None), {}, r"/models/m/s attribute 'classes' is missing"),
    ("missing checkpoints", _set_attr("checkpoints", None), {}, r"/models/m/s attribute 'checkpoints' is missing"),
    ("missing kind", _set_attr("output_kind", None), {}, r"/models/m/s attribute 'output_kind' is missing"),
    ("bad kind", _set_attr("output_kind", "softmax"), {}, r"/models/m/s attribute 'output_kind' is 'softmax'"),
    ("classes length", _set_attr("classes", '["a"]'), {}, r"/models/m/s attribute 'classes' has 1 names for 2 entries"),
    ("classes not names", _set_attr("classes", "[1, 2]"), {}, r"attribute 'classes' must be a list of names"),
    ("bad JSON", _set_attr("classes", "[not json"), {}, r"/models/m/s attribute 'classes' is not valid JSON"),
    ("bad preprocessing", _set_attr("preprocessing", "[1]"), {}, r"attribute 'preprocessing' must be a mapping"),
    ("NaN in a finished row", _set_row(2, 3, 1, np.nan), {},
     r"/models/m/s/outputs has NaN in checkpoint 'epoch_2' at step 3, output 'class_1'"),
    ("Inf in a finished row", _set_row(0, 0, 0, -np.inf), {},
     r"/models/m/s/outputs has Inf in checkpoint 'epoch_0' at step 0, output 'class_0'"),
    ("huge dimensions", lambda h: (_replace("values", shape=(2**40,), dtype=np.float64, chunks=(1024,))(h),
                                   _replace("outputs", shape=(4, 2**40, 2), dtype=np.float32, chunks=(1, 1024, 2))(h)),
     {}, r"/models/m/s/outputs\[0:4\] claims shape \(4, 1099511627776, 2\) \(3\.28e\+04 GiB\), more than the read"),
    ("format", _set_attr("format", "something-else", "/"), {}, r"not an epg-outputs file \(format attribute is "),
    ("format version", _set_attr("format_version", 99, "/"), {}, r"unsupported epg-outputs format_version 99"),
    ("no models", lambda h: h.__delitem__("models"), {}, r"no /models group"),
]


@pytest.mark.parametrize(("change", "block", "match"), [c[1:] for c in OUTPUT_FIELD_CASES],
                         ids=[c[0] for c in OUTPUT_FIELD_CASES])
def test_every_outputs_field_is_checked_on_read(
    tmp_path: Path, change: Callable[[h5py.File], None], block: dict[str, Any], match: str
) -> None:
    path = _mutated_outputs(tmp_path, change, **block)
    with pytest.raises(DataError, match=r"^" + str(path).replace(".", r"\.") + ": .*" + match) as err:
        read_outputs(path)
    assert "\n" not in str(err.value) and isinstance(err.value, EpgError)
    if "no /models" not in match and "format" not in match:
        with pytest.raises(DataError, match=match):
            list(iter_outputs(path))


def test_reads_beyond_the_memory_budget_are_refused_but_stream_in_chunks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_outputs(tmp_path / "out.h5", [_block(m=4, n=5, c=2)])
    monkeypatch.setattr(common_module, "MAX_READ_BYTES", 100)  # one [1, 5, 2] float32 chunk is 40 bytes
    with pytest.raises(DataError, match=r"out\.h5: /models/m/s/outputs\[0:4\] claims shape \(4, 5, 2\) .*in chunks"):
        read_outputs(path)
    chunks = list(iter_outputs(path, checkpoint_chunk=2))
    np.testing.assert_array_equal(np.concatenate([c.outputs for c in chunks]), _block().outputs)


def test_nan_in_an_unfinished_row_is_not_an_error(tmp_path: Path) -> None:
    block = _block()  # done = [True, False, True, False]
    outputs = block.outputs.copy()
    outputs[1] = np.nan
    path = write_outputs(tmp_path / "out.h5", [OutputsBlock(**{**block.__dict__, "outputs": outputs})])
    assert np.isnan(read_outputs(path)[0].outputs[1]).all()


@pytest.mark.parametrize(
    ("block", "match"),
    [
        ({"values": np.zeros(1), "outputs": np.zeros((4, 1, 2))}, r"values has 1 step; a curve needs at least 2"),
        ({"values": np.array([0, np.nan, 1, 2, 3])}, r"values has NaN at step 1"),
        ({"outputs": np.full((4, 5, 2), np.nan)}, r"outputs has NaN in checkpoint 'epoch_0' at step 0, output"),
    ],
)
def test_write_outputs_refuses_bad_blocks_before_writing(tmp_path: Path, block: dict[str, Any], match: str) -> None:
    with pytest.raises(EpgError, match=match):
        write_outputs(tmp_path / "out.h5", [OutputsBlock(**{**_block().__dict__, **block})])
    assert list(tmp_path.iterdir()) == []


def _mutated_interventions(tmp_path: Path, change: Callable[[h5py.File], None]) -> Path:
    path = write_interventions(tmp_path / "iv.h5", {"a": _sequence()})
    with h5py.File(path, "r+") as handle:
        change(handle)
    return path


def _iv_replace(name: str, data: Any = None, **kwargs: Any) -> Callable[[h5py.File], None]:
    def change(handle: h5py.File) -> None:
        group: Any = handle["a"]
        del group[name]
        if data is not None or kwargs:
            group.create_dataset(name, data=data, **kwargs)
    return change


INTERVENTION_FIELD_CASES = [
    ("values 1 step", _iv_replace("values", np.zeros(1)), r"/a/values has 1 step; a curve needs at least 2"),
    ("values NaN", _iv_replace("values", np.array([0, 1, 2, np.nan, 4])), r"/a/values has NaN at step 3"),
    ("missing values", _iv_replace("values"), r"/a/values is missing"),
    ("missing images", _iv_replace("images"), r"/a/images is missing"),
    ("images float", _iv_replace("images", np.zeros((5, 8, 9, 3), np.float32)),
     r"/a/images must be uint8 \[N, H, W, 3\]"),
    ("images gray", _iv_replace("images", np.zeros((5, 8, 9), np.uint8)), r"/a/images must be uint8 \[N, H, W, 3\]"),
    ("images count", _iv_replace("images", np.zeros((4, 8, 9, 3), np.uint8)),
     r"/a/images has 4 images but values has 5"),
    ("huge images", _iv_replace("images", shape=(5, 2**20, 2**20, 3), dtype=np.uint8, chunks=(1, 64, 64, 3)),
     r"/a/images claims shape \(5, 1048576, 1048576, 3\) .* more than the read budget"),
    ("no sequences", lambda h: h.__delitem__("a"), r"holds no intervention sequences"),
    ("format version", lambda h: h.attrs.__setitem__("format_version", 0),
     r"unsupported epg-interventions format_version 0"),
]


@pytest.mark.parametrize(("change", "match"), [c[1:] for c in INTERVENTION_FIELD_CASES],
                         ids=[c[0] for c in INTERVENTION_FIELD_CASES])
def test_every_interventions_field_is_checked_on_read(
    tmp_path: Path, change: Callable[[h5py.File], None], match: str
) -> None:
    path = _mutated_interventions(tmp_path, change)
    with pytest.raises(DataError, match=r"^" + str(path).replace(".", r"\.") + ": .*" + match) as err:
        read_interventions(path)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("values", "match"),
    [(np.zeros(1), r"sequence 'a': values has 1 step; a curve needs at least 2"),
     (np.array([0.0, np.nan, 2.0]), r"sequence 'a': values has NaN at step 1")],
)
def test_write_interventions_refuses_one_step_and_nan_values(tmp_path: Path, values: np.ndarray, match: str) -> None:
    seq = InterventionSequence(np.zeros((len(values), 4, 4, 3), np.uint8), values, {})
    with pytest.raises(DataError, match=match):
        write_interventions(tmp_path / "iv.h5", {"a": seq})
    assert not (tmp_path / "iv.h5").exists()


def test_v1_files_stay_readable_and_writable(tmp_path: Path) -> None:
    """A v1 file (format_version 1, no block ids, no property/image) reads and takes new checkpoints."""
    path = write_outputs(tmp_path / "out.h5", [_block(m=3)])
    with h5py.File(path, "r+") as handle:
        handle.attrs["format_version"] = 1
        group = handle["models/m/s"]
        for key in ("epg_block_id", "property", "image"):
            del group.attrs[key]
    block = read_outputs(path)[0]
    assert block.attrs == _block().attrs and block.done.tolist() == [True, False, True]
    set_checkpoint_outputs(path, "m", 1, {"s": np.full((5, 2), 0.5, np.float32)})
    assert read_outputs(path)[0].done.tolist() == [True, True, True]
    iv = write_interventions(tmp_path / "iv.h5", {"a": _sequence()})
    with h5py.File(iv, "r+") as handle:
        handle.attrs["format_version"] = 1
    assert read_interventions(iv)["a"].n_steps == 5


# --------------------------------------------------------------------------- append, modes, read-only files


def test_append_interventions_adds_and_never_replaces(tmp_path: Path) -> None:
    path = write_interventions(tmp_path / "iv.h5", {"a": _sequence(seed=1)})
    append_interventions(path, {"b": _sequence(n=3, seed=2, property="angle", image="cat.jpg")})
    assert list_sequences(path) == ["a", "b"]
    back = read_interventions(path)
    np.testing.assert_array_equal(back["a"].images, _sequence(seed=1).images)
    assert back["b"].attrs["property"] == "angle" and back["b"].attrs["image"] == "cat.jpg"
    before = path.read_bytes()
    with pytest.raises(DataError, match=r"iv\.h5: already holds sequence 'a'; .*never replaces"):
        append_interventions(path, {"c": _sequence(), "a": _sequence(seed=5)})
    assert path.read_bytes() == before
    with pytest.raises(DataError, match="file not found"):
        append_interventions(tmp_path / "none.h5", {"a": _sequence()})
    assert _no_temp_files(tmp_path)


def test_new_files_follow_the_umask_and_replaced_files_keep_their_mode(tmp_path: Path) -> None:
    old = os.umask(0o027)
    try:
        out = write_outputs(tmp_path / "out.h5", [_block()])
        iv = write_interventions(tmp_path / "iv.h5", {"a": _sequence()})
        raw = write_bytes_atomic(tmp_path / "raw.bin", b"x")
        nested = write_outputs(tmp_path / "new" / "folder" / "out.h5", [_block()])  # a writer makes its folder
    finally:
        os.umask(old)
    for path in (out, iv, raw, nested):
        assert stat.S_IMODE(path.stat().st_mode) == 0o640, path
    os.chmod(out, 0o604)
    set_checkpoint_outputs(out, "m", 1, {"s": np.zeros((5, 2), np.float32)})
    write_scores(out, [{"a": 1}])
    assert stat.S_IMODE(out.stat().st_mode) == 0o604


def test_read_only_files_are_refused_not_replaced(tmp_path: Path) -> None:
    out = write_outputs(tmp_path / "out.h5", [_block()])
    iv = write_interventions(tmp_path / "iv.h5", {"a": _sequence()})
    os.chmod(out, 0o444)
    os.chmod(iv, 0o444)
    before = out.read_bytes(), iv.read_bytes()
    calls = [
        lambda: write_outputs(out, [_block(seed=3)]),
        lambda: write_scores(out, [{"a": 1}]),
        lambda: set_checkpoint_outputs(out, "m", 1, {"s": np.zeros((5, 2), np.float32)}),
        lambda: write_interventions(iv, {"a": _sequence()}),
        lambda: append_interventions(iv, {"b": _sequence()}),
        lambda: write_bytes_atomic(iv, b"x"),
    ]
    for call in calls:
        with pytest.raises(StoreError, match=r"\.h5: file is read-only"):
            call()
    assert (out.read_bytes(), iv.read_bytes()) == before
    assert read_outputs(out)[0].done.tolist() == [True, False, True, False]  # still readable
    assert _no_temp_files(tmp_path) and not shard_dir(out).exists()


# --------------------------------------------------------------------------- streaming and run options


def test_iter_outputs_streams_chunks_of_checkpoints_and_classes(tmp_path: Path) -> None:
    full = _block(m=7, c=5)
    path = write_outputs(tmp_path / "out.h5", [full, _block("m", "t", m=7, c=5, seed=2)])
    chunks = list(iter_outputs(path, sequence=None, model="m", checkpoint_chunk=3, class_chunk=2))
    s_chunks = [c for c in chunks if c.sequence == "s"]
    assert [(c.checkpoint_start, c.class_indices) for c in s_chunks] == [
        (start, cols) for start in (0, 3, 6) for cols in ([0, 1], [2, 3], [4])]
    assert all(c.outputs.shape[0] <= 3 and c.outputs.shape[2] <= 2 for c in chunks)
    rebuilt = np.full(full.outputs.shape, np.nan, np.float32)
    for c in s_chunks:
        rebuilt[c.checkpoint_start:c.checkpoint_start + len(c.checkpoints)][:, :, c.class_indices] = c.outputs
        assert c.classes == [full.classes[j] for j in c.class_indices or []]
    np.testing.assert_array_equal(rebuilt, full.outputs)
    picked = list(iter_outputs(path, "m", "s", classes=["class_3", 1], checkpoint_chunk=10))
    assert len(picked) == 1 and picked[0].classes == ["class_3", "class_1"]
    np.testing.assert_array_equal(picked[0].outputs, full.outputs[:, :, [3, 1]])
    first = next(iter_outputs(path, "m", "s", steps=slice(0, 1)))
    np.testing.assert_array_equal(first.outputs, full.outputs[:, :1])
    assert first.class_indices is None and first.values.tolist() == [0.0]
    with pytest.raises(UsageError, match=r"out\.h5: /models/m/s has no output 'dog'"):
        list(iter_outputs(path, classes=["dog"]))
    with pytest.raises(UsageError, match="checkpoint_chunk must be an integer >= 1"):
        list(iter_outputs(path, checkpoint_chunk=0))
    with pytest.raises(UsageError, match="chunk read by iter_outputs"):
        write_outputs(path, [chunks[0]])


def test_run_options_are_stored_and_a_different_rerun_is_named(tmp_path: Path) -> None:
    options = {"classes": ["a", "b"], "output_kind": "logits", "size": [32, 32], "preprocessing": {"crop": None}}
    path = write_outputs(tmp_path / "out.h5", [_block()], run_options=options)
    assert read_run_options(path, "m") == options
    check_run_options(path, "m", {**options, "size": (32, 32)})  # tuples equal lists
    with pytest.raises(DataError, match=r"out\.h5: model 'm' was computed with size=\[32, 32\], this run uses "
                                        r"size=\[64, 48\]; use --restart"):
        check_run_options(path, "m", {**options, "size": (64, 48)})
    with pytest.raises(DataError, match="output_kind=\"logits\", this run uses output_kind=\"cosine\""):
        check_run_options(path, "m", {"output_kind": "cosine"})
    write_outputs(path, [_block("v", "s")])  # no options stored: derived from the blocks (as for v1 files)
    assert read_run_options(path, "v")["classes"] == ["class_0", "class_1"]
    with pytest.raises(DataError, match="classes="):
        check_run_options(path, "v", {"classes": ["x", "y"], "size": 5})
    assert read_run_options(path, "m") == options  # kept when another model's blocks are written
