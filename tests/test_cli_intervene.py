"""``epg intervene edit|synthetic|frames`` end to end: files written, provenance read back, one-line errors (exit 1)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner, Result
from PIL import Image

from epg_bridges.interventions import contact_sheet_image, steps_to_show
from epg_bridges.testing import tiny_random_pipeline
from epg_cli.main import cli
from epg_core import InterventionSequence, read_interventions


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random InstructPix2Pix pipeline saved as a local diffusers folder."""
    folder = tmp_path_factory.mktemp("models") / "tiny-ip2p"
    tiny_random_pipeline("instruct-pix2pix").save_pretrained(folder)
    return folder


@pytest.fixture()
def photo(tmp_path: Path) -> Path:
    rng = np.random.default_rng(2)
    path = tmp_path / "cat.png"
    Image.fromarray(rng.integers(30, 220, size=(36, 40, 3), dtype=np.uint8)).save(path)
    return path


def _run(*args: Any) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def _one_line_error(result: Result) -> str:
    """Assert a data error: exit code 1 and a single 'Error: ...' line on stderr; return that line."""
    assert result.exit_code == 1, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ") and "Traceback" not in result.output
    return lines[0]


@pytest.mark.parametrize("command", ["edit", "synthetic", "frames"])
def test_every_command_has_an_example(command: str) -> None:
    result = _run("intervene", command, "--help")
    assert result.exit_code == 0 and "Example:" in result.output


def test_synthetic_writes_the_file_and_the_contact_sheet(photo: Path, tmp_path: Path) -> None:
    out = tmp_path / "out" / "dark.h5"
    result = _run("intervene", "synthetic", photo, "--kind", "darken-background", "--n-steps", 6, "-o", out, "-q")
    assert result.exit_code == 0, result.output
    assert f"wrote {out}" in result.stdout and f"wrote {out.with_suffix('.png')}" in result.stdout
    assert "cat-darken-background" in result.stdout and "background darkening" in result.stdout
    seq = read_interventions(out)["cat-darken-background"]
    assert seq.images.shape == (6, 36, 40, 3)
    assert np.allclose(seq.values, np.linspace(0, 1, 6))
    assert np.array_equal(seq.images[0], np.asarray(Image.open(photo)))
    assert seq.attrs["includes_original"] is True and seq.attrs["image_file"] == str(photo.resolve())
    sheet = Image.open(out.with_suffix(".png"))
    assert sheet.width > 6 * 40 and sheet.height > 36  # six thumbnails side by side, captions below


def test_synthetic_patch_at_a_given_position(photo: Path, tmp_path: Path) -> None:
    patch = tmp_path / "patch.png"
    Image.fromarray(np.full((6, 8, 3), (255, 0, 255), np.uint8)).save(patch)
    out = tmp_path / "p.h5"
    result = _run("intervene", "synthetic", photo, "--kind", "patch", "--patch", patch, "--position", "3,4",
                  "--values", "0,0.5,1", "-o", out, "--name", "lesion", "-q")
    assert result.exit_code == 0, result.output
    seq = read_interventions(out)["lesion"]
    assert np.array_equal(seq.values, [0, 0.5, 1])
    assert np.all(seq.images[2, 4:10, 3:11] == (255, 0, 255))
    assert (seq.attrs["patch_x"], seq.attrs["patch_y"]) == (3, 4)
    assert _one_line_error(_run("intervene", "synthetic", photo, "--kind", "patch", "-q")).endswith("--patch PATH")


def test_frames_with_a_values_csv(tmp_path: Path) -> None:
    folder = tmp_path / "turntable"
    folder.mkdir()
    for i in range(11):
        Image.fromarray(np.full((8, 8, 3), 20 * i, np.uint8)).save(folder / f"deg_{i}.jpg")
    csv = tmp_path / "angles.csv"
    csv.write_text("angle\n" + "\n".join(str(10 * i) for i in range(11)))
    out = tmp_path / "t.h5"
    result = _run("intervene", "frames", folder, "--values", csv, "--unit", "deg", "-o", out, "-q")
    assert result.exit_code == 0, result.output
    seq = read_interventions(out)["turntable"]
    assert np.array_equal(seq.values, 10.0 * np.arange(11))
    assert abs(int(seq.images[10].mean()) - 200) <= 3  # deg_10 after deg_9 (jpeg: approximately)
    assert seq.attrs["property"] == "angle" and seq.attrs["unit"] == "deg"


