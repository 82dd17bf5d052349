"""index.html: the table, the claims and the figures on one self-contained page (figures by relative path)."""
from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Sequence

import pandas as pd

from .claims import VERDICT_RULE, Claim, gradient_observations, lesion_observations, paper_comparison, \
    probe_observations, verdict_counts
from .collapse import dead_cell_notes
from .comparisons import effects, importances, level_text
from .effects import effect_rows, lost_note
from .figures import FigureOut
from .study_reader import StudyData
from .tables import display_table, left_out, metric_title

CSS = """
body { font-family: -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif; color: #222; margin: 0;
       background: #fafafa; line-height: 1.45; }
main { max-width: 1180px; margin: 0 auto; padding: 24px 28px 60px; background: #fff; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; } h2 { margin-top: 1.8em; border-bottom: 1px solid #ddd; }
.status { color: #555; } .muted { color: #777; font-size: 0.9em; }
table { border-collapse: collapse; margin: 12px 0; font-size: 0.92em; }
th, td { padding: 4px 10px; text-align: left; white-space: nowrap; }
thead th { border-top: 2px solid #333; border-bottom: 1px solid #333; }
tbody tr:last-child td { border-bottom: 2px solid #333; }
tbody tr:nth-child(even) { background: #f4f6f8; }
td.num { text-align: right; font-variant-numeric: tabular-nums; } td.best { font-weight: bold; }
ul.claims { list-style: none; padding-left: 0; } ul.claims li { margin: 8px 0; }
.verdict { display: inline-block; min-width: 8.5em; padding: 1px 8px; border-radius: 10px; font-size: 0.85em;
           font-weight: 600; text-align: center; margin-right: 6px; }
.v-reproduced, .v-non-inferior, .v-equivalent, .v-decided { background: #d9f2dd; color: #1b5e20; }
.v-contradicted { background: #fde0dc; color: #a4161a; }
.v-undecided { background: #fff3cd; color: #7a5a00; } .v-not-enough-data { background: #eceff1; color: #455a64; }
.dead { color: #a4161a; font-weight: 600; }
figure { margin: 22px 0; } figure img { max-width: 100%; border: 1px solid #e3e3e3; }
figcaption { color: #444; font-size: 0.92em; max-width: 980px; }
nav a { margin-right: 14px; }
"""


def _esc(text: object) -> str:
    return html.escape(str(text))


def _md_inline(text: str) -> str:
    """Escape, then render **bold**, *italic* and `code` from the claim text."""
    out = _esc(text)
    out = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", out)
    out = re.sub(r"\*(.+?)\*", r"<em>\1</em>", out)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", out)


