"""The layout promises of docs/ARCHITECTURE.md: what each part may import, install extras, the JAX cache."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from epg_cli import EXTRA_MODULES, extra_for

ROOT = Path(__file__).resolve().parents[2]
SOURCE_DIRS = ("epg_core", "bridges", "cli", "bench")

#: Third-party modules every part may import: the core dependencies.
CORE = {"numpy", "h5py", "jax", "jaxlib", "jaxtyping", "tqdm", "epg_core"}
#: What each part of epg_bridges may import besides the core and the standard library (docs/ARCHITECTURE.md,
#: "The rooms"; transformers and huggingface_hub come with the ``edit`` extra that diffusers needs).
ALLOWED = {
    "bridges/interventions": {"PIL", "torch", "diffusers", "transformers", "huggingface_hub"},
    "bridges/models": {"PIL", "torch", "onnx", "onnxruntime", "transformers"},
    "bridges/report": {"matplotlib"},
    "bridges/app": {"gradio", "matplotlib", "epg_bridges"},  # the explorer draws with the report's helpers
}
#: Private modules of another package that are still imported, each waiting for a public name in epg_core.
PENDING_PRIVATE = {
    ("bench/_perm_impls.py", "epg_core._permutation._sets"),  # clear_cache: times the permutation generation
}


def _sources(*folders: str) -> Iterator[Path]:
    for folder in folders:
        yield from sorted((ROOT / folder).rglob("*.py"))


def _imports(path: Path) -> Iterator[tuple[str, int]]:
    """Absolute module names imported by ``path`` and the relative level (0 = absolute)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, 0
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level == 0:
                yield module, 0
                for alias in node.names:  # ``from epg_core import _io`` imports a private module too
                    yield f"{module}.{alias.name}", 0
            else:
                yield module, node.level


# No line cap on modules: a module is as long as its concept needs. What splits a package is concept, checked by
# tests/core/test_import_graph.py (no two modules import each other).


@pytest.mark.parametrize("part", sorted(ALLOWED))
def test_bridges_parts_import_only_what_design_allows(part: str) -> None:
    allowed = CORE | ALLOWED[part] | set(sys.stdlib_module_names) | {"__future__"}
    found = {}
    for path in _sources(part):
        for module, level in _imports(path):
            top = module.split(".", 1)[0]
            if level == 0 and top and top not in allowed:
                found[f"{path.relative_to(ROOT)}: {module}"] = top
    assert not found, f"{part} imports what docs/ARCHITECTURE.md does not allow there: {sorted(found)}"


def test_nothing_imports_another_packages_private_module() -> None:
    owners = {"epg_core": "epg_core", "epg_bridges": "bridges", "epg_cli": "cli"}
    found = []
    for path in _sources(*SOURCE_DIRS):  # tests may be white-box
        rel = path.relative_to(ROOT)
        for module, level in _imports(path):
            parts = module.split(".")
            if level or parts[0] not in owners or rel.parts[0] == owners[parts[0]]:
                continue
            if any(p.startswith("_") for p in parts[1:]) and (str(rel), module) not in PENDING_PRIVATE:
                found.append(f"{rel}: {module}")
    assert not found, f"private modules of another package imported: {found}"


def test_pending_private_imports_are_still_there() -> None:
    """Each allow-listed private import must still exist, so the list shrinks when epg_core gains public names."""
    for rel, module in PENDING_PRIVATE:
        assert module in {m for m, level in _imports(ROOT / rel) if level == 0}, f"{rel} no longer imports {module}"


def _fresh(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True)


def test_epg_core_imports_no_torch_onnxruntime_diffusers_matplotlib_or_pil() -> None:
    code = ("import sys, epg_core; bad = [m for m in ('torch', 'onnxruntime', 'diffusers', 'onnx', 'PIL', "
            "'matplotlib') if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)")
    res = _fresh(code)
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.slow
def test_bridges_subpackages_load_heavy_libraries_only_when_used() -> None:
    code = (
        "import sys\n"
        "import epg_bridges, epg_cli.main\n"
        "assert not {'torch', 'onnxruntime', 'PIL', 'matplotlib'} & set(sys.modules), 'epg_cli imports a stage'\n"
        "import epg_bridges.interventions as iv\n"
        "assert not {'torch', 'diffusers', 'matplotlib'} & set(sys.modules), 'interventions import torch'\n"
        "import epg_bridges.models as m\n"
        "assert 'torch' not in sys.modules, 'epg_bridges.models imports torch'\n"
        "m.conv_mixer\n"
        "assert 'torch' in sys.modules\n"
        "iv.edit_sequence\n"
        "try:\n"
        "    m.no_such_name\n"
        "except AttributeError:\n"
        "    pass\n"
        "else:\n"
        "    raise SystemExit('missing names must raise AttributeError')\n"
    )
    res = _fresh(code)
    assert res.returncode == 0, res.stderr


