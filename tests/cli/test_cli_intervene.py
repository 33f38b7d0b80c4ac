"""``epg intervene synthetic|edit|frames|list`` end to end: files written, provenance read back, one-line errors.

Several images per command, ``--append``, names refused before anything is written (inputs and the existing file
unchanged byte for byte). Bad data (unreadable image, empty folder, CSV that does not fit) exits 1; a bad option
value or a refused name or path exits 2.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from helpers import one_line_error, run_cli, write_image
from PIL import Image

from epg_bridges.interventions import contact_sheet_image, darken_background, hue_shift, steps_to_show
from epg_bridges.testing import tiny_random_pipeline
from epg_core import InterventionSequence, list_sequences, read_interventions


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random InstructPix2Pix pipeline saved as a local diffusers folder."""
    folder = tmp_path_factory.mktemp("models") / "tiny-ip2p"
    tiny_random_pipeline("instruct-pix2pix").save_pretrained(folder)
    return folder


@pytest.fixture()
def photo(tmp_path: Path) -> Path:
    return write_image(tmp_path / "cat.png")


def test_synthetic_writes_the_file_and_the_contact_sheet(photo: Path, tmp_path: Path) -> None:
    out = tmp_path / "out" / "dark.h5"
    result = run_cli("intervene", "synthetic", photo, "--kind", "darken-background", "--n-steps", 6, "-o", out)
    assert result.exit_code == 0, result.output
    sheet_path = out.with_name("dark.cat-darken-background.png")  # <file stem>.<sequence>.png
    assert f"wrote {out}" in result.stdout and f"wrote {sheet_path}" in result.stdout
    assert "cat-darken-background" in result.stdout and "0 .. 1 fraction" in result.stdout
    seq = read_interventions(out)["cat-darken-background"]
    assert seq.images.shape == (6, 36, 40, 3)
    assert np.allclose(seq.values, np.linspace(0, 1, 6))
    assert np.array_equal(seq.images[0], np.asarray(Image.open(photo)))
    assert seq.attrs["includes_original"] is True and seq.attrs["image_file"] == str(photo.resolve())
    assert (seq.attrs["property"], seq.attrs["image"]) == ("darken-background", "cat")
    assert seq.attrs["description"] == "background darkening"
    sheet = Image.open(sheet_path)
    assert sheet.width > 6 * 40 and sheet.height > 36  # six thumbnails side by side, captions below


def test_synthetic_patch_at_a_given_position(photo: Path, tmp_path: Path) -> None:
    patch = tmp_path / "patch.png"
    Image.fromarray(np.full((6, 8, 3), (255, 0, 255), np.uint8)).save(patch)
    out = tmp_path / "p.h5"
    result = run_cli("intervene", "synthetic", photo, "--kind", "patch", "--patch", patch, "--position", "3,4",
                  "--values", "0,0.5,1", "-o", out, "--name", "lesion", "-q")
    assert result.exit_code == 0, result.output
    seq = read_interventions(out)["lesion"]
    assert np.array_equal(seq.values, [0, 0.5, 1])
    assert np.all(seq.images[2, 4:10, 3:11] == (255, 0, 255))
    assert (seq.attrs["patch_x"], seq.attrs["patch_y"]) == (3, 4)
    line = one_line_error(run_cli("intervene", "synthetic", photo, "--kind", "patch", "-q"), 2)
    assert "kind 'patch' needs --patch PATH" in line


def test_frames_with_a_values_csv(tmp_path: Path) -> None:
    folder = tmp_path / "turntable"
    folder.mkdir()
    for i in range(11):
        Image.fromarray(np.full((8, 8, 3), 20 * i, np.uint8)).save(folder / f"deg_{i}.jpg")
    csv = tmp_path / "angles.csv"
    csv.write_text("angle\n" + "\n".join(str(10 * i) for i in range(11)))
    out = tmp_path / "t.h5"
    result = run_cli("intervene", "frames", folder, "--values", csv, "--unit", "deg", "-o", out, "-q")
    assert result.exit_code == 0, result.output
    seq = read_interventions(out)["turntable-angle"]  # <folder>-<property>, the property from the CSV header
    assert np.array_equal(seq.values, 10.0 * np.arange(11))
    assert abs(int(seq.images[10].mean()) - 200) <= 3  # deg_10 after deg_9 (jpeg: approximately)
    assert seq.attrs["property"] == "angle" and seq.attrs["unit"] == "deg" and seq.attrs["image"] == "turntable"


