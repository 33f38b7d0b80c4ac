"""``epg export|predict|sweep`` end to end: outputs, a killed sweep resumed, one-line errors (exit 1)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from click.testing import CliRunner, Result
from PIL import Image

from epg_bridges.testing import ExportDisagrees, TwoLayer, save_tiny, small_interventions, train_run
from epg_cli.main import cli
from epg_core import read_outputs

N_CKPT = 20  # checkpoints of the training run that train_run saves by default


def _run(*args: Any) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def _one_line_error(result: Result, *needles: str) -> str:
    """Exit code 1 and a single 'Error: ...' line naming the problem; return that line."""
    assert result.exit_code == 1, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ") and "Traceback" not in result.output
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def assets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("cli")
    rng = np.random.default_rng(3)
    images = []
    for i, size in enumerate([(32, 32), (48, 40), (32, 32)]):
        path = folder / f"img_{i}.png"
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(path)
        images.append(path)
    return {
        "ckpt": save_tiny(folder / "tiny.pt"),
        "images": folder,
        "iv": small_interventions(folder / "iv.h5"),
        "run": train_run(folder / "run")[0].parent,
    }


def _images(assets: dict[str, Path]) -> list[Path]:
    return sorted(assets["images"].glob("img_*.png"))


@pytest.mark.parametrize("command", ["export", "predict", "sweep"])
def test_every_command_has_an_example(command: str) -> None:
    result = _run(command, "--help")
    assert result.exit_code == 0 and "Example:" in result.output and "epg " + command in result.output


def test_export_then_predict_on_image_files(assets: dict[str, Path], tmp_path: Path) -> None:
    onnx_path = tmp_path / "tiny.onnx"
    result = _run("export", assets["ckpt"], "-o", onnx_path, "--size", 32, "--classes", "a,b,c")
    assert result.exit_code == 0, result.output
    assert str(onnx_path) in result.stdout and f"{onnx_path}.json" in result.stdout
    assert "max |ort - torch|" in result.stdout and "[batch, 3, 32, 32]" in result.stdout
    assert "CPUExecutionProvider" in result.stdout or "CUDAExecutionProvider" in result.stdout

    out = tmp_path / "outputs.h5"
    result = _run("predict", onnx_path, *_images(assets), "-o", out, "-q")
    assert result.exit_code == 0, result.output
    assert str(out) in result.stdout and "images" in result.stdout and "(a,b,c)" in result.stdout
    (block,) = read_outputs(out)
    assert (block.model, block.sequence, block.classes) == ("tiny", "images", ["a", "b", "c"])
    assert block.outputs.shape == (1, 3, 3) and block.done.all()
    np.testing.assert_allclose(block.outputs.sum(-1), 1.0, atol=1e-6)  # softmax rows
    assert block.preprocessing["size"] == [32, 32] and block.attrs["source"] == "frames"

    direct = tmp_path / "direct.h5"  # the checkpoint itself, exported in memory
    result = _run("predict", assets["ckpt"], *_images(assets), "-o", direct, "--size", 32, "--kind", "logits", "-q")
    assert result.exit_code == 0, result.output
    logits = read_outputs(direct)[0].outputs[0]
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    np.testing.assert_allclose(probs, block.outputs[0], atol=1e-5)


def test_predict_interventions_with_cosine(assets: dict[str, Path], tmp_path: Path) -> None:
    np.save(tmp_path / "text.npy", np.random.default_rng(0).normal(size=(2, 4, 3)))
    out = tmp_path / "cos.h5"
    result = _run("predict", assets["ckpt"], assets["iv"], "-o", out, "--size", 32, "--kind", "cosine",
                  "--text-embeddings", tmp_path / "text.npy", "--classes", "cat,dog", "--sequence", "rotate", "-q")
    assert result.exit_code == 0, result.output
    (block,) = read_outputs(out)
    assert block.sequence == "rotate" and block.output_kind == "cosine" and block.classes == ["cat", "dog"]
    assert block.outputs.shape == (1, 4, 2) and np.all(np.abs(block.outputs) <= 1 + 1e-6)
    np.testing.assert_array_equal(block.values, [0.0, 10, 20, 45])


def test_sweep_cli_reports_counts(assets: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "sweep.h5"
    result = _run("sweep", str(assets["run"] / "epoch_*.pt"), assets["iv"], "-o", out, "--size", 32, "-q")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0] == str(out)
    assert result.stdout.splitlines()[1].split()[:4] == ["model", "checkpoints", "computed", "skipped"]
    assert _sweep_counts(result) == ["convmixer", str(N_CKPT), str(N_CKPT), "0"]
    again = _run("sweep", str(assets["run"] / "epoch_*.pt"), assets["iv"], "-o", out, "--size", 32, "-q")
    assert _sweep_counts(again) == ["convmixer", str(N_CKPT), "0", str(N_CKPT)]


def _sweep_counts(result: Result) -> list[str]:
    """model, checkpoints, computed, skipped from the sweep's result table."""
    (row,) = [line for line in result.stdout.splitlines() if line.startswith("convmixer ")]
    return row.split()[:4]


