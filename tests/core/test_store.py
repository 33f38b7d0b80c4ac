"""The store of finished checkpoints: shards, folding, locks, kills, concurrent writers, full disks, cost.

Several tests run writers in subprocesses (``sys.executable -c``) so that kills and concurrent processes are
real; each subprocess imports epg_core (about a second).
"""

from __future__ import annotations

import json
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from epg_core import (
    DataError,
    EpgError,
    OutputsBlock,
    StoreError,
    fold_shards,
    pending_shards,
    read_outputs,
    set_checkpoint_outputs,
    shard_dir,
    write_outputs,
    write_shard,
)
from epg_core._formats._atomic import file_lock

N, C = 11, 40


def _rows(index: int, seq: str = "s", n: int = N, c: int = C) -> np.ndarray:
    """Distinct, checkable rows for checkpoint ``index`` of sequence ``seq``."""
    base = np.arange(n * c, dtype=np.float32).reshape(n, c) / (n * c)
    return base + np.float32(index) + (0.5 if seq == "t" else 0.0)


def _empty(model: str = "m", seq: str = "s", m: int = 6, n: int = N, c: int = C) -> OutputsBlock:
    # logits: the rows encode their checkpoint index (values above 1), which probabilities may not hold
    return OutputsBlock(model, seq, np.full((m, n, c), np.nan, np.float32), np.zeros(m, bool),
                        [f"epoch_{i:03d}" for i in range(m)], [f"class_{j}" for j in range(c)], np.linspace(0, 1, n),
                        output_kind="logits")


def _leftovers(directory: Path) -> list[str]:
    """Temporary files, lock files and shard folders left in ``directory``."""
    return sorted(p.name for p in directory.iterdir() if ".tmp-" in p.name or p.name.endswith((".lock", ".shards")))


def _check_exact(path: Path, m: int) -> np.ndarray:
    """Every finished checkpoint holds exactly its rows (nothing half-written is marked done); return done."""
    blocks = {b.sequence: b for b in read_outputs(path, "m")}
    done = blocks["s"].done
    np.testing.assert_array_equal(done, blocks["t"].done)
    for i in np.flatnonzero(done):
        for seq, block in blocks.items():
            np.testing.assert_array_equal(block.outputs[i], _rows(int(i), seq))
    assert len(done) == m
    return done


# --------------------------------------------------------------------------- shards


def test_shards_are_visible_before_folding_and_folding_is_idempotent(tmp_path: Path) -> None:
    path = write_outputs(tmp_path / "out.h5", [_empty(), _empty(seq="t")])
    shard = write_shard(path, "m", 2, {"s": _rows(2), "t": _rows(2, "t")})
    assert shard.parent == shard_dir(path) and pending_shards(path) == [shard]
    assert pending_shards(path, "m") == [shard] and pending_shards(path, "other") == []
    assert _check_exact(path, 6).tolist() == [False, False, True, False, False, False]  # read through the shard
    kept = tmp_path / "copy.npz"
    shutil.copyfile(shard, kept)
    assert fold_shards(path) == 1
    assert pending_shards(path) == [] and not shard_dir(path).exists()
    after = read_outputs(path)
    assert fold_shards(path) == 0
    shard_dir(path).mkdir()
    shutil.copyfile(kept, shard)  # the same shard again (a fold killed after writing, before removing)
    assert fold_shards(path) == 1
    for a, b in zip(after, read_outputs(path), strict=True):
        np.testing.assert_array_equal(a.outputs, b.outputs)
        np.testing.assert_array_equal(a.done, b.done)
    assert _leftovers(tmp_path) == []


