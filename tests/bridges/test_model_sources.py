"""Own models (issue 13): HF/timm/torchvision/factory architectures, checkpoint layouts, preprocessing rules.

Every model is tiny and random (transformers models built from configs; no downloads). Oracles: torch eager
(the HF model's own logits) against ONNX Runtime, and a fresh export against a weight swap.
"""

from __future__ import annotations

import logging
import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

import epg_core as E
from epg_bridges.models import (
    Checkpoint,
    OnnxRunner,
    Preprocessing,
    RunOptions,
    WeightSwapper,
    build_model,
    export_model,
    exporter_of,
    find_checkpoints,
    load_checkpoint,
    model_preprocessing,
    sweep,
    torch_outputs,
    verify_export,
)
from epg_bridges.testing import TINY_HF_CONFIGS, small_interventions

transformers = pytest.importorskip("transformers")

PREP32 = Preprocessing(size=(32, 32))


def hf_model(family: str, seed: int = 0, n_labels: int = 3) -> nn.Module:
    """A tiny random transformers image classifier of ``family`` with non-trivial norm statistics."""
    config_name, kwargs = TINY_HF_CONFIGS[family]
    config = getattr(transformers, config_name)(num_labels=n_labels, **kwargs,
                                                id2label={i: f"label{i}" for i in range(n_labels)},
                                                label2id={f"label{i}": i for i in range(n_labels)})
    torch.manual_seed(seed)
    model = transformers.AutoModelForImageClassification.from_config(config)
    with torch.no_grad():
        for module in model.modules():  # HF's small init gives near-constant logits (EfficientNet: exactly)
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(module.weight)
        for param in model.parameters():
            param.add_(0.05 * torch.randn_like(param))
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d) and module.running_var is not None:
                module.weight.uniform_(0.5, 1.5)
                module.running_var.uniform_(0.5, 2.0)
                assert module.running_mean is not None
                module.running_mean.uniform_(-0.3, 0.3)
    return model.eval()


def save_hf(model: nn.Module, folder: Path) -> Path:
    model.save_pretrained(folder)  # type: ignore[operator]
    return folder


def logits(model: nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(x)).logits.numpy()


# --------------------------------------------------------------------------- families: export and swap


@pytest.mark.slow
@pytest.mark.parametrize("family", list(TINY_HF_CONFIGS))
def test_hf_family_exports_and_swaps(family: str, tmp_path: Path) -> None:
    first, second = hf_model(family, 0), hf_model(family, 1)
    model = build_model("hf", save_hf(first, tmp_path / "a"))
    x = PREP32.random_batch(3, seed=5)
    np.testing.assert_allclose(torch_outputs(model, x), logits(first, x), atol=1e-6)
    proto = export_model(model, PREP32)
    ort = OnnxRunner(proto, output_kind="logits").outputs(x)
    np.testing.assert_allclose(ort, logits(first, x), atol=1e-4, rtol=0)
    swapper = WeightSwapper(proto, model, reexport=True)
    ckpt = load_checkpoint(save_hf(second, tmp_path / "b"))
    model.load_state_dict(ckpt.state_dict)
    swapped = OnnxRunner(swapper.model_bytes(model.state_dict()), output_kind="logits").outputs(x)
    fresh = OnnxRunner(export_model(build_model("hf", tmp_path / "b"), PREP32), output_kind="logits").outputs(x)
    np.testing.assert_allclose(swapped, fresh, atol=1e-4, rtol=0)
    np.testing.assert_allclose(swapped, logits(second, x), atol=1e-4, rtol=0)
    assert np.abs(logits(second, x) - logits(first, x)).max() > 1e-2  # stale weights could not pass
    assert np.abs(logits(first, x)[0] - logits(first, x)[1]).max() > 1e-5  # the outputs depend on the image


