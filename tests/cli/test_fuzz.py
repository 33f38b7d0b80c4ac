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
    # issue 17: a dataset where a group belongs was an AttributeError
    "model-is-dataset": _h5_edit(_replace("models/m", [1])),
    "sequence-is-dataset": _h5_edit(_replace("models/m/s", [1.0])),
    "models-is-dataset": _h5_edit(lambda h: (h.__delitem__("models"), h.create_dataset("models", data=[1]))),
    # issue 17: probabilities from -5 to 7 were scored without a word
    "probabilities-out-of-range": _h5_edit(_replace("models/m/s/outputs",
                                                    np.linspace(-5, 7, 54, dtype=np.float32).reshape(3, 6, 3))),
    "probabilities-negative": _h5_edit(_set("models/m/s/outputs", (1, 2, 0), -0.5)),
    "cosine-out-of-range": _h5_edit(lambda h: (_attr("models/m/s", "output_kind", "cosine")(h),
                                               _set("models/m/s/outputs", (0, 3, 1), 3.0)(h))),
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
        case("score-missing-file", lambda t: ["score", f"{t}/nope.h5", "-q"], 2, "nope.h5"),
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
                                                 "-q"], 2, "nope.png"),
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
             2, "nope.png"),
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


# --------------------------------------------------------------------------- issue 17: foreign files, bad models


def _foreign_text(name: str, text: str = "my notes, not epg's\n") -> Callable[[Path], object]:
    def make(t: Path) -> None:
        (t / name).parent.mkdir(parents=True, exist_ok=True)
        (t / name).write_text(text)
    return make


def _copy_to(src: str, dst: str) -> Callable[[Path], object]:
    def make(t: Path) -> None:
        (t / dst).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(t / src, t / dst)
    return make


def _study(t: Path, *, interventions: str = 'kind = "hue"\nn_steps = 4\n', models: str = "") -> None:
    (t / "study.toml").write_text(
        '[study]\nname = "s"\nout = "study-out"\n\n[[images]]\npath = "photo.png"\n\n'
        f'[[interventions]]\nproperty = "p"\n{interventions}\n'
        f'[[models]]\nname = "tiny"\ncheckpoints = "run/epoch_*.pt"\nsize = 32\n{models}')


