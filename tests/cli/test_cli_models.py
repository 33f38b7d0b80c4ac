"""``epg export|predict|sweep`` end to end: outputs, a killed sweep resumed, one-line errors (data 1, usage 2)."""

from __future__ import annotations

import logging
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
from click.testing import Result
from helpers import one_line_error, run_cli, write_image

from epg_bridges.testing import ExportDisagrees, TwoLayer, save_tiny, small_interventions, train_run
from epg_core import read_interventions, read_outputs

N_CKPT = 20  # checkpoints of the training run that train_run saves by default


def _run(*args: Any) -> Result:
    return run_cli(*args)


def _one_line_error(result: Result, *needles: str) -> str:
    """Exit code 1 (bad data) and a single 'Error: ...' line naming the problem; return that line."""
    return one_line_error(result, 1, *needles)


@pytest.fixture(scope="module")
def assets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("cli")
    for i, size in enumerate([(32, 32), (48, 40), (32, 32)]):
        write_image(folder / f"img_{i}.png", size, seed=3 + i, low=0, high=256)
    return {
        "ckpt": save_tiny(folder / "tiny.pt"),
        "images": folder,
        "iv": small_interventions(folder / "iv.h5"),
        "run": train_run(folder / "run")[0].parent,
    }


def _images(assets: dict[str, Path]) -> list[Path]:
    return sorted(assets["images"].glob("img_*.png"))


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
def test_bad_usage_exits_2_with_one_line(assets: dict[str, Path], tmp_path: Path) -> None:
    one_line_error(_run("export", assets["ckpt"], "--size", "abc"), 2, "--size")
    assert _run("predict", assets["ckpt"]).exit_code == 2  # no inputs
    one_line_error(_run("sweep", "x", "y", "--arch-kwargs", "[1]"), 2, "--arch-kwargs")
    one_line_error(_run("predict", assets["ckpt"], assets["iv"], "--kind", "cosine"), 2, "text-embedding")


def test_an_output_equal_to_an_input_is_refused_before_writing(assets: dict[str, Path], tmp_path: Path) -> None:
    ckpt = tmp_path / "c.pth"
    ckpt.write_bytes(assets["ckpt"].read_bytes())
    before = ckpt.read_bytes()
    one_line_error(_run("export", ckpt, "-o", ckpt), 2, "c.pth", "overwrite")
    one_line_error(_run("predict", ckpt, assets["iv"], "-o", assets["iv"]), 2, "iv.h5", "overwrite")
    one_line_error(_run("sweep", ckpt, assets["iv"], "-o", assets["iv"]), 2, "iv.h5")
    assert ckpt.read_bytes() == before


@pytest.mark.slow
def test_sweep_cli_several_files_other_options_and_restart(assets: dict[str, Path], tmp_path: Path) -> None:
    from epg_core import InterventionSequence, write_interventions

    rng = np.random.default_rng(4)
    extra = write_interventions(tmp_path / "more.h5", {"dark": InterventionSequence(
        rng.integers(0, 256, (3, 32, 32, 3), dtype=np.uint8), np.linspace(0, 1, 3), {"property": "darkness"})})
    out = tmp_path / "s.h5"
    glob = str(assets["run"] / "epoch_1*.pt")  # epoch_1, epoch_10 .. epoch_19
    assert _sweep_counts(_run("sweep", glob, assets["iv"], "-o", out, "--size", 32, "-q")) == \
        ["convmixer", "11", "11", "0"]
    both = _run("sweep", glob, assets["iv"], extra, "-o", out, "--size", 32, "-q")
    assert _sweep_counts(both) == ["convmixer", "11", "11", "0"] and " 3 " in both.stdout  # the new sequence
    assert {b.sequence for b in read_outputs(out)} == {"bright", "rotate", "dark"}
    one_line_error(_run("sweep", glob, assets["iv"], "-o", out, "--size", "32x24", "-q"), 1,
                   "size=\"32x32\"", "size=\"32x24\"", "--restart")
    one_line_error(_run("sweep", glob, assets["iv"], "-o", out, "--size", 32, "--kind", "logits", "-q"), 1,
                   "output_kind")
    one_line_error(_run("sweep", glob, assets["iv"], "-o", out, "--size", 32, "--kind", "logits", "--restart",
                        "-q"), 2, "'dark'")  # a restart of two sequences would leave 'dark' with other options
    again = _run("sweep", glob, assets["iv"], extra, "-o", out, "--size", 32, "--kind", "logits", "--restart", "-q")
    assert _sweep_counts(again) == ["convmixer", "11", "11", "0"]
    assert {b.output_kind for b in read_outputs(out)} == {"logits"}


# --------------------------------------------------------------------------- own models (issue 13)

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
HF_CONFIGS: dict[str, tuple[str, dict[str, Any]]] = {
    "resnet": ("ResNetConfig", {"embedding_size": 8, "hidden_sizes": [8, 16], "depths": [1, 1],
                                "layer_type": "basic"}),
    "vit": ("ViTConfig", {"image_size": 32, "patch_size": 8, "hidden_size": 16, "num_hidden_layers": 1,
                          "num_attention_heads": 2, "intermediate_size": 32}),
}


