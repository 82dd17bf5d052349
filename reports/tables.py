"""The per-cell table (pandas), written as Markdown, CSV and LaTeX (booktabs), and the list of runs left out.

One row per cell. ``n`` counts the seeds whose run completed; means and sample standard deviations (ddof=1, so
undefined for n=1) are over those runs only. Failed, diverged, running and missing runs are listed under the table.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from .comparisons import run_dead
from .study_reader import StudyData, get_dotted, test_selected_note

# (summary key, column title, unit) of the mean ± std columns, in table order. Errors are in percent.
METRICS = (
    ("final_test_error", "test error", "%"),
    ("best_val_error", "best val error", "%"),
    ("final_train_error", "train error", "%"),
)
# extra numbers kept in the CSV only
CSV_EXTRA = (("test_error_at_best_val", "test error at best val", "%"), ("final_train_loss", "train loss", ""))
OBJECTIVE_ONLY = ("final_val_error", "val error", "%")   # a column only where the study's objective is val_error


def table_metrics(data: StudyData) -> tuple[tuple[str, str, str], ...]:
    """The mean ± std columns: the study's objective first (``data.objective_key``), then the other errors."""
    key = data.objective_key
    first = next((m for m in METRICS + (OBJECTIVE_ONLY,) if m[0] == key), (key, key, ""))
    return (first, *(m for m in METRICS if m[0] != key))


def metric_title(key: str) -> str:
    """A summary key's name in the report (``final_test_error`` → "test error")."""
    return next((t for m, t, _ in METRICS + CSV_EXTRA + (OBJECTIVE_ONLY,) if m == key), key)


def axis_columns(data: StudyData) -> dict[str, str]:
    """Grid axis -> column name (the last part of the dotted key, unless two axes would share it)."""
    short = [a.split(".")[-1] for a in data.axes]
    return {a: (s if short.count(s) == 1 else a) for a, s in zip(data.axes, short)}


def cell_table(data: StudyData) -> pd.DataFrame:
    """The numeric table: one row per cell in grid order."""
    runs = data.runs
    done = runs[runs["status"] == "complete"]
    metrics = [m for m, _, _ in table_metrics(data) + CSV_EXTRA] + ["wall_time_s"]
    agg = done.groupby("cell", sort=False)[metrics].agg(["mean", "std"])
    agg.columns = [f"{m}_{s}" for m, s in agg.columns]
    n = done.groupby("cell", sort=False).size().rename("n")
    expected = runs.groupby("cell", sort=False).size().rename("n_expected")
    status_counts = runs.pivot_table(index="cell", columns="status", values="seed", aggfunc="size", fill_value=0)
    params = runs.dropna(subset=["params"]).groupby("cell", sort=False)["params"].median()

    cols = axis_columns(data)
    rows = []
    for cell in data.cells.values():
        row: dict[str, Any] = {cols[a]: _plain(_axis_value(cell, a)) for a in data.axes}
        row.update(cell=cell.id, label=cell.label)
        rows.append(row)
    # object columns: an axis whose value one cell lacks stays as written (8, not 8.0)
    table = pd.DataFrame(rows, columns=[cols[a] for a in data.axes] + ["cell", "label"], dtype=object)
    table = table.set_index("cell", drop=False)
    table = table.join(n).join(expected)
    table["n"] = table["n"].fillna(0).astype(int)
    table["n_expected"] = table["n_expected"].fillna(0).astype(int)
    for status in ("diverged", "failed", "interrupted", "running", "waiting", "missing"):
        table[f"n_{status}"] = (status_counts[status].reindex(table.index).fillna(0).astype(int)
                                if status in status_counts else 0)
    table = table.join(agg)
    for m in metrics:
        for s in ("mean", "std"):
            if f"{m}_{s}" not in table:
                table[f"{m}_{s}"] = float("nan")

    dead = runs.assign(dead=run_dead(data))
    n_dead = dead[dead["dead"].notna()].groupby("cell", sort=False).size()
    table["n_dead"] = n_dead.reindex(table.index).fillna(0).astype(int)
    table["params"] = params.reindex(table.index)
    table["paper_test_error"] = [c.paper.value if c.paper else float("nan") for c in data.cells.values()]
    table["paper_std"] = [c.paper.std if c.paper and c.paper.std is not None else float("nan")
                          for c in data.cells.values()]
    table["paper_metric"] = [c.paper.metric if c.paper else "" for c in data.cells.values()]
    table["paper_source"] = [c.paper.source if c.paper else "" for c in data.cells.values()]
    return table.reset_index(drop=True)