def _guard_cases() -> list[Case]:
    """An existing path that epg did not write is refused before anything is written, naming --force."""
    def case(cid: str, args: Callable[[Path], list[str]], pre: Callable[[Path], object], code: int = 2,
             *needles: str) -> Case:
        def build(t: Path) -> list[str]:
            pre(t)
            return args(t)
        return Case(f"guard-{cid}", build, code, needles or ("--force",))

    score = lambda t, o: ["score", f"{t}/out.h5", "-o", f"{t}/{o}", "-k", "50", "-q"]  # noqa: E731
    report = lambda t, o: ["report", f"{t}/out.h5", "-o", f"{t}/{o}", "-k", "50", "-q"]  # noqa: E731
    export = lambda t, o: ["export", f"{t}/tiny.pt", "-o", f"{t}/{o}", "--size", "32", "-q"]  # noqa: E731
    predict = lambda t, o: ["predict", f"{t}/tiny.onnx", f"{t}/iv.h5", "-o", f"{t}/{o}", "-q"]  # noqa: E731
    sweep = lambda t, o: ["sweep", f"{t}/run/epoch_*.pt", f"{t}/iv.h5", "-o", f"{t}/{o}", "--size", "32",  # noqa: E731
                          "-q"]
    clip = lambda t, o: ["export-clip", f"{t}/no-clip", "--prompts", f"{t}/p.toml", "-o", f"{t}/{o}",  # noqa: E731
                         "-q"]
    syn = lambda t, o: ["intervene", "synthetic", f"{t}/photo.png", "--kind", "hue", "--append", "-q",  # noqa: E731
                        "-o", f"{t}/{o}"]
    cases = [
        case("score-csv-onto-interventions", lambda t: score(t, "cvd.h5"), _copy_to("iv.h5", "cvd.h5"), 2,
             "cvd.h5", "interventions", "--force"),
        case("score-csv-onto-notes", lambda t: score(t, "notes.txt"), _foreign_text("notes.txt"), 2, "notes.txt",
             "--force"),
        case("score-csv-onto-foreign-csv", lambda t: score(t, "table.csv"), _foreign_text("table.csv", "a,b\n1,2\n")),
        case("score-csv-onto-empty-file", lambda t: score(t, "empty.csv"), _foreign_text("empty.csv", "")),
        case("score-csv-onto-image", lambda t: score(t, "pic.csv"), _copy_to("photo.png", "pic.csv")),
        case("score-csv-onto-checkpoint", lambda t: score(t, "ck.csv"), _copy_to("tiny.pt", "ck.csv")),
        case("score-csv-onto-outputs-copy", lambda t: score(t, "other.csv"), _copy_to("out.h5", "other.csv"), 2,
             "outputs", "--force"),
        case("score-parquet-onto-notes", lambda t: score(t, "s.parquet"), _foreign_text("s.parquet")),
        case("report-onto-foreign-index", lambda t: report(t, "mysite"), _foreign_text("mysite/index.html",
                                                                                   "<html>mine</html>\n"), 2,
             "mysite", "--force"),
        case("report-onto-folder-of-files", lambda t: report(t, "docs"), _foreign_text("docs/notes.md")),
        case("report-onto-file", lambda t: report(t, "rep.html"), _foreign_text("rep.html"), 2, "rep.html"),
        case("export-onto-notes", lambda t: export(t, "notes.onnx"), _foreign_text("notes.onnx")),
        case("export-onto-image", lambda t: export(t, "pic.onnx"), _copy_to("photo.png", "pic.onnx")),
        case("export-onto-foreign-spec", lambda t: export(t, "new.onnx"), _foreign_text("new.onnx.json", "{}\n"), 2,
             "new.onnx.json", "--force"),
        case("export-onto-foreign-onnx-copy", lambda t: export(t, "other.onnx"), _copy_to("tiny.onnx.json",
                                                                                          "other.onnx")),
        case("export-clip-onto-notes", lambda t: clip(t, "clip.onnx"), _foreign_text("clip.onnx"), 2, "clip.onnx",
             "--force"),
        case("export-clip-onto-foreign-text", lambda t: clip(t, "c.onnx"), _foreign_text("c.onnx.text.npz"), 2,
             "c.onnx.text.npz", "--force"),
        case("predict-onto-notes", lambda t: predict(t, "notes.txt"), _foreign_text("notes.txt")),
        case("predict-onto-other-interventions", lambda t: predict(t, "iv2.h5"), _copy_to("iv.h5", "iv2.h5"), 2,
             "iv2.h5", "interventions", "--force"),
        case("predict-onto-foreign-hdf5", lambda t: predict(t, "plain.h5"), _plain_hdf5_in("plain.h5")),
        case("predict-onto-csv", lambda t: predict(t, "table.csv"), _foreign_text("table.csv", "a,b\n")),
        case("sweep-onto-notes", lambda t: sweep(t, "notes.h5"), _foreign_text("notes.h5")),
        case("sweep-onto-other-interventions", lambda t: sweep(t, "iv2.h5"), _copy_to("iv.h5", "iv2.h5")),
        case("sweep-onto-image", lambda t: sweep(t, "pic.h5"), _copy_to("photo.png", "pic.h5")),
        case("run-onto-foreign-scores", lambda t: ["run", f"{t}/study.toml", "-q"],
             lambda t: (_study(t), _foreign_text("study-out/scores.csv")(t)), 2, "scores.csv", "--force"),
        case("run-onto-foreign-outputs", lambda t: ["run", f"{t}/study.toml", "-q"],
             lambda t: (_study(t), _foreign_text("study-out/outputs.h5")(t)), 2, "outputs.h5", "--force"),
        case("run-onto-foreign-interventions", lambda t: ["run", f"{t}/study.toml", "-q"],
             lambda t: (_study(t), _copy_to("out.h5", "study-out/interventions.h5")(t)), 2, "interventions.h5",
             "--force"),
        case("run-onto-foreign-report", lambda t: ["run", f"{t}/study.toml", "-q"],
             lambda t: (_study(t), _foreign_text("study-out/report/index.html")(t)), 2, "report", "--force"),
        case("demo-onto-foreign-folder", lambda t: ["demo", "--quick", "-o", f"{t}/mine", "-q", "-k", "50"],
             _foreign_text("mine/study.toml", "[study]\nname = 'mine'\n"), 2, "mine", "--force"),
        case("synthetic-append-onto-notes", lambda t: syn(t, "notes.h5"), _foreign_text("notes.h5"), 2, "notes.h5",
             "not an epg interventions file"),
        case("synthetic-append-onto-outputs", lambda t: syn(t, "o.h5"), _copy_to("out.h5", "o.h5"), 2, "o.h5",
             "not an epg interventions file"),
        case("frames-append-onto-notes", lambda t: ["intervene", "frames", f"{t}/frames", "--append", "-q", "-o",
                                                    f"{t}/notes.h5"], _foreign_text("notes.h5"), 2, "notes.h5"),
    ]
    return cases


