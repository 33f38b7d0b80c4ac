"""Model families are plug-ins (issue 21): a family written here, registered with one line, runs through
``load_for_run`` and ``epg predict`` without a change to epg; every built-in name resolves to its own family.

Oracle for the runs: torch eager on the family's model (the test's own code) against the ONNX Runtime outputs
that ``epg predict`` stores, on the frames of an interventions file.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import ClassVar, get_args

import numpy as np
import pytest
import torch
from helpers import one_line_error, run_cli
from torch import nn

import epg_bridges.models as models_door
from epg_bridges.models import (
    ModelFamily,
    Preprocessing,
    RunOptions,
    arch_kind,
    get_model_family,
    load_for_run,
    model_family,
    model_family_names,
    register_model_family,
    resolve_factory,
)
from epg_bridges.models.families import _registry
from epg_bridges.testing import small_interventions
from epg_core import UsageError, read_interventions, read_outputs

ROOT = Path(__file__).resolve().parents[2]
CARRIED = Preprocessing(size=(16, 16), mean=(0.4, 0.5, 0.6), std=(0.2, 0.25, 0.3))


class PooledFamily(ModelFamily):
    """``--arch pooled``: mean colour -> linear, returning ``{"logits": ...}`` (as HF models return an output)."""

    name: ClassVar[str] = "pooled"
    usage: ClassVar[str] = "pooled"

    def factory(self) -> Callable[..., nn.Module]:
        return pooled_net

    def model_preprocessing(self, model: nn.Module) -> Preprocessing | None:
        return CARRIED


class _Pooled(nn.Module):
    def __init__(self, n_classes: int) -> None:
        super().__init__()
        self.fc = nn.Linear(3, n_classes)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"logits": self.fc(x.mean(dim=(2, 3)))}


def pooled_net(n_classes: int = 3) -> _Pooled:
    return _Pooled(n_classes)


@pytest.fixture(scope="module", autouse=True)
def _registered() -> Iterator[None]:
    register_model_family(PooledFamily)  # the one line that adds a family
    yield
    _registry._REGISTERED.pop("pooled", None)


@pytest.fixture
def checkpoint(tmp_path: Path) -> tuple[Path, nn.Module]:
    torch.manual_seed(0)
    net = pooled_net(4).eval()
    with torch.no_grad():
        net.fc.weight.mul_(20.0)  # distinct outputs per frame
    path = tmp_path / "pooled.pt"
    torch.save({"paras": {"n_classes": 4}, "state_dict": net.state_dict()}, path)
    return path, net


def _eager(net: nn.Module, frames: np.ndarray, prep: Preprocessing) -> np.ndarray:
    with torch.no_grad():
        logits = net(torch.from_numpy(prep.apply(frames)))["logits"]
    return torch.softmax(logits, dim=-1).numpy()


def test_a_registered_family_runs_through_load_for_run(checkpoint: tuple[Path, nn.Module]) -> None:
    path, net = checkpoint
    assert arch_kind("pooled") == arch_kind("Pooled") == "pooled"
    assert model_family_names()[0] == "pooled"
    loaded = load_for_run(path, RunOptions(architecture="pooled"))
    assert loaded.kwargs == {"n_classes": 4} and loaded.preprocessing == CARRIED  # carried, no --size needed
    assert not loaded.model.training
    x = torch.from_numpy(CARRIED.random_batch(3, seed=1))
    out = loaded.model(x)
    assert isinstance(out, torch.Tensor)  # tensor_output of the base class: the dict's logits
    torch.testing.assert_close(out, net(x)["logits"], rtol=0, atol=0)
    assert set(loaded.model.state_dict()) == set(net.state_dict())  # names unchanged by the wrapper


def test_a_registered_family_runs_through_epg_predict(checkpoint: tuple[Path, nn.Module], tmp_path: Path) -> None:
    path, net = checkpoint
    iv = small_interventions(tmp_path / "iv.h5")
    out = tmp_path / "out.h5"
    result = run_cli("predict", path, iv, "--arch", "pooled", "-o", out, "-q")
    assert result.exit_code == 0, result.output
    frames = read_interventions(iv)
    blocks = read_outputs(out)
    assert {b.sequence for b in blocks} == set(frames) and len(blocks) == 2
    for block in blocks:
        assert block.model == "pooled" and block.outputs.shape[-1] == 4
        assert Preprocessing.from_dict(block.preprocessing) == CARRIED
        want = _eager(net, frames[block.sequence].images, CARRIED)
        assert np.ptp(want[:, 0]) > 1e-3  # frames differ, so the comparison is not vacuous
        np.testing.assert_allclose(block.outputs[0], want, atol=1e-5, rtol=0)


@pytest.mark.slow
def test_a_family_class_runs_from_a_fresh_cli_without_registering(checkpoint: tuple[Path, nn.Module],
                                                                    tmp_path: Path) -> None:
    """``--arch package.module:Class`` of a ModelFamily subclass: a real ``epg`` process, epg unchanged."""
    path, net = checkpoint
    iv = small_interventions(tmp_path / "iv.h5")
    paths = [str(Path(__file__).parent), str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p), "HF_HUB_OFFLINE": "1"}
    code = "import sys\nfrom epg_cli.main import cli\ncli(sys.argv[1:], prog_name='epg')\n"
    res = subprocess.run([sys.executable, "-c", code, "predict", str(path), str(iv), "--arch",
                          "test_model_families:PooledFamily", "-o", str(tmp_path / "out.h5"), "-q"],
                         capture_output=True, text=True, env=env, cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    frames = read_interventions(iv)
    for block in read_outputs(tmp_path / "out.h5"):
        np.testing.assert_allclose(block.outputs[0], _eager(net, frames[block.sequence].images, CARRIED),
                                   atol=1e-5, rtol=0)


#: an --arch string of every built-in family
EXAMPLES = {"convmixer": "ConvMixer", "hf": "hf", "timm": "timm:resnet18", "torchvision": "torchvision:resnet18",
            "factory": "epg_bridges.testing:make_two_layer"}


def test_every_built_in_name_resolves_to_its_family() -> None:
    assert set(EXAMPLES) == set(_registry.BUILTIN)
    for name, target in _registry.BUILTIN.items():
        module, cls_name = target.split(":")
        assert (ROOT / "bridges" / "models" / "families" / f"{module}.py").is_file()  # one file per family
        cls = get_model_family(name)
        assert cls.__name__ == cls_name and cls.__module__ == f"epg_bridges.models.families.{module}"
        assert cls.name == name and issubclass(cls, ModelFamily)
        family = model_family(EXAMPLES[name])
        assert type(family) is cls and arch_kind(EXAMPLES[name]) == name, name
        assert cls.usage and cls.usage.strip("'").split(":")[0] in {name, "package.module"}
    assert "timm" not in sys.modules and "torchvision" not in sys.modules  # resolving imports no model library
    assert resolve_factory("epg_bridges.testing:make_two_layer").__name__ == "make_two_layer"


def test_registry_and_front_door_list_the_same_names() -> None:
    assert model_family_names() == ("pooled", *_registry.BUILTIN)
    assert models_door.model_family_names is _registry.model_family_names
    public = {"ModelFamily", "model_family", "model_family_names", "register_model_family", "get_model_family",
              "arch_kind", "carried_preprocessing", "model_preprocessing"}
    assert public <= set(models_door.__all__)
    for name in models_door.__all__:  # every name the door lists resolves (lazily or not)
        assert getattr(models_door, name) is not None, name
    for name in _registry.BUILTIN:  # the door's get_model_family is the registry's
        assert models_door.get_model_family(name) is get_model_family(name)


def test_listing_names_imports_no_family_and_no_torch() -> None:
    code = ("import sys\nimport epg_bridges.models as m\nnames = m.model_family_names()\n"
            "assert names == ('convmixer', 'hf', 'timm', 'torchvision', 'factory'), names\n"
            "loaded = [k for k in sys.modules if k.startswith('epg_bridges.models.families.')]\n"
            "assert loaded == ['epg_bridges.models.families._registry'], loaded\n"
            "assert 'torch' not in sys.modules\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


def test_registration_and_resolution_errors_are_one_line() -> None:
    class Clash(ModelFamily):
        name: ClassVar[str] = "timm"

    class Bad(ModelFamily):
        name: ClassVar[str] = "Has Space"

    with pytest.raises(UsageError, match="the name 'timm' is taken; give replace=True"):
        register_model_family(Clash)
    with pytest.raises(UsageError, match=r"Bad\.name must be a lowercase name"):
        register_model_family(Bad)
    with pytest.raises(UsageError, match="is not a subclass of ModelFamily"):
        register_model_family(dict)  # type: ignore[arg-type]
    assert register_model_family(PooledFamily) is PooledFamily  # the same class again: nothing changes
    with pytest.raises(UsageError) as err:
        model_family("resnet")
    assert str(err.value) == ("unknown architecture 'resnet': use pooled, convmixer, hf, timm:NAME, "
                              "torchvision:NAME or 'package.module:function'")
    with pytest.raises(UsageError, match="'epg_bridges.testing:make_two_layer' is not a subclass of ModelFamily"):
        get_model_family("epg_bridges.testing:make_two_layer")
    with pytest.raises(UsageError, match="unknown model family 'nope'; choose one of pooled, convmixer"):
        get_model_family("nope")
    with pytest.raises(UsageError, match=r"--arch 'timm:': give the model name"):
        model_family("timm:")


def test_cli_unknown_arch_names_the_registered_family(tmp_path: Path) -> None:
    torch.save({"w": torch.zeros(1)}, tmp_path / "x.pt")
    iv = small_interventions(tmp_path / "iv.h5")
    result = run_cli("predict", tmp_path / "x.pt", iv, "--arch", "resnet", "-o", tmp_path / "o.h5", "-q")
    one_line_error(result, 2, "unknown architecture 'resnet'", "pooled")


def test_no_kind_dispatch_is_left_in_the_model_code() -> None:
    """The families decide; the generic modules never branch on a family's name."""
    for module in ("_sources", "_architectures", "_setup"):
        text = (ROOT / "bridges" / "models" / f"{module}.py").read_text(encoding="utf-8")
        assert not re.search(r"(?<![.\w])kind (==|!=|in \(|not in)", text), module
        for needle in ('"convmixer"', '"timm"', '"torchvision"', '"factory"'):
            assert needle not in text, (module, needle)


def test_cli_choices_are_the_run_options_literal_types() -> None:
    """The CLI offers exactly the values the options' ``Literal`` types name (they cannot drift apart)."""
    import click

    from epg_bridges.models import ChannelOrder, CropMode, Interpolation, OutputKind, PromptAverage, ResizeMode
    from epg_cli._models import predict_command

    want = {"output_kind": OutputKind, "prompt_average": PromptAverage, "resize": ResizeMode, "crop": CropMode,
            "interpolation": Interpolation, "channel_order": ChannelOrder}
    params = {p.name: p for p in predict_command.params}
    for name, literal in want.items():
        choice = params[name].type
        assert isinstance(choice, click.Choice), name
        assert tuple(choice.choices) == get_args(literal), name