# --------------------------------------------------------------------------- killed sweep


def _done_count(path: Path) -> int:
    try:
        return int(read_outputs(path, "convmixer", "bright")[0].done.sum())
    except ValueError:  # not written yet
        return -1


@pytest.mark.slow
def test_killed_sweep_resumes_to_an_identical_file(assets: dict[str, Path], tmp_path: Path) -> None:
    """SIGKILL a CLI sweep after 10 of 20 checkpoints, rerun it: only 10 are computed, same file as a full run."""
    run = tmp_path / "run"
    run.mkdir()
    for path in assets["run"].glob("epoch_*.pt"):
        (run / path.name).write_bytes(path.read_bytes())
    held_back = (run / "epoch_11.pt").read_bytes()
    (run / "epoch_11.pt").unlink()
    os.mkfifo(run / "epoch_11.pt")  # opening it blocks: the sweep stops right after epoch_10 is stored
    out = tmp_path / "killed.h5"
    args = ["sweep", str(run / "epoch_*.pt"), str(assets["iv"]), "-o", str(out), "--size", "32", "-q"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    proc = subprocess.Popen([sys.executable, "-c", "from epg_cli.main import cli; cli(prog_name='epg')", *args],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 150
        while _done_count(out) < 10 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.3)
        assert proc.poll() is None, proc.communicate()[1].decode()[-2000:]
        assert _done_count(out) == 10
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]
    block = read_outputs(out, "convmixer", "bright")[0]
    assert block.done.tolist() == [True] * 10 + [False] * 10

    (run / "epoch_11.pt").unlink()
    (run / "epoch_11.pt").write_bytes(held_back)
    resumed = _run(*args)
    assert resumed.exit_code == 0, resumed.output
    assert _sweep_counts(resumed) == ["convmixer", "20", "10", "10"]  # only the 10 missing ones computed

    full = tmp_path / "full.h5"
    assert _run(*args[:4], str(full), *args[5:]).exit_code == 0
    for a, b in zip(read_outputs(out), read_outputs(full), strict=True):
        np.testing.assert_array_equal(a.outputs, b.outputs)
        assert (a.done.all(), a.checkpoints, a.attrs, a.preprocessing) == (True, b.checkpoints, b.attrs,
                                                                            b.preprocessing)
    assert out.read_bytes() == full.read_bytes()  # byte for byte the same file


# --------------------------------------------------------------------------- one-line errors, nothing lost


@pytest.fixture()
def existing(assets: dict[str, Path], tmp_path: Path) -> dict[str, Path]:
    """An exported model and an outputs file that failing commands must leave untouched."""
    onnx_path = tmp_path / "model.onnx"
    assert _run("export", assets["ckpt"], "-o", onnx_path, "--size", 32).exit_code == 0
    out = tmp_path / "outputs.h5"
    assert _run("predict", onnx_path, *_images(assets), "-o", out, "-q").exit_code == 0
    return {"onnx": onnx_path, "spec": Path(f"{onnx_path}.json"), "out": out}