def _plain_hdf5_in(name: str) -> Callable[[Path], object]:
    def make(t: Path) -> None:
        with h5py.File(t / name, "w") as handle:
            handle.create_dataset("x", data=np.zeros(3))
    return make


def _spec_classes(classes: list[str]) -> Callable[[Path], object]:
    """A copy of the tiny export whose spec names ``classes`` (the model has 3 outputs)."""
    def make(t: Path) -> None:
        shutil.copyfile(t / "tiny.onnx", t / "m2.onnx")
        spec = json.loads((t / "tiny.onnx.json").read_text())
        spec["classes"] = classes
        (t / "m2.onnx.json").write_text(json.dumps(spec))
    return make


def _model_cases() -> list[Case]:
    """Bad models and model options (issue 17)."""
    def case(cid: str, args: Callable[[Path], list[str]], code: int, *needles: str,
             pre: Callable[[Path], object] | None = None) -> Case:
        def build(t: Path) -> list[str]:
            if pre is not None:
                pre(t)
            return args(t)
        return Case(f"model-{cid}", build, code, needles)

    run = lambda t: ["run", f"{t}/study.toml", "-q"]  # noqa: E731
    cases = [
        case("export-size-2", lambda t: ["export", f"{t}/tiny.pt", "--size", "2", "-o", f"{t}/new.onnx", "-q"], 2,
             "--size", "[3, 2, 2]"),
        case("export-size-3x5", lambda t: ["export", f"{t}/tiny.pt", "--size", "3x5", "-o", f"{t}/new.onnx", "-q"],
             2, "--size"),
        case("predict-size-2", lambda t: ["predict", f"{t}/tiny.pt", f"{t}/iv.h5", "--size", "2", "-o",
                                          f"{t}/new.h5", "-q"], 2, "--size"),
        case("sweep-size-2", lambda t: ["sweep", f"{t}/run/epoch_*.pt", f"{t}/iv.h5", "--size", "2", "-o",
                                        f"{t}/new.h5", "-q"], 2, "--size"),
        case("predict-spec-2-classes-3-outputs", lambda t: ["predict", f"{t}/m2.onnx", f"{t}/iv.h5", "-o",
                                                            f"{t}/new.h5", "-q"], 1, "m2.onnx.json", "2 classes",
             pre=_spec_classes(["a", "b"])),
        case("predict-spec-4-classes-3-outputs", lambda t: ["predict", f"{t}/m2.onnx", f"{t}/iv.h5", "-o",
                                                            f"{t}/new.h5", "-q"], 1, "m2.onnx.json", "4 classes",
             pre=_spec_classes(["a", "b", "c", "d"])),
        case("study-interventions-typo", run, 2, "study.toml", "'nsteps'", "n_steps",
             pre=lambda t: _study(t, interventions='kind = "darken-background"\nnsteps = 4\n')),
        case("study-interventions-typo-sigma", run, 2, "study.toml", "'sgima'", "sigma",
             pre=lambda t: _study(t, interventions='kind = "background"\nsgima = 0.3\nn_steps = 4\n')),
        case("study-interventions-foreign-key", run, 2, "study.toml", "'fill'",
             pre=lambda t: _study(t, interventions='kind = "hue"\nfill = [0, 0, 0]\nn_steps = 4\n')),
        case("study-models-typo", run, 2, "study.toml", "'clases'", "classes",
             pre=lambda t: _study(t, models='clases = ["a", "b", "c"]\n')),
        case("study-models-typo-size", run, 2, "study.toml", "'szie'", "size",
             pre=lambda t: _study(t, models='szie = 32\n')),
    ]
    for kind, data in {"garbage": b"this is not an onnx model", "empty": b"", "truncated": None}.items():
        def make(t: Path, data: bytes | None = data) -> None:
            (t / "bad.onnx").write_bytes(data if data is not None else (t / "tiny.onnx").read_bytes()[:2000])
        cases.append(case(f"predict-onnx-{kind}", lambda t: ["predict", f"{t}/bad.onnx", f"{t}/iv.h5", "-o",
                                                            f"{t}/new.h5", "-q"], 1, "bad.onnx",
                          "not a valid ONNX model", pre=make))
        cases.append(case(f"predict-onnx-{kind}-images", lambda t: ["predict", f"{t}/bad.onnx", f"{t}/photo.png",
                                                                    f"{t}/frames/f0.png", "-o", f"{t}/new.h5", "-q"], 1,
                          "bad.onnx", "not a valid ONNX model", pre=make))
    return cases