def test_edit_writes_the_original_plus_one_image_per_scale(photo: Path, tiny_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "edit.h5"
    result = run_cli("intervene", "edit", photo, "-i", "make it a cat", "-m", tiny_model, "--scales", "1.5,4,9",
                  "--steps", 2, "--batch-size", 2, "--image-guidance", 1.5, "--seed", 3, "-o", out, "-q")
    assert result.exit_code == 0, result.output
    seq = read_interventions(out)["cat-instruct-pix2pix"]
    assert (seq.attrs["property"], seq.attrs["image"]) == ("instruct-pix2pix", "cat")
    assert seq.attrs["description"] == "text guidance scale"
    assert seq.images.shape == (4, 36, 40, 3)
    assert np.array_equal(seq.values, [1.0, 1.5, 4.0, 9.0])
    assert seq.attrs["guidance_scales"] == [1.5, 4.0, 9.0] and seq.attrs["includes_original"] is True
    assert seq.attrs["editor_model"] == str(tiny_model) and seq.attrs["seed"] == 3
    assert np.array_equal(seq.images[0], np.asarray(Image.open(photo)))  # 36x40 is already a multiple of 2
    assert out.with_name("edit.cat-instruct-pix2pix.png").is_file()


def test_edit_makes_one_sequence_per_image_each_as_if_alone(photo: Path, tiny_model: Path, tmp_path: Path) -> None:
    """Several images share one pipeline, but each sequence equals the one its image gets on its own."""
    dog = write_image(tmp_path / "dog.png", seed=5)
    edit = ["intervene", "edit", "-i", "make it a cat", "-m", tiny_model, "--scales", "2,5", "--steps", 2,
            "--image-guidance", 1.5, "--seed", 3, "--property", "cat-ness", "-q"]
    both, alone = tmp_path / "both.h5", tmp_path / "alone.h5"
    assert run_cli(*edit, photo, dog, "-o", both).exit_code == 0
    assert run_cli(*edit, dog, "-o", alone).exit_code == 0
    seqs = read_interventions(both)
    assert list(seqs) == ["cat-cat-ness", "dog-cat-ness"]
    assert [s.attrs["image"] for s in seqs.values()] == ["cat", "dog"]
    assert {s.attrs["property"] for s in seqs.values()} == {"cat-ness"}
    np.testing.assert_array_equal(seqs["dog-cat-ness"].images, read_interventions(alone)["dog-cat-ness"].images)
    assert not np.array_equal(seqs["cat-cat-ness"].images[1:], seqs["dog-cat-ness"].images[1:])


def test_bad_data_exits_1_with_one_line(photo: Path, tiny_model: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    one_line_error(run_cli("intervene", "synthetic", bad, "--kind", "hue", "-q"), 1, "bad.jpg", "not an image file")
    one_line_error(run_cli("intervene", "synthetic", tmp_path / "nope.png", "--kind", "hue"), 2,
                   "image file not found")
    (tmp_path / "empty").mkdir()
    one_line_error(run_cli("intervene", "frames", tmp_path / "empty", "-q"), 1, "no image files")
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(3):
        Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(frames / f"f{i}.png")
    csv = tmp_path / "v.csv"
    csv.write_text("1\n2\n")
    one_line_error(run_cli("intervene", "frames", frames, "--values", csv, "-q"), 1, "2 value rows", "3 frames")
    one_line_error(run_cli("intervene", "edit", photo, "-i", "x", "-m", tmp_path / "no-such-model", "-q"), 1,
                   "does not exist", "local diffusers pipeline folder")


def test_bad_option_values_exit_2_with_one_line(photo: Path, tiny_model: Path, tmp_path: Path) -> None:
    edit = ["intervene", "edit", photo, "-i", "x", "-m", tiny_model, "-q"]
    one_line_error(run_cli(*edit, "--scales", "2,1.5"), 2, "--scales", "strictly increasing")
    one_line_error(run_cli(*edit, "--scales", "1,2"), 2, "> 1")  # checked by the library (UsageError)
    one_line_error(run_cli(*edit, "--method", "ledits++", "--scales", "0,1"), 2, "> 0")
    one_line_error(run_cli(*edit, "--max-scale", "0.5"), 2, "must exceed 1")
    one_line_error(run_cli(*edit, "--device", "gpu-please"), 2, "unknown torch device")
    line = one_line_error(run_cli("intervene", "synthetic", photo, "--kind", "hue", "--values", "a,b"), 2, "--values")
    assert "RGB" not in line
    one_line_error(run_cli("intervene", "synthetic", photo, "--kind", "hue", "--size", "40x0"), 2, "--size")
    one_line_error(run_cli("intervene", "synthetic", photo, "--kind", "patch", "--patch", photo, "--position",
                           "500,0", "-q"), 2, "outside")
    assert not list(tmp_path.glob("*.h5"))  # refused before anything was written


def test_outputs_never_overwrite_inputs(photo: Path, tmp_path: Path) -> None:
    before = photo.read_bytes()
    # -o s.h5 with the sequence named "cat" puts its contact sheet on s.cat.png, the input itself
    sheet_input = write_image(tmp_path / "s.cat.png")
    one_line_error(run_cli("intervene", "synthetic", "hue", sheet_input, "--name", "cat", "-o", tmp_path / "s.h5"),
                   2, "s.cat.png", "contact sheet")
    one_line_error(run_cli("intervene", "synthetic", photo, "--kind", "hue", "-o", photo), 2, "cat.png")
    assert photo.read_bytes() == before and not list(tmp_path.glob("*.h5"))


def test_width_comes_first_in_size(photo: Path, tmp_path: Path) -> None:
    out = tmp_path / "wide.h5"
    assert run_cli("intervene", "synthetic", photo, "--kind", "hue", "--n-steps", 2, "--size", "30x20", "-o", out,
                   "-q").exit_code == 0
    assert read_interventions(out)["cat-hue"].images.shape == (2, 20, 30, 3)  # 30 wide, 20 high


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


# --------------------------------------------------------------------------- studies: several images, --append


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def test_several_images_make_one_sequence_each(tmp_path: Path) -> None:
    """``synthetic KIND a b c``: one sequence per image, equal to the edit applied image by image (the oracle)."""
    images = [write_image(tmp_path / "a.png", seed=1), write_image(tmp_path / "b.png", seed=2),
              write_image(tmp_path / "other" / "a.png", seed=3)]  # the same stem twice
    out = tmp_path / "study.h5"
    result = run_cli("intervene", "synthetic", "darken-background", *images, "--n-steps", 4, "--sigma", 0.4,
                     "-o", out)
    assert result.exit_code == 0, result.output
    seqs = read_interventions(out)
    assert list(seqs) == ["a-darken-background", "b-darken-background", "a-2-darken-background"]
    assert [s.attrs["image"] for s in seqs.values()] == ["a", "b", "a-2"]  # repeated stems: -2, -3... in order
    for (name, seq), path in zip(seqs.items(), images, strict=True):
        img = _pixels(path)
        assert seq.attrs["property"] == "darken-background" and seq.attrs["image_file"] == str(path.resolve())
        expected = np.stack([darken_background(img, v, sigma=0.4) for v in np.linspace(0, 1, 4)])
        np.testing.assert_array_equal(seq.images, expected)
        assert np.array_equal(seq.images[0], img) and seq.attrs["includes_original"] is True
        assert out.with_name(f"study.{name}.png").is_file()  # one contact sheet per sequence
        assert f"wrote {out.with_name(f'study.{name}.png')}" in result.stdout


def test_several_images_default_file_is_named_after_the_property(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                                 ) -> None:
    monkeypatch.chdir(tmp_path)
    a, b = write_image(tmp_path / "a.png"), write_image(tmp_path / "b.png", seed=4)
    assert run_cli("intervene", "synthetic", "hue", a, b, "--n-steps", 2, "--property", "colour", "-q").exit_code == 0
    assert list_sequences(tmp_path / "epg-out" / "colour.h5") == ["a-colour", "b-colour"]
    assert run_cli("intervene", "synthetic", "hue", a, "--n-steps", 2, "-q").exit_code == 0
    assert list_sequences(tmp_path / "epg-out" / "a-hue.h5") == ["a-hue"]  # one input: named after the sequence


def test_append_adds_sequences_and_keeps_the_others_bit_for_bit(tmp_path: Path) -> None:
    a, b = write_image(tmp_path / "a.png", seed=1), write_image(tmp_path / "b.png", seed=2)
    out = tmp_path / "study.h5"
    assert run_cli("intervene", "synthetic", "darken-background", a, b, "--n-steps", 3, "-o", out, "-q").exit_code == 0
    first = read_interventions(out)
    result = run_cli("intervene", "synthetic", "hue", a, b, "--values", "0,30,60", "--property", "colour",
                     "-o", out, "--append", "-q")
    assert result.exit_code == 0, result.output
    seqs = read_interventions(out)
    assert list(seqs) == ["a-darken-background", "b-darken-background", "a-colour", "b-colour"]
    for name, seq in first.items():
        np.testing.assert_array_equal(seqs[name].images, seq.images)
        assert seqs[name].attrs == seq.attrs
    hue = seqs["b-colour"]
    assert (hue.attrs["property"], hue.attrs["image"], hue.attrs["edit"]) == ("colour", "b", "hue")
    np.testing.assert_array_equal(hue.images[2], hue_shift(_pixels(b), 60.0))
    # --append also creates a file that does not exist yet
    new = tmp_path / "new.h5"
    assert run_cli("intervene", "synthetic", "hue", a, "--n-steps", 2, "-o", new, "--append", "-q").exit_code == 0
    assert list_sequences(new) == ["a-hue"]


def test_refused_commands_change_nothing(tmp_path: Path) -> None:
    """Every refusal exits 2 with one line before anything is written: the file, the sheets and inputs keep their
    bytes, and no contact sheet appears."""
    a, b = write_image(tmp_path / "a.png", seed=1), write_image(tmp_path / "b.png", seed=2)
    out = tmp_path / "study.h5"
    assert run_cli("intervene", "synthetic", "hue", a, b, "--n-steps", 2, "-o", out, "-q").exit_code == 0
    files = sorted(p for p in tmp_path.iterdir() if p.is_file())
    before = {p: _sha256(p) for p in files}
    synthetic = ["intervene", "synthetic", "hue", "--n-steps", 2, "-o", out, "-q"]
    one_line_error(run_cli(*synthetic, a), 2, "study.h5", "exists", "--append")  # never replaced silently
    one_line_error(run_cli(*synthetic, b, a, "--append", "--n-steps", 3), 2, "study.h5", "'b-hue'", "never replaces")
    one_line_error(run_cli(*synthetic, a, "--name", "a-hue", "--append", "--n-steps", 3), 2, "'a-hue'")
    one_line_error(run_cli(*synthetic, a, b, "--name", "x", "--append"), 2, "--name", "2 inputs")
    one_line_error(run_cli(*synthetic, a, a, "--property", "p", "--append"), 2, "a.png", "given twice")
    one_line_error(run_cli(*synthetic, a, "--property", "bad name", "--append"), 2, "--property", "'bad name'")
    one_line_error(run_cli(*synthetic, a, "--name", "../x", "--append"), 2, "--name")
    assert sorted(p for p in tmp_path.iterdir() if p.is_file()) == files
    assert {p: _sha256(p) for p in files} == before
    # the same command again (with --append) keeps what is stored: nothing computed, nothing written
    assert run_cli(*synthetic, a, b, "--append").exit_code == 0
    assert {p: _sha256(p) for p in files} == before


@pytest.mark.parametrize("stop_in", ["epg_bridges.interventions.write_contact_sheet", "epg_core.write_interventions"])
def test_interrupted_while_writing_leaves_no_file_and_the_rerun_completes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stop_in: str
) -> None:
    """The interventions file is renamed into place last: a run stopped while writing its contact sheets or the
    file leaves no file, so the same command runs again and gives what an uninterrupted run gives."""

    a = write_image(tmp_path / "a.png", seed=1)
    args = ["intervene", "synthetic", "hue", a, "--n-steps", 3, "-q"]
    assert run_cli(*args, "-o", tmp_path / "ref.h5").exit_code == 0

    def stopped(*_: object, **__: object) -> None:
        raise KeyboardInterrupt

    out = tmp_path / "s.h5"
    with monkeypatch.context() as m:
        m.setattr(stop_in, stopped)
        assert run_cli(*args, "-o", out).exit_code == 130
    assert not out.exists()
    assert run_cli(*args, "-o", out).exit_code == 0
    np.testing.assert_array_equal(read_interventions(out)["a-hue"].images,
                                  read_interventions(tmp_path / "ref.h5")["a-hue"].images)
    assert _sha256(tmp_path / "s.a-hue.png") == _sha256(tmp_path / "ref.a-hue.png")


def test_refused_when_a_contact_sheet_would_overwrite_an_input(tmp_path: Path) -> None:
    a = write_image(tmp_path / "a.png")
    clash = write_image(tmp_path / "s.a-hue.png", seed=7)  # the contact sheet of sequence a-hue of s.h5
    before = _sha256(clash)
    one_line_error(run_cli("intervene", "synthetic", "hue", a, clash, "-o", tmp_path / "s.h5", "-q"), 2,
                   "s.a-hue.png", "contact sheet of a-hue")
    assert _sha256(clash) == before and not (tmp_path / "s.h5").exists()


def test_list_shows_every_sequence(tmp_path: Path) -> None:
    a, b = write_image(tmp_path / "a.png", seed=1), write_image(tmp_path / "b.png", seed=2)
    out = tmp_path / "study.h5"
    assert run_cli("intervene", "synthetic", "brightness", a, b, "--n-steps", 5, "-o", out, "-q").exit_code == 0
    assert run_cli("intervene", "synthetic", "rotation", a, "--start", 10, "--stop", 40, "--n-steps", 4, "-o", out,
                   "--append", "-q").exit_code == 0
    result = run_cli("intervene", "list", out)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["sequence", "property", "image", "kind", "n_steps", "values", "size",
                                "includes_original"]
    rows = [line.split() for line in lines[2:]]
    assert rows == [
        ["a-brightness", "brightness", "a", "brightness", "5", "0", "..", "-1", "fraction", "40x36", "yes"],
        ["b-brightness", "brightness", "b", "brightness", "5", "0", "..", "-1", "fraction", "40x36", "yes"],
        ["a-rotation", "rotation", "a", "rotation", "4", "10", "..", "40", "deg", "40x36", "no"],
    ]
    one_line_error(run_cli("intervene", "list", tmp_path / "missing.h5"), 2, "missing.h5")
    one_line_error(run_cli("intervene", "list", a), 1, "a.png")


def test_kind_as_option_or_first_argument(photo: Path, tmp_path: Path) -> None:
    one, two = tmp_path / "one.h5", tmp_path / "two.h5"
    assert run_cli("intervene", "synthetic", "hue", photo, "--n-steps", 3, "-o", one, "-q").exit_code == 0
    assert run_cli("intervene", "synthetic", photo, "--kind", "hue", "--n-steps", 3, "-o", two, "-q").exit_code == 0
    np.testing.assert_array_equal(read_interventions(one)["cat-hue"].images, read_interventions(two)["cat-hue"].images)
    one_line_error(run_cli("intervene", "synthetic", photo, "-q"), 2, "not a kind", "hue")
    one_line_error(run_cli("intervene", "synthetic", "hue", "-q"), 2, "no IMAGE")
    one_line_error(run_cli("intervene", "synthetic", "hue", photo, "--start", 0.5, "--stop", 0.5, "-q"), 2,
                   "--start/--stop", "differ")


def test_frames_of_several_folders(tmp_path: Path) -> None:
    for obj, shade in (("car", 10), ("bus", 90)):
        (tmp_path / obj).mkdir()
        for i in range(3):
            Image.fromarray(np.full((6, 6, 3), shade + i, np.uint8)).save(tmp_path / obj / f"f{i}.png")
    out = tmp_path / "turn.h5"
    result = run_cli("intervene", "frames", tmp_path / "car", tmp_path / "bus", "--property", "angle", "-o", out, "-q")
    assert result.exit_code == 0, result.output
    seqs = read_interventions(out)
    assert list(seqs) == ["car-angle", "bus-angle"]
    assert [s.attrs["image"] for s in seqs.values()] == ["car", "bus"]
    assert int(seqs["bus-angle"].images[2, 0, 0, 0]) == 92 and seqs["car-angle"].attrs["includes_original"] is False


def test_killed_edit_resumes_where_it_stopped(tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                              ) -> None:
    """Each finished sequence is stored at once: the same command after a kill edits only what is missing."""
    import epg_bridges.interventions._editing as editing

    a, b = write_image(tmp_path / "a.png", seed=1), write_image(tmp_path / "b.png", seed=2)
    edit = ["intervene", "edit", a, b, "-i", "make it a cat", "-m", tiny_model, "--scales", "2,5", "--steps", 2,
            "--seed", 3, "-q"]
    assert run_cli(*edit, "-o", tmp_path / "whole.h5").exit_code == 0
    real = editing.edit_with_spec
    calls: list[int] = []

    def stop_at_second(*args: object, **kwargs: object) -> object:
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)  # type: ignore[arg-type]

    out = tmp_path / "killed.h5"
    with monkeypatch.context() as m:
        m.setattr(editing, "edit_with_spec", stop_at_second)
        assert run_cli(*edit, "-o", out).exit_code == 130
    assert list_sequences(out) == ["a-instruct-pix2pix"]  # stored before the kill
    assert out.with_name("killed.a-instruct-pix2pix.png").is_file()
    calls.clear()
    with monkeypatch.context() as m:
        m.setattr(editing, "edit_with_spec", lambda *a, **k: (calls.append(1), real(*a, **k))[1])
        assert run_cli(*edit, "-o", out).exit_code == 0  # the same command, no --append: resumed
        assert len(calls) == 1
        assert run_cli(*edit, "-o", out).exit_code == 0 and len(calls) == 1  # finished: nothing edited
    whole, resumed = read_interventions(tmp_path / "whole.h5"), read_interventions(out)
    assert list(resumed) == list(whole)
    for name, seq in whole.items():
        np.testing.assert_array_equal(resumed[name].images, seq.images)
    one_line_error(run_cli(*edit[:-1], "--seed", 4, "-q", "-o", out), 2, "exists", "--append")  # other options