def _axis_value(cell: Any, axis: str) -> Any:
    """The cell's value of a grid axis: its own parameter, else (a cell from before the axis was added to the grid)
    what its run config holds at that key."""
    if axis in cell.params:
        return cell.params[axis]
    return get_dotted(cell.config or {}, axis) if isinstance(cell.config, dict) else None


def _plain(value: Any) -> Any:
    """Axis values as table cells (a mapping-valued axis becomes 'k=v, …')."""
    if isinstance(value, dict):
        return ", ".join(f"{k.split('.')[-1]}={v}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(map(str, value))
    return value


def left_out(data: StudyData) -> pd.DataFrame:
    """Runs not in the means: one row per (cell, seed) that did not complete, with the reason."""
    runs = data.runs[data.runs["status"] != "complete"].copy()
    labels = {c.id: c.label for c in data.cells.values()}
    runs["label"] = runs["cell"].map(labels)
    reasons = []
    for _, r in runs.iterrows():
        reason = r["reason"] if isinstance(r["reason"], str) and r["reason"] else ""
        if r["status"] == "diverged" and not math.isnan(r["diverged_at"]) and "step" not in reason:
            reason = (reason + "; " if reason else "") + f"diverged at step {int(r['diverged_at'])}"
        if r["status"] == "running" and not reason:
            reason = "still running, or its worker died (no heartbeat check on a journal)"
        if r["status"] == "waiting" and not reason:
            reason = "queued, not started"
        reasons.append(reason or "(no reason recorded)")
    runs["reason"] = reasons
    out = runs[["label", "cell", "seed", "status", "reason", "trial", "attempts"]]
    return out.reset_index(drop=True)


# ---------------------------------------------------------------------------------------------------------------
# formatting
def fmt_mean_std(mean: float, std: float, n: int, digits: int = 2) -> str:
    if n == 0 or mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "–"
    if n < 2 or std is None or math.isnan(std):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def fmt_params(p: float) -> str:
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return "–"
    return f"{p / 1e6:.2f}M" if p >= 1e5 else f"{p / 1e3:.1f}k"


def fmt_seconds(s: float) -> str:
    if s is None or (isinstance(s, float) and math.isnan(s)):
        return "–"
    if s < 120:
        return f"{s:.0f} s"
    if s < 7200:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.1f} h"


def display_table(data: StudyData, table: pd.DataFrame) -> tuple[pd.DataFrame, list[str], dict[str, list[int]]]:
    """Text columns for Markdown/HTML/LaTeX, the paper footnotes, and the rows with the best mean of each metric
    group (ties all count): the lowest, or the highest in the objective's column of a study that maximizes it."""
    cols = list(axis_columns(data).values()) or ["label"]
    out = pd.DataFrame({c: table[c].astype(object) for c in cols})
    if "label" not in cols:
        out.insert(0, "model", table["label"])
    out["n"] = [f"{n}/{e}" for n, e in zip(table["n"], table["n_expected"])]
    if table["n_dead"].any():  # sweeps.verdicts.dead: a cell with runs that did not learn is named in its own column
        out["did not learn"] = [f"{d} of {n}" if d else "" for d, n in zip(table["n_dead"], table["n"])]
    best: dict[str, list[int]] = {}
    for m, title, unit in table_metrics(data):
        out[f"{title} ({unit})"] = [fmt_mean_std(a, b, n) for a, b, n in
                                    zip(table[f"{m}_mean"], table[f"{m}_std"], table["n"])]
        means = table[f"{m}_mean"].round(2)
        top = means.max() if m == data.objective_key and data.maximize else means.min()
        best[f"{title} ({unit})"] = list(table.index[means == top]) if means.notna().any() else []
    out["params"] = [fmt_params(p) for p in table["params"]]
    out["wall time"] = [fmt_seconds(s) for s in table["wall_time_s_mean"]]
    sources: list[str] = []
    paper = []
    for value, std, src, metric in zip(table["paper_test_error"], table["paper_std"], table["paper_source"],
                                       table["paper_metric"]):
        if isinstance(value, float) and math.isnan(value):
            paper.append("–")
            continue
        if src not in sources:
            sources.append(src)
        text = f"{value:.2f}" + (f" ± {std:.2f}" if not math.isnan(std) else "")
        paper.append(f"{text} [{sources.index(src) + 1}]")
    out["paper (%)"] = paper
    return out, sources, best