CASES: list[Case] = (_image_cases() + _checkpoint_cases() + _interventions_cases() + _outputs_cases()
                     + _collision_cases() + _option_cases() + _guard_cases() + _model_cases() + _generic_cases())


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


# --------------------------------------------------------------------------- issue 17: writing, the right result


@pytest.mark.slow
def test_epg_outputs_are_replaced_and_force_replaces_foreign_files(project: Path, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Rescoring stays a one-liner (an epg output of the same kind is replaced); --force replaces a foreign file."""
    work = _prepare(project, tmp_path, monkeypatch)
    score = ["score", f"{work}/out.h5", "-k", "50", "-q"]
    for _ in range(2):
        assert _invoke(score).exit_code == 0
    csv_path = work / "out.scores.csv"
    assert csv_path.read_text().startswith("model,")
    (work / "notes.txt").write_text("mine\n")
    result = _invoke([*score, "-o", f"{work}/notes.txt"])
    assert result.exit_code == 2 and "--force" in result.stderr and (work / "notes.txt").read_text() == "mine\n"
    assert _invoke([*score, "-o", f"{work}/notes.txt", "--force"]).exit_code == 0
    assert (work / "notes.txt").read_text() == csv_path.read_text()

    report = ["report", f"{work}/out.h5", "-k", "50", "-q", "-o", f"{work}/site"]
    (work / "site").mkdir()
    (work / "site" / "index.html").write_text("<html>mine</html>")
    assert _invoke(report).exit_code == 2 and (work / "site" / "index.html").read_text() == "<html>mine</html>"
    assert _invoke([*report, "--force"]).exit_code == 0
    page = (work / "site" / "index.html").read_text()
    assert '<meta name="generator" content="epg report">' in page
    assert _invoke(report).exit_code == 0  # now epg's own: replaced without --force

    export = ["export", f"{work}/tiny.pt", "--size", "32", "-q", "-o", f"{work}/m.onnx"]
    for _ in range(2):
        assert _invoke(export).exit_code == 0
    predict = ["predict", f"{work}/m.onnx", f"{work}/iv.h5", "-q", "-o", f"{work}/p.h5"]
    (work / "p.h5").write_text("mine\n")
    assert _invoke(predict).exit_code == 2 and (work / "p.h5").read_text() == "mine\n"
    assert _invoke([*predict, "--force"]).exit_code == 0
    assert _invoke(predict).exit_code == 0  # an epg outputs file: blocks are added/replaced
    assert [b.sequence for b in __import__("epg_core").read_outputs(work / "p.h5")]


def test_a_broken_torchvision_is_one_line(project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An installed package that raises on import (here a fake torchvision) gives one line, not its traceback."""
    work = _prepare(project, tmp_path, monkeypatch)
    fake = tmp_path / "site" / "torchvision"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text('raise RuntimeError("operator torchvision::nms does not exist")\n')
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        monkeypatch.delitem(sys.modules, name)
    before = _tree(work)
    args = ["export", f"{work}/tiny.pt", "--arch", "torchvision:resnet18", "--size", "32", "-o", f"{work}/n.onnx",
            "-q"]
    result = _invoke(args)
    _check_error(result.exit_code, result.stderr, result.output,
                 Case("torchvision", lambda t: args, 1, ("torchvision", "fails to import", "nms")), args)
    _check_tree(before, work)


@pytest.mark.slow
def test_an_unwritable_jax_cache_is_silent(project: Path, tmp_path: Path) -> None:
    """A cache folder that cannot be made (its parent is a file) costs the cache, never a warning block."""
    (tmp_path / "file").write_text("x")
    env = {**os.environ, "EPG_JAX_CACHE": str(tmp_path / "file" / "cache"),
           "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    proc = subprocess.run([sys.executable, "-c", "from epg_cli.main import cli; cli(prog_name='epg')", "score",
                           str(project / "out.h5"), "-o", str(tmp_path / "s.csv"), "-k", "50", "-q"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "", proc.stderr


def test_quiet_intervene_prints_nothing(project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    work = _prepare(project, tmp_path, monkeypatch)
    result = _invoke(["intervene", "synthetic", f"{work}/photo.png", "--kind", "hue", "--n-steps", "3", "-q", "-o",
                      f"{work}/q.h5"])
    assert result.exit_code == 0 and result.output == "", result.output
    assert (work / "q.h5").exists()


def test_symlinked_checkpoints_keep_their_own_names(tmp_path: Path) -> None:
    """``best.pth -> epoch_7.pth`` is named ``best``; a Hugging Face snapshot's files are not named by blob hash."""
    from epg_bridges.models import checkpoint_names, find_checkpoints

    run = tmp_path / "run"
    run.mkdir()
    for name in ("epoch_7.pth", "epoch_8.pth"):
        (run / name).write_bytes(b"x")
    os.symlink(run / "epoch_7.pth", run / "best.pth")
    os.symlink("epoch_8.pth", run / "last.pth")
    assert checkpoint_names([run / "best.pth", run / "last.pth"]) == ["best", "last"]
    blobs, snap = tmp_path / "hub" / "blobs", tmp_path / "hub" / "snapshots" / "abc123"
    blobs.mkdir(parents=True)
    snap.mkdir(parents=True)
    (blobs / "9f86d081884c7d65").write_bytes(b"w")
    os.symlink(blobs / "9f86d081884c7d65", snap / "model.safetensors")
    assert checkpoint_names(find_checkpoints(str(snap / "*.safetensors"))) == ["model"]


def test_parity_tolerance_is_relative_to_the_output_scale() -> None:
    """Logits near 2,800 differ by float32 round-off (~5e-7 relative): accepted; a real 1e-3 relative error is not."""
    from epg_bridges.models._runner import parity_tolerance

    big = np.array([[2800.0, -1200.0]])
    assert parity_tolerance(1e-4, big) == pytest.approx(0.28)
    assert parity_tolerance(1e-4, np.array([[0.3, 0.7]])) == pytest.approx(1e-4)  # small outputs: atol as given
    ulp = float(np.spacing(np.float32(2800.0)))
    assert 1e-4 < ulp < parity_tolerance(1e-4, big)  # one float32 step at 2,800 exceeds the absolute atol
    assert 2800 * 1e-3 > parity_tolerance(1e-4, big)


@pytest.mark.slow
def test_export_of_large_logits_passes_the_parity_check(tmp_path: Path) -> None:
    """A model whose logits are in the thousands exports (an absolute 1e-4 refused it on round-off)."""
    from torch import nn

    from epg_bridges.models import Preprocessing, export_onnx

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 16, 3), nn.ReLU(), nn.Flatten(), nn.Linear(16 * 6 * 6, 2))
    last: Any = model[3]
    with torch.no_grad():
        last.weight.mul_(20_000.0)
    result = export_onnx(model, tmp_path / "big.onnx", preprocessing=Preprocessing(size=(8, 8)), atol=1e-4)
    ref = model(torch.from_numpy(Preprocessing(size=(8, 8)).random_batch(4))).detach().numpy()
    assert np.abs(ref).max() > 2000
    assert 1e-4 < result.max_abs_diff <= 1e-4 * np.abs(ref).max()  # beyond the old absolute limit, within scale


@pytest.mark.slow
def test_report_plot_names_never_collide(tmp_path: Path) -> None:
    """Sequences whose names slug alike ("a.b", "a-b", "A B") get one plot file each."""
    from epg_bridges.report._common import plot_name

    names = {plot_name("sequences", "m", s) for s in ("a.b", "a-b", "A B", "a_b")}
    assert len(names) == 4
    blocks = []
    for seq in ("a.b", "a-b"):
        block = _outputs_block()
        blocks.append(OutputsBlock(model="m", sequence=seq, outputs=block.outputs, done=block.done,
                                   checkpoints=block.checkpoints, classes=block.classes, values=block.values,
                                   output_kind="probabilities", preprocessing=block.preprocessing,
                                   attrs={**block.attrs, "property": seq, "image": seq}))
    write_outputs(tmp_path / "o.h5", blocks)
    result = _invoke(["report", str(tmp_path / "o.h5"), "-o", str(tmp_path / "rep"), "-k", "50", "-q",
                      "--checkpoints", "all"])
    assert result.exit_code == 0, result.output
    pngs = sorted(p.name for p in (tmp_path / "rep").glob("*.png"))
    for kind in ("sequences", "curves"):  # one figure per property, each in its own file
        assert len([p for p in pngs if p.startswith(kind + "_")]) == 2, pngs
    page = (tmp_path / "rep" / "index.html").read_text()
    assert all(p in page for p in pngs if p.startswith("sequences_"))


def test_a_curve_of_three_million_steps_is_refused_before_allocating() -> None:
    """Issue 17: exact null moments of a 3,000,000-step curve needed an N x N table (8 TiB); now one DataError
    (the limit is issue 20's MAX_TABLE_STEPS), raised before any table exists."""
    import tracemalloc

    import epg_core as E

    y = np.zeros(3_000_000, np.float32)
    tracemalloc.start()
    try:
        with pytest.raises(E.DataError, match="3,000,000 steps"):
            E.permutation_moments(y)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 200 * 2**20  # no N^2 table (or anything near it) was allocated


def test_what_counts_as_epg_output(project: Path, tmp_path: Path) -> None:
    """``written_by_epg`` for each kind: epg's own files pass, look-alikes and other kinds do not."""
    from epg_bridges.demo import study_template
    from epg_core._formats._guard import written_by_epg

    assert written_by_epg(project / "iv.h5", "interventions") and not written_by_epg(project / "iv.h5", "outputs")
    assert written_by_epg(project / "out.h5", "outputs") and not written_by_epg(project / "out.h5", "scores-csv")
    assert written_by_epg(project / "tiny.onnx", "onnx") and written_by_epg(project / "tiny.onnx.json", "model-spec")
    assert not written_by_epg(project / "tiny.pt", "onnx") and not written_by_epg(project / "photo.png", "onnx")
    (tmp_path / "s.csv").write_text("model,checkpoint,sequence,epg,pvalue\nm,c,s,0.1,0.5\n")
    (tmp_path / "t.csv").write_text("model,sequence\n")
    assert written_by_epg(tmp_path / "s.csv", "scores-csv") and not written_by_epg(tmp_path / "t.csv", "scores-csv")
    for name in ("demo", "reference"):  # both built-in studies; a demo killed before its study file also counts
        (tmp_path / name).mkdir()
        (tmp_path / name / "study.toml").write_text(study_template(name))
        assert written_by_epg(tmp_path / name, "demo")
    (tmp_path / "killed" / "images").mkdir(parents=True)
    assert written_by_epg(tmp_path / "killed", "demo")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "study.toml").write_text("[study]\n")
    assert not written_by_epg(tmp_path / "mine", "demo") and not written_by_epg(tmp_path / "mine", "report")
    (tmp_path / "old-report").mkdir()
    (tmp_path / "old-report" / "index.html").write_text("<html><head><title>epg report</title></head></html>")
    assert written_by_epg(tmp_path / "old-report", "report")  # reports written before the marker
    assert written_by_epg(tmp_path / "killed" / "images", "report")  # an empty folder