def _hf_classifier(family: str, seed: int) -> Any:
    """A tiny random transformers image classifier (3 labels) whose logits clearly depend on image and seed."""
    transformers = pytest.importorskip("transformers")
    name, kwargs = HF_CONFIGS[family]
    config = getattr(transformers, name)(num_labels=3, id2label={i: f"label{i}" for i in range(3)},
                                         label2id={f"label{i}": i for i in range(3)}, **kwargs)
    torch.manual_seed(seed)
    model = transformers.AutoModelForImageClassification.from_config(config)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)):
                torch.nn.init.kaiming_normal_(module.weight)
    return model.eval()


def _hf_softmax(model: Any, pixel_values: np.ndarray) -> np.ndarray:
    """The oracle: torch softmax of the transformers model's own logits."""
    with torch.no_grad():
        return torch.softmax(model(pixel_values=torch.from_numpy(pixel_values)).logits, dim=-1).numpy()


def _wide_interventions(path: Path) -> Path:
    """Two sequences of 48x64 frames (not square: the shortest-side resize keeps the aspect ratio)."""
    from epg_core import InterventionSequence, write_interventions

    rng = np.random.default_rng(7)
    return write_interventions(path, {name: InterventionSequence(
        rng.integers(0, 256, (4, 48, 64, 3), dtype=np.uint8), np.linspace(0, 1, 4), {"property": name})
        for name in ("fade", "tint")})


def _fresh_notices(monkeypatch: pytest.MonkeyPatch) -> None:
    """Notices are said once per process; start afresh so this test sees its own."""
    import epg_bridges.models._preprocessing as preprocessing

    monkeypatch.setattr(preprocessing, "_SAID", set())


