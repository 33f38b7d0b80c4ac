"""The README's printed values, regenerated from the commands that print them.

Each block after a ``<!-- readme-check: NAME -->`` marker is either commands (``walkthrough``: run as a bash
script) or what commands print (``demo``, ``walkthrough-score``). ``tests/cli/test_readme.py`` runs the commands and
checks every printed block appears, line for line, in their output; ``python tests/readme_check.py --write``
rewrites the printed blocks from a fresh run (never edit them by hand).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
REFERENCE = ROOT.parent / "shared" / "reference" / "propgrad"
_BLOCK = re.compile(r"<!-- readme-check: (?P<name>[\w-]+) -->\n```[a-z]*\n(?P<body>.*?)```", re.S)


def blocks(text: str | None = None) -> dict[str, str]:
    """Marker name -> the code block after it."""
    return {m["name"]: m["body"] for m in _BLOCK.finditer(text if text is not None else README.read_text())}


def _env() -> dict[str, str]:
    env = dict(os.environ, HF_HUB_OFFLINE="1", COLUMNS="200")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def run_demo(folder: Path) -> str:
    """What ``epg demo`` prints (stdout), run in ``folder``."""
    res = subprocess.run(["epg", "demo", "-o", str(folder / "demo"), "--quiet"], cwd=folder, env=_env(),
                         capture_output=True, text=True, check=True)
    return res.stdout


def run_walkthrough(folder: Path, reference: Path = REFERENCE) -> str:
    """The walkthrough's commands as one bash script in ``folder`` (``R`` pointing at ``reference``)."""
    script = blocks()["walkthrough"]
    script = re.sub(r"^R=\S+", f"R={reference}", script, count=1, flags=re.M)
    res = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=folder, env=_env(), capture_output=True,
                         text=True, check=True)
    return res.stdout


def printed(block: str, output: str) -> list[str]:
    """``block``'s lines as they appear, contiguous, in ``output`` (trailing spaces ignored); [] when absent."""
    want = [line.rstrip() for line in block.strip("\n").splitlines()]
    have = [line.rstrip() for line in output.splitlines()]
    for i in range(len(have) - len(want) + 1):
        if have[i:i + len(want)] == want:
            return want
    return []


def regenerate(output: str, first: str, last: str) -> str:
    """The lines of ``output`` from the first starting with ``first`` through the next one starting with ``last``."""
    lines = [line.rstrip() for line in output.splitlines()]
    start = next(i for i, line in enumerate(lines) if line.startswith(first))
    end = next(i for i in range(start, len(lines)) if lines[i].startswith(last))
    return "\n".join(lines[start:end + 1]) + "\n"


def write() -> None:
    """Rerun the demo and the walkthrough; replace the printed blocks in README.md with what they print now."""
    text = README.read_text()
    with tempfile.TemporaryDirectory() as tmp:
        demo = regenerate(run_demo(Path(tmp)), "verdict ", "reproduces the paper's")
        score = regenerate(run_walkthrough(Path(tmp)), "scores: outputs.scores.csv", "every row")
    for name, body in (("demo", demo), ("walkthrough-score", score)):
        old = blocks(text)[name]
        marker = f"<!-- readme-check: {name} -->\n```\n"
        text = text.replace(f"{marker}{old}```", f"{marker}{body}```")
    README.write_text(text)
    print(demo + "\n" + score)


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: python tests/readme_check.py --write")
    write()
