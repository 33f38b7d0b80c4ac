"""The Ray executor against the local one: sweeps and studies bit for bit, resume, killed workers, hidden paths.

One local Ray cluster (2 CPUs) serves the module. The oracle of every test is the local executor (one process,
the plain checkpoint loop of ``sweep``) run on the same files; outputs are compared with ``np.array_equal``.
"""

from __future__ import annotations

import os
import shutil
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

pytestmark = pytest.mark.slow
ray = pytest.importorskip("ray", reason="the ray extra is not installed")

from epg_bridges.executors import ExecutorOptions, check_visible  # noqa: E402
from epg_bridges.models import Preprocessing, RunOptions, sweep  # noqa: E402
from epg_bridges.testing import small_interventions, train_run  # noqa: E402
from epg_cli.main import cli  # noqa: E402
from epg_core import DataError, UsageError, read_outputs  # noqa: E402

N_CKPT = 8
OPTS = RunOptions(preprocessing=Preprocessing(size=(32, 32)), classes=["a", "b", "c"])
RAY = ExecutorOptions(executor="ray")


@pytest.fixture(scope="module", autouse=True)
def cluster() -> Iterator[None]:
    """A local Ray cluster with 2 CPUs for the whole module, shut down at the end (one left by an earlier
    module is shut down first)."""
    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    try:
        yield
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("ray")
    train_run(folder / "ckpts", steps=N_CKPT)
    small_interventions(folder / "iv.h5")
    return folder


@pytest.fixture(scope="module")
def local(run_dir: Path) -> Path:
    """The oracle: the same sweep with the local executor."""
    out = run_dir / "local.h5"
    result = sweep(str(run_dir / "ckpts" / "epoch_*.pt"), [run_dir / "iv.h5"], out, OPTS)
    assert result.computed == list(range(N_CKPT))
    return out


def _outputs(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray, list[str]]]:
    return {b.sequence: (b.outputs, b.done, b.checkpoints) for b in read_outputs(path, "convmixer")}


def assert_identical(path: Path, oracle: Path) -> None:
    got, want = _outputs(path), _outputs(oracle)
    assert sorted(got) == sorted(want) == ["bright", "rotate"]
    for seq, (outputs, done, names) in want.items():
        assert got[seq][2] == names
        assert got[seq][1].all() and done.all()
        assert got[seq][0].dtype == outputs.dtype == np.float32
        assert np.array_equal(got[seq][0], outputs), seq
    assert len({want["bright"][0][i].tobytes() for i in range(N_CKPT)}) == N_CKPT  # checkpoints differ


def _actor_pids() -> list[int]:
    """Pids of this test process's Ray workers (actors are grandchildren: test -> raylet -> worker)."""
    me, found = os.getpid(), []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                if not fh.read().startswith(b"ray::_Actor"):
                    continue
            if _parent(_parent(int(entry))) == me:
                found.append(int(entry))
        except (OSError, ValueError):
            continue
    return found