@pytest.mark.slow
@pytest.mark.parametrize("family", ["resnet", "vit"])
def test_cli_sweep_over_three_hf_checkpoint_folders(family: str, tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """resnet folders carry a ConvNeXt-style image processor (shortest side, crop 0.875, ImageNet mean/std);
    vit folders carry none and run at their config's image_size (with a notice). No --size either way."""
    transformers = pytest.importorskip("transformers")
    _fresh_notices(monkeypatch)
    if family == "resnet":
        processor = transformers.ConvNextImageProcessor(size={"shortest_edge": 32}, crop_pct=0.875, resample=2,
                                                        image_mean=list(IMAGENET_MEAN), image_std=list(IMAGENET_STD))
    else:  # the oracle of the fallback: a plain 32x32 stretch with mean = std = 0.5
        processor = transformers.ViTImageProcessor(size={"height": 32, "width": 32}, resample=2)
    run = tmp_path / "run"
    for epoch in range(3):
        _hf_classifier(family, epoch).save_pretrained(run / f"checkpoint-{epoch}")
        if family == "resnet":
            processor.save_pretrained(run / f"checkpoint-{epoch}")
    iv, out = _wide_interventions(tmp_path / "iv.h5"), tmp_path / "out.h5"
    with caplog.at_level(logging.WARNING, logger="epg_bridges"):
        result = _run("sweep", run, iv, "--arch", "hf", "--model-name", family, "-o", out, "-q")
    assert result.exit_code == 0, result.output
    said = [r.getMessage() for r in caplog.records]
    fallback = [m for m in said if "no preprocessing stored with the model" in m]
    assert bool(fallback) == (family == "vit"), said
    frames = {name: seq.images for name, seq in read_interventions(iv).items()}
    for block in read_outputs(out):
        assert block.checkpoints == ["checkpoint-0", "checkpoint-1", "checkpoint-2"] and block.done.all()
        assert block.classes == ["label0", "label1", "label2"]  # the folders' id2label
        assert block.preprocessing["resize"] == ("shortest" if family == "resnet" else "stretch")
        x = processor(images=list(frames[block.sequence]), return_tensors="np")["pixel_values"]
        for m in range(3):
            expected = _hf_softmax(_hf_classifier(family, m), x)
            np.testing.assert_allclose(block.outputs[m], expected, atol=1e-4, rtol=0)
        assert np.abs(block.outputs[0] - block.outputs[2]).max() > 1e-3  # each checkpoint's own weights


@pytest.mark.slow
def test_cli_shortest_resize_center_crop_classes_file_and_contradiction(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    """--resize shortest --crop center equals transformers' own ConvNeXt preprocessing; --classes-file names the
    outputs; an option that contradicts what the folder carries is used, and the run says so in one line."""
    transformers = pytest.importorskip("transformers")
    _fresh_notices(monkeypatch)
    model = _hf_classifier("resnet", 5)
    folder = tmp_path / "resnet"
    model.save_pretrained(folder)
    iv = _wide_interventions(tmp_path / "iv.h5")
    (tmp_path / "classes.txt").write_text("tabby cat\n\nbeagle\n tench \n")
    out = tmp_path / "out.h5"
    result = _run("predict", folder, iv, "--arch", "hf", "-o", out, "--size", 32, "--resize", "shortest",
                  "--crop", "center", "--crop-pct", 0.875, "--mean", "0.485,0.456,0.406", "--std",
                  "0.229,0.224,0.225", "--classes-file", tmp_path / "classes.txt", "-q")
    assert result.exit_code == 0, result.output
    processor = transformers.ConvNextImageProcessor(size={"shortest_edge": 32}, crop_pct=0.875, resample=2,
                                                    image_mean=list(IMAGENET_MEAN), image_std=list(IMAGENET_STD))
    frames = read_interventions(iv)
    for block in read_outputs(out):
        assert block.classes == ["tabby cat", "beagle", "tench"]
        x = processor(images=list(frames[block.sequence].images), return_tensors="np")["pixel_values"]
        np.testing.assert_allclose(block.outputs[0], _hf_softmax(model, x), atol=1e-4, rtol=0)

    processor.save_pretrained(folder)  # now the folder carries it; --size 40 contradicts it
    with caplog.at_level(logging.WARNING, logger="epg_bridges"):
        result = _run("predict", folder, iv, "--arch", "hf", "-o", tmp_path / "big.h5", "--size", 40, "-q")
    assert result.exit_code == 0, result.output
    said = [r.getMessage() for r in caplog.records if "as asked" in r.getMessage()]
    assert said == [f"{folder}: the model was made for size 32x32; running it with 40x40 as asked"]
    block = read_outputs(tmp_path / "big.h5")[0]
    assert block.preprocessing["size"] == [40, 40] and block.preprocessing["crop_pct"] == 0.875
    onnx_path = tmp_path / "resnet.onnx"  # exported with what the folder carries: its spec runs it the same way
    assert _run("export", folder, "--arch", "hf", "-o", onnx_path, "-q").exit_code == 0
    assert _run("predict", onnx_path, iv, "-o", tmp_path / "onnx.h5", "-q").exit_code == 0
    for block in read_outputs(tmp_path / "onnx.h5"):
        assert block.classes == ["label0", "label1", "label2"] and block.preprocessing["resize"] == "shortest"
        x = processor(images=list(frames[block.sequence].images), return_tensors="np")["pixel_values"]
        np.testing.assert_allclose(block.outputs[0], _hf_softmax(model, x), atol=1e-4, rtol=0)
    one_line_error(_run("predict", folder, iv, "--arch", "hf", "-o", out, "--classes", "a,b", "--classes-file",
                        tmp_path / "classes.txt", "-q"), 2, "--classes-file")
    (tmp_path / "two.txt").write_text("a\nb\n")
    one_line_error(_run("predict", folder, iv, "--arch", "hf", "-o", out, "--classes-file", tmp_path / "two.txt",
                        "-q"), 2, "two.txt", "2 class names given", "3 outputs")
    one_line_error(_run("sweep", folder, iv, "-o", out, "-q"), 2, "Hugging Face model folder", "--arch hf")


@pytest.mark.slow
def test_cli_no_ema_takes_the_raw_weights(tmp_path: Path) -> None:
    """timm-style checkpoints (raw + EMA weights): the EMA ones by default, --no-ema the raw ones, in every
    checkpoint of a sweep."""
    from epg_bridges.models import Preprocessing, torch_outputs
    from epg_bridges.testing import tiny_model

    prep = Preprocessing(size=(32, 32))
    run = tmp_path / "run"
    run.mkdir()
    pairs = [(tiny_model(2 * i), tiny_model(2 * i + 1)) for i in range(2)]
    for i, (raw, ema) in enumerate(pairs):
        torch.save({"state_dict": raw.state_dict(), "state_dict_ema": ema.state_dict()}, run / f"e{i}.pth.tar")
    iv = small_interventions(tmp_path / "iv.h5")
    images = read_interventions(iv)["bright"].images
    for flag, pick in (((), 1), (("--no-ema",), 0)):
        out = tmp_path / f"out{len(flag)}.h5"
        result = _run("predict", run / "e0.pth.tar", iv, "-o", out, "--size", 32, "--kind", "logits", *flag, "-q")
        assert result.exit_code == 0, result.output
        np.testing.assert_allclose(read_outputs(out, "e0.pth", "bright")[0].outputs[0],
                                   torch_outputs(pairs[0][pick], prep.apply(images)), atol=1e-4, rtol=0)
        swept = tmp_path / f"swept{len(flag)}.h5"
        result = _run("sweep", run, iv, "-o", swept, "--size", 32, "--kind", "logits", *flag, "-q")
        assert result.exit_code == 0, result.output
        block = read_outputs(swept, "convmixer", "bright")[0]
        for m in range(2):
            np.testing.assert_allclose(block.outputs[m], torch_outputs(pairs[m][pick], prep.apply(images)),
                                       atol=1e-4, rtol=0)
    one_line_error(_run("sweep", run, iv, "-o", tmp_path / "swept1.h5", "--size", 32, "--kind", "logits", "-q"), 1,
                   "no_ema")  # a rerun with the other weights is refused, like any other changed option
