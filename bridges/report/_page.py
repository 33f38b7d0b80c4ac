"""The static index.html: verdict first, then the figures in CSS grids, the full table folded away."""

from __future__ import annotations

import html
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path

import epg_core as E

from ._figures import NullCheck
from ._study import Study
from ._table import scores_table, summary_sentence, verdict_table

__all__ = ["Figures", "write_page", "png_size"]

CSS = """
*{box-sizing:border-box}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#222;margin:0 auto;
max-width:1340px;padding:14px 22px 40px}
h1{font-size:22px;margin:4px 0 2px}h2{font-size:17px;margin:22px 0 6px;border-bottom:1px solid #ddd;
padding-bottom:2px}h3{font-size:14px;margin:12px 0 4px;color:#444}
.meta,.caption,.note{color:#666;font-size:12px;margin:2px 0 6px}
.summary{font-size:15px;background:#f5f8fc;border-left:4px solid #4c72b0;padding:8px 12px;margin:8px 0}
.warn{color:#b00020;font-weight:600}
table{border-collapse:collapse;font-size:12.5px;margin:4px 0}
th,td{border:1px solid #d6d6d6;padding:3px 8px;text-align:left;white-space:nowrap}
th{background:#f0f0f0;font-weight:600}
tr.sig td:first-child{color:#0a6e31;font-weight:700;background:#e8f5ec}
tr.ns td:first-child{color:#777}
tr.neg td:first-child{color:#8a5a00;font-style:italic;background:#fdf4e3}
.tablewrap{overflow-x:auto}
.grid{display:grid;gap:10px;align-items:start}
.g2{grid-template-columns:repeat(auto-fill,minmax(520px,1fr))}
.g3{grid-template-columns:repeat(auto-fill,minmax(320px,1fr))}
.flex{display:flex;flex-wrap:wrap;gap:10px;align-items:flex-start;margin:6px 0}
figure{margin:0;border:1px solid #e3e3e3;border-radius:4px;padding:4px;background:#fff}
figure img{display:block;max-width:100%;height:auto;margin:0 auto}
figcaption{font-size:11.5px;color:#555;margin-top:2px;overflow-wrap:anywhere}
nav{font-size:13px;margin:10px 0}nav a{margin-right:12px}
details summary{cursor:pointer;color:#4c72b0}
"""


@dataclass
class Figures:
    """The report's figures by place on the page (paths inside the report folder)."""

    behaviour: dict[str, list[Path]] = field(default_factory=dict)
    sequences: dict[str, list[Path]] = field(default_factory=dict)
    strips: dict[str, list[tuple[str, Path]]] = field(default_factory=dict)
    nulls: list[NullCheck] = field(default_factory=list)
    over_checkpoints: list[Path] = field(default_factory=list)
    epg_vs_flips: Path | None = None
    clip: list[Path] = field(default_factory=list)
    baselines_html: str = ""  # the local-baselines section (_baselines_view), when asked for


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk (the page reserves the space before the image loads)."""
    head = path.read_bytes()[:24]
    if head[:8] != b"\x89PNG\r\n\x1a\n":
        raise E.DataError(f"{path}: not a PNG file")
    width, height = struct.unpack(">II", head[16:24])
    return int(width), int(height)


def _img(path: Path, caption: str, alt: str) -> str:
    w, h = png_size(path)
    cap = f"<figcaption>{html.escape(caption)}</figcaption>" if caption else ""
    return (f"<figure><img src='{html.escape(path.name)}' alt='{html.escape(alt)}' width='{w}' height='{h}'>"
            f"{cap}</figure>")


def _anchor(section: str) -> str:
    return "p-" + (re.sub(r"[^A-Za-z0-9]+", "-", section).strip("-").lower() or "x")


def _header(study: Study) -> str:
    o = study.options
    n_seq = len({s for _, s in study.tracks})
    n_prop = len({t.prop for t in study.tracks.values()})
    ck = o.checkpoints if isinstance(o.checkpoints, str) else ", ".join(o.checkpoints)
    grouped = study.verdicts[0].by if study.verdicts else "none"
    meta = (f"{html.escape(study.path.name)} · {len(study.models)} model{'s' if len(study.models) != 1 else ''} "
            f"({html.escape(', '.join(study.models))}) · {n_prop} propert"
            f"{'ies' if n_prop != 1 else 'y'} · {n_seq} sequence{'s' if n_seq != 1 else ''} · "
            f"grouped by {grouped} · per-sequence curves: {html.escape(ck)} checkpoint(s)")
    return f"<header><h1>{html.escape(o.title)}</h1><p class='meta'>{meta}</p></header>"


def _verdict(study: Study, figures: Figures) -> str:
    table, caption, _ = verdict_table(study)
    bad = [n for n in figures.nulls if not n.agrees]
    warn = (f"<p class='warn'>{len(bad)} null distribution(s) re-run with the report's options give a p-value other "
            "than the table's: the scores were computed with other options.</p>") if bad else ""
    level = study.verdicts[0].by if study.verdicts else "none"
    how = ("mean curve over each group's images" if level != "none" else "each sequence's curve")
    return (f"<section id='verdict'><h2>Verdict</h2><p class='summary'>{html.escape(summary_sentence(study))}</p>"
            f"{warn}<div class='tablewrap'>{table}</div><p class='caption'>{html.escape(caption)} Scored: {how} at "
            "the last checkpoint scored. EPG: mean |d output / d property|; smaller than the shuffles' = the output "
            "follows the property smoothly. z = (EPG − null mean) / null SD; ratio = EPG / null mean (1 = as rough "
            "as noise).</p></section>")


def _checkpoint_words(study: Study) -> str:
    ck = study.options.checkpoints
    if isinstance(ck, str):
        return "the last checkpoint" if ck == "last" else "every checkpoint"
    return "checkpoints " + ", ".join(ck)


def _sections(study: Study, figures: Figures) -> str:
    """Per property: the intervention strips, then each sequence's curves beside the null distributions."""
    parts = []
    for section in study.sections:
        body = [f"<section id='{_anchor(section)}'><h2>{html.escape(section)}</h2>"]
        strips = figures.strips.get(section, [])
        if strips:
            body.append("<div class='flex'>" + "".join(_img(p, f"intervention: {name}", f"intervention strip {name}")
                                                       for name, p in strips) + "</div>")
        seqs = figures.sequences.get(section, [])
        cap = f"each sequence (rows: models; {_checkpoint_words(study)}; ✓ significant)"
        figs = [_img(p, cap, f"curves of each sequence of {section}") for p in seqs]
        figs += [_img(n.path, "null distribution of the shuffled EPGs",
                      f"null distribution {n.verdict.model} {n.verdict.key}")
                 for n in figures.nulls if n.verdict.section == section]
        if figs:
            body.append("<div class='flex'>" + "".join(figs) + "</div>")
        parts.append("".join(body) + "</section>")
    return "".join(parts)


