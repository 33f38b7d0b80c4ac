"""The verdict table (decision first, only the columns that vary, never ``nan``), its one-sentence summary,
and the full scores table folded away below the figures."""

from __future__ import annotations

import html
import math
from collections.abc import Callable
from typing import Any

from ._common import DASH, fmt_num, fmt_p
from ._study import Study, Verdict

__all__ = ["verdict_table", "summary_sentence", "scores_table", "decision_text"]

Cell = Callable[[Verdict], str]


def _blank(text: str) -> bool:
    return text in ("", DASH)


def decision_text(row: dict[str, Any]) -> str:
    """The row's verdict (significant, negligible: significant but the output barely moves, not significant),
    with the q-value when the decision was made on FDR-corrected values."""
    word = str(row.get("verdict") or ("significant" if row["significant"] else "not significant"))
    return f"{word} (q = {fmt_p(row['qvalue'])})" if row.get("correction") == "bh" else word


def row_class(row: dict[str, Any]) -> str:
    """CSS class of a table row: sig, neg (negligible effect) or ns."""
    if row.get("verdict") == "negligible":
        return "neg"
    return "sig" if row["significant"] else "ns"


def flips_text(v: Verdict) -> str:
    """The flips of a verdict in the table's own words: the ``flips`` column (of the curve the verdict tests)
    and, for a group, the ``flips (all images)`` column."""
    text = f"flips {int(v.row['flips'])}"
    return text + (f", flips (all images) {int(v.mean_epg['flips'])}" if v.mean_epg else "")


def _ident(study: Study) -> tuple[str, Cell]:
    by = study.verdicts[0].by if study.verdicts else "none"
    if by == "none":
        return "sequence", lambda v: v.key
    return by.replace(",", " · "), lambda v: v.key


def _columns(study: Study) -> list[tuple[str, Cell, bool]]:
    """(header, cell, always shown) in display order: the decision first."""
    head, ident = _ident(study)
    grouped = bool(study.verdicts) and study.verdicts[0].by != "none"
    cols: list[tuple[str, Cell, bool]] = [("verdict", lambda v: decision_text(v.row), True)]
    if not grouped:
        cols.append(("property", lambda v: v.section if v.section != v.key else DASH, False))
    cols += [(head, ident, True), ("model", lambda v: v.model, False),
             ("checkpoint", lambda v: str(v.row["checkpoint"]), False),
             ("class", lambda v: str(v.row["output"]), False)]
    if grouped:
        cols.append(("images", lambda v: str(v.row["n_curves"]), False))
    cols += [("EPG", lambda v: fmt_num(v.row["epg"]), True),
             ("effect", lambda v: fmt_num(v.row["effect"]) if "effect" in v.row else DASH, True),
             ("p", lambda v: fmt_p(v.row["pvalue"]), True),
             ("flips", lambda v: str(v.row["flips"]), False),
             ("z", lambda v: fmt_num(v.row["zscore"], 3), False),
             ("ratio", lambda v: fmt_num(v.row["ratio"], 2), False),
             ("Pearson r", lambda v: fmt_num(v.row["pearson"], 2), False)]
    if grouped:
        cols += [("per-image EPG", _mean_epg, False),
                 ("images significant", lambda v: f"{v.row['n_significant']}/{v.row['n_curves']}", False),
                 ("flips (all images)", lambda v: str(v.mean_epg["flips"]) if v.mean_epg else DASH, False)]
    return cols


def _mean_epg(v: Verdict) -> str:
    if v.mean_epg is None:
        return DASH
    return f"{fmt_num(v.mean_epg['epg'])} ± {fmt_num(v.mean_epg['epg_sd'], 2)}"


def _render(headers: list[str], body: list[list[str]], classes: list[str]) -> str:
    th = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    trs = "".join(f"<tr class='{c}'>" + "".join(f"<td>{html.escape(x)}</td>" for x in cells) + "</tr>"
                  for cells, c in zip(body, classes, strict=True))
    return f"<table>\n<thead><tr>{th}</tr></thead>\n<tbody>{trs}</tbody>\n</table>"