def test_edit_writes_the_original_plus_one_image_per_scale(photo: Path, tiny_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "edit.h5"
    result = _run("intervene", "edit", photo, "-i", "make it a cat", "-m", tiny_model, "--scales", "1.5,4,9",
                  "--steps", 2, "--batch-size", 2, "--image-guidance", 1.5, "--seed", 3, "-o", out, "-q")
    assert result.exit_code == 0, result.output
    seq = read_interventions(out)["cat-instruct-pix2pix"]
    assert seq.images.shape == (4, 36, 40, 3)
    assert np.array_equal(seq.values, [1.0, 1.5, 4.0, 9.0])
    assert seq.attrs["guidance_scales"] == [1.5, 4.0, 9.0] and seq.attrs["includes_original"] is True
    assert seq.attrs["editor_model"] == str(tiny_model) and seq.attrs["seed"] == 3
    assert np.array_equal(seq.images[0], np.asarray(Image.open(photo)))  # 36x40 is already a multiple of 2
    assert out.with_suffix(".png").is_file()


def test_bad_inputs_give_one_line_errors_and_exit_code_1(photo: Path, tiny_model: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    assert "not an image file" in _one_line_error(_run("intervene", "synthetic", bad, "--kind", "hue", "-q"))
    missing = _run("intervene", "synthetic", tmp_path / "nope.png", "--kind", "hue")
    assert "image file not found" in _one_line_error(missing)
    (tmp_path / "empty").mkdir()
    assert "no image files" in _one_line_error(_run("intervene", "frames", tmp_path / "empty", "-q"))
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(3):
        Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(frames / f"f{i}.png")
    csv = tmp_path / "v.csv"
    csv.write_text("1\n2\n")
    msg = _one_line_error(_run("intervene", "frames", frames, "--values", csv, "-q"))
    assert "2 value rows" in msg and "3 frames" in msg
    msg = _one_line_error(_run("intervene", "edit", photo, "-i", "x", "-m", tiny_model, "--scales", "2,1.5", "-q"))
    assert "strictly increasing" in msg
    msg = _one_line_error(_run("intervene", "edit", photo, "-i", "x", "-m", tiny_model, "--scales", "1,2", "-q"))
    assert "> 1" in msg
    msg = _one_line_error(_run("intervene", "edit", photo, "-i", "x", "-m", tmp_path / "no-such-model", "-q"))
    assert "does not exist" in msg and "local diffusers pipeline folder" in msg
    assert "RGB" not in _one_line_error(_run("intervene", "synthetic", photo, "--kind", "hue", "--values", "a,b"))


def test_contact_sheet_shows_evenly_spaced_captioned_steps() -> None:
    assert steps_to_show(101, 8).tolist() == [0, 14, 29, 43, 57, 71, 86, 100]
    assert steps_to_show(3, 8).tolist() == [0, 1, 2]
    images = np.stack([np.full((10, 20, 3), 25 * i, np.uint8) for i in range(11)])
    seq = InterventionSequence(images=images, values=np.linspace(0, 1, 11), attrs={"unit": "deg"})
    sheet = np.asarray(contact_sheet_image(seq, n=4, thumb=20, columns=2))
    cell_w, cell_h = 40 + 8, 20 + 14 + 8  # thumbnail + padding, caption strip
    assert sheet.shape == (2 * cell_h, 2 * cell_w, 3)
    shown = [int(sheet[4 + r * cell_h + 10, 4 + c * cell_w + 20, 0]) for r in range(2) for c in range(2)]
    assert shown == [25 * i for i in steps_to_show(11, 4)]  # steps 0, 3, 7, 10 in reading order
    caption = sheet[4 + 20 + 1 : cell_h - 4, 4 : cell_w - 4]
    assert caption.min() < 128  # dark caption text on the white strip