def _snapshot(files: dict[str, Path]) -> dict[str, bytes]:
    return {k: p.read_bytes() for k, p in files.items()}


def test_wrong_architecture_cli(assets: dict[str, Path], existing: dict[str, Path], tmp_path: Path) -> None:
    before = _snapshot(existing)
    torch.save(TwoLayer().state_dict(), tmp_path / "mlp.pt")
    _one_line_error(_run("predict", tmp_path / "mlp.pt", *_images(assets), "-o", existing["out"], "--size", 32),
                    "mlp.pt", "wrong architecture")
    _one_line_error(_run("export", tmp_path / "mlp.pt", "-o", existing["onnx"]), "wrong architecture")
    assert _snapshot(existing) == before


def test_missing_tensor_cli(assets: dict[str, Path], existing: dict[str, Path], tmp_path: Path) -> None:
    before = _snapshot(existing)
    state = torch.load(assets["ckpt"], weights_only=True)
    del state["state_dict"]["6.bias"]
    torch.save(state, tmp_path / "missing.pt")
    _one_line_error(_run("export", tmp_path / "missing.pt", "-o", existing["onnx"], "--size", 32),
                    "missing.pt", "missing tensor '6.bias'")
    assert _snapshot(existing) == before


def test_corrupt_checkpoint_cli_keeps_finished_sweep_work(assets: dict[str, Path], tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    for step in range(1, 6):
        (run / f"epoch_{step}.pt").write_bytes((assets["run"] / f"epoch_{step}.pt").read_bytes())
    (run / "epoch_4.pt").write_bytes(b"PK\x03\x04 truncated zip")
    out = tmp_path / "sweep.h5"
    _one_line_error(_run("sweep", str(run / "epoch_*.pt"), assets["iv"], "-o", out, "--size", 32, "-q"),
                    "epoch_4.pt", "corrupt or unreadable checkpoint")
    assert read_outputs(out, "convmixer", "rotate")[0].done.tolist() == [True, True, True, False, False]


def test_non_image_file_cli(assets: dict[str, Path], existing: dict[str, Path], tmp_path: Path) -> None:
    before = _snapshot(existing)
    (tmp_path / "notes.png").write_text("just text\n")
    _one_line_error(_run("predict", existing["onnx"], _images(assets)[0], tmp_path / "notes.png",
                         "-o", existing["out"], "-q"), "notes.png", "not an image file")
    assert _snapshot(existing) == before


def test_onnx_disagreeing_with_torch_cli(assets: dict[str, Path], existing: dict[str, Path], tmp_path: Path) -> None:
    before = _snapshot(existing)
    torch.save(ExportDisagrees().state_dict(), tmp_path / "odd.pt")
    arch = "epg_bridges.testing:make_disagreeing"
    _one_line_error(_run("export", tmp_path / "odd.pt", "--arch", arch, "-o", existing["onnx"], "--size", 32),
                    "ONNX Runtime disagrees with torch eager")
    _one_line_error(_run("predict", tmp_path / "odd.pt", *_images(assets), "--arch", arch, "-o", existing["out"],
                         "--size", 32, "-q"), "disagrees with torch")
    _one_line_error(_run("sweep", tmp_path / "odd.pt", assets["iv"], "--arch", arch, "-o", existing["out"],
                         "--size", 32, "-q"), "disagrees with torch")
    assert _snapshot(existing) == before


def test_bad_usage_exits_2(assets: dict[str, Path]) -> None:
    assert _run("export", assets["ckpt"], "--size", "abc").exit_code == 2
    assert _run("predict", assets["ckpt"]).exit_code == 2  # no inputs
    assert _run("sweep", "x", "y", "--arch-kwargs", "[1]").exit_code == 2
