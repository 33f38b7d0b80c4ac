"""Fuzz suite: every ``epg`` command fed bad images, HDF5 files, checkpoints, colliding paths and option values.

Each case builds its own inputs in ``tmp_path`` (a copy of a small valid project plus the bad file) and asserts:
the exit code (2 usage, 1 data), one ``Error:`` line on stderr that names the file or option, no traceback, every
file that existed before unchanged (sha256), no new file at all (temporary files, lock files, shard folders and
half-written outputs included), and no marker file (the malicious pickles try to create one).

A case is one line in a table: ``Case(id, build, code, needles)`` where ``build(tmp)`` returns the arguments.
Commands run in-process through click's CliRunner with ``catch_exceptions=False`` (an unexpected exception fails
the test with its traceback); a handful run end to end in a subprocess. :func:`_generic_cases` adds a
"missing input" case for every command ``epg --help`` lists, so a new command is covered without editing this file.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import shutil
import struct
import subprocess
import sys
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import h5py
import numpy as np
import pytest
import torch
from click.testing import CliRunner, Result
from helpers import all_commands, set_h5_attr, write_image
from PIL import Image

from epg_bridges.testing import TwoLayer, save_tiny, small_interventions, train_run
from epg_cli.main import cli
from epg_core import OutputsBlock, write_outputs

MARKER = "PWNED-MARKER"
TEMP_PATTERNS = (".tmp-", "epg-tmp", ".lock", ".shards")

# --------------------------------------------------------------------------- the valid project every case copies


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small valid project: photo, frames, checkpoint, training run, ONNX model, interventions and outputs."""
    root = tmp_path_factory.mktemp("fuzz-base")
    write_image(root / "photo.png", (36, 40), seed=1)
    for i in range(3):
        write_image(root / "frames" / f"f{i}.png", (20, 24), seed=10 + i)
    save_tiny(root / "tiny.pt")
    train_run(root / "run", steps=2)
    small_interventions(root / "iv.h5")
    write_outputs(root / "out.h5", [_outputs_block()])
    result = CliRunner().invoke(cli, ["export", str(root / "tiny.pt"), "-o", str(root / "tiny.onnx"), "--size", "32",
                                      "-q"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., :3], rgba[2:6, 2:6, 3] = 200, 255
    Image.fromarray(rgba).save(root / "patch.png")
    np.save(root / "text.npy", np.random.default_rng(0).normal(size=(3, 3)))
    (root / "values.csv").write_text("angle\n0\n10\n20\n")
    return root


def _outputs_block(m: int = 3, n: int = 6, c: int = 3) -> OutputsBlock:
    rng = np.random.default_rng(0)
    raw = rng.random((m, n, c))
    return OutputsBlock(model="m", sequence="s", outputs=(raw / raw.sum(-1, keepdims=True)).astype(np.float32),
                        done=np.ones(m, bool), checkpoints=[f"epoch_{i}" for i in range(m)],
                        classes=["cat", "dog", "fox"], values=np.linspace(0.0, 1.0, n), output_kind="probabilities",
                        preprocessing={"size": [32, 32]}, attrs={"source": "synthetic", "property": "brightness",
                                                                 "unit": "", "includes_original": True})


# --------------------------------------------------------------------------- bad files


def _png_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def bomb_png(width: int = 200_000, height: int = 200_000) -> bytes:
    """A valid PNG header claiming ``width x height`` RGB pixels, with a few bytes of data (a decompression bomb)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + _chunk(b"IEND", b""))


def _jpeg_bytes() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(3).integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(buf, format="JPEG")
    return buf.getvalue()


BAD_IMAGES: dict[str, Callable[[], bytes]] = {
    "zero-byte": lambda: b"",
    "text": lambda: b"this is not a picture\n",
    "truncated-png": lambda: _png_bytes(np.random.default_rng(2).integers(0, 256, (40, 40, 3), dtype=np.uint8))[:300],
    "truncated-jpeg": lambda: _jpeg_bytes()[:200],
    "bomb": bomb_png,  # beyond twice Pillow's limit: Pillow itself refuses it on open
    "bomb-moderate": lambda: bomb_png(10_000, 10_000),  # 100 M pixels: refused by epg's own check
}


class _Marker:
    """Unpickling this creates the marker file (what a malicious checkpoint would do)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (self.path, "w"))


def _ckpt_marker_torch(p: Path) -> None:
    torch.save({"paras": {}, "state_dict": {"w": _Marker(str(p.parent / MARKER))}}, p)


def _ckpt_marker_pickle(p: Path) -> None:
    p.write_bytes(pickle.dumps({"state_dict": _Marker(str(p.parent / MARKER))}))


