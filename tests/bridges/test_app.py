"""The explorer (``epg app``): the numbers it shows are ``epg score``'s, it is served on 127.0.0.1 only, driven by
gradio's client, rendered by headless Chromium, and it writes nothing into the user's folder.

Oracles: the scores CSV of ``epg score`` (the same rows, column by column), a full enumeration of all N!
orderings for the exact null mean and SD, and Chromium's DOM for what a person sees. The server runs as the real
``epg app`` command in a subprocess on a free port with ``--stop-after``, so it stops by itself even if the test
process dies; every wait is bounded. Set ``EPG_APP_SCREENSHOT=path.png`` to keep the screenshot.
"""

from __future__ import annotations

import hashlib
import html
import itertools
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import one_line_error, run_cli

import epg_core as E

pytest.importorskip("gradio", reason="gradio is not installed (the 'app' extra)")
pytest.importorskip("gradio_client", reason="gradio_client is not installed (the 'app' extra)")

from epg_bridges.app import PREDICTED, Explorer, check_port, resolve_source  # noqa: E402

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
# Chromium may resolve no host but this machine's loopback: the page must need nothing from elsewhere.
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
         "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1"]
K = 400
N_STEPS = 8
CLASSES = ["cat", "dog", "fox"]


# --------------------------------------------------------------------------------------------- a study folder


def _frames(seed: int, n: int) -> np.ndarray:
    """``n`` 24x32 frames: a disk whose background darkens step by step."""
    yy, xx = np.mgrid[:24, :32]
    disk = (yy - 12) ** 2 + (xx - 16) ** 2 < 49
    out = np.zeros((n, 24, 32, 3), np.uint8)
    for i in range(n):
        out[i] = int(220 - 25 * i)
        out[i][disk] = (40 + 20 * seed, 160, 90)
    return out


def make_study(folder: Path) -> Path:
    """The ``out`` folder of a small study: a smooth three-class model, a noisy one and a binary one, on two
    images, three checkpoints each, with the interventions' frames."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(7)
    x = np.linspace(0.0, 1.4, N_STEPS)
    p = 1.0 / (1.0 + np.exp(-8.0 * (x - 0.7)))
    blocks, seqs = [], {}
    for j, image in enumerate(("photo1", "photo2")):
        name = f"{image}-background"
        attrs = {"property": "background", "image": image}
        seqs[name] = E.InterventionSequence(_frames(j, N_STEPS), x, {**attrs, "unit": "stops", "source": "test"})
        smooth = np.stack([np.stack([1.0 - p * (0.8 + 0.1 * c), p * (0.5 + 0.05 * c), p * (0.3 + 0.05 * c)], -1)
                           for c in range(3)])
        noise = rng.dirichlet([1.0, 1.0, 1.0], size=(3, N_STEPS))
        binary = np.stack([np.stack([1.0 - q, q], -1) for q in (p, p ** 2, rng.random(N_STEPS))])
        for model, out, classes in (("smooth", smooth, CLASSES), ("noise", noise, CLASSES),
                                    ("binary", binary, ["cat", "dog"])):
            blocks.append(E.OutputsBlock(model, name, out.astype(np.float32), np.ones(3, bool), ["e1", "e2", "e3"],
                                         classes, x, "probabilities", attrs=attrs))
    E.write_interventions(folder / "interventions.h5", seqs)
    E.write_outputs(folder / "outputs.h5", blocks)
    return folder


def _tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(root.rglob("*"))}


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return type(a) is type(b) and a == b


def _text(path: Path) -> str:
    return path.read_text() if path.exists() else ""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A study folder scored by ``epg score`` (K=400, seed 3: the app must follow these stored settings)."""
    root = tmp_path_factory.mktemp("app")
    out = make_study(root / "study" / "out")
    res = run_cli("score", out / "outputs.h5", "-o", root / "scores.csv", "-k", K, "--seed", 3, "-q")
    assert res.exit_code == 0, res.output
    return {"root": root, "out": out, "csv": root / "scores.csv", "rows": E.read_scores(root / "scores.csv")}


