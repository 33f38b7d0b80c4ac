"""Captured sequences: natural order, CSV values, consistent resizing, one-line errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from epg_bridges.interventions import frames_sequence, list_frames, load_image, natural_key, read_values_csv
from epg_core import DataError


def _write_frames(folder: Path, n: int, size: tuple[int, int] = (20, 12), prefix: str = "frame_") -> list[np.ndarray]:
    """Write ``n`` PNG frames whose red channel encodes the index; return the arrays in index order."""
    folder.mkdir(parents=True, exist_ok=True)
    frames = []
    for i in range(n):
        arr = np.zeros((size[1], size[0], 3), dtype=np.uint8)
        arr[..., 0] = 10 * i
        arr[..., 1] = 7
        Image.fromarray(arr).save(folder / f"{prefix}{i}.png")
        frames.append(arr)
    return frames


def test_natural_key_orders_numbers_numerically() -> None:
    names = ["frame_10.png", "frame_9.png", "Frame_1.png", "frame_100.png", "frame_2.png"]
    assert sorted(names, key=natural_key) == ["Frame_1.png", "frame_2.png", "frame_9.png", "frame_10.png",
                                              "frame_100.png"]


def test_frames_are_read_in_natural_order_with_csv_values(tmp_path: Path) -> None:
    frames = _write_frames(tmp_path / "turn", 12)
    (tmp_path / "turn" / "notes.txt").write_text("not a frame")
    csv = tmp_path / "angles.csv"
    csv.write_text("angle\n" + "\n".join(str(15 * i) for i in range(12)) + "\n")
    seq = frames_sequence(tmp_path / "turn", values_csv=csv, unit="deg")
    assert seq.images.shape == (12, 12, 20, 3)
    assert [int(im[0, 0, 0]) for im in seq.images] == [10 * i for i in range(12)]  # frame_10 after frame_9
    assert np.array_equal(seq.images, np.stack(frames))
    assert np.array_equal(seq.values, 15.0 * np.arange(12))
    assert seq.attrs["property"] == "angle" and seq.attrs["unit"] == "deg"
    assert seq.attrs["source"] == "frames" and seq.attrs["frame_files"][10] == "frame_10.png"


def test_without_csv_the_frame_index_is_the_value(tmp_path: Path) -> None:
    _write_frames(tmp_path / "f", 3)
    seq = frames_sequence(tmp_path / "f")
    assert np.array_equal(seq.values, [0.0, 1.0, 2.0])
    assert seq.attrs["property"] == "frame-index" and seq.attrs["image"] == "f"  # the folder's name
    named = frames_sequence(tmp_path / "f", property="angle", attrs={"image": "car"})
    assert (named.attrs["property"], named.attrs["image"]) == ("angle", "car")


def test_frames_are_resized_to_the_first_or_a_given_size(tmp_path: Path) -> None:
    folder = tmp_path / "mixed"
    folder.mkdir()
    Image.fromarray(np.full((10, 16, 3), 50, np.uint8)).save(folder / "a1.png")
    Image.fromarray(np.full((20, 32), 200, np.uint8)).save(folder / "a2.png")  # grey, larger
    rgba = np.zeros((5, 8, 4), np.uint8)
    rgba[..., 2] = 255
    rgba[..., 3] = 255
    Image.fromarray(rgba).save(folder / "a3.png")
    seq = frames_sequence(folder)
    assert seq.images.shape == (3, 10, 16, 3)
    assert np.all(seq.images[1] == 200)
    assert np.all(seq.images[2] == [0, 0, 255])
    seq2 = frames_sequence(folder, size=(8, 6))
    assert seq2.images.shape == (3, 6, 8, 3)
    assert (seq2.attrs["width"], seq2.attrs["height"]) == (8, 6)


def test_csv_layouts(tmp_path: Path) -> None:
    plain = tmp_path / "plain.csv"
    plain.write_text("0.5\n1.5\n2.5\n")
    values, header = read_values_csv(plain, 3)
    assert np.array_equal(values, [0.5, 1.5, 2.5]) and header is None
    two = tmp_path / "two.csv"
    two.write_text("file,angle,light\nf0.png,0,9\nf1.png,90,8\n")
    assert np.array_equal(read_values_csv(two)[0], [9, 8])  # last column by default
    values, header = read_values_csv(two, column="angle")
    assert np.array_equal(values, [0, 90]) and header == "angle"
    assert np.array_equal(read_values_csv(two, column=1)[0], [0, 90])


def test_csv_with_the_wrong_number_of_rows_is_a_one_line_error(tmp_path: Path) -> None:
    _write_frames(tmp_path / "f", 4)
    csv = tmp_path / "v.csv"
    csv.write_text("angle\n0\n1\n2\n")
    with pytest.raises(DataError) as info:
        frames_sequence(tmp_path / "f", values_csv=csv)
    msg = str(info.value)
    assert "3 value rows" in msg and "4 frames" in msg and "\n" not in msg


def test_csv_with_text_in_the_values_is_an_error(tmp_path: Path) -> None:
    csv = tmp_path / "v.csv"
    csv.write_text("angle\n0\nten\n")
    with pytest.raises(DataError, match="row 3"):
        read_values_csv(csv)
    with pytest.raises(DataError, match="no column named"):
        read_values_csv(csv, column="light")


def test_progress_counts_frames(tmp_path: Path) -> None:
    _write_frames(tmp_path / "f", 3)
    calls: list[tuple[int, int]] = []
    frames_sequence(tmp_path / "f", progress=lambda done, total: calls.append((done, total)))
    assert calls == [(1, 3), (2, 3), (3, 3)]


def test_empty_or_missing_folders_and_unreadable_images(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no image files"):
        list_frames(tmp_path / "empty")
    with pytest.raises(DataError, match="does not exist"):
        frames_sequence(tmp_path / "missing")
    bad = tmp_path / "broken"
    _write_frames(bad, 2)
    (bad / "frame_2.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(ValueError, match="frame_2.png: not an image file"):
        frames_sequence(bad)


def test_load_image_modes(tmp_path: Path) -> None:
    rgba = np.zeros((4, 6, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[:, :3, 3] = 255
    Image.fromarray(rgba).save(tmp_path / "p.png")
    rgb = load_image(tmp_path / "p.png")
    assert rgb.shape == (4, 6, 3)
    assert np.all(rgb[:, :3, 0] == 200) and np.all(rgb[:, 3:] == 0)  # transparent -> black
    assert load_image(tmp_path / "p.png", mode="RGBA").shape == (4, 6, 4)
    assert load_image(tmp_path / "p.png", mode="L").shape == (4, 6)
    assert load_image(tmp_path / "p.png", size=3).shape == (3, 3, 3)
