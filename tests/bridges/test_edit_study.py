"""Edit studies: ``kind = "edit"`` runs through ``epg run`` with ``make_interventions``, equals ``epg intervene edit``
with the same options, reruns computing nothing, resumes after a kill with identical frames; a user's editor
(``package.module:Class``) runs through the CLI and a study; ``kind = "frames"`` works in a study."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from helpers import one_line_error, run_cli
from PIL import Image

from epg_bridges.testing import tiny_random_pipeline, train_run
from epg_cli.main import cli
from epg_core import list_sequences, read_interventions

pytestmark = pytest.mark.slow  # whole studies (edits, a model sweep, scoring) in fresh processes: ~2 minutes

STUDY = """
[study]
name = "edits"
out = "out"

[[images]]
path = "images/*.png"

[[interventions]]
property = "cat"
kind = "edit"
method = "{method}"
model = "{model}"
instruction = "make it a cat"
scales = {scales}
steps = 2
seed = 3
size = 32
batch_size = 2
options = {options}

[[models]]
name = "a"
checkpoints = "ckpt/*.pt"
size = 32

[score]
n_permutations = 50
"""

USER_EDITOR = '''
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from epg_bridges.interventions import Editor, EditorOptions


@dataclass(frozen=True)
class FadeOptions(EditorOptions):
    grey: int = 0


class Fade(Editor):
    """Blend the picture towards a grey level (no model): frame = (1 - s) * image + s * grey."""

    Options: ClassVar[type[EditorOptions]] = FadeOptions
    description: ClassVar[str] = "fade"
    original_value: ClassVar[float] = 0.0
    minimum: ClassVar[float] = 0.0
    default_steps: ClassVar[int] = 1

    def load(self, model, device=None, dtype=None):
        self.model, self.pipe = str(model), "fade"
        return self

    def size_multiple(self):
        return 1

    def edit(self, image, instruction, scales, *, seed, steps, batch_size, counter):
        a = np.asarray(image, np.float64)
        counter.add(len(scales))
        return np.rint(np.stack([(1 - s) * a + s * self.options.grey for s in scales])).astype(np.uint8)
'''


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("edit-study")
    rng = np.random.default_rng(0)
    (d / "images").mkdir()
    for name in ("one", "two"):
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(d / "images" / f"{name}.png")
    tiny_random_pipeline("instruct-pix2pix").save_pretrained(d / "tiny-ip2p")
    train_run(d / "ckpt", steps=2, seed=0)
    (d / "user_editors.py").write_text(USER_EDITOR)
    return d


def _study(folder: Path, name: str, *, method: str = "instruct-pix2pix", model: str = "tiny-ip2p",
           scales: str = "[1.5, 4.0, 9.0]", options: str = "{ image_guidance_scale = 1.5 }") -> Path:
    path = folder / f"{name}.toml"
    path.write_text(STUDY.format(method=method, model=model, scales=scales, options=options)
                    .replace('out = "out"', f'out = "{name}-out"'))
    return path


def _run(study: Path) -> str:
    res = CliRunner().invoke(cli, ["run", str(study), "--no-report"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return next(line for line in res.output.splitlines() if line.startswith("computed:"))


def test_edit_study_equals_intervene_edit_and_reruns_nothing(folder: Path) -> None:
    study = _study(folder, "same")
    assert "interventions: 2," in _run(study)
    ref = folder / "cli.h5"
    result = run_cli("intervene", "edit", folder / "images" / "one.png", folder / "images" / "two.png", "-i",
                     "make it a cat", "-m", folder / "tiny-ip2p", "--scales", "1.5,4,9", "--steps", 2, "--seed", 3,
                     "--size", 32, "--batch-size", 2, "-O", "image_guidance_scale=1.5", "--property", "cat",
                     "--threads", 0,
                     "-o", ref, "-q")
    assert result.exit_code == 0, result.output
    ours, theirs = read_interventions(folder / "same-out" / "interventions.h5"), read_interventions(ref)
    assert list(ours) == list(theirs) == ["one-cat", "two-cat"]
    for name, seq in theirs.items():  # <= 1 level: float state of the process (e.g. libraries loaded by the
        # model stage in between) may round a pixel differently; every pixel of step 0 and the values are equal
        assert np.abs(ours[name].images.astype(int) - seq.images).max() <= 1
        np.testing.assert_array_equal(ours[name].images[0], seq.images[0])
        np.testing.assert_array_equal(ours[name].values, [1.0, 1.5, 4.0, 9.0])
        assert ours[name].attrs["epg_request"] == seq.attrs["epg_request"]  # the same request, the same fingerprint
    assert not np.array_equal(ours["one-cat"].images[1], ours["one-cat"].images[3])  # the scale matters
    assert _run(study) == "computed: interventions: 0, models: 0, scores: 0, report: 0"  # a rerun computes nothing


_KILLED_RUN = """
import sys
import epg_bridges.interventions._editing as editing
from epg_bridges.study import run_study