def _parent(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as fh:
        return int(fh.read().rsplit(")", 1)[1].split()[1])


# ------------------------------------------------------------------------------------------------ sweeps


def test_cli_sweep_on_ray_equals_local_and_a_rerun_computes_nothing(run_dir: Path, local: Path) -> None:
    out = run_dir / "cli-ray.h5"
    args = ["sweep", str(run_dir / "ckpts" / "epoch_*.pt"), str(run_dir / "iv.h5"), "-o", str(out), "--size", "32",
            "--classes", "a,b,c", "--executor", "ray", "--quiet"]
    first = CliRunner().invoke(cli, args)
    assert first.exit_code == 0, first.output
    assert_identical(out, local)
    assert not (run_dir / "cli-ray.h5.shards").exists() or not any((run_dir / "cli-ray.h5.shards").iterdir())
    seen: list[tuple[int, int]] = []
    again = sweep(str(run_dir / "ckpts" / "epoch_*.pt"), [run_dir / "iv.h5"], out, OPTS, executor=RAY,
                  progress=lambda d, t: seen.append((d, t)))
    assert again.computed == [] and again.skipped == list(range(N_CKPT))
    assert seen == [(N_CKPT, N_CKPT)]
    assert_identical(out, local)


def test_ray_resumes_a_partial_local_sweep(run_dir: Path, local: Path) -> None:
    out = run_dir / "partial.h5"
    listing = run_dir / "list.txt"
    listing.write_text("".join(f"{run_dir / 'ckpts' / f'epoch_{i}.pt'}\n" for i in range(1, N_CKPT + 1)))
    with pytest.raises(_Stop):  # a local sweep interrupted after 3 checkpoints
        sweep(listing, [run_dir / "iv.h5"], out, OPTS, progress=_stop_after(3))
    seen: list[int] = []
    result = sweep(listing, [run_dir / "iv.h5"], out, OPTS, executor=RAY, progress=lambda d, _t: seen.append(d))
    assert result.skipped == [0, 1, 2] and result.computed == list(range(3, N_CKPT))
    assert seen == list(range(3, N_CKPT + 1))  # progress is counted in the driver, finished ones included
    assert result.swap_check_diff is not None and result.swap_check_diff < 1e-4
    assert_identical(out, local)


class _Stop(Exception):
    pass


def _stop_after(n: int) -> Callable[[int, int], None]:
    """A progress callback that interrupts a sweep once ``n`` checkpoints are stored."""
    def progress(done: int, _total: int) -> None:
        if done >= n:
            raise _Stop

    return progress


def test_killed_worker_is_retried_and_the_result_is_identical(run_dir: Path, local: Path) -> None:
    out = run_dir / "killed.h5"
    killed: list[int] = []
    later: set[int] = set()

    def progress(done: int, _total: int) -> None:
        if done == 2 and not killed:  # mid-sweep: kill every worker process of this test by pid
            killed.extend(_actor_pids())
            for pid in killed:
                os.kill(pid, signal.SIGKILL)
        elif killed:
            later.update(_actor_pids())

    result = sweep(str(run_dir / "ckpts" / "epoch_*.pt"), [run_dir / "iv.h5"], out, OPTS,
                   executor=ExecutorOptions(executor="ray", workers=2), progress=progress)
    assert killed, "no worker process was found to kill"
    assert later - set(killed), "no restarted worker ran the remaining checkpoints"
    assert result.computed == list(range(N_CKPT))
    assert_identical(out, local)


def test_worker_that_cannot_see_a_checkpoint_fails_with_one_line(run_dir: Path, tmp_path: Path) -> None:
    ckpts = tmp_path / "ckpts"
    shutil.copytree(run_dir / "ckpts", ckpts)
    hidden = ckpts / f"epoch_{N_CKPT}.pt"

    def progress(done: int, _total: int) -> None:
        if done == 0:  # after the driver listed the checkpoints, before any worker starts
            hidden.unlink(missing_ok=True)

    with pytest.raises(DataError, match=r"worker on .* cannot see .*epoch_8\.pt: put inputs and outputs on a") as err:
        sweep(str(ckpts / "epoch_*.pt"), [run_dir / "iv.h5"], tmp_path / "out.h5", OPTS, executor=RAY,
              progress=progress)
    assert "\n" not in str(err.value)
    with pytest.raises(DataError, match="cannot see"):
        check_visible([tmp_path / "nowhere.h5"])


def test_bad_executor_options_are_usage_errors(run_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="unknown executor 'dask'"):
        ExecutorOptions(executor="dask")  # pyright: ignore[reportArgumentType] - the wrong value is the test
    with pytest.raises(UsageError, match="--ray-address needs --executor ray"):
        ExecutorOptions(ray_address="auto")
    result = CliRunner().invoke(cli, ["sweep", str(run_dir / "ckpts" / "epoch_*.pt"), str(run_dir / "iv.h5"),
                                      "-o", str(tmp_path / "o.h5"), "--ray-address", "auto"])
    assert result.exit_code == 2 and "--ray-address needs --executor ray" in result.output


# ------------------------------------------------------------------------------------------------ studies

STUDY = """
[study]
name = "tiny"
out = "{out}"

[[images]]
path = "images/*.png"

[[interventions]]
property = "brightness"
kind = "brightness"
n_steps = 6
size = 32

[[models]]
name = "convmixer"
arch = "convmixer"
checkpoints = "ckpts/epoch_*.pt"
classes = ["a", "b", "c"]
size = 32

[score]
n_permutations = 50
"""


def test_epg_run_on_ray_equals_local(run_dir: Path, tmp_path: Path) -> None:
    from PIL import Image

    (tmp_path / "images").mkdir()
    rng = np.random.default_rng(3)
    for name in ("one", "two"):
        Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(tmp_path / "images" / f"{name}.png")
    shutil.copytree(run_dir / "ckpts", tmp_path / "ckpts")
    for executor in ("local", "ray"):
        (tmp_path / f"{executor}.toml").write_text(STUDY.format(out=f"out-{executor}"))
        result = CliRunner().invoke(cli, ["run", str(tmp_path / f"{executor}.toml"), "--no-report", "--quiet",
                                          "--executor", executor])
        assert result.exit_code == 0, result.output
    ours, theirs = ({b.sequence: b for b in read_outputs(tmp_path / f"out-{e}" / "outputs.h5", "convmixer")}
                    for e in ("ray", "local"))
    assert sorted(ours) == sorted(theirs) == ["one-brightness", "two-brightness"]
    for seq, block in theirs.items():
        assert block.done.all() and ours[seq].done.all()
        assert np.array_equal(ours[seq].outputs, block.outputs), seq
    scores = [(tmp_path / f"out-{e}" / "scores.csv").read_text() for e in ("ray", "local")]
    assert scores[0] == scores[1]


# ------------------------------------------------------------------------------------------------ edits


def test_edit_on_ray_equals_local(tmp_path: Path) -> None:
    from helpers import run_cli, write_image

    from epg_bridges.testing import tiny_random_pipeline
    from epg_core import read_interventions

    model = tmp_path / "tiny-ip2p"
    tiny_random_pipeline("instruct-pix2pix").save_pretrained(model)
    photos = [write_image(tmp_path / "cat.png"), write_image(tmp_path / "dog.png", seed=5),
              write_image(tmp_path / "owl.png", seed=7)]
    edit = ["intervene", "edit", *photos, "-i", "make it a cat", "-m", model, "--scales", "1.5,4,9", "--steps", 2,
            "--batch-size", 2, "--image-guidance", 1.5, "--seed", 3, "--device", "cpu", "-q"]
    for executor in ("local", "ray"):
        result = run_cli(*edit, "--executor", executor, "-o", tmp_path / f"{executor}.h5")
        assert result.exit_code == 0, result.output
    ours, theirs = read_interventions(tmp_path / "ray.h5"), read_interventions(tmp_path / "local.h5")
    assert list(ours) == list(theirs) == ["cat-instruct-pix2pix", "dog-instruct-pix2pix", "owl-instruct-pix2pix"]
    for name, seq in theirs.items():
        assert np.array_equal(ours[name].images, seq.images), name
        assert np.array_equal(ours[name].values, seq.values)
        assert ours[name].attrs == seq.attrs
    assert not np.array_equal(ours["cat-instruct-pix2pix"].images[1:], ours["dog-instruct-pix2pix"].images[1:])