class DenseNetLike(nn.Module):
    """DenseNet-style: each layer sees the concatenation of all earlier feature maps (BatchNorm, ReLU, conv)."""

    def __init__(self, growth: int = 4, layers: int = 3, n_classes: int = 3) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.blocks = nn.ModuleList(nn.Sequential(nn.BatchNorm2d(8 + i * growth), nn.ReLU(),
                                                  nn.Conv2d(8 + i * growth, growth, 3, padding=1))
                                    for i in range(layers))
        self.norm = nn.BatchNorm2d(8 + layers * growth)
        self.head = nn.Linear(8 + layers * growth, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [self.stem(x)]
        for block in self.blocks:
            features.append(block(torch.cat(features, dim=1)))
        y = torch.relu(self.norm(torch.cat(features, dim=1)))
        return self.head(y.mean(dim=(2, 3)))


def dense_model(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    model = DenseNetLike()
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            assert module.running_var is not None and module.running_mean is not None
            module.running_var.data.uniform_(0.5, 2.0)
            module.running_mean.data.uniform_(-0.3, 0.3)
    return model.eval()


def test_densenet_style_factory_exports_and_swaps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    module = types.ModuleType("dense_factories")
    module.dense = lambda **kw: DenseNetLike(**kw)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "dense_factories", module)
    for seed in (0, 1):
        torch.save({"paras": {"growth": 4}, "state_dict": dense_model(seed).state_dict()}, tmp_path / f"{seed}.pt")
    model = build_model("dense_factories:dense", tmp_path / "0.pt")
    proto = export_model(model, PREP32)
    x = PREP32.random_batch(4, seed=3)
    assert verify_export(dense_model(0), proto, x) < 1e-4
    swapper = WeightSwapper(proto, model)
    assert swapper.swaps
    model.load_state_dict(load_checkpoint(tmp_path / "1.pt").state_dict)
    swapped = OnnxRunner(swapper.model_bytes(model.state_dict()), output_kind="logits").outputs(x)
    np.testing.assert_allclose(swapped, torch_outputs(dense_model(1), x), atol=1e-4, rtol=0)


class Branchy(nn.Module):
    """Data-dependent control flow: torch.export refuses it, the TorchScript exporter traces one branch."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = x.mean(dim=(2, 3))
        if bool(pooled.sum() > -1e9):  # always true, but data-dependent
            return self.fc(pooled)
        return -self.fc(pooled)


def test_exporter_falls_back_and_unproven_swap_reexports(caplog: pytest.LogCaptureFixture) -> None:
    torch.manual_seed(0)
    model = Branchy().eval()
    proto = export_model(model, PREP32)
    assert exporter_of(proto) == "torchscript"
    x = PREP32.random_batch(3)
    assert verify_export(model, proto, x) < 1e-5
    assert WeightSwapper(proto, model).swaps  # names kept (no constant folding) and the probe agrees
    proto.graph.initializer[0].name = "renamed"  # a renamed (folded) tensor: the swap is not provable
    with pytest.raises(E.DataError, match="have no initializer of that name"):  # strict by default
        WeightSwapper(proto, model)
    with caplog.at_level(logging.WARNING, logger="epg_bridges"):
        swapper = WeightSwapper(proto, model, reexport=True)
    assert not swapper.swaps
    assert any("re-exporting every checkpoint" in r.getMessage() for r in caplog.records)
    with torch.no_grad():
        model.fc.weight.mul_(-2.0)
    out = OnnxRunner(swapper.model_bytes(model.state_dict()), output_kind="logits").outputs(x)
    np.testing.assert_allclose(out, torch_outputs(model, x), atol=1e-5)


@pytest.mark.slow
def test_factory_returning_output_object_is_wrapped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    module = types.ModuleType("hf_factories")
    module.vit = lambda: hf_model("vit")  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "hf_factories", module)
    torch.save(hf_model("vit").state_dict(), tmp_path / "vit.pt")
    model = build_model("hf_factories:vit", tmp_path / "vit.pt")
    x = PREP32.random_batch(2)
    assert isinstance(model(torch.from_numpy(x)), torch.Tensor)
    assert set(model.state_dict()) == set(hf_model("vit").state_dict())  # names unchanged by the wrapper
    np.testing.assert_allclose(OnnxRunner(export_model(model, PREP32), output_kind="logits").outputs(x),
                               logits(hf_model("vit"), x), atol=1e-4)


# --------------------------------------------------------------------------- acceptance: HF sweeps


@pytest.mark.slow
@pytest.mark.parametrize("family", ["resnet", "vit"])
def test_sweep_over_three_hf_checkpoint_folders(family: str, tmp_path: Path) -> None:
    run = tmp_path / "run"
    for epoch in range(3):
        save_hf(hf_model(family, seed=epoch), run / f"epoch-{epoch}")
    assert [p.name for p in find_checkpoints(run)] == ["epoch-0", "epoch-1", "epoch-2"]
    inputs = small_interventions(tmp_path / "iv.h5")
    ckpt = load_checkpoint(run / "epoch-0")
    assert ckpt.classes == ["label0", "label1", "label2"] and ckpt.layout == "hf"
    result = sweep(run, [inputs], tmp_path / "out.h5",
                   RunOptions(architecture="hf", preprocessing=PREP32, classes=ckpt.classes))
    assert result.computed == [0, 1, 2]
    source = E.read_interventions(inputs)
    for block in E.read_outputs(tmp_path / "out.h5"):
        assert block.checkpoints == ["epoch-0", "epoch-1", "epoch-2"] and block.classes == ckpt.classes
        x = PREP32.apply(source[block.sequence].images)
        for m in range(3):
            expected = torch.softmax(torch.from_numpy(logits(hf_model(family, seed=m), x)), dim=-1).numpy()
            np.testing.assert_allclose(block.outputs[m], expected, atol=1e-4, rtol=0)


def _renamed_initializer(proto: Any) -> Any:
    """The export with its first initializer renamed consistently (as a folding exporter would): valid, unswappable."""
    old = proto.graph.initializer[0].name
    proto.graph.initializer[0].name = "folded_0"
    for node in proto.graph.node:
        node.input[:] = ["folded_0" if name == old else name for name in node.input]
    return proto


@pytest.mark.slow
def test_sweep_reexports_every_checkpoint_when_the_swap_is_not_provable(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    import epg_bridges.models._preprocessing as preprocessing
    import epg_bridges.models._sweep as sweep_module

    monkeypatch.setattr(preprocessing, "_SAID", set())
    module = types.ModuleType("dense_factories3")
    module.dense = lambda growth=4: DenseNetLike(growth)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "dense_factories3", module)
    real_export = sweep_module.export_model
    monkeypatch.setattr(sweep_module, "export_model",
                        lambda model, prep: _renamed_initializer(real_export(model, prep)))
    run = tmp_path / "run"
    run.mkdir()
    for seed in range(3):
        torch.save(dense_model(seed).state_dict(), run / f"epoch_{seed}.pt")
    inputs = small_interventions(tmp_path / "iv.h5")
    with caplog.at_level(logging.WARNING, logger="epg_bridges"):
        result = sweep(run, [inputs], tmp_path / "out.h5", RunOptions(architecture="dense_factories3:dense",
                                                                      preprocessing=PREP32, output_kind="logits"))
    assert result.computed == [0, 1, 2]
    said = [r.getMessage() for r in caplog.records if "re-exporting every checkpoint" in r.getMessage()]
    assert len(said) == 1 and "'stem.weight' have no initializer" in said[0] and "\n" not in said[0]
    source = E.read_interventions(inputs)
    for block in E.read_outputs(tmp_path / "out.h5"):
        x = PREP32.apply(source[block.sequence].images)
        for m in range(3):
            np.testing.assert_allclose(block.outputs[m], torch_outputs(dense_model(m), x), atol=1e-4, rtol=0)


# --------------------------------------------------------------------------- timm / torchvision stand-ins


def stand_in_timm(factory: Callable[..., nn.Module]) -> types.ModuleType:
    timm = types.ModuleType("timm")
    data = types.ModuleType("timm.data")

    def create_model(name: str, pretrained: bool = False, **kwargs: Any) -> nn.Module:
        assert not pretrained and name == "densey"
        return factory(**kwargs)

    timm.create_model = create_model  # type: ignore[attr-defined]
    timm.list_models = lambda: ["densey"]  # type: ignore[attr-defined]
    data.resolve_data_config = lambda args, model: {  # type: ignore[attr-defined]
        "input_size": (3, 32, 32), "interpolation": "bicubic", "mean": (0.4, 0.4, 0.4), "std": (0.2, 0.2, 0.2),
        "crop_pct": 0.875, "crop_mode": "center"}
    timm.data = data  # type: ignore[attr-defined]
    return timm


def test_timm_stand_in_infers_classes_and_carries_preprocessing(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    timm = stand_in_timm(lambda num_classes=3, **kw: DenseNetLike(n_classes=num_classes))
    monkeypatch.setitem(sys.modules, "timm", timm)
    monkeypatch.setitem(sys.modules, "timm.data", timm.data)  # type: ignore[attr-defined]
    torch.manual_seed(0)
    trained = DenseNetLike(n_classes=5).eval()
    torch.save({"state_dict": trained.state_dict(), "state_dict_ema": trained.state_dict()}, tmp_path / "t.pth")
    model = build_model("timm:densey", tmp_path / "t.pth")
    x = PREP32.random_batch(2)
    np.testing.assert_allclose(torch_outputs(model, x), torch_outputs(trained, x), atol=1e-6)
    prep = model_preprocessing("timm", model, "timm:densey")
    assert prep == Preprocessing(size=(32, 32), resize="shortest", crop="center", crop_pct=0.875,
                                 interpolation="bicubic", mean=(0.4, 0.4, 0.4), std=(0.2, 0.2, 0.2))
    with pytest.raises(E.UsageError, match="no model 'nope' in timm"):
        build_model("timm:nope", tmp_path / "t.pth")


def test_torchvision_stand_in_and_missing_packages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tv, models = types.ModuleType("torchvision"), types.ModuleType("torchvision.models")
    transform = types.SimpleNamespace(crop_size=[224], resize_size=[256], mean=[0.485, 0.456, 0.406],
                                      std=[0.229, 0.224, 0.225], interpolation=types.SimpleNamespace(value="bilinear"))
    models.get_model = lambda name, weights=None, **kw: DenseNetLike(**kw)  # type: ignore[attr-defined]
    models.get_model_weights = lambda name: types.SimpleNamespace(  # type: ignore[attr-defined]
        DEFAULT=types.SimpleNamespace(transforms=lambda: transform))
    tv.models = models  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "torchvision", tv)
    monkeypatch.setitem(sys.modules, "torchvision.models", models)
    torch.save(dense_model(0).state_dict(), tmp_path / "d.pt")
    model = build_model("torchvision:densenet121", tmp_path / "d.pt")
    prep = model_preprocessing("torchvision", model, "torchvision:densenet121")
    assert prep is not None and prep.size == (224, 224) and prep.crop_pct == pytest.approx(0.875)
    monkeypatch.setitem(sys.modules, "timm", None)  # "not installed"
    with pytest.raises(E.UsageError, match=r"--arch timm:resnet18: the 'timm' package is not installed") as err:
        build_model("timm:resnet18", tmp_path / "d.pt")
    assert "\n" not in str(err.value)


# --------------------------------------------------------------------------- checkpoint layouts


def test_lightning_ema_safetensors_torchscript_layouts(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from safetensors.torch import save_file

    module = types.ModuleType("dense_factories2")
    module.dense = lambda growth=4, layers=3, n_classes=3: DenseNetLike(growth, layers, n_classes)  # type: ignore
    monkeypatch.setitem(sys.modules, "dense_factories2", module)
    arch = "dense_factories2:dense"
    raw, ema = dense_model(0), dense_model(1)
    x = PREP32.random_batch(2)
    lightning = {"state_dict": {**{f"model.{k}": v for k, v in raw.state_dict().items()},
                                "criterion.weight": torch.ones(3)},
                 "hyper_parameters": {"growth": 4, "layers": 3, "lr": 0.1}, "epoch": 3,
                 "pytorch-lightning_version": "2.4.0", "optimizer_states": [{"state": {}}]}
    torch.save(lightning, tmp_path / "epoch=3.ckpt")
    with caplog.at_level(logging.WARNING, logger="epg_bridges"):
        model = build_model(arch, tmp_path / "epoch=3.ckpt")
    np.testing.assert_allclose(torch_outputs(model, x), torch_outputs(raw, x), atol=1e-6)
    said = " ".join(r.getMessage() for r in caplog.records)
    assert "stripped the prefix 'model.'" in said and "ignored: ['lr']" in said

    torch.save({"state_dict": raw.state_dict(), "state_dict_ema": ema.state_dict(), "args": None},
               tmp_path / "timm.pth.tar")
    np.testing.assert_allclose(torch_outputs(build_model(arch, tmp_path / "timm.pth.tar"), x),
                               torch_outputs(ema, x), atol=1e-6)
    np.testing.assert_allclose(torch_outputs(build_model(arch, tmp_path / "timm.pth.tar", no_ema=True), x),
                               torch_outputs(raw, x), atol=1e-6)

    torch.save({f"module.{k}": v for k, v in raw.state_dict().items()}, tmp_path / "dp.pt")
    torch.save({"model": raw.state_dict()}, tmp_path / "deit.pth")
    save_file({k: v.contiguous() for k, v in raw.state_dict().items()}, str(tmp_path / "w.safetensors"))
    torch.jit.save(torch.jit.script(raw), str(tmp_path / "scripted.pt"))
    for name in ("dp.pt", "deit.pth", "w.safetensors", "scripted.pt"):
        np.testing.assert_allclose(torch_outputs(build_model(arch, tmp_path / name), x), torch_outputs(raw, x),
                                   atol=1e-6, err_msg=name)
    assert load_checkpoint(tmp_path / "scripted.pt").layout == "torchscript"


class Marker:
    """Unpickling it would create a file (a stand-in for arbitrary code)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (self.path,))