def _row(rows: list[dict[str, Any]], model: str, sequence: str, checkpoint: str) -> dict[str, Any]:
    (row,) = [r for r in rows if (r["model"], r["sequence"], r["checkpoint"]) == (model, sequence, checkpoint)]
    return row


# ------------------------------------------------------------------------------------- the data, no server


def test_the_explorer_gives_epg_score_rows_and_the_exact_null(study: dict[str, Any]) -> None:
    from epg_bridges.app import stored_options

    source = resolve_source(study["out"])
    assert source.outputs == study["out"] / "outputs.h5"
    assert source.interventions == (study["out"] / "interventions.h5",)
    stored = stored_options(source.outputs)
    assert stored == {"n_permutations": K, "alternative": "two-sided", "seed": 3, "spacing": "step", "min_effect": 0.01}
    explorer = Explorer(source, E.ScoreOptions(n_permutations=K, seed=3))
    assert set(explorer.models()) == {"binary", "noise", "smooth"}
    seen: list[tuple[int, int]] = []
    for model in ("smooth", "noise", "binary"):
        view = explorer.view(model, "photo2-background", "e2", PREDICTED,
                             progress=lambda d, t: seen.append((d, t)))
        want = _row(study["rows"], model, "photo2-background", "e2")
        assert list(view.row) == list(want)
        for key in want:  # every column, as `epg score` wrote it
            assert _same(view.row[key], want[key]), (model, key, view.row[key], want[key])
        assert view.agrees, (view.rerun_pvalue, view.row["pvalue"])  # the drawn null is the tested one
        assert [r["epg"] for r in view.history] == [r["epg"] for r in study["rows"]
                                                     if (r["model"], r["sequence"]) == (model, "photo2-background")]
        # exact null moments against all N! orderings of the tested curve (np.gradient, unit spacing)
        perms = np.array(list(itertools.permutations(range(N_STEPS))))
        shuffled = np.asarray(view.curve, np.float64)[perms]
        epgs = np.abs(np.gradient(shuffled, axis=1)).mean(axis=1)
        assert view.moments is not None
        np.testing.assert_allclose(view.moments, (epgs.mean(), epgs.std()), rtol=1e-6)
        assert np.isclose(float(np.abs(np.gradient(view.curve)).mean()), view.row["epg"], rtol=1e-5)
    assert seen and seen[-1] == (3, 3)  # the progress callback counted every checkpoint
    assert view.frames is not None and view.frames.shape[1:] == (24, 32, 3)


def test_a_chosen_class_is_scored_as_epg_score_class_does(study: dict[str, Any], tmp_path: Path) -> None:
    out = tmp_path / "o.h5"
    shutil.copyfile(study["out"] / "outputs.h5", out)
    res = run_cli("score", out, "-o", tmp_path / "dog.csv", "--class", "dog", "-k", 50, "-q")
    assert res.exit_code == 0, res.output
    explorer = Explorer(resolve_source(out), E.ScoreOptions(n_permutations=50))
    for model in ("noise", "binary"):
        want = _row(E.read_scores(tmp_path / "dog.csv"), model, "photo1-background", "e3")
        view = explorer.view(model, "photo1-background", "e3", "dog")
        assert view.output == "dog" and all(_same(view.row[k], want[k]) for k in want)
    # a stale choice falls back to something valid (the binary model has no 'fox')
    assert explorer.normalise("binary", "nope", "e9", "fox") == ("binary", "photo1-background", "e3",
                                                                 explorer.default_class("binary",
                                                                                        "photo1-background"))


# ----------------------------------------------------------------------------------------------- bad input


def test_bad_input_gets_one_line_before_any_server(study: dict[str, Any], tmp_path: Path) -> None:
    one_line_error(run_cli("app", tmp_path / "missing.h5"), 2, "missing.h5", "not found")  # names nothing
    (tmp_path / "notes.h5").write_text("not hdf5")
    one_line_error(run_cli("app", tmp_path / "notes.h5"), 1, "notes.h5")
    (tmp_path / "empty").mkdir()
    one_line_error(run_cli("app", tmp_path / "empty"), 1, "empty", "outputs.h5")
    one_line_error(run_cli("app", study["out"], "--interventions", study["csv"]), 1, "scores.csv")
    one_line_error(run_cli("app", study["out"], "--interventions", tmp_path / "nope.h5"), 2, "nope.h5")
    assert run_cli("app", study["out"], "--port", 0).exit_code == 2
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        line = one_line_error(run_cli("app", study["out"], "--port", port), 1, str(port), "busy", "--port")
        with pytest.raises(E.EpgError, match="busy"):
            check_port(port)
    assert "127.0.0.1" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "notes.h5"]  # nothing written


