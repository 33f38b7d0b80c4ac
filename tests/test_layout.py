"""The layout promises of DESIGN.md: epg_core stays framework-free; the CLI keeps a compilation cache."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def test_epg_core_imports_no_torch_onnxruntime_or_diffusers() -> None:
    code = ("import sys, epg_core; bad = [m for m in ('torch', 'onnxruntime', 'diffusers', 'onnx', 'PIL', "
            "'matplotlib') if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


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