def test_mgie_takes_each_images_own_embeddings(tiny_model: Path, tmp_path: Path) -> None:
    """``--embeddings emb/{image}.npz``: every image is edited with its own MGIE embeddings; each sequence equals
    the stock InstructPix2Pix pipeline called with those embeddings, once per scale."""
    import torch

    from epg_bridges.testing import stock_edit

    a, b = write_image(tmp_path / "a.png", seed=1), write_image(tmp_path / "b.png", seed=2)
    (tmp_path / "emb").mkdir()
    g = torch.Generator().manual_seed(0)
    for stem in ("a", "b"):
        np.savez(tmp_path / "emb" / f"{stem}.npz", prompt_embeds=torch.randn(1, 8, 16, generator=g).numpy())
    out = tmp_path / "mgie.h5"
    result = run_cli("intervene", "edit", a, b, "-i", "make it a cat", "-m", tiny_model, "--method", "mgie",
                     "--embeddings", tmp_path / "emb" / "{image}.npz", "--scales", "2,6", "--steps", 2, "--seed", 3,
                     "-o", out, "-q")
    assert result.exit_code == 0, result.output
    seqs = read_interventions(out)
    pipe = tiny_random_pipeline("mgie")
    for stem in ("a", "b"):
        seq = seqs[f"{stem}-mgie"]
        picture = Image.fromarray(seq.images[0])
        for k, scale in enumerate((2.0, 6.0), 1):
            stock = stock_edit("mgie", pipe, picture, "make it a cat", scale, seed=3, steps=2,
                               options={"embeddings": str(tmp_path / "emb" / f"{stem}.npz")})
            assert np.abs(seq.images[k].astype(int) - np.rint(stock * 255).astype(int)).max() <= 1
    mixed = read_interventions(out)["b-mgie"].images[1:]
    result = run_cli("intervene", "edit", b, "-i", "make it a cat", "-m", tiny_model, "--method", "mgie",
                     "--embeddings", tmp_path / "emb" / "a.npz", "--scales", "2,6", "--steps", 2, "--seed", 3,
                     "-o", tmp_path / "b-with-a.h5", "-q")
    assert not np.array_equal(read_interventions(tmp_path / "b-with-a.h5")["b-mgie"].images[1:], mixed)