def test_a_shard_never_lands_in_a_block_that_replaced_its_own(tmp_path: Path) -> None:
    path = write_outputs(tmp_path / "out.h5", [_empty()])
    shard = write_shard(path, "m", 1, {"s": _rows(1)})
    kept = tmp_path / "copy.npz"
    shutil.copyfile(shard, kept)
    write_outputs(path, [_empty(seq="t")])  # folds pending shards first: nothing finished is lost
    assert read_outputs(path, "m", "s")[0].done.tolist() == [False, True, False, False, False, False]
    replaced = _empty()
    replaced = OutputsBlock(**{**replaced.__dict__, "preprocessing": {"size": [64, 64]}})
    write_outputs(path, [replaced])  # a restart with other options replaces block m/s
    shard_dir(path).mkdir()
    shutil.copyfile(kept, shard)  # ... and an old shard of the replaced block turns up
    assert not read_outputs(path, "m", "s")[0].done.any()
    assert fold_shards(path) == 0 and pending_shards(path) == []
    assert not read_outputs(path, "m", "s")[0].done.any()


def test_store_checks_rows_before_writing_anything(tmp_path: Path) -> None:
    path = write_outputs(tmp_path / "out.h5", [_empty()])
    bad = _rows(0)
    bad[3, 7] = np.nan
    with pytest.raises(DataError, match=r"out\.h5: the rows for m/s has NaN in checkpoint 'epoch_000' at step 3, "
                                        r"output 'class_7'"):
        set_checkpoint_outputs(path, "m", 0, {"s": bad})
    with pytest.raises(EpgError, match=r"out\.h5: model 'm' has no sequence 'x'"):
        write_shard(path, "m", 0, {"x": _rows(0)})
    with pytest.raises(EpgError, match=r"out\.h5: checkpoint index 6 out of range for 6 checkpoints"):
        write_shard(path, "m", 6, {"s": _rows(0)})
    with pytest.raises(EpgError, match=r"rows for m/s have shape \(11, 3\), expected \(11, 40\)"):
        write_shard(path, "m", 0, {"s": _rows(0)[:, :3]})
    assert not shard_dir(path).exists() and _leftovers(tmp_path) == []


def test_a_second_writer_waits_then_fails_with_a_clear_message(tmp_path: Path) -> None:
    path = write_outputs(tmp_path / "out.h5", [_empty()])
    errors: list[BaseException] = []

    def other_writer() -> None:
        try:
            write_shard(path, "m", 0, {"s": _rows(0)}, lock_timeout=0.3)
        except BaseException as exc:  # noqa: BLE001  (handed to the test thread)
            errors.append(exc)

    with file_lock(path):
        thread = threading.Thread(target=other_writer)
        start = time.monotonic()
        thread.start()
        thread.join(10)
        waited = time.monotonic() - start
    assert len(errors) == 1 and isinstance(errors[0], StoreError)
    assert str(errors[0]) == f"{path}: another process is using this file (waited 0.3 s for out.h5.lock); " \
                             "try again when it has finished"
    assert 0.25 < waited < 5
    set_checkpoint_outputs(path, "m", 0, {"s": _rows(0)})  # free again
    assert _leftovers(tmp_path) == []


def test_the_next_writer_removes_stale_temporary_files(tmp_path: Path) -> None:
    path = write_outputs(tmp_path / "out.h5", [_empty()])
    stale = [tmp_path / "out.h5.tmp-999-dead", shard_dir(path) / "abc.npz.tmp-999-dead"]
    shard_dir(path).mkdir()
    for p in stale:
        p.write_bytes(b"\0" * 1000)
    unrelated = tmp_path / "other.h5.tmp-1-2"
    unrelated.write_bytes(b"x")
    read_outputs(path)  # a reader removes nothing
    assert all(p.exists() for p in stale)
    set_checkpoint_outputs(path, "m", 0, {"s": _rows(0)})
    assert not any(p.exists() for p in stale) and unrelated.exists()
    assert not shard_dir(path).exists() and not (tmp_path / "out.h5.lock").exists()


# --------------------------------------------------------------------------- kills and concurrent processes

WRITER = textwrap.dedent(
    """
    import sys
    import numpy as np
    from epg_core import set_checkpoint_outputs
    path, indices = sys.argv[1], [int(i) for i in sys.argv[2].split(",")]
    base = np.arange({n} * {c}, dtype=np.float32).reshape({n}, {c}) / ({n} * {c})
    for i in indices:
        set_checkpoint_outputs(path, "m", i, {{"s": base + np.float32(i), "t": base + np.float32(i) + 0.5}})
        print(i, flush=True)
    """
).format(n=N, c=C)