def _ckpt_truncated(p: Path) -> None:
    save_tiny(p)
    p.write_bytes(p.read_bytes()[:400])


def _ckpt_paras(paras: Any) -> Callable[[Path], object]:
    def build(p: Path) -> None:
        state = torch.load(save_tiny(p), weights_only=True)
        torch.save({"paras": paras, "state_dict": state["state_dict"]}, p)
    return build


BAD_CHECKPOINTS: dict[str, tuple[Callable[[Path], object], tuple[str, ...]]] = {
    "zero-byte": (lambda p: p.write_bytes(b""), ()),
    "text": (lambda p: p.write_text("not a checkpoint\n"), ()),
    "truncated": (_ckpt_truncated, ()),
    "marker-torch-pickle": (_ckpt_marker_torch, ("weights_only",)),
    "marker-plain-pickle": (_ckpt_marker_pickle, ()),
    "whole-module": (lambda p: torch.save(TwoLayer(), p), ("weights_only",)),
    "wrong-architecture": (lambda p: torch.save(TwoLayer().state_dict(), p), ("wrong architecture",)),
    "huge-paras": (_ckpt_paras({"dim": 10**9, "depth": 10**6, "kernel_size": 3, "patch_size": 4, "n_classes": 3}),
                   ("'dim'",)),
    "paras-a-list": (_ckpt_paras([1, 2, 3]), ("paras",)),
}


def _h5_edit(change: Callable[[h5py.File], object]) -> Callable[[Path], object]:
    def build(p: Path) -> None:
        with h5py.File(p, "r+") as handle:
            change(handle)
    return build


def _replace(where: str, data: Any = None, **kwargs: Any) -> Callable[[h5py.File], object]:
    def change(handle: h5py.File) -> None:
        group: Any = handle[where.rsplit("/", 1)[0]]
        del group[where.rsplit("/", 1)[1]]
        if data is not None or kwargs:
            group.create_dataset(where.rsplit("/", 1)[1], data=data, **kwargs)
    return change


def _set(where: str, index: tuple[int, ...], value: float) -> Callable[[h5py.File], object]:
    def change(handle: h5py.File) -> None:
        dataset: Any = handle[where]
        dataset[index] = value
    return change


_attr = set_h5_attr


def _file_bytes(data: bytes) -> Callable[[Path], object]:
    return lambda p: p.write_bytes(data)