real, calls = editing.edit_with_spec, []


def edit(*args, **kwargs):
    calls.append(1)
    if len(calls) == int(sys.argv[2]):
        raise SystemExit(9)  # killed while editing this image
    return real(*args, **kwargs)


editing.edit_with_spec = edit
result = run_study(sys.argv[1], report=False)
print("edited", len(calls), "computed", ",".join(result.computed["interventions"]))
"""


def _fresh(study: Path, kill_at: int) -> subprocess.CompletedProcess[str]:
    """A run of ``study`` in a fresh process (the same float state for every run), stopped at edit ``kill_at``."""
    return subprocess.run([sys.executable, "-c", _KILLED_RUN, str(study), str(kill_at)], capture_output=True,
                          text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=600)


def test_killed_edit_study_resumes_with_identical_frames(folder: Path) -> None:
    study = _study(folder, "killed")
    assert _fresh(study, kill_at=2).returncode == 9  # killed while editing the second image
    path = folder / "killed-out" / "interventions.h5"
    assert list_sequences(path) == ["one-cat"]  # the finished sequence was stored at once
    resumed = _fresh(study, kill_at=0)
    assert resumed.returncode == 0, resumed.stderr
    assert "edited 1 computed two-cat" in resumed.stdout  # only the missing image was edited
    whole = _study(folder, "whole")
    assert _fresh(whole, kill_at=0).returncode == 0  # the same study, never interrupted
    reference = read_interventions(folder / "whole-out" / "interventions.h5")
    ours = read_interventions(path)
    assert list(ours) == list(reference) == ["one-cat", "two-cat"]
    for name, seq in reference.items():
        np.testing.assert_array_equal(ours[name].images, seq.images)
        assert ours[name].attrs == seq.attrs
    assert _fresh(study, kill_at=0).stdout.strip() == "edited 0 computed"  # a rerun computes nothing


def test_user_editor_runs_through_the_cli_and_a_study(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(folder))
    out = folder / "fade.h5"
    result = run_cli("intervene", "edit", folder / "images" / "one.png", "-i", "fade it", "-m", "none",
                     "--method", "user_editors:Fade", "--scales", "0.25,0.5,0.75,1", "-O", "grey=128", "-o", out, "-q")
    assert result.exit_code == 0, result.output
    seq = read_interventions(out)["one-user_editors_Fade"]
    image = np.asarray(Image.open(folder / "images" / "one.png"), np.float64)
    expected = [np.rint((1 - s) * image + s * 128).astype(np.uint8) for s in (0.25, 0.5, 0.75, 1.0)]
    np.testing.assert_array_equal(seq.images, np.stack([image.astype(np.uint8), *expected]))
    assert seq.attrs["edit"] == "user_editors:Fade" and seq.attrs["grey"] == 128
    one_line_error(run_cli("intervene", "edit", folder / "images" / "one.png", "-i", "x", "-m", "none",
                           "--method", "user_editors:Fade", "-O", "gray=1", "-q"), 2, "no option 'gray'", "grey")
    study = _study(folder, "user", method="user_editors:Fade", model="none", scales="{ min = 0.25, max = 1.0, n = 4 }",
                   options="{ grey = 128 }")
    _run(study)
    stored = read_interventions(folder / "user-out" / "interventions.h5")["one-cat"]
    np.testing.assert_array_equal(stored.images, seq.images)


def test_edit_option_errors_are_one_line(folder: Path) -> None:
    edit = ["intervene", "edit", folder / "images" / "one.png", "-i", "x", "-m", folder / "tiny-ip2p", "-q"]
    one_line_error(run_cli(*edit, "-O", "image_guidance=2"), 2, "no option 'image_guidance'", "image_guidance_scale")
    one_line_error(run_cli(*edit, "-O", "oops"), 2, "-O/--editor-option", "KEY=VALUE")
    one_line_error(run_cli(*edit, "--skip", "0.2"), 2, "no option 'skip'")  # an alias of another editor's option
    one_line_error(run_cli(*edit, "--method", "nope"), 2, "unknown editing method 'nope'", "flux-kontext")
    one_line_error(run_cli(*edit, "--method", "mgie"), 2, "--embeddings")
    bad = _study(folder, "bad", options="{ image_guidance = 1.5 }")
    one_line_error(run_cli("run", bad, "--no-report", "-q"), 2, "bad.toml", "[[interventions]] #1",
                   "no option 'image_guidance'")


def test_frames_study(folder: Path) -> None:
    for obj, shade in (("car", 10), ("bus", 90)):
        (folder / "turn" / obj).mkdir(parents=True, exist_ok=True)
        for i in range(3):
            Image.fromarray(np.full((32, 32, 3), shade + 20 * i, np.uint8)).save(folder / "turn" / obj / f"f{i}.png")
    (folder / "angles.csv").write_text("angle\n0\n10\n20\n")
    text = _study(folder, "frames").read_text()
    start = text.index("[[interventions]]")
    end = text.index("[[models]]")
    study = folder / "frames.toml"
    study.write_text(text[:start] + '[[interventions]]\nproperty = "angle"\nkind = "frames"\nfolders = "turn/*"\n'
                     'values_csv = "angles.csv"\nunit = "deg"\n\n' + text[end:])
    _run(study)
    seqs = read_interventions(folder / "frames-out" / "interventions.h5")
    assert sorted(seqs) == ["bus-angle", "car-angle"]
    np.testing.assert_array_equal(seqs["car-angle"].values, [0, 10, 20])
    assert int(seqs["bus-angle"].images[2, 0, 0, 0]) == 130


def test_killed_ray_edit_resumes(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With ``--executor ray`` each sequence is stored by the driver as it arrives: a run killed after the first
    one keeps it, and the same command then edits only the rest, giving the frames of an uninterrupted run."""
    pytest.importorskip("ray", reason="the ray extra is not installed")
    import epg_bridges.interventions._make as make

    images = [folder / "images" / "one.png", folder / "images" / "two.png"]
    edit = ["intervene", "edit", *images, "-i", "make it a cat", "-m", folder / "tiny-ip2p", "--scales", "2,5",
            "--steps", 2, "--seed", 3, "--device", "cpu", "--executor", "ray", "-q"]
    real = make._store
    stored: list[str] = []

    def stop_after_first(path: Path, name: str, *args: Any) -> None:
        if stored:
            raise KeyboardInterrupt
        real(path, name, *args)
        stored.append(name)

    out = folder / "ray-killed.h5"
    with monkeypatch.context() as m:
        m.setattr(make, "_store", stop_after_first)
        assert run_cli(*edit, "-o", out).exit_code == 130
    assert list_sequences(out) == ["one-instruct-pix2pix"]
    assert run_cli(*edit, "-o", out).exit_code == 0
    assert run_cli(*edit, "-o", folder / "ray-whole.h5").exit_code == 0
    ours, whole = read_interventions(out), read_interventions(folder / "ray-whole.h5")
    assert list(ours) == list(whole) == ["one-instruct-pix2pix", "two-instruct-pix2pix"]
    for name, seq in whole.items():
        np.testing.assert_array_equal(ours[name].images, seq.images)


@pytest.fixture(autouse=True)
def _no_ray_left_running() -> Iterator[None]:
    """A test that ran Ray in this process shuts it down (later modules start their own cluster)."""
    yield
    if "ray" in sys.modules and sys.modules["ray"].is_initialized():
        sys.modules["ray"].shutdown()