def test_pickled_models_and_malicious_pickles_are_refused(tmp_path: Path) -> None:
    torch.save(dense_model(0), tmp_path / "whole.pt")
    with pytest.raises(E.DataError, match=r"whole\.pt: refused: the file holds a whole pickled model .*"
                                          r"torch\.save\(model\.state_dict\(\), path\)") as err:
        load_checkpoint(tmp_path / "whole.pt")
    assert "weights_only" in str(err.value) and "\n" not in str(err.value)
    marker = tmp_path / "pwned"
    torch.save({"state_dict": dense_model(0).state_dict(), "x": Marker(marker)}, tmp_path / "evil.pt")
    with pytest.raises(E.DataError, match=r"evil\.pt: refused: not a plain tensor checkpoint \(weights_only\)"):
        load_checkpoint(tmp_path / "evil.pt")
    assert not marker.exists()


def test_architecture_kwargs_are_bounded_before_building(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[dict[str, Any]] = []
    module = types.ModuleType("huge_factories")

    def huge(width: int = 4) -> nn.Module:
        calls.append({"width": width, "device": str(torch.empty(0).device)})
        return nn.Linear(width, width)

    module.huge = huge  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "huge_factories", module)
    torch.save({"paras": {"width": 200_000}, "state_dict": nn.Linear(4, 4).state_dict()}, tmp_path / "big.pt")
    with pytest.raises(E.DataError, match=r"would have 40,000,200,000 parameters"):
        build_model("huge_factories:huge", tmp_path / "big.pt")
    assert [c["device"] for c in calls] == ["meta"]  # only ever built on the meta device
    absurd = Checkpoint(path=tmp_path / "absurd.pt", state_dict={"w": torch.zeros(1)}, paras={"width": 10**12})
    with pytest.raises(E.DataError, match=r"architecture argument 'width' is 1000000000000, beyond the bound"):
        build_model("huge_factories:huge", absurd)
    assert len(calls) == 1


# --------------------------------------------------------------------------- preprocessing and class names


def test_hf_folder_carries_preprocessing_and_labels(tmp_path: Path) -> None:
    folder = save_hf(hf_model("vit"), tmp_path / "vit")
    transformers.ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    ckpt = load_checkpoint(folder)
    assert ckpt.preprocessing == Preprocessing(size=(32, 32))
    assert ckpt.classes == ["label0", "label1", "label2"]
    with pytest.raises(E.UsageError, match="needs a Hugging Face model folder"):
        build_model("hf", Checkpoint(path=tmp_path / "x.pt", state_dict={"w": torch.zeros(1)}))