def _table_html(df: pd.DataFrame, bold: dict[str, list[int]] | None = None) -> str:
    bold = bold or {}
    head = "".join(f"<th>{_esc(c)}</th>" for c in df.columns)
    rows = []
    for i, (_, row) in enumerate(df.iterrows()):
        cells = []
        for col, v in row.items():
            text = "" if v is None or (isinstance(v, float) and v != v) else str(v)
            classes = []
            if re.match(r"^-?\d", text):
                classes.append("num")
            if i in bold.get(col, ()) and text not in ("", "–"):
                classes.append("best")
            cls = f' class="{" ".join(classes)}"' if classes else ""
            cells.append(f"<td{cls}>{_esc(text)}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def write_html(data: StudyData, table: pd.DataFrame, claims: Sequence[Claim], figures: Sequence[FigureOut],
               out: Path, files: Sequence[str] = ()) -> Path:
    shown, sources, best = display_table(data, table)
    parts = [f"<h1>Study <code>{_esc(data.name)}</code></h1>",
             f"<p class='status'>{_esc(data.status_line())}</p>",
             f"<p class='muted'>Read from <code>{_esc(data.storage)}</code>. Errors in percent; mean ± sample std over "
             f"completed {data.replicates}.</p>"]
    nav = ["<a href='#table'>Table</a>", "<a href='#claims'>Claims</a>", "<a href='#effects'>Effects</a>"]
    if figures:
        nav.append("<a href='#figures'>Figures</a>")
    parts.append("<nav>" + "".join(nav) + "</nav>")

    parts.append("<h2 id='table'>Results per cell</h2>")
    parts.append(_table_html(shown, best))
    parts.append(f"<p class='muted'>n: completed {data.replicates} of those planned. The lowest mean of each error "
                 "column is in bold" + (f" (the highest of {_esc(metric_title(data.objective_key))}, which the study's "
                                        "objective maximizes)" if data.maximize else "") + ".</p>")
    if sources:
        parts.append("<p class='muted'>Paper values:</p><ol class='muted'>"
                     + "".join(f"<li>{_esc(s)}</li>" for s in sources) + "</ol>")
    lo = left_out(data)
    if not lo.empty:
        lo = lo.assign(trial=[("–" if t is None or t != t else f"#{int(t)}") for t in lo["trial"]])
        lo = lo[["label", "seed", "status", "reason", "trial"]].rename(columns={"label": "cell"})
        parts.append("<h3>Runs not in the means</h3>" + _table_html(lo.astype(object)))

    parts.append("<h2 id='claims'>Claims</h2>")
    level = level_text(data)
    if claims:
        parts.append(f"<p>{_esc(verdict_counts(claims))} Intervals: {_esc(level)}.</p>")
        items = []
        for c in claims:
            cls = "v-" + c.verdict.replace(" ", "-")
            warn = f" <span class='dead'>⚠ {_esc(c.warning)}</span>" if c.warning else ""
            items.append(f"<li><span class='verdict {cls}'>{_esc(c.verdict)}</span>{_md_inline(c.statement)}. "
                         f"{_md_inline(c.evidence)} <em>{_esc(c.why)}.</em>{warn} "
                         f"<span class='muted'>Source: {_esc(c.source)}.</span></li>")
        parts.append("<ul class='claims'>" + "".join(items) + "</ul>")
    else:
        parts.append("<p>The study has no pair of cells that a claim from the papers compares.</p>")
    parts.append(f"<p class='muted'><em>Rule.</em> {_md_inline(VERDICT_RULE)}</p>")
    dead = dead_cell_notes(data)
    if dead:
        parts.append("<h3>Cells that did not learn</h3><ul>" + "".join(
            f"<li class='dead'>{_esc(label)} {_esc(why)}</li>" for label, why in dead) + "</ul>")
    imp, how = importances(data)
    results = effects(data)
    rows = effect_rows(data, results, importance=imp)
    if not rows.empty:
        note = lost_note(data, results)
        parts.append(f"<h2 id='effects'>Which factor matters</h2><p class='muted'>Main effects (each axis value "
                     f"minus the axis's first, averaged over the other axes) and two-way interactions; "
                     f"{_esc(level)}; importance: Optuna's ({_esc(how)}).</p>"
                     + _table_html(rows.astype(object)) + (f"<p class='dead'>{_esc(note)}</p>" if note else ""))
    paper = paper_comparison(data, table)
    obs = gradient_observations(data) + probe_observations(data) + lesion_observations(data)
    for title, lines in (("Against the paper's numbers", paper), ("Observations (no verdict)", obs)):
        if lines:
            parts.append(f"<h3>{title}</h3><ul>" + "".join(f"<li>{_md_inline(l[2:])}</li>" for l in lines)
                         + "</ul>")

    if figures:
        parts.append("<h2 id='figures'>Figures</h2>")
        for f in figures:
            rel = f.png.name
            parts.append(f"<figure id='{_esc(f.name)}'><a href='{_esc(f.svg.name)}'><img src='{_esc(rel)}' "
                         f"alt='{_esc(f.title)}'></a><figcaption><strong>{_esc(f.title)}.</strong> "
                         f"{_esc(f.caption)} (<a href='{_esc(f.svg.name)}'>SVG</a>)</figcaption></figure>")
    if data.notes:
        parts.append("<h2>Notes</h2><ul>" + "".join(f"<li>{_esc(n)}</li>" for n in data.notes) + "</ul>")
    if files:
        parts.append("<p class='muted'>Files: " + ", ".join(f"<a href='{_esc(n)}'>{_esc(n)}</a>" for n in files)
                     + "</p>")
    doc = ("<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
           f"<meta name='viewport' content='width=device-width, initial-scale=1'><title>{_esc(data.name)} report"
           f"</title><style>{CSS}</style></head><body><main>\n" + "\n".join(parts) + "\n</main></body></html>\n")
    path = out / "index.html"
    path.write_text(doc)
    return path