def markdown_table(df: pd.DataFrame, bold: dict[str, list[int]] | None = None) -> str:
    """A GitHub pipe table from a DataFrame of text (numbers right-aligned)."""
    bold = bold or {}
    cells = [[str(v) for v in df.columns]]
    for i, (_, row) in enumerate(df.iterrows()):
        line = []
        for col, v in row.items():
            text = "" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v)
            text = text.replace("|", "\\|")
            if i in bold.get(col, ()) and text not in ("", "–"):
                text = f"**{text}**"
            line.append(text)
        cells.append(line)
    widths = [max(len(r[j]) for r in cells) for j in range(len(df.columns))]
    numeric = [_is_numeric_column(df[c]) for c in df.columns]

    def fmt(row: Sequence[str]) -> str:
        return "| " + " | ".join(t.rjust(w) if num else t.ljust(w) for t, w, num in zip(row, widths, numeric)) + " |"

    rule = "|" + "|".join(("-" * (w + 1) + ":") if num else ("-" * (w + 2)) for w, num in zip(widths, numeric)) + "|"
    return "\n".join([fmt(cells[0]), rule] + [fmt(r) for r in cells[1:]])


def _is_numeric_column(col: pd.Series) -> bool:
    texts = [str(v) for v in col if str(v) not in ("", "–", "nan")]
    return bool(texts) and all(t[:1].isdigit() or t[:1] == "-" and t[1:2].isdigit() for t in texts)


# ---------------------------------------------------------------------------------------------------------------
def write_markdown(data: StudyData, table: pd.DataFrame, path: Path) -> None:
    shown, sources, best = display_table(data, table)
    lines = [f"# Study `{data.name}`: results per cell", "",
             f"Source: `{data.storage}`. {data.status_line()}", "",
             f"Errors are in percent: mean ± sample std over the {data.replicates} that completed (n of the "
             f"{data.replicates} planned); "
             "best val error is each run's lowest validation error. The lowest mean of each error column is in bold"
             + (f" (the highest of {metric_title(data.objective_key)}, which the study's objective maximizes)"
                if data.maximize else "") + "."
             + (f" *did not learn*: completed {data.replicates} at chance-level test error or whose training loss never fell "
                "below a uniform guess's (summary.md names them)." if table["n_dead"].any() else ""),
             "", markdown_table(shown, best), ""]
    if sources:
        lines += ["Paper values:", "", *(f"- [{i + 1}] {s}" for i, s in enumerate(sources)), ""]
    picked = test_selected_note(data.runs, data.cells)
    if picked:
        lines += [f"Note: {picked}", ""]
    lines += left_out_markdown(data)
    path.write_text("\n".join(lines).rstrip() + "\n")


def left_out_markdown(data: StudyData) -> list[str]:
    out = left_out(data)
    if out.empty:
        return ["All planned runs completed."] if len(data.runs) else []
    rows = out.copy()
    rows["trial"] = [("–" if t is None or (isinstance(t, float) and math.isnan(t)) else f"#{int(t)}")
                     for t in rows["trial"]]
    rows = rows[["label", "seed", "status", "reason", "trial"]].rename(columns={"label": "cell"})
    return ["## Runs not in the means", "", markdown_table(rows.astype(object)), ""]


