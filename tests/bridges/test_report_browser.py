"""A real browser renders the report: every image loads, no console errors, a compact page, a screenshot.

Needs Debian's ``chromium`` (``apt-get install -y chromium``; .ci/run installs it); skipped with that reason
when it is missing. Set ``EPG_REPORT_SCREENSHOT=path.png`` to keep the screenshot.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from test_report_data import make_study

import epg_core as E
from epg_bridges.report import ReportOptions, build_report

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install -y chromium)")

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--allow-file-access-from-files", "--hide-scrollbars"]
WIDTH = 1400
# Written into the page copy before anything else runs: records errors and, once loaded, each image's state.
PROBE = """<script>
window.__errors = [];
window.addEventListener('error', function (e) {
  var t = e.target || {};
  window.__errors.push(t.src ? 'failed to load ' + t.src : String(e.message));
}, true);
var __ce = console.error;
console.error = function () {
  window.__errors.push(Array.prototype.join.call(arguments, ' '));
  __ce.apply(console, arguments);
};
window.addEventListener('load', function () {
  var imgs = Array.prototype.map.call(document.images, function (i) {
    return {src: i.getAttribute('src'), complete: i.complete, width: i.naturalWidth, height: i.naturalHeight};
  });
  var pre = document.createElement('pre');
  pre.id = 'epg-probe';
  pre.textContent = JSON.stringify({images: imgs, errors: window.__errors,
                                    height: document.documentElement.scrollHeight});
  document.body.appendChild(pre);
});
</script>"""


class _Images(HTMLParser):
    """Every ``<img src>`` of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.srcs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "img":
            self.srcs += [v for k, v in attrs if k == "src" and v]


def _chromium(*args: str, profile: Path) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "HOME": str(profile)})


def probe_page(index: Path, tmp: Path) -> dict[str, Any]:
    """Load a copy of ``index`` with the probe script in headless Chromium; return what the probe saw."""
    page = index.read_text(encoding="utf-8")
    copy = index.with_name("index_probe.html")
    copy.write_text(page.replace("<head>", "<head>" + PROBE, 1), encoding="utf-8")
    res = _chromium("--dump-dom", f"--window-size={WIDTH},2000", copy.as_uri(), profile=tmp / "profile-dom")
    copy.unlink()
    found = re.search(r"<pre id=\"epg-probe\">(.*?)</pre>", res.stdout, re.S)
    assert found, f"the probe did not run: rc={res.returncode}\n{res.stderr[-2000:]}"
    out: dict[str, Any] = json.loads(html.unescape(found.group(1)))
    out["stderr"] = res.stderr
    return out


def screenshot(index: Path, path: Path, tmp: Path, height: int = 2000) -> Path:
    """A ``WIDTH x height`` screenshot of the page as a reader first sees it."""
    res = _chromium(f"--screenshot={path}", f"--window-size={WIDTH},{height}", index.as_uri(),
                    profile=tmp / "profile-shot")
    assert path.is_file(), f"no screenshot: rc={res.returncode}\n{res.stderr[-2000:]}"
    return path


def check_report_in_browser(index: Path, tmp: Path, max_height: int) -> dict[str, Any]:
    """Every referenced image exists, is a valid PNG and loads in the browser; no errors; compact page."""
    parser = _Images()
    parser.feed(index.read_text(encoding="utf-8"))
    assert parser.srcs, "the page shows no images"
    for src in parser.srcs:
        f = index.parent / src
        assert f.is_file(), f"{src} is referenced but missing"
        assert f.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", f"{src} is not a PNG"
        with Image.open(f) as im:
            im.verify()
    seen = probe_page(index, tmp)
    assert [i["src"] for i in seen["images"]] == parser.srcs
    broken = [i["src"] for i in seen["images"] if not i["complete"] or i["width"] == 0]
    assert not broken, f"images that did not load: {broken}"
    assert seen["errors"] == [], seen["errors"]
    assert "Uncaught" not in seen["stderr"], seen["stderr"][-2000:]
    assert 0 < seen["height"] <= max_height, f"page is {seen['height']} px tall (at most {max_height})"
    return seen


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("browser")
    outputs, inters = make_study(folder / "data")
    opts = ReportOptions(score=E.ScoreOptions(n_permutations=1000, group_by="property"), checkpoints="all")
    return build_report(outputs, folder / "report", opts, interventions=inters)["index"]


@pytest.mark.slow
def test_report_renders_in_chromium(report: Path, tmp_path: Path) -> None:
    seen = check_report_in_browser(report, tmp_path, max_height=4200)
    assert len(seen["images"]) >= 15  # curves, sequences, strips, nulls, over checkpoints, EPG vs flips
    shot = screenshot(report, tmp_path / "screenshot.png", tmp_path)
    pixels = np.asarray(Image.open(shot).convert("L"), np.float64)
    assert pixels.shape == (2000, WIDTH) and pixels.std() > 10, "the screenshot looks blank"
    keep = os.environ.get("EPG_REPORT_SCREENSHOT")
    if keep:
        shutil.copyfile(shot, keep)


def test_probe_catches_a_missing_image(report: Path, tmp_path: Path) -> None:
    """The check can fail: a page with a broken image is caught by the browser probe."""
    bad = report.with_name("index_broken.html")
    bad.write_text(report.read_text().replace("</body>", "<img src='missing.png' alt='x'></body>"))
    seen = probe_page(bad, tmp_path)
    assert any(i["src"] == "missing.png" and i["width"] == 0 for i in seen["images"])
    assert any("missing.png" in e for e in seen["errors"])
    with pytest.raises(AssertionError, match="missing"):
        check_report_in_browser(bad, tmp_path, max_height=100_000)