@pytest.mark.slow
def test_predict_with_an_onnx_file_does_not_import_torch(tmp_path: Path) -> None:
    from epg_bridges.models import Preprocessing, export_onnx
    from epg_bridges.testing import small_interventions, tiny_model

    model = export_onnx(tiny_model(), tmp_path / "tiny.onnx", preprocessing=Preprocessing(size=(32, 32))).onnx_path
    interventions = small_interventions(tmp_path / "iv.h5")
    code = (
        "import sys\n"
        "from epg_cli.main import cli\n"
        "try:\n"
        "    cli(sys.argv[1:], prog_name='epg')\n"
        "except SystemExit as exc:\n"
        "    assert not exc.code, exc.code\n"
        "assert 'torch' not in sys.modules, 'predict on an .onnx file imported torch'\n"
    )
    res = _fresh(code, "predict", str(model), str(interventions), "-o", str(tmp_path / "out.h5"))
    assert res.returncode == 0, res.stdout + res.stderr
    assert (tmp_path / "out.h5").is_file()


def test_extra_for_maps_a_missing_module_to_the_first_extra_that_has_it() -> None:
    assert extra_for("torch", ("onnx", "torch")) == "torch"
    assert extra_for("onnxruntime.capi", ("onnx", "torch")) == "onnx"
    assert extra_for("PIL.Image", ("images",)) == "images"
    assert extra_for("matplotlib.pyplot", ("torch", "report")) == "report"
    assert extra_for("diffusers", ("torch",)) is None  # a module the command's extras do not install: a bug
    assert extra_for(None, ("torch",)) is None


def test_extras_match_pyproject() -> None:
    """The import names of each extra are what pyproject.toml installs; no exact pin in the package metadata."""
    import re
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    optional = project["optional-dependencies"]
    assert set(optional) == {*EXTRA_MODULES, "all", "test"}
    transitive = {"huggingface_hub", "safetensors"}  # installed by diffusers and transformers
    for extra, modules in EXTRA_MODULES.items():
        dists = {re.match(r"[A-Za-z0-9_.\-]+", req).group(0).lower() for req in optional[extra]}  # type: ignore[union-attr]
        declared = {"PIL" if d == "pillow" else d.replace("-", "_") for d in dists}
        assert modules - transitive <= declared, (extra, modules - declared)
    every = " ".join(project["dependencies"] + [r for reqs in optional.values() for r in reqs])
    assert "==" not in every, "exact pins belong in constraints.txt, not in the package metadata"
    core = {re.match(r"[A-Za-z0-9_.\-]+", r).group(0) for r in project["dependencies"]}  # type: ignore[union-attr]
    assert core == {"jax", "jaxlib", "numpy", "h5py", "click", "tqdm", "jaxtyping"}


@pytest.mark.parametrize(("blocked", "args", "command", "extra"), [
    ("torch", ["export", "model.pt"], "export", "torch"),
    ("onnxruntime", ["predict", "model.onnx", "iv.h5"], "predict", "onnx"),
    ("torch", ["sweep", "ckpt/*.pt", "iv.h5"], "sweep", "torch"),
    ("matplotlib", ["report", "outputs.h5"], "report", "report"),
    ("PIL", ["intervene", "synthetic", "cat.png", "--kind", "hue"], "intervene synthetic", "images"),
    ("torch", ["intervene", "edit", "cat.png", "-i", "dark", "-m", "x/y"], "intervene edit", "edit"),
])
def test_missing_extra_exits_1_naming_it(tmp_path: Path, blocked: str, args: list[str], command: str,
                                         extra: str) -> None:
    code = (
        "import sys\n"
        f"sys.modules[{blocked!r}] = None  # as if the extra were not installed\n"
        "from epg_cli.main import cli\n"
        "cli(sys.argv[1:], prog_name='epg')\n"
    )
    res = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=tmp_path)
    assert res.returncode == 1, res.stdout + res.stderr
    assert res.stderr.strip() == f"Error: epg {command} needs the '{extra}' extra: pip install 'epg[{extra}]'"


@pytest.mark.slow
def test_cli_fills_the_persistent_compilation_cache(tmp_path: Path) -> None:
    env = {**os.environ, "EPG_JAX_CACHE": str(tmp_path / "cache")}
    exe = Path(sys.executable).with_name("epg")
    cmd = [str(exe), "demo", "--curves-only", "-k", "200"]
    first = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert first.returncode == 0, first.stderr
    entries = list((tmp_path / "cache").iterdir())
    assert entries, "no compiled kernels were cached"
    second = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert second.returncode == 0 and second.stdout == first.stdout  # same seed, same table
    assert len(list((tmp_path / "cache").iterdir())) == len(entries)  # nothing recompiled


@pytest.mark.parametrize("package", ["epg_core", "epg_bridges.interventions", "epg_bridges.interventions.editors",
                                     "epg_bridges.models", "epg_bridges.baselines", "epg_bridges.study",
                                     "epg_bridges.report"])
def test_every_front_door_lists_its_names_once_and_each_resolves(package: str) -> None:
    """One door per package: ``__all__`` is a literal list (lazy names included), without repeats, and every name
    in it resolves (the lazy ones load their module on first use)."""
    import importlib

    module = importlib.import_module(package)
    names = list(module.__all__)
    assert len(names) == len(set(names)), sorted({n for n in names if names.count(n) > 1})
    assert set(getattr(module, "_LAZY", {})) <= set(names)
    for name in names:
        assert getattr(module, name) is not None, name