@pytest.mark.slow
@pytest.mark.parametrize("blocked", ["gradio", "matplotlib"])
def test_without_the_app_extra_one_line_names_it(study: dict[str, Any], tmp_path: Path, blocked: str) -> None:
    code = (f"import sys\nsys.modules[{blocked!r}] = None  # as if the extra were not installed\n"
            "from epg_cli.main import cli\ncli(sys.argv[1:], prog_name='epg')\n")
    res = subprocess.run([sys.executable, "-c", code, "app", str(study["out"]), "--port", str(_free_port())],
                         capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert res.returncode == 1, res.stdout + res.stderr
    assert res.stderr.strip() == "Error: epg app needs the 'app' extra: pip install 'epg[app]'"
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------------------- the served page


@pytest.fixture(scope="module")
def served(study: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """``epg app STUDY`` in a subprocess on a free port (stops by itself after 240 s; stopped at teardown)."""
    root: Path = study["root"]
    before = _tree(root)
    port = _free_port()
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONUNBUFFERED": "1"}
    exe = Path(sys.executable).with_name("epg")
    log = open(root / "app.log", "w")  # noqa: SIM115 - closed at teardown
    proc = subprocess.Popen([str(exe), "app", str(study["out"]), "--port", str(port), "--stop-after", "240"],
                            cwd=root, stdout=log, stderr=subprocess.STDOUT, env=env, text=True)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 120  # the command says where it serves once the server is up
    while time.monotonic() < deadline and proc.poll() is None and "epg explorer: " not in _text(root / "app.log"):
        time.sleep(0.25)
    try:
        assert proc.poll() is None, (root / "app.log").read_text()
        with urllib.request.urlopen(url, timeout=10) as reply:
            assert reply.status == 200
        yield {"url": url, "port": port, "proc": proc, "root": root, "before": before}
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=30)
        log.close()


def test_the_app_serves_on_127_0_0_1_only(served: dict[str, Any]) -> None:
    with socket.socket() as sock:  # another loopback address of this machine: nothing listens there
        sock.settimeout(5)
        assert sock.connect_ex(("127.0.0.2", served["port"])) != 0
    assert f"epg explorer: {served['url']}" in (served["root"] / "app.log").read_text()


@pytest.mark.slow
def test_gradio_client_selects_a_sequence_and_gets_epg_score_s_epg(served: dict[str, Any],
                                                                    study: dict[str, Any]) -> None:
    from gradio_client import Client

    client = Client(served["url"], verbose=False)
    api: Any = client.view_api(print_info=False, return_format="dict")
    assert "/show" in api["named_endpoints"]
    for model, sequence, checkpoint in (("smooth", "photo2-background", "e3"), ("noise", "photo1-background", "e1"),
                                        ("binary", "photo2-background", "e2")):
        result = client.predict(model, sequence, checkpoint, PREDICTED, api_name="/show")
        numbers = result[-1]
        want = _row(study["rows"], model, sequence, checkpoint)
        assert numbers["row"]["epg"] == want["epg"] and numbers["row"]["pvalue"] == want["pvalue"]
        assert numbers["row"]["verdict"] == want["verdict"] and numbers["row"]["flips"] == want["flips"]
        assert numbers["options"]["n_permutations"] == K and numbers["rerun_agrees"]  # followed the stored K
        assert numbers["null_mean"] is not None and numbers["null_std"] > 0
        assert [h["epg"] for h in numbers["epg_over_checkpoints"]] == [
            r["epg"] for r in study["rows"] if (r["model"], r["sequence"]) == (model, sequence)]
        assert result[1]["value"] == sequence and result[2]["value"] == checkpoint
        curve = result[6]
        assert curve["type"] == "matplotlib" and curve["plot"].startswith("data:image/png;base64,")
        assert f"### {want['verdict']}" in result[7]
    # a curve not scored yet: the job reports its progress (checkpoints scored) while it runs
    job = client.submit("smooth", "photo1-background", "e2", "dog", api_name="/show")
    progress: list[tuple[Any, Any, Any]] = []
    deadline = time.monotonic() + 60
    while not job.done() and time.monotonic() < deadline:
        progress += [(u.index, u.length, u.unit) for u in job.status().progress_data or []]
        time.sleep(0.02)
    assert job.result()[-1]["row"]["output"] == "dog"
    assert progress and all(unit == "checkpoints" and length == 3 for _, length, unit in progress), progress
    # a model and a class of that model in one call, right after a two-class model was shown
    assert client.predict("noise", "photo1-background", "e1", "fox", api_name="/show")[3]["value"] == "fox"
    # a stale combination is repaired, not an error: 'fox' on the binary model, a sequence no model has
    fixed = client.predict("binary", "photo1-background", "e1", "fox", api_name="/show")
    stored = _row(study["rows"], "binary", "photo1-background", "e1")["output"]  # the default class: the scored one
    assert fixed[3]["value"] == stored and fixed[-1]["row"]["model"] == "binary"
    fixed = client.predict("noise", "no-such-sequence", "e9", PREDICTED, api_name="/show")
    assert fixed[1]["value"] in ("photo1-background", "photo2-background") and fixed[2]["value"] == "e3"


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install -y chromium)")
def test_chromium_shows_the_curve_plot_and_the_verdict(served: dict[str, Any], study: dict[str, Any],
                                                       tmp_path: Path) -> None:
    from PIL import Image

    assert CHROMIUM is not None
    env = {**os.environ, "HOME": str(tmp_path)}
    common = [CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=20000",
              "--window-size=1400,1800"]
    dom = subprocess.run([*common, "--dump-dom", served["url"]], capture_output=True, text=True, timeout=120,
                         env=env).stdout
    model, sequence, checkpoint, _ = Explorer(resolve_source(study["out"])).normalise(None, None, None, None)
    first = _row(study["rows"], model, sequence, checkpoint)  # what the page shows first

    def part(elem_id: str) -> str:
        found = re.search(rf'<div[^>]*id="{elem_id}"[^>]*>(.*?)(?=<div[^>]*id="epg-|\Z)', dom, re.S)
        assert found, f"#{elem_id} is not on the page"
        return found.group(1)

    assert re.search(r'<img[^>]+src="data:image/png;base64,', part("epg-curve")), "the curve plot is not drawn"
    assert re.search(r'<img[^>]+src="data:image/png;base64,', part("epg-strip")), "the strip is not drawn"
    assert re.search(r'<img[^>]+src="data:image/png;base64,', part("epg-null")), "the null is not drawn"
    verdict = html.unescape(re.sub(r"<[^>]+>", " ", part("epg-verdict")))
    assert first["verdict"] in verdict and "EPG" in verdict, verdict[:500]
    assert f"{first['epg']:.3g}" in verdict
    shot = tmp_path / "app.png"
    subprocess.run([*common, f"--screenshot={shot}", served["url"]], capture_output=True, timeout=120, env=env)
    assert shot.is_file(), "no screenshot"
    pixels = np.asarray(Image.open(shot).convert("L"), np.float64)
    assert pixels.shape == (1800, 1400) and pixels.std() > 10, "the screenshot looks blank"
    keep = os.environ.get("EPG_APP_SCREENSHOT")
    if keep:
        shutil.copyfile(shot, keep)


def test_the_server_stops_and_wrote_nothing(served: dict[str, Any]) -> None:
    proc = served["proc"]
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=30) == 0
    log = (served["root"] / "app.log").read_text()
    assert "Traceback" not in log and "stopped" in log
    after = _tree(served["root"])
    assert {k: v for k, v in after.items() if k != "app.log"} == served["before"], "the app wrote into the folder"