def _clip_section(paths: list[Path]) -> str:
    """CLIP prompt views (paper Fig. 8), when the outputs hold per-prompt cosines."""
    if not paths:
        return ""
    figs = "".join(_img(p, "", "CLIP cosines per class, mean and SD over the prompts") for p in paths)
    return ("<section id='clip'><h2>CLIP prompts</h2><p class='caption'>Per class, the mean over its prompts of the "
            "cosine (the stored output) with a band of ± one SD over the prompts, along the property, at the last "
            f"finished checkpoint.</p><div class='grid g3'>{figs}</div></section>")


def write_page(study: Study, figures: Figures, out_dir: Path) -> Path:
    """Write ``index.html`` atomically and return its path."""
    behaviour = "".join(_img(p, "", f"mean behaviour {s}") for s, ps in figures.behaviour.items() for p in ps)
    over = figures.over_checkpoints + ([figures.epg_vs_flips] if figures.epg_vs_flips else [])
    nav = " ".join(f"<a href='#{_anchor(s)}'>{html.escape(s)}</a>" for s in study.sections)
    drawn = len(figures.nulls)
    more = (f"<p class='note'>Null distributions are drawn for the first {drawn} of {len(study.verdicts)} verdict "
            "rows.</p>") if drawn < len(study.verdicts) else ""
    table, caption = scores_table(study.rows, study.options.max_table_rows)
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        '<meta name="generator" content="epg report">',  # epg_core REPORT_MARKER: a rerun may replace it
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        f"<title>{html.escape(study.options.title)}</title><style>{CSS}</style></head><body>",
        _header(study), _verdict(study, figures),
        f"<section id='behaviour'><h2>Mean behaviour</h2><div class='grid g2'>{behaviour}</div></section>"
        if behaviour else "",
        f"<section id='checkpoints'><h2>Over checkpoints</h2><div class='grid g3'>"
        f"{''.join(_img(p, '', 'EPG over checkpoints') for p in over)}</div></section>" if over else "",
        _clip_section(figures.clip), figures.baselines_html,
        f"<nav>Properties: {nav}</nav>{more}", _sections(study, figures),
        f"<section id='scores'><h2>All scores</h2><details><summary>{len(study.rows)} rows</summary>"
        f"<div class='tablewrap'>{table}</div><p class='caption'>{html.escape(caption)}</p></details></section>",
        "</body></html>",
    ]
    return E.write_bytes_atomic(out_dir / "index.html", "\n".join(p for p in parts if p).encode("utf-8"))