def _writer(path: Path, indices: list[int]) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", WRITER, str(path), ",".join(map(str, indices))],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_a_killed_writer_loses_nothing_it_finished(tmp_path: Path) -> None:
    m = 40
    path = write_outputs(tmp_path / "out.h5", [_empty(m=m), _empty(seq="t", m=m)])
    rng = random.Random(0)
    finished: set[int] = set()
    for _ in range(3):
        todo = [i for i in range(m) if i not in finished]
        proc = _writer(path, todo)
        assert proc.stdout is not None
        for _ in range(rng.randint(2, 6)):
            line = proc.stdout.readline()
            assert line, proc.stderr.read() if proc.stderr else ""
            finished.add(int(line))
        time.sleep(rng.random() * 0.05)  # somewhere inside the next store: shard, fold or rename
        proc.send_signal(signal.SIGKILL)
        out, _ = proc.communicate()
        finished.update(int(i) for i in out.split())
        done = _check_exact(path, m)  # readable, and nothing half-written is marked done
        assert finished <= set(np.flatnonzero(done).tolist())  # pending shards included: readers see them
    proc = _writer(path, [i for i in range(m) if i not in finished])
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert _check_exact(path, m).all()
    assert _leftovers(tmp_path) == []


@pytest.mark.slow
def test_two_processes_storing_into_one_file_lose_nothing(tmp_path: Path) -> None:
    m = 60
    path = write_outputs(tmp_path / "out.h5", [_empty(m=m), _empty(seq="t", m=m)])
    procs = [_writer(path, list(range(0, m, 2))), _writer(path, list(range(1, m, 2)))]
    reports = [p.communicate(timeout=300) for p in procs]
    for proc, (out, err) in zip(procs, reports, strict=True):
        assert proc.returncode == 0, err
        assert len(out.split()) == m // 2
    assert _check_exact(path, m).all()
    assert _leftovers(tmp_path) == []


# --------------------------------------------------------------------------- full disks and write errors

DISK_FULL = textwrap.dedent(
    """
    import hashlib, json, os, sys
    import numpy as np
    from epg_core import (EpgError, InterventionSequence, OutputsBlock, append_interventions, read_outputs,
                          set_checkpoint_outputs, write_interventions, write_outputs, write_scores)

    folder, mode = sys.argv[1], sys.argv[2]
    out, iv = os.path.join(folder, "out.h5"), os.path.join(folder, "iv.h5")
    def block(seq, m=4, n=11, c=1000):
        return OutputsBlock("m", seq, np.full((m, n, c), np.nan, np.float32), np.zeros(m, bool),
                            [f"e{i}" for i in range(m)], [f"c{j}" for j in range(c)], np.linspace(0, 1, n),
                            output_kind="logits")
    def seq(n, size):
        rng = np.random.default_rng(n)
        return InterventionSequence(rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8), np.arange(n), {})
    write_outputs(out, [block("s")])
    write_interventions(iv, {"a": seq(3, 8)})
    set_checkpoint_outputs(out, "m", 0, {"s": np.ones((11, 1000), np.float32)})
    digest = lambda p: hashlib.sha256(open(p, "rb").read()).hexdigest()
    before = {p: digest(p) for p in (out, iv)}
    if mode == "tmpfs":  # fill the disk, then give back a little (less than one checkpoint's shard)
        fd = os.open(os.path.join(folder, "filler"), os.O_WRONLY | os.O_CREAT)
        try:
            while True:
                os.write(fd, b"\\0" * 4096)
        except OSError:
            pass
        os.ftruncate(fd, max(os.fstat(fd).st_size - 16384, 0))
        os.close(fd)
    else:  # the largest file this process may write: a bit more than the files it has
        import resource, signal
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        limit = max(os.path.getsize(out), os.path.getsize(iv)) + 16384
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    calls = {
        "store": lambda: set_checkpoint_outputs(out, "m", 1, {"s": np.full((11, 1000), 2.0, np.float32)}),
        "write_outputs": lambda: write_outputs(out, [block("t", m=8)]),
        "write_scores": lambda: write_scores(out, [{"text": "x" * 100} for _ in range(2000)]),
        "write_interventions": lambda: write_interventions(os.path.join(folder, "new.h5"), {"a": seq(4, 200)}),
        "append_interventions": lambda: append_interventions(iv, {"b": seq(4, 200)}),
    }
    if mode != "tmpfs":
        del calls["store"]  # a shard is smaller than the size limit: only a full disk refuses it
    report = {}
    for name, call in calls.items():
        try:
            call()
            report[name] = "written"
        except EpgError as exc:
            report[name] = [type(exc).__name__, str(exc)]
    report["intact"] = all(digest(p) == h for p, h in before.items())
    report["done"] = read_outputs(out)[0].done.tolist()
    report["left"] = sorted(os.listdir(folder))
    print(json.dumps(report))
    """
)