def _truncate(p: Path) -> None:
    p.write_bytes(p.read_bytes()[: max(1, p.stat().st_size // 3)])


def _plain_hdf5(p: Path) -> None:
    p.unlink()
    with h5py.File(p, "w") as handle:
        handle.create_dataset("x", data=np.zeros(3))


COMMON_H5: dict[str, Callable[[Path], object]] = {
    "zero-byte": _file_bytes(b""),
    "text": _file_bytes(b"hello, not HDF5\n"),
    "truncated": _truncate,
    "foreign-hdf5": _plain_hdf5,
}

BAD_INTERVENTIONS: dict[str, Callable[[Path], object]] = {
    **COMMON_H5,
    "missing-images": _h5_edit(_replace("bright/images")),
    "missing-values": _h5_edit(_replace("bright/values")),
    "images-float": _h5_edit(_replace("bright/images", np.zeros((5, 32, 32, 3), np.float32))),
    "images-grey": _h5_edit(_replace("bright/images", np.zeros((5, 32, 32), np.uint8))),
    "one-step": _h5_edit(lambda h: (_replace("bright/images", np.zeros((1, 32, 32, 3), np.uint8))(h),
                                    _replace("bright/values", np.zeros(1))(h))),
    "zero-steps": _h5_edit(lambda h: (_replace("bright/images", np.zeros((0, 32, 32, 3), np.uint8))(h),
                                      _replace("bright/values", np.zeros(0))(h))),
    "nan-value": _h5_edit(_set("bright/values", (2,), np.nan)),
    "inf-value": _h5_edit(_set("bright/values", (1,), np.inf)),
    "huge-images": _h5_edit(_replace("bright/images", shape=(5, 2**20, 2**20, 3), dtype=np.uint8,
                                     chunks=(1, 64, 64, 3))),
    "no-sequences": _h5_edit(lambda h: (h.__delitem__("bright"), h.__delitem__("rotate"))),
}

BAD_OUTPUTS: dict[str, Callable[[Path], object]] = {
    **COMMON_H5,
    "missing-outputs": _h5_edit(_replace("models/m/s/outputs")),
    "outputs-int": _h5_edit(_replace("models/m/s/outputs", np.zeros((3, 6, 3), np.int32))),
    "outputs-2d": _h5_edit(_replace("models/m/s/outputs", np.zeros((3, 6), np.float32))),
    "zero-steps": _h5_edit(lambda h: (_replace("models/m/s/outputs", np.zeros((3, 0, 3), np.float32))(h),
                                      _replace("models/m/s/values", np.zeros(0))(h))),
    "one-step": _h5_edit(lambda h: (_replace("models/m/s/outputs", np.zeros((3, 1, 3), np.float32))(h),
                                    _replace("models/m/s/values", np.zeros(1))(h))),
    "nan-output": _h5_edit(_set("models/m/s/outputs", (1, 2, 0), np.nan)),
    "inf-output": _h5_edit(_set("models/m/s/outputs", (0, 0, 2), np.inf)),
    "nan-value": _h5_edit(_set("models/m/s/values", (3,), np.nan)),
    "huge-dimensions": _h5_edit(lambda h: (
        _replace("models/m/s/values", shape=(2**40,), dtype=np.float64, chunks=(1024,))(h),
        _replace("models/m/s/outputs", shape=(3, 2**40, 3), dtype=np.float32, chunks=(1, 1024, 3))(h))),
    "done-shape": _h5_edit(_replace("models/m/s/done", np.ones(2, bool))),
    "classes-bad-json": _h5_edit(_attr("models/m/s", "classes", "[not json")),
    "no-models": _h5_edit(lambda h: h.__delitem__("models")),
    "format-version": _h5_edit(_attr("/", "format_version", 99)),
}


# --------------------------------------------------------------------------- cases


@dataclass(frozen=True)
class Case:
    """One bad invocation: ``build(tmp)`` makes the bad inputs in ``tmp`` and returns the arguments of ``epg``."""

    id: str
    build: Callable[[Path], list[str]]
    code: int
    needles: tuple[str, ...]
    xfail: str = ""


def _bad_file(name: str, make: Callable[[Path], object],
              args: Callable[[Path], list[str]]) -> Callable[[Path], list[str]]:
    def build(tmp: Path) -> list[str]:
        make(tmp / name)
        return args(tmp)
    return build


def _image_cases() -> list[Case]:
    commands: dict[str, tuple[str, Callable[[Path], list[str]]]] = {
        "synthetic": ("bad.png", lambda t: ["intervene", "synthetic", f"{t}/bad.png", "--kind", "hue", "-q",
                                            "-o", f"{t}/new.h5"]),
        "patch": ("bad.png", lambda t: ["intervene", "synthetic", f"{t}/photo.png", "--kind", "patch", "--patch",
                                        f"{t}/bad.png", "-q", "-o", f"{t}/new.h5"]),
        "mask": ("bad.png", lambda t: ["intervene", "synthetic", f"{t}/photo.png", "--kind", "patch", "--patch",
                                       f"{t}/patch.png", "--mask", f"{t}/bad.png", "-q", "-o", f"{t}/new.h5"]),
        "frames": ("frames/f1.png", lambda t: ["intervene", "frames", f"{t}/frames", "-q", "-o", f"{t}/new.h5"]),
        "predict": ("bad.png", lambda t: ["predict", f"{t}/tiny.onnx", f"{t}/photo.png", f"{t}/bad.png", "-q",
                                          "-o", f"{t}/new.h5"]),
    }
    cases = []
    for cmd, (name, args) in commands.items():
        for kind, data in BAD_IMAGES.items():
            needle = "exceeds" if kind.startswith("bomb") else "not an image file"
            cases.append(Case(f"image-{cmd}-{kind}", _bad_file(name, _file_bytes(data()), args), 1,
                              (Path(name).name, needle)))
    return cases


def _checkpoint_cases() -> list[Case]:
    commands: dict[str, Callable[[Path], list[str]]] = {
        "export": lambda t: ["export", f"{t}/bad.pt", "-o", f"{t}/new.onnx", "--size", "32", "-q"],
        "predict": lambda t: ["predict", f"{t}/bad.pt", f"{t}/photo.png", "-o", f"{t}/new.h5", "--size", "32", "-q"],
        "sweep": lambda t: ["sweep", f"{t}/bad.pt", f"{t}/iv.h5", "-o", f"{t}/new.h5", "--size", "32", "-q"],
    }
    return [Case(f"checkpoint-{cmd}-{kind}", _bad_file("bad.pt", make, args), 1, ("bad.pt", *needles))
            for cmd, args in commands.items() for kind, (make, needles) in BAD_CHECKPOINTS.items()]


def _copy_then(source: str, make: Callable[[Path], object]) -> Callable[[Path], object]:
    """Start from a copy of the valid ``source`` file of the project, then break it with ``make``."""
    def build(p: Path) -> None:
        shutil.copyfile(p.parent / source, p)
        make(p)
    return build


def _interventions_cases() -> list[Case]:
    commands: dict[str, Callable[[Path], list[str]]] = {
        "predict": lambda t: ["predict", f"{t}/tiny.onnx", f"{t}/bad.h5", "-o", f"{t}/new.h5", "-q"],
        "sweep": lambda t: ["sweep", f"{t}/run/epoch_*.pt", f"{t}/bad.h5", "-o", f"{t}/new.h5", "--size", "32", "-q"],
        "list": lambda t: ["intervene", "list", f"{t}/bad.h5"],
    }
    cases = [Case(f"interventions-{cmd}-{kind}", _bad_file("bad.h5", _copy_then("iv.h5", make), args), 1,
                  ("bad.h5",)) for cmd, args in commands.items() for kind, make in BAD_INTERVENTIONS.items()
             if not (cmd == "list" and kind == "huge-images")]  # list reads no pixels: huge images are fine there
    report = lambda t: ["report", f"{t}/out.h5", "-i", f"{t}/bad.h5", "-o", f"{t}/rep", "-k", "50", "-q"]  # noqa: E731
    cases += [Case(f"interventions-report-{kind}", _bad_file("bad.h5", _copy_then("iv.h5", make), report), 1,
                   ("bad.h5",)) for kind, make in BAD_INTERVENTIONS.items() if kind in COMMON_H5 or kind == "nan-value"]
    return cases


def _outputs_cases() -> list[Case]:
    commands: dict[str, Callable[[Path], list[str]]] = {
        "score": lambda t: ["score", f"{t}/bad.h5", "-k", "50", "-q"],
        "report": lambda t: ["report", f"{t}/bad.h5", "-o", f"{t}/rep", "-k", "50", "-q"],
    }
    return [Case(f"outputs-{cmd}-{kind}", _bad_file("bad.h5", _copy_then("out.h5", make), args), 1,
                 ("bad.h5",)) for cmd, args in commands.items() for kind, make in BAD_OUTPUTS.items()]


def _link(name: str, target: str) -> Callable[[Path], object]:
    return lambda p: os.symlink(p.parent / target, p.parent / name)


def _collision_cases() -> list[Case]:
    def case(cid: str, args: Callable[[Path], list[str]], needle: str, pre: Callable[[Path], object] | None = None,
             ) -> Case:
        def build(t: Path) -> list[str]:
            if pre is not None:
                pre(t / "_")
            return args(t)
        return Case(f"collision-{cid}", build, 2, (needle,))

    def copy(src: str, dst: str) -> Callable[[Path], object]:
        return lambda p: shutil.copyfile(p.parent / src, p.parent / dst)

    syn = ["--kind", "hue", "-q"]
    return [
        case("export-onto-checkpoint", lambda t: ["export", f"{t}/tiny.pt", "-o", f"{t}/tiny.pt"], "tiny.pt"),
        case("export-spec-onto-checkpoint", lambda t: ["export", f"{t}/m.onnx.json", "-o", f"{t}/m.onnx"],
             "m.onnx.json", copy("tiny.pt", "m.onnx.json")),
        case("export-through-symlink", lambda t: ["export", f"{t}/tiny.pt", "-o", f"{t}/link.onnx"], "tiny.pt",
             _link("link.onnx", "tiny.pt")),
        case("synthetic-onto-image", lambda t: ["intervene", "synthetic", f"{t}/photo.png", *syn, "-o",
                                                f"{t}/photo.png"], "photo.png"),
        # contact sheets are written beside the file as <file stem>.<sequence>.png
        case("synthetic-sheet-onto-image", lambda t: ["intervene", "synthetic", f"{t}/o.x.png", *syn, "--name", "x",
                                                      "-o", f"{t}/o.h5"], "o.x.png", copy("photo.png", "o.x.png")),
        case("synthetic-sheet-onto-patch", lambda t: ["intervene", "synthetic", f"{t}/photo.png", "--kind", "patch",
                                                      "--patch", f"{t}/o.x.png", "--name", "x", "-q", "-o",
                                                      f"{t}/o.h5"], "o.x.png", copy("patch.png", "o.x.png")),
        case("synthetic-onto-existing-file", lambda t: ["intervene", "synthetic", f"{t}/photo.png", *syn, "-o",
                                                        f"{t}/iv.h5"], "--append"),
        case("synthetic-image-twice", lambda t: ["intervene", "synthetic", "hue", f"{t}/photo.png", f"{t}/photo.png",
                                                 "-q", "-o", f"{t}/new.h5"], "given twice"),
        case("frames-sheet-onto-frame", lambda t: ["intervene", "frames", f"{t}/frames", "--name", "x", "-q", "-o",
                                                   f"{t}/frames/o.h5"], "o.x.png", copy("photo.png", "frames/o.x.png")),
        case("frames-onto-values", lambda t: ["intervene", "frames", f"{t}/frames", "--values", f"{t}/values.csv",
                                              "-q", "-o", f"{t}/values.csv"], "values.csv"),
        case("predict-onto-interventions", lambda t: ["predict", f"{t}/tiny.onnx", f"{t}/iv.h5", "-o", f"{t}/iv.h5",
                                                      "-q"], "iv.h5"),
        case("predict-onto-image", lambda t: ["predict", f"{t}/tiny.onnx", f"{t}/photo.png", "-o", f"{t}/photo.png",
                                              "-q"], "photo.png"),
        case("predict-onto-model", lambda t: ["predict", f"{t}/tiny.onnx", f"{t}/iv.h5", "-o", f"{t}/tiny.onnx",
                                              "-q"], "tiny.onnx"),
        case("predict-onto-model-spec", lambda t: ["predict", f"{t}/tiny.onnx", f"{t}/iv.h5", "-o",
                                                   f"{t}/tiny.onnx.json", "-q"], "tiny.onnx.json"),
        case("predict-onto-text-embeddings", lambda t: ["predict", f"{t}/tiny.onnx", f"{t}/iv.h5", "--kind", "cosine",
                                                        "--text-embeddings", f"{t}/text.npy", "-o", f"{t}/text.npy",
                                                        "-q"], "text.npy"),
        case("predict-through-symlink", lambda t: ["predict", f"{t}/tiny.onnx", f"{t}/iv.h5", "-o", f"{t}/link.h5",
                                                   "-q"], "iv.h5", _link("link.h5", "iv.h5")),
        case("sweep-onto-interventions", lambda t: ["sweep", f"{t}/run/epoch_*.pt", f"{t}/iv.h5", "-o", f"{t}/iv.h5",
                                                    "--size", "32", "-q"], "iv.h5"),
        case("sweep-onto-checkpoint", lambda t: ["sweep", f"{t}/run/epoch_*.pt", f"{t}/iv.h5", "-o",
                                                 f"{t}/run/epoch_1.pt", "--size", "32", "-q"], "epoch_1.pt"),
        case("score-csv-onto-outputs", lambda t: ["score", f"{t}/out.h5", "--csv", f"{t}/out.h5", "-k", "50", "-q"],
             "out.h5"),
        case("score-csv-through-symlink", lambda t: ["score", f"{t}/out.h5", "-o", f"{t}/link.csv", "-k", "50", "-q"],
             "out.h5", _link("link.csv", "out.h5")),
        case("report-folder-onto-file", lambda t: ["report", f"{t}/out.h5", "-o", f"{t}/out.h5", "-k", "50", "-q"],
             "--out"),
        case("demo-folder-onto-file", lambda t: ["demo", "--curves-only", "-o", f"{t}/photo.png", "-q"], "--out"),
        case("bench-json-onto-folder", lambda t: ["bench", "--quick", "-o", f"{t}/frames", "-q"], "--out"),
    ]


def _option_cases() -> list[Case]:
    def case(cid: str, args: Callable[[Path], list[str]], code: int, *needles: str,
             pre: Callable[[Path], object] | None = None) -> Case:
        def build(t: Path) -> list[str]:
            if pre is not None:
                pre(t)
            return args(t)
        return Case(f"option-{cid}", build, code, needles)

    syn = lambda t, *a: ["intervene", "synthetic", f"{t}/photo.png", *a, "-q", "-o", f"{t}/new.h5"]  # noqa: E731
    frames = lambda t, *a: ["intervene", "frames", f"{t}/frames", *a, "-q", "-o", f"{t}/new.h5"]  # noqa: E731
    predict = lambda t, *a: ["predict", f"{t}/tiny.onnx", f"{t}/iv.h5", *a, "-q", "-o", f"{t}/new.h5"]  # noqa: E731
    return [
        case("score-unknown-class", lambda t: ["score", f"{t}/out.h5", "--class", "zebra", "-k", "50", "-q"], 2,
             "zebra"),
        case("score-class-index-out-of-range", lambda t: ["score", f"{t}/out.h5", "--class", "99", "-k", "50", "-q"],
             2, "99"),
        case("score-missing-file", lambda t: ["score", f"{t}/nope.h5", "-q"], 1, "nope.h5"),
        case("report-unknown-checkpoint", lambda t: ["report", f"{t}/out.h5", "--checkpoints", "epoch_77", "-o",
                                                     f"{t}/rep", "-k", "50", "-q"], 2, "epoch_77"),
        case("report-unknown-class", lambda t: ["report", f"{t}/out.h5", "--class", "zebra", "-o", f"{t}/rep",
                                                "-k", "50", "-q"], 2, "zebra"),
        case("predict-unknown-sequence", lambda t: predict(t, "--sequence", "nosuch"), 2, "iv.h5", "nosuch"),
        case("predict-class-count", lambda t: predict(t, "--classes", "a,b"), 2, "class names"),
        case("predict-cosine-without-text", lambda t: predict(t, "--kind", "cosine"), 2, "text"),
        case("predict-text-embeddings-not-npy", lambda t: predict(t, "--kind", "cosine", "--text-embeddings",
                                                                  f"{t}/bad.npy"), 1, "bad.npy",
             pre=lambda t: (t / "bad.npy").write_text("not numpy")),
        case("predict-text-embeddings-int", lambda t: predict(t, "--kind", "cosine", "--text-embeddings",
                                                              f"{t}/int.npy"), 1, "int.npy",
             pre=lambda t: np.save(t / "int.npy", np.zeros((3, 8), np.int64))),
        case("predict-unknown-arch", lambda t: ["predict", f"{t}/tiny.pt", f"{t}/photo.png", "--arch",
                                                "no_such_module_xyz:make", "-o", f"{t}/new.h5", "-q"], 2,
             "no_such_module_xyz"),
        case("export-bad-arch-kwargs", lambda t: ["export", f"{t}/tiny.pt", "--arch-kwargs", '{"dim": -4}', "-o",
                                                  f"{t}/new.onnx", "-q"], 1, "tiny.pt", "'dim': -4"),
        case("predict-missing-input", lambda t: ["predict", f"{t}/tiny.onnx", f"{t}/nope.png", "-o", f"{t}/new.h5",
                                                 "-q"], 1, "nope.png"),
        case("sweep-no-checkpoint-matches", lambda t: ["sweep", f"{t}/run/nothing_*.pt", f"{t}/iv.h5", "-o",
                                                       f"{t}/new.h5", "-q"], 2, "nothing_*.pt"),
        case("synthetic-patch-missing", lambda t: syn(t, "--kind", "patch"), 2, "--patch"),
        case("synthetic-patch-outside", lambda t: syn(t, "--kind", "patch", "--patch", f"{t}/patch.png", "--position",
                                                      "500,0"), 2, "outside"),
        case("synthetic-one-value", lambda t: syn(t, "--kind", "hue", "--values", "5"), 2, "--values"),
        case("synthetic-constant-grid", lambda t: syn(t, "--kind", "hue", "--start", "3", "--stop", "3"), 2, "3"),
        case("synthetic-huge-size", lambda t: syn(t, "--kind", "hue", "--size", "16000x16000"), 2, "size"),
        case("synthetic-huge-n-steps", lambda t: syn(t, "--kind", "hue", "--n-steps", "100000", "--size", "4000"),
             2, "steps"),
        case("synthetic-missing-image", lambda t: syn(t, "--kind", "hue")[:2] + [f"{t}/nope.png", "--kind", "hue"],
             1, "nope.png"),
        case("frames-values-not-numbers", lambda t: frames(t, "--values", f"{t}/bad.csv"), 1, "bad.csv",
             pre=lambda t: (t / "bad.csv").write_text("a\nx\ny\nz\n")),
        case("frames-values-nan", lambda t: frames(t, "--values", f"{t}/nan.csv"), 1, "nan.csv",
             pre=lambda t: (t / "nan.csv").write_text("v\n0\nnan\n2\n")),
        case("frames-values-count", lambda t: frames(t, "--values", f"{t}/two.csv"), 1, "two.csv",
             pre=lambda t: (t / "two.csv").write_text("v\n0\n1\n")),
        case("frames-unknown-column", lambda t: frames(t, "--values", f"{t}/values.csv", "--column", "nosuch"), 1,
             "values.csv", "nosuch"),
        case("frames-one-frame", lambda t: ["intervene", "frames", f"{t}/one", "-q", "-o", f"{t}/new.h5"], 1, "one",
             pre=lambda t: write_image(t / "one" / "f.png", (8, 8))),
        case("frames-empty-folder", lambda t: ["intervene", "frames", f"{t}/empty", "-q", "-o", f"{t}/new.h5"], 1,
             "empty", pre=lambda t: (t / "empty").mkdir()),
        case("edit-missing-model", lambda t: ["intervene", "edit", f"{t}/photo.png", "-i", "x", "-m",
                                              f"{t}/no-model", "-q", "-o", f"{t}/new.h5"], 1, "no-model"),
        case("demo-reference-empty", lambda t: ["demo", "--reference", f"{t}/frames", "-o", f"{t}/demo", "-q"], 1,
             "frames"),
        case("run-missing-study", lambda t: ["run", f"{t}/nope.toml", "-q"], -1, "nope.toml"),
        case("run-study-not-toml", lambda t: ["run", f"{t}/study.toml", "-q"], 2, "study.toml",
             pre=lambda t: (t / "study.toml").write_text("this is [ not toml\n")),
        case("run-study-empty", lambda t: ["run", f"{t}/study.toml", "-q"], 2, "study.toml",
             pre=lambda t: (t / "study.toml").write_text("")),
        case("run-study-unknown-section", lambda t: ["run", f"{t}/study.toml", "-q"], 2, "study.toml", "[name]",
             pre=lambda t: (t / "study.toml").write_text('name = "x"\n')),
        case("run-study-bad-image", lambda t: ["run", f"{t}/study.toml", "-q"], 1, "bad.png",
             pre=_study_with_bad_image),
    ]


def _study_with_bad_image(t: Path) -> None:
    (t / "bad.png").write_bytes(b"not a png")
    (t / "study.toml").write_text(
        '[study]\nname = "s"\nout = "study-out"\n\n[[images]]\npath = "bad.png"\n\n'
        '[[interventions]]\nproperty = "hue"\nkind = "hue"\nn_steps = 4\n\n'
        '[[models]]\nname = "tiny"\ncheckpoints = "run/epoch_*.pt"\nsize = 32\n')


def _generic_cases() -> list[Case]:
    """For every leaf command: its file arguments point at a missing file (exit 1 or 2, one line naming it)."""
    cases = []
    for name, cmd in all_commands():
        if isinstance(cmd, click.Group):
            continue
        arguments = [p for p in cmd.params if isinstance(p, click.Argument)]
        if not arguments:
            continue

        def build(t: Path, name: str = name, cmd: click.Command = cmd) -> list[str]:
            args = name.split()
            for param in cmd.params:
                if isinstance(param, click.Argument):
                    args.append(f"{t}/missing-{param.name}.dat")
                elif isinstance(param, click.Option) and param.required:
                    choice = param.type.choices[0] if isinstance(param.type, click.Choice) else \
                        f"{t}/missing-{param.name}.dat"
                    args += [param.opts[0], str(choice)]
            return args

        cases.append(Case(f"generic-missing-input-{name.replace(' ', '-')}", build, -1, ("missing-",)))
    return cases


CASES: list[Case] = (_image_cases() + _checkpoint_cases() + _interventions_cases() + _outputs_cases()
                     + _collision_cases() + _option_cases() + _generic_cases())


# --------------------------------------------------------------------------- checks


def _tree(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root`` (symlinks by their target path), by relative path."""
    found: dict[str, str] = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        if path.is_symlink():
            found[rel] = "link:" + os.readlink(path)
        elif path.is_file():
            found[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
        elif path.is_dir():
            found[rel + "/"] = "dir"
    return found


def _empty_dir(root: Path, key: str) -> bool:
    return key.endswith("/") and ".shards" not in key and not any((root / key).iterdir())


def _check_error(code: int, stderr: str, output: str, case: Case, args: list[str]) -> None:
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert "Traceback" not in output and "Traceback" not in stderr, output[-3000:]
    want = (1, 2) if case.code == -1 else (case.code,)
    assert code in want, f"exit {code}, want {want}: {args}\n{stderr[-2000:]}"
    assert len(lines) == 1, f"not one line: {stderr!r}"
    assert lines[0].startswith("Error: "), lines[0]
    for needle in case.needles:
        assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"


def _check_tree(before: dict[str, str], root: Path) -> None:
    after = _tree(root)
    changed = sorted(k for k in before if after.get(k) != before[k])
    new = sorted(k for k in after if k not in before and not _empty_dir(root, k))  # an empty folder is no file
    temps = [k for k in new if any(t in k for t in TEMP_PATTERNS)]
    assert not [k for k in after if MARKER in k], "the malicious pickle ran"
    assert not temps, f"temporary files left: {temps}"
    assert not changed, f"inputs changed: {changed}"
    assert not new, f"files written by a failing command: {new}"


def _prepare(project: Path, tmp: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    work = tmp / "w"
    shutil.copytree(project, work, symlinks=True)
    monkeypatch.chdir(work)  # default output paths (epg-out/...) land here, where the checks see them
    return work


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id, marks=[pytest.mark.xfail(strict=True, reason=c.xfail)]
                                               if c.xfail else []) for c in CASES])
def test_fuzz_case(case: Case, project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    work = _prepare(project, tmp_path, monkeypatch)
    args = case.build(work)
    before = _tree(work)
    result = _invoke(args)
    _check_error(result.exit_code, result.stderr, result.output, case, args)
    _check_tree(before, work)


def _invoke(args: list[str]) -> Result:
    """``epg args`` in-process; an exception the CLI does not turn into an exit code propagates (fails the test)."""
    return CliRunner().invoke(cli, args, catch_exceptions=False)


def test_the_harness_lets_unexpected_exceptions_through(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A programming error inside a command must fail a fuzz case, not pass as some exit code."""
    import epg_core

    def broken(*_args: Any, **_kwargs: Any) -> Any:
        raise KeyError("checkpoints")

    monkeypatch.setattr(epg_core, "score_outputs", broken)
    write_outputs(tmp_path / "out.h5", [_outputs_block()])
    with pytest.raises(KeyError):
        _invoke(["score", str(tmp_path / "out.h5"), "-q", "-k", "50"])


def test_the_suite_is_big_and_covers_every_command() -> None:
    """At least 120 cases, and every command ``epg --help`` lists is exercised by one of them."""
    assert len(CASES) >= 120, len(CASES)
    leaves = {name for name, cmd in all_commands() if not isinstance(cmd, click.Group)}
    covered = {n for n in leaves for c in CASES if c.id.startswith("generic-") and c.id.endswith(n.replace(" ", "-"))}
    named = {"intervene synthetic", "intervene frames", "intervene edit", "export", "predict", "sweep", "score",
             "report", "demo", "run", "bench"}
    assert leaves <= covered | (named & leaves), sorted(leaves - covered - named)


# --------------------------------------------------------------------------- odd but valid images: exit 0


def _png16(p: Path) -> None:
    Image.fromarray(np.arange(36 * 40, dtype=np.uint16).reshape(36, 40) * 45).save(p)


def _palette_transparent(p: Path) -> None:
    im = Image.fromarray(np.random.default_rng(5).integers(0, 256, (30, 30, 3), dtype=np.uint8)).quantize(16)
    im.info["transparency"] = 0
    im.save(p, transparency=0)


def _cmyk_jpeg(p: Path) -> None:
    Image.fromarray(np.random.default_rng(6).integers(0, 256, (30, 30, 4), dtype=np.uint8), "CMYK").save(p, "JPEG")


@pytest.mark.parametrize(("make", "suffix"), [(_png16, ".png"), (_palette_transparent, ".png"), (_cmyk_jpeg, ".jpg")],
                         ids=["16-bit", "palette", "cmyk"])
def test_odd_images_are_read_and_nothing_else_is_touched(
    make: Callable[[Path], object], suffix: str, project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    work = _prepare(project, tmp_path, monkeypatch)
    make(work / f"odd{suffix}")
    before = _tree(work)
    for args in (["intervene", "synthetic", f"{work}/odd{suffix}", "--kind", "hue", "--n-steps", "3", "-q", "-o",
                  f"{work}/odd.h5"], ["predict", f"{work}/tiny.onnx", f"{work}/odd{suffix}", f"{work}/photo.png",
                                      "-q", "-o", f"{work}/odd-out.h5"]):
        result = CliRunner().invoke(cli, args, catch_exceptions=False)
        assert result.exit_code == 0, result.output
    after = _tree(work)
    assert all(after[k] == v for k, v in before.items())
    new = sorted(set(after) - set(before))
    assert new[:2] == ["odd-out.h5", "odd.h5"] and len(new) == 3 and new[2].startswith("odd.")  # + contact sheet


# --------------------------------------------------------------------------- end to end, in a subprocess

E2E = {c.id: c for c in CASES if c.id in {
    "image-synthetic-bomb", "checkpoint-export-marker-torch-pickle", "outputs-score-nan-output",
    "collision-score-csv-onto-outputs", "interventions-sweep-huge-images", "image-predict-text"}}


@pytest.mark.slow
@pytest.mark.parametrize("cid", sorted(E2E))
def test_fuzz_case_end_to_end(cid: str, project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    case = E2E[cid]
    work = _prepare(project, tmp_path, monkeypatch)
    args = case.build(work)
    before = _tree(work)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    proc = subprocess.run([sys.executable, "-c", "from epg_cli.main import cli; cli(prog_name='epg')", *args],
                          env=env, cwd=work, capture_output=True, text=True, timeout=300)
    _check_error(proc.returncode, proc.stderr, proc.stdout, case, args)
    _check_tree(before, work)


def test_case_ids_are_unique() -> None:
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids)), sorted({i for i in ids if ids.count(i) > 1})
    json.dumps(ids)  # plain strings
