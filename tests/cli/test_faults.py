"""Fault injection on real ``epg`` processes: SIGKILL at random points, and two sweeps writing one file at once.

- ``intervene synthetic`` and ``score`` are killed at seeded random moments (and, where it can be caught, while a
  temporary file is being written); afterwards every file is either absent or identical to the one of an
  uninterrupted run, the rerun gives the identical result and no temporary file remains (the next writer of a
  path removes what killed writers left). The killed-sweep case lives in tests/cli/test_cli_models.py.
- Two concurrent ``sweep`` processes with overlapping checkpoint lists into one outputs file: both succeed and
  the file holds every checkpoint, bit-identical to one sequential sweep.
"""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from helpers import hdf5_content, run_cli, write_image

from epg_bridges.testing import small_interventions, train_run
from epg_core import OutputsBlock, read_outputs, write_outputs

pytestmark = pytest.mark.slow

TEMP_MARKS = (".tmp-", ".lock")
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}


def _start(args: list[str], cwd: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", "from epg_cli.main import cli; cli(prog_name='epg')", *args],
                            cwd=cwd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _run(args: list[str], cwd: Path, timeout: float = 300) -> tuple[float, str]:
    """Run ``epg args`` to the end; return (wall seconds, stderr); exit 0 required."""
    began = time.monotonic()
    proc = _start(args, cwd)
    _, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err.decode()[-3000:]
    return time.monotonic() - began, err.decode()


def _temps(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if any(m in p.name for m in TEMP_MARKS))


def _kill_at(args: list[str], cwd: Path, delay: float | None) -> bool:
    """Start ``epg args`` and SIGKILL it after ``delay`` seconds, or (``delay=None``) as soon as a temporary file
    appears in ``cwd``; True if it was killed (it may have finished first)."""
    proc = _start(args, cwd)
    deadline = time.monotonic() + (delay if delay is not None else 300)
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            if delay is None and any(".tmp-" in p.name for p in cwd.iterdir()):
                break
            time.sleep(0.002 if delay is None else 0.01)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
    return proc.returncode == -signal.SIGKILL


def _kill_within(args: list[str], cwd: Path, delay: float | None, reset: Callable[[], None]) -> bool:
    """``_kill_at``; where the run finished before ``delay`` (a loaded machine, a warm compilation cache), ``reset``
    the folder and try again at half the delay, up to five times; True if a run was killed."""
    for attempt in range(5):
        if _kill_at(args, cwd, None if delay is None else delay * 0.5**attempt):
            return True
        if delay is None:
            return False
        reset()
    return False


def _clear(folder: Path) -> None:
    for p in list(folder.iterdir()):
        p.unlink()


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --------------------------------------------------------------------------- intervene synthetic


def test_killed_intervene_leaves_nothing_half_written_and_the_rerun_is_identical(tmp_path: Path) -> None:
    photo = write_image(tmp_path / "photo.png", (144, 192), seed=4)
    ref_dir, work = tmp_path / "ref", tmp_path / "work"
    ref_dir.mkdir()
    work.mkdir()
    args = ["intervene", "synthetic", "rotation", str(photo), "--n-steps", "150", "-q", "-o", "iv.h5"]
    seconds, _ = _run(args, ref_dir)
    reference = {p.name: p for p in ref_dir.iterdir()}
    assert sorted(reference) == ["iv.h5", "iv.photo-rotation.png"]
    photo_hash = _sha(photo)
    rng = random.Random(11)
    kills = 0
    for delay in [rng.uniform(0.3, 1.0) * seconds, rng.uniform(0.6, 1.0) * seconds, None]:
        kills += _kill_within(args, work, delay, lambda: _clear(work))
        files = {p.name for p in work.iterdir() if not any(m in p.name for m in TEMP_MARKS)}
        assert files <= set(reference), files
        if "iv.h5" in files:  # renamed into place last: the run had finished, sheet and all
            assert files == set(reference), files
        else:  # the rerun is never refused, whatever the killed run left
            _run(args, work)
        _same_h5(work / "iv.h5", reference["iv.h5"])
        assert (work / "iv.photo-rotation.png").read_bytes() == reference["iv.photo-rotation.png"].read_bytes()
        assert _temps(work) == [], _temps(work)
        for p in list(work.iterdir()):
            p.unlink()
    assert kills >= 1  # at least one run really died mid-way
    assert _sha(photo) == photo_hash


def _same_h5(a: Path, b: Path) -> None:
    """Same datasets and attributes in two HDF5 files (a 'created' time stamp aside)."""
    ca, cb = hdf5_content(a), hdf5_content(b)
    assert ca.keys() == cb.keys()
    for key in ca:
        va, vb = ca[key], cb[key]
        if isinstance(va, np.ndarray) and va.dtype.names:  # a table: rows as text, so NaN cells compare equal
            assert isinstance(vb, np.ndarray) and va.dtype == vb.dtype and str(va.tolist()) == str(vb.tolist()), key
        elif isinstance(va, np.ndarray):
            np.testing.assert_array_equal(va, vb, err_msg=key)
        elif isinstance(va, dict) and isinstance(vb, dict):  # paths to the source image are the same file
            assert va.keys() == vb.keys(), key
            assert {k: str(v) for k, v in va.items() if k != "created"} == \
                {k: str(v) for k, v in vb.items() if k != "created"}, key


# --------------------------------------------------------------------------- score


def _outputs(path: Path, sequences: int = 24, m: int = 4, n: int = 30, c: int = 10) -> Path:
    rng = np.random.default_rng(0)
    blocks = []
    for s in range(sequences):
        raw = rng.random((m, n, c))
        blocks.append(OutputsBlock(model="m", sequence=f"s{s}", outputs=(raw / raw.sum(-1, keepdims=True)).astype(
            np.float32), done=np.ones(m, bool), checkpoints=[f"epoch_{i}" for i in range(m)],
            classes=[f"c{j}" for j in range(c)], values=np.linspace(0.0, 1.0, n), output_kind="probabilities",
            preprocessing={"size": [32, 32]}, attrs={"source": "synthetic", "property": "brightness", "unit": "",
                                                     "includes_original": True}))
    return write_outputs(path, blocks)


def test_killed_score_leaves_the_outputs_intact_and_the_rerun_is_identical(tmp_path: Path) -> None:
    ref_dir, work = tmp_path / "ref", tmp_path / "work"
    ref_dir.mkdir()
    work.mkdir()
    _outputs(ref_dir / "out.h5")
    _outputs(work / "out.h5")
    original = read_outputs(work / "out.h5")
    args = ["score", "out.h5", "-k", "2000", "--group-by", "property", "-q", "-o", "scores.csv"]
    seconds, _ = _run(args, ref_dir)
    reference = (ref_dir / "scores.csv").read_bytes()
    rng = random.Random(5)
    kills = 0
    for delay in (rng.uniform(0.3, 1.0) * seconds, rng.uniform(0.7, 1.0) * seconds):
        kills += _kill_within(args, work, delay, lambda: _reset_score(work))
        if (work / "scores.csv").exists():  # atomic: complete or absent
            assert (work / "scores.csv").read_bytes() == reference
        _same_blocks(read_outputs(work / "out.h5"), original)  # score adds /scores to the file, nothing else
        _run(args, work)
        assert (work / "scores.csv").read_bytes() == reference
        assert _temps(work) == [], _temps(work)
        _same_h5(work / "out.h5", ref_dir / "out.h5")  # every dataset and attribute, /scores included
        (work / "scores.csv").unlink()
    assert kills >= 1


def _reset_score(work: Path) -> None:
    """The folder as before the first score: a fresh outputs file, no scores."""
    _clear(work)
    _outputs(work / "out.h5")


def _same_blocks(got: list[OutputsBlock], want: list[OutputsBlock]) -> None:
    assert [(b.model, b.sequence, b.checkpoints) for b in got] == [(b.model, b.sequence, b.checkpoints) for b in want]
    for a, b in zip(got, want, strict=True):
        np.testing.assert_array_equal(a.outputs, b.outputs)
        np.testing.assert_array_equal(a.done, b.done)


# --------------------------------------------------------------------------- two sweeps into one file


def test_two_concurrent_sweeps_into_one_file_lose_nothing(tmp_path: Path) -> None:
    paths = train_run(tmp_path / "run", steps=10)
    iv = small_interventions(tmp_path / "iv.h5")
    (tmp_path / "a.txt").write_text("\n".join(str(p) for p in paths[:6]) + "\n")
    (tmp_path / "b.txt").write_text("\n".join(str(p) for p in paths[3:]) + "\n")
    out = tmp_path / "shared.h5"
    procs = [_start(["sweep", str(tmp_path / f"{x}.txt"), str(iv), "-o", str(out), "--size", "32", "-q"], tmp_path)
             for x in "ab"]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err.decode()[-3000:]
    assert _temps(tmp_path) == []

    full = tmp_path / "full.h5"
    result = run_cli("sweep", str(tmp_path / "run" / "epoch_*.pt"), iv, "-o", full, "--size", 32, "-q")
    assert result.exit_code == 0, result.output
    names = [p.stem for p in paths]
    for seq in ("bright", "rotate"):
        (got,) = read_outputs(out, "convmixer", seq)
        (want,) = read_outputs(full, "convmixer", seq)
        assert sorted(got.checkpoints) == sorted(names) and got.done.all(), (got.checkpoints, got.done)
        order = [got.checkpoints.index(c) for c in want.checkpoints]
        np.testing.assert_array_equal(got.outputs[order], want.outputs)