def _check_disk_full_report(proc: subprocess.CompletedProcess[str], reason: str, left: list[str]) -> None:
    assert proc.returncode == 0, proc.stderr[-3000:]  # no segfault, no traceback
    report: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    names = ["write_outputs", "write_scores", "write_interventions", "append_interventions"]
    for name in ["store", *names] if reason == "No space left on device" else names:
        kind, message = report[name]
        assert kind == "StoreError", (name, message)
        assert "\n" not in message and reason in message and "intact" in message, (name, message)
    assert report["intact"] is True
    assert report["done"] == [True, False, False, False]
    assert report["left"] == left


@pytest.mark.slow
def test_a_full_disk_raises_the_library_error_and_keeps_the_previous_file(tmp_path: Path) -> None:
    if shutil.which("unshare") is None:
        pytest.skip("unshare is not installed: cannot mount a small tmpfs")
    mount = tmp_path / "disk"
    mount.mkdir()
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", f"mount -t tmpfs -o size=2m tmpfs {mount}"],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"mounting a tmpfs is not permitted here: {probe.stderr.strip()}")
    script = tmp_path / "disk_full.py"
    script.write_text(DISK_FULL)
    proc = subprocess.run(
        ["unshare", "-rm", "sh", "-c", 'mount -t tmpfs -o size=2m tmpfs "$1" && exec "$2" "$3" "$1" tmpfs',
         "sh", str(mount), sys.executable, str(script)],
        capture_output=True, text=True, timeout=300)
    _check_disk_full_report(proc, "No space left on device", ["filler", "iv.h5", "out.h5"])


@pytest.mark.slow
def test_a_write_refused_by_the_file_size_limit_raises_the_library_error(tmp_path: Path) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    proc = subprocess.run([sys.executable, "-c", DISK_FULL, str(folder), "rlimit"], capture_output=True, text=True,
                          timeout=300)
    _check_disk_full_report(proc, "File too large", ["iv.h5", "out.h5"])


# --------------------------------------------------------------------------- cost


def _median_store_seconds(path: Path, m: int, repeats: int = 7) -> float:
    times = []
    for k in range(repeats):
        rows = {"s": np.full((101, 250), k, np.float32)}
        start = time.perf_counter()
        set_checkpoint_outputs(path, "m", (k * 7) % m, rows)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


@pytest.mark.slow
def test_storing_a_checkpoint_costs_the_same_in_a_small_and_a_large_file(tmp_path: Path) -> None:
    small = write_outputs(tmp_path / "small.h5", [_empty(m=5, n=101, c=250)])
    large = write_outputs(tmp_path / "large.h5", [_empty(m=500, n=101, c=250)])
    assert small.stat().st_size < 600_000 and large.stat().st_size > 50_000_000
    _median_store_seconds(small, 5, repeats=2)  # warm up
    t_small = _median_store_seconds(small, 5)
    t_large = _median_store_seconds(large, 500)
    assert t_large / t_small < 3, (t_small, t_large)