def write_csv(data: StudyData, table: pd.DataFrame, path: Path) -> None:
    """Numeric columns: mean and std separately; paper value and source; counts per status."""
    table.to_csv(path, index=False, float_format="%.6g")


def write_trials_csv(data: StudyData, path: Path) -> None:
    """One row per (cell, seed): one column per grid axis (its value), then the run's status and numbers, and why
    a completed run did not learn (``dead``, empty if it learned)."""
    runs = data.runs.copy()
    axes = axis_columns(data)
    for axis, col in axes.items():
        runs[col] = [_plain(data.cells[c].params.get(axis)) if c in data.cells else None for c in runs["cell"]]
    runs["dead"] = run_dead(data)
    cols = [*axes.values(), "cell", "seed", "slot", "status", "reason", "trial", "state", "attempts", "run_dir", "final_test_error",
            "test_error_at_best_val", "best_val_error", "final_val_error", "final_train_error", "final_train_loss",
            "params", "wall_time_s", "img_per_s", "diverged_at", "step", "total_steps", "dead"]
    runs[list(dict.fromkeys(cols))].to_csv(path, index=False, float_format="%.6g")


# ---------------------------------------------------------------------------------------------------------------
LATEX_LEFT_OUT = ("wall time",)   # columns table.tex leaves out so that it fits a page
LATEX_SPECIALS = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def tex_escape(text: Any) -> str:
    return "".join(LATEX_SPECIALS.get(ch, ch) for ch in str(text))


def latex_table(data: StudyData, table: pd.DataFrame) -> str:
    """A booktabs table that fits the text width of a plain article: the wall-time column is left out (it is in
    table.md / table.csv), and the tabular is scaled down to ``\\linewidth`` when wider (never up); the lowest mean
    of each error column is bold. Needs ``booktabs`` and ``graphicx``."""
    shown, sources, best = display_table(data, table)
    shown = shown.drop(columns=[c for c in LATEX_LEFT_OUT if c in shown.columns])
    head = []
    align = []
    for col in shown.columns:
        numeric = col == "n" or _is_numeric_column(shown[col]) or col in best or col in ("params", "paper (%)")
        align.append("r" if numeric else "l")
        head.append(tex_escape(col).replace("(\\%)", "(\\%)"))
    body = []
    for i, (_, row) in enumerate(shown.iterrows()):
        cells = []
        for col, v in row.items():
            text = tex_escape(v).replace("±", r"$\pm$").replace("–", "--")
            if i in best.get(col, ()) and text != "--":
                text = rf"\textbf{{{text}}}"
            cells.append(text)
        body.append(" & ".join(cells) + r" \\")
    caption = (f"Study {tex_escape(data.name)}: errors in \\%, mean $\\pm$ sample std over the $n$ completed "
               f"{data.replicates}; "
               f"the lowest mean per error column in bold"
               + (f" (the highest of {tex_escape(metric_title(data.objective_key))}, which the study maximizes)"
                  if data.maximize else "") + ".")
    if sources:
        caption += " Paper: " + " ".join(f"[{i + 1}] {tex_escape(s)}." for i, s in enumerate(sources))
    caption = caption.replace("±", r"$\pm$").replace("–", "--")
    label = "tab:" + "".join(ch if ch.isalnum() else "-" for ch in data.name)
    lines = [r"% generated by resnet-ablate report; needs \usepackage{booktabs} and \usepackage{graphicx}",
             r"\begin{table}[t]", r"\centering", r"\small", r"\setlength{\tabcolsep}{4pt}",
             rf"\caption{{{caption}}}", rf"\label{{{label}}}",
             r"\resizebox{\ifdim\width>\linewidth\linewidth\else\width\fi}{!}{%",
             r"\begin{tabular}{" + "".join(align) + "}", r"\toprule",
             " & ".join(head).replace("±", r"$\pm$") + r" \\", r"\midrule", *body, r"\bottomrule",
             r"\end{tabular}}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def write_latex(data: StudyData, table: pd.DataFrame, path: Path) -> None:
    path.write_text(latex_table(data, table))