def verdict_table(study: Study) -> tuple[str, str, list[str]]:
    """The verdict table's HTML, a caption naming what is the same on every row, and the shown headers."""
    vs = study.verdicts
    cells = [(h, [f(v) for v in vs], always) for h, f, always in _columns(study)]
    shown, same = [], []
    for h, col, always in cells:
        if all(_blank(c) for c in col):
            continue
        if always or len(set(col)) > 1:
            shown.append((h, col))
        else:
            same.append(f"{h} {col[0]}")
    body = [[col[i] for _, col in shown] for i in range(len(vs))]
    classes = [row_class(v.row) for v in vs]
    caption = ("Same on every row: " + " · ".join(same) + ".") if same else ""
    return _render([h for h, _ in shown], body, classes), caption, [h for h, _ in shown]


def _settings(study: Study) -> str:
    o = study.options.score
    fdr = ", Benjamini-Hochberg FDR over the study" if o.use_fdr else ""
    tested = "" if o.statistic == "epg" else f" of {o.statistic} (not EPG: p-values and verdicts test it)"
    return (f"α = {o.alpha:g}, {o.alternative} shuffle test{tested}, K = {o.n_permutations:,}, "
            f"{'unit steps' if o.spacing == 'step' else 'property values'} as the grid{fdr}")


def summary_sentence(study: Study) -> str:
    """One sentence that answers the study: which model x property curves are significant, with EPG and flips."""
    vs = study.verdicts
    if not vs:
        return "Nothing was scored."
    by = vs[0].by
    kind = "sequence × model curves" if by == "none" else f"{by.replace(',', ' × ')} × model mean curves"
    sig = [v for v in vs if v.row["significant"] and v.row.get("verdict") != "negligible"]
    small = [v for v in vs if v.row.get("verdict") == "negligible"]
    where = "At the last scored checkpoint"
    negligible = (f"; {len(small)} {'is' if len(small) == 1 else 'are'} significant but negligible (the output "
                  f"moves less than {fmt_num(small[0].row['min_effect'])}): "
                  + ", ".join(f"{v.key} × {v.model} (effect {fmt_num(v.row['effect'])})" for v in small[:4])
                  if small else "")
    if not sig:
        return f"{where}, none of the {len(vs)} {kind} is significant ({_settings(study)}){negligible}."

    def name(v: Verdict) -> str:
        effect = f", effect {fmt_num(v.row['effect'])}" if "effect" in v.row else ""
        return (f"{v.key} × {v.model} (EPG {fmt_num(v.row['epg'])}{effect}, p = {fmt_p(v.row['pvalue'])}, "
                f"{flips_text(v)})")

    shown = ", ".join(name(v) for v in sig[:4]) + (f" and {len(sig) - 4} more" if len(sig) > 4 else "")
    verb = "is" if len(sig) == 1 else "are"
    rest = len(vs) - len(sig) - len(small)
    tail = f"; {rest} {'is' if rest == 1 else 'are'} not significant" if rest else ""
    return (f"{where}, {len(sig)} of {len(vs)} {kind} {verb} significant ({_settings(study)}): "
            f"{shown}{negligible}{tail}.")


_FULL = ("verdict", "significant", "model", "checkpoint", "sequence", "property", "image", "label", "aggregate",
         "n_curves", "output", "epg", "epg_sd", "effect", "pvalue", "qvalue", "negligible", "flips", "pearson",
         "zscore", "ratio", "n_significant", "n_steps", "n_permutations", "n_used", "alternative", "seed", "spacing",
         "min_effect", "correction", "note")


def _cell(key: str, value: Any) -> str:
    if key in ("significant", "negligible"):
        return "yes" if value else "no"
    if key in ("pvalue", "qvalue"):
        return fmt_p(value)
    if isinstance(value, float):
        return DASH if not math.isfinite(value) else fmt_num(value, 4)
    return str(value) if str(value) else DASH


def scores_table(rows: list[dict[str, Any]], max_rows: int) -> tuple[str, str]:
    """Every score row (up to ``max_rows``) with only the columns that vary; a caption for the constant ones."""
    shown_rows = rows[:max_rows]
    cols, same = [], []
    for key in _FULL:
        col = [_cell(key, r.get(key, "")) for r in shown_rows]
        if not col or all(_blank(c) for c in col):
            continue
        if len(set(col)) > 1 or key == "significant":
            cols.append((key, col))
        else:
            same.append(f"{key} {col[0]}")
    body = [[col[i] for _, col in cols] for i in range(len(shown_rows))]
    classes = [row_class(r) for r in shown_rows]
    more = f" {len(rows) - max_rows} more rows are in the CSV." if len(rows) > max_rows else ""
    caption = ("Same on every row: " + " · ".join(same) + "." if same else "") + more
    return _render([k for k, _ in cols], body, classes), caption
