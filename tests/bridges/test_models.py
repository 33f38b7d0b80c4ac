"""Models, checkpoint loading, ONNX export and the ORT runner (issue 4)."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import epg_core as E
from epg_bridges.interventions import load_image
from epg_bridges.models import (
    ModelSpec,
    OnnxRunner,
    Preprocessing,
    build_model,
    check_state_dict,
    collect_inputs,
    conv_mixer,
    export_model,
    export_onnx,
    infer_convmixer_paras,
    load_checkpoint,
    load_text_embeddings,
    make_session,
    postprocess,
    preprocessing_from_hf,
    read_classes_file,
    read_spec,
    resolve_classes,
    resolve_factory,
    resolve_preprocessing,
    select_provider,
    spec_path,
    torch_outputs,
    verify_export,
)
from epg_bridges.testing import TINY_CONVMIXER as TINY
from epg_bridges.testing import TwoLayer, make_disagreeing, save_tiny, tiny_model

PREP32 = Preprocessing(size=(32, 32))


# --------------------------------------------------------------------------- reference checkpoints


REFERENCE_NAMES = ["convmixer_unbiased", "convmixer_dark-cats-bias", "convmixer_dark-dogs-bias"]


@pytest.mark.slow
@pytest.mark.parametrize("name", REFERENCE_NAMES)
def test_reference_checkpoints_onnx_matches_torch_on_photos(reference_dir: Path, tmp_path: Path, name: str) -> None:
    ckpt = reference_dir / "checkpoints" / "cats-vs-dogs" / f"{name}.pth"
    model = build_model("convmixer", ckpt)
    assert sum(p.numel() for p in model.parameters()) > 500_000  # dim 256, depth 8: the real network
    prep = Preprocessing(size=(128, 128), mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    result = export_onnx(model, tmp_path / f"{name}.onnx", preprocessing=prep, classes=["cat", "dog"])
    assert result.max_abs_diff < 1e-4
    photos = sorted((reference_dir / "example_images" / "cvd").glob("*.jpg"))
    assert [p.stem for p in photos] == ["cat_001", "cat_002", "dog_001", "dog_002"]
    x = collect_inputs(photos).preprocessed("images", prep)
    assert x.shape == (4, 3, 128, 128) and -1.0 <= x.min() and x.max() <= 1.0
    ort_probs = OnnxRunner(result.onnx_path, output_kind="probabilities").outputs(x)
    torch_probs = torch.softmax(model(torch.from_numpy(x)), dim=-1).detach().numpy()
    np.testing.assert_allclose(ort_probs, torch_probs, atol=1e-4, rtol=0)
    if name == "convmixer_unbiased":  # the unbiased model gets all four photos right
        assert (ort_probs[:2, 0] > 0.5).all() and (ort_probs[2:, 0] < 0.5).all()
    spec = read_spec(result.onnx_path)
    assert spec is not None and spec.classes == ["cat", "dog"] and spec.preprocessing == prep


def test_reference_state_dict_keys_load_strictly(reference_dir: Path) -> None:
    ckpt = load_checkpoint(reference_dir / "checkpoints" / "cats-vs-dogs" / "convmixer_unbiased.pth")
    assert ckpt.paras == {"dim": 256, "depth": 8, "kernel_size": 7, "patch_size": 5, "n_classes": 2, "in_channels": 3}
    assert infer_convmixer_paras(ckpt.state_dict) == ckpt.paras
    assert set(conv_mixer(**ckpt.paras).state_dict()) == set(ckpt.state_dict)


# --------------------------------------------------------------------------- checkpoint formats and errors


def test_plain_state_dict_and_paras_dict_give_the_same_model(tmp_path: Path) -> None:
    plain = build_model("convmixer", save_tiny(tmp_path / "plain.pt", plain=True))
    wrapped = build_model("convmixer", save_tiny(tmp_path / "wrapped.pt"))
    x = torch.from_numpy(PREP32.random_batch(3))
    assert torch.equal(plain(x), wrapped(x))
    assert torch.equal(plain(x), tiny_model()(x))


def test_data_parallel_prefix_is_stripped(tmp_path: Path) -> None:
    state = {f"module.{k}": v for k, v in tiny_model().state_dict().items()}
    torch.save(state, tmp_path / "dp.pt")
    x = torch.from_numpy(PREP32.random_batch(2))
    assert torch.equal(build_model("convmixer", tmp_path / "dp.pt")(x), tiny_model()(x))


def test_factory_module_function(tmp_path: Path) -> None:
    torch.manual_seed(1)
    net = TwoLayer(7)
    torch.save({"paras": {"hidden": 7}, "state_dict": net.state_dict()}, tmp_path / "two.pt")
    model = build_model("epg_bridges.testing:make_two_layer", tmp_path / "two.pt")
    x = torch.randn(2, 3, 8, 8)
    assert torch.equal(model(x), net(x))
    with pytest.raises(ValueError, match="cannot import module 'no_such_module_xyz'"):
        resolve_factory("no_such_module_xyz:f")
    with pytest.raises(ValueError, match="module 'epg_bridges.testing' has no 'nothing'"):
        resolve_factory("epg_bridges.testing:nothing")
    with pytest.raises(ValueError, match="unknown architecture 'resnet'"):
        resolve_factory("resnet")


def test_wrong_architecture_is_one_line(tmp_path: Path) -> None:
    torch.save(TwoLayer().state_dict(), tmp_path / "mlp.pt")
    with pytest.raises(ValueError, match=r"mlp\.pt: wrong architecture") as err:
        build_model("convmixer", tmp_path / "mlp.pt")
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match=r"wrong architecture: \d+ tensor\(s\) the model does not have"):
        build_model("epg_bridges.testing:make_two_layer", save_tiny(tmp_path / "plain.pt", plain=True))
    with pytest.raises(ValueError, match="wrong architecture: epg_bridges.testing:make_two_layer does not accept"):
        build_model("epg_bridges.testing:make_two_layer", save_tiny(tmp_path / "tiny.pt"))
    with pytest.raises(ValueError, match=r"wrong architecture: tensor '0.weight' has shape \(8, 3, 4, 4\)"):
        build_model("convmixer", tmp_path / "tiny.pt", {"dim": 8, "patch_size": 5})


def test_missing_tensor_is_one_line(tmp_path: Path) -> None:
    state = tiny_model().state_dict()
    del state["3.1.bias"]
    torch.save({"paras": TINY, "state_dict": state}, tmp_path / "missing.pt")
    with pytest.raises(ValueError, match=r"missing\.pt: missing tensor '3\.1\.bias'$"):
        build_model("convmixer", tmp_path / "missing.pt")


def test_corrupt_and_unsafe_checkpoints_are_refused(tmp_path: Path) -> None:
    good = save_tiny(tmp_path / "good.pt").read_bytes()
    (tmp_path / "truncated.pt").write_bytes(good[: len(good) // 2])
    with pytest.raises(ValueError, match=r"truncated\.pt: corrupt or unreadable checkpoint") as err:
        load_checkpoint(tmp_path / "truncated.pt")
    assert "\n" not in str(err.value)
    (tmp_path / "noise.pt").write_bytes(b"\x00garbage" * 10)
    with pytest.raises(ValueError, match="corrupt or unreadable"):
        load_checkpoint(tmp_path / "noise.pt")
    torch.save({"state_dict": tiny_model().state_dict(), "obj": TwoLayer()}, tmp_path / "evil.pt")
    with pytest.raises(ValueError, match=r"evil\.pt: refused: the file holds a whole pickled model "
                                         r"\(epg_bridges\.testing\._models\.TwoLayer\)"):
        load_checkpoint(tmp_path / "evil.pt")
    with open(tmp_path / "old.pt", "wb") as handle:  # a raw pickle, not a torch checkpoint
        pickle.dump({"a": 1}, handle, protocol=4)
    with pytest.raises(ValueError, match=r"old\.pt: corrupt or unreadable checkpoint"):
        load_checkpoint(tmp_path / "old.pt")
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(ValueError, match="holds a list"):
        load_checkpoint(tmp_path / "list.pt")
    with pytest.raises(ValueError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "absent.pt")


def test_check_state_dict_accepts_exact_match() -> None:
    model = tiny_model()
    check_state_dict(model, tiny_model(3).state_dict(), "x")  # same layout, other values: fine
    assert model.state_dict().keys() == tiny_model(3).state_dict().keys()


# --------------------------------------------------------------------------- export


def test_export_writes_single_file_with_dynamic_batch_and_spec(tmp_path: Path) -> None:
    model = tiny_model()
    result = export_onnx(model, tmp_path / "tiny.onnx", preprocessing=PREP32, classes=["a", "b", "c"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.onnx", "tiny.onnx.json"]
    assert result.spec_path == spec_path(result.onnx_path)
    spec_json = json.loads(result.spec_path.read_text())
    assert spec_json["preprocessing"]["size"] == [32, 32] and spec_json["preprocessing"]["mean"] == [0.5] * 3
    runner = OnnxRunner(result.onnx_path, output_kind="logits", batch_size=4)
    for batch in (1, 5, 9):  # dynamic batch axis, several runner batches
        x = PREP32.random_batch(batch, seed=batch)
        np.testing.assert_allclose(runner.outputs(x), torch_outputs(model, x), atol=1e-5)


def test_export_initializers_keep_state_dict_names(tmp_path: Path) -> None:
    model = tiny_model()
    proto = export_model(model, PREP32)
    names = {init.name for init in proto.graph.initializer}
    float_keys = {k for k, v in model.state_dict().items() if v.is_floating_point()}
    assert float_keys <= names


@pytest.mark.slow
def test_export_refused_when_onnx_disagrees_and_old_file_kept(tmp_path: Path) -> None:
    target = tmp_path / "model.onnx"
    export_onnx(tiny_model(), target, preprocessing=PREP32)
    before = target.read_bytes(), spec_path(target).read_bytes()
    message = r"disagrees with torch eager by 1 \(> 0\.0001: atol 0\.0001 x the output scale\)"
    with pytest.raises(ValueError, match=message) as err:
        export_onnx(make_disagreeing(), target, preprocessing=PREP32)
    assert "\n" not in str(err.value)
    assert (target.read_bytes(), spec_path(target).read_bytes()) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx", "model.onnx.json"]


@pytest.mark.slow
def test_verify_export_reports_difference() -> None:
    model = tiny_model()
    proto = export_model(model, PREP32)
    diff = verify_export(model, proto, PREP32.random_batch(2))
    assert 0.0 <= diff < 1e-5
    with pytest.raises(ValueError, match="disagrees"):
        verify_export(tiny_model(seed=5), proto, PREP32.random_batch(2))


# --------------------------------------------------------------------------- runner


def test_provider_is_chosen_and_reported_once(caplog: pytest.LogCaptureFixture,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    import onnxruntime as ort

    monkeypatch.setattr(importlib.import_module(select_provider.__module__), "_REPORTED", set())
    with caplog.at_level("INFO", logger="epg_bridges"):
        first, second = select_provider(), select_provider()
    assert first == second
    assert [r.getMessage() for r in caplog.records] == [f"ONNX Runtime provider: {first}"]
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        assert first == "CPUExecutionProvider"
    assert select_provider("cpu", report=False) == "CPUExecutionProvider"
    with pytest.raises(ValueError, match="device must be"):
        select_provider("tpu")


def test_make_session_rejects_garbage(tmp_path: Path) -> None:
    (tmp_path / "bad.onnx").write_bytes(b"not a model")
    with pytest.raises(ValueError, match=r"bad\.onnx: not a valid ONNX model"):
        make_session(tmp_path / "bad.onnx")


@pytest.mark.filterwarnings("ignore::FutureWarning")  # raw torch.onnx.export chatter
def test_runner_wrong_input_size_is_one_line() -> None:
    net = TwoLayer()
    program = torch.onnx.export(net.eval(), (torch.randn(2, 3, 8, 8),), dynamo=True, optimize=False,
                                external_data=False, verbose=False)  # fixed shape [2, 3, 8, 8]
    assert program is not None
    proto = program.model_proto
    with pytest.raises(ValueError, match=r"ONNX Runtime failed on an input of shape \[2, 3, 9, 9\]") as err:
        OnnxRunner(proto, output_kind="logits").outputs(np.zeros((2, 3, 9, 9), np.float32))
    assert "\n" not in str(err.value)


def test_output_kinds() -> None:
    raw = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 1000.0]])
    probs = postprocess(raw, "probabilities")
    np.testing.assert_allclose(probs[0], np.exp([1, 2, 3]) / np.exp([1, 2, 3]).sum(), rtol=1e-6)
    np.testing.assert_allclose(probs[1], [0, 0, 1], atol=1e-7)  # no overflow
    np.testing.assert_array_equal(postprocess(raw, "logits"), raw.astype(np.float32))
    text = np.array([[1.0, 0.0, 0.0], [0.0, 3.0, 4.0]])
    cos = postprocess(raw, "cosine", text)
    np.testing.assert_allclose(cos[0], [1 / np.sqrt(14), (6 + 12) / 5 / np.sqrt(14)], rtol=1e-6)
    with pytest.raises(ValueError, match="needs a text-embedding matrix"):
        postprocess(raw, "cosine")


def test_text_embeddings_average_descriptions(tmp_path: Path) -> None:
    """[C, K, D]: by default the mean over the K descriptions of the cosine (the paper's, as export-clip stores
    it); the unit mean embedding only with prompt_average="embedding" (issue 17)."""
    from epg_bridges.models._runner import postprocess

    per_class = np.array([[[1.0, 0.0], [0.0, 2.0]], [[3.0, 0.0], [3.0, 0.0]]])  # 2 classes x 2 descriptions
    np.save(tmp_path / "text.npy", per_class)
    emb = load_text_embeddings(tmp_path / "text.npy")
    np.testing.assert_allclose(emb, [[[1.0, 0.0], [0.0, 1.0]], [[1.0, 0.0], [1.0, 0.0]]])
    image = np.array([[1.0, 0.0]])  # cosines 1 and 0 with the cat descriptions, 1 and 1 with the dog ones
    np.testing.assert_allclose(postprocess(image, "cosine", emb), [[0.5, 1.0]], atol=1e-7)
    mean_emb = load_text_embeddings(tmp_path / "text.npy", "embedding")
    np.testing.assert_allclose(mean_emb, [[1 / np.sqrt(2), 1 / np.sqrt(2)], [1.0, 0.0]])
    np.testing.assert_allclose(postprocess(image, "cosine", mean_emb), [[1 / np.sqrt(2), 1.0]], atol=1e-7)
    (tmp_path / "bad.npy").write_text("no")
    with pytest.raises(ValueError, match="cannot read text embeddings"):
        load_text_embeddings(tmp_path / "bad.npy")


def test_cosine_runner_uses_embeddings(tmp_path: Path) -> None:
    result = export_onnx(tiny_model(), tmp_path / "m.onnx", preprocessing=PREP32)
    text = np.eye(3)[[0, 2]]
    x = PREP32.random_batch(4)
    cos = OnnxRunner(result.onnx_path, output_kind="cosine", text_embeddings=text).outputs(x)
    logits = torch_outputs(tiny_model(), x)
    unit = logits / np.linalg.norm(logits, axis=1, keepdims=True)
    np.testing.assert_allclose(cos, unit[:, [0, 2]], atol=1e-5)


def test_preprocessing_matches_manual_formula(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (2, 40, 50, 3), dtype=np.uint8)
    prep = Preprocessing(size=(20, 25), mean=(0.1, 0.2, 0.3), std=(0.5, 0.25, 2.0), channel_order="BGR")
    x = prep.apply(pixels)
    resized = np.asarray(Image.fromarray(pixels[1]).resize((25, 20), Image.Resampling.BILINEAR), np.float32) / 255
    manual = ((resized - [0.1, 0.2, 0.3]) / [0.5, 0.25, 2.0])[..., ::-1].transpose(2, 0, 1)
    assert x.shape == (2, 3, 20, 25) and x.dtype == np.float32
    np.testing.assert_allclose(x[1], manual, atol=1e-6)
    assert Preprocessing.from_dict(prep.to_dict()) == prep
    with pytest.raises(ValueError, match="unknown preprocessing keys"):
        Preprocessing.from_dict({"sizes": [1, 2]})
    assert ModelSpec.from_dict(ModelSpec(prep, ["a"]).to_dict()).preprocessing == prep


def test_non_image_file_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "notes.jpg").write_text("this is not a picture\n")
    with pytest.raises(ValueError, match=r"notes\.jpg: not an image file") as err:
        load_image(tmp_path / "notes.jpg")
    assert "\n" not in str(err.value)
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "ok.png")
    with pytest.raises(ValueError, match="notes.jpg: not an image file"):
        collect_inputs([tmp_path / "ok.png", tmp_path / "notes.jpg"])
    image = load_image(tmp_path / "ok.png")
    assert image.shape == (4, 4, 3) and image.dtype == np.uint8


# --------------------------------------------------------------------------- preprocessing rules (issue 13)


def test_shortest_resize_center_crop_matches_the_torchvision_recipe() -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (50, 80, 3), dtype=np.uint8)  # landscape: the height is the short side
    prep = Preprocessing(size=(28, 28), resize="shortest", crop="center", crop_pct=0.875, interpolation="bicubic",
                         mean=(0.1, 0.2, 0.3), std=(0.5, 0.5, 0.5))
    # torchvision: Resize(32) -> 32 x int(32 * 80 / 50) = 32 x 51; CenterCrop(28): top round(2.0), left round(11.5)
    scaled = np.asarray(Image.fromarray(image).resize((51, 32), Image.Resampling.BICUBIC), np.float32) / 255
    crop = scaled[2:30, 12:40]
    manual = ((crop - [0.1, 0.2, 0.3]) / 0.5).transpose(2, 0, 1)
    np.testing.assert_allclose(prep.apply(image[None])[0], manual, atol=1e-6)
    assert Preprocessing.from_dict(prep.to_dict()) == prep
    legacy = Preprocessing.from_dict({"size": [8, 8], "resize": "bicubic", "mean": [0.5] * 3, "std": [0.5] * 3,
                                      "channel_order": "RGB", "layout": "NCHW", "scale": "0-1"})  # a v1 spec
    assert (legacy.resize, legacy.interpolation, legacy.crop) == ("stretch", "bicubic", "none")
    with pytest.raises(E.UsageError, match="needs crop 'center'"):
        Preprocessing(resize="shortest")


def test_hf_image_processor_configs() -> None:
    convnext = preprocessing_from_hf({"do_resize": True, "size": {"shortest_edge": 224}, "crop_pct": 0.875,
                                      "resample": 3, "image_mean": [0.485, 0.456, 0.406],
                                      "image_std": [0.229, 0.224, 0.225]}, "cfg")
    assert (convnext.size, convnext.resize, convnext.crop, convnext.crop_pct) == ((224, 224), "shortest",
                                                                                   "center", 0.875)
    clip = preprocessing_from_hf({"size": {"shortest_edge": 224}, "do_center_crop": True,
                                  "crop_size": {"height": 224, "width": 224}, "resample": 3}, "cfg")
    assert (clip.crop_pct, clip.interpolation) == (1.0, "bicubic")
    vit = preprocessing_from_hf({"size": {"height": 32, "width": 32}, "resample": 2, "do_rescale": True,
                                 "rescale_factor": 1 / 127.5, "rescale_offset": True, "do_normalize": False}, "cfg")
    pixels = np.array([[[[0, 127, 255]]]], np.uint8).repeat(32, 1).repeat(32, 2)[..., :3]
    expected = pixels[0, 0, 0].astype(np.float32) / 127.5 - 1  # HF: p * factor - 1, no normalisation
    np.testing.assert_allclose(vit.apply(pixels)[0, :, 0, 0], expected, atol=1e-6)


def test_preprocessing_rule_and_classes_file(tmp_path: Path) -> None:
    said: list[str] = []
    carried = Preprocessing(size=(224, 224), resize="shortest", crop="center", crop_pct=0.875)
    assert resolve_preprocessing(carried, {"size": None}, source="m", notice=said.append) == carried and not said
    mine = resolve_preprocessing(carried, {"size": (160, 160), "crop": "center"}, source="m", notice=said.append)
    assert mine.size == (160, 160) and mine.resize == "shortest"
    assert said == ["m: the model was made for size 224x224; running it with 160x160 as asked"]
    with pytest.raises(E.UsageError, match=r"m: the model carries no preprocessing; give its input size"):
        resolve_preprocessing(None, {}, source="m")
    assert resolve_preprocessing(None, {"size": 32}, source="m").size == (32, 32)
    fallback = resolve_preprocessing(None, {}, source="m", fallback=PREP32, notice=said.append)
    assert fallback == PREP32 and "no preprocessing stored with the model" in said[-1]

    (tmp_path / "classes.txt").write_text("tench\ncrane\n\n  goldfish \ncrane\n")
    names = read_classes_file(tmp_path / "classes.txt", notice=said.append)
    assert names == ["tench", "crane (2)", "goldfish", "crane (5)"] and "repeated class names" in said[-1]
    assert resolve_classes(4, classes_file=tmp_path / "classes.txt", notice=said.append) == names
    assert resolve_classes(2, model_classes=["a", "b"]) == ["a", "b"]
    assert resolve_classes(2) == ["class_0", "class_1"]
    with pytest.raises(E.UsageError, match=r"classes\.txt: 4 class names given but the model has 3 outputs"):
        resolve_classes(3, classes_file=tmp_path / "classes.txt")
