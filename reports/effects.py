"""Which factor matters: each axis's main effects (and two-way interactions where the grid is full) with their
intervals and verdicts, Optuna's importance of each axis (and what its evaluator measures) beside them, and the
cells that did not learn — as rows (``effect_rows``) that summary.md, index.html and effects.csv show."""
from __future__ import annotations

import pandas as pd

from sweeps.verdicts.comparisons import MAIN, Result
from sweeps.verdicts.inference import SETTLED, seeds_needed_text

from .collapse import dead_cell_notes
from .comparisons import IMPORTANCE_MEANS, effects, importances
from .study_reader import StudyData
from .tables import markdown_table

COLUMNS = ("kind", "comparison", "difference", "interval", "test", "n", "verdict", "seeds needed", "importance")


def effect_rows(data: StudyData, results: list[Result] | None = None,
                importance: dict[str, float] | None = None) -> pd.DataFrame:
    """One row per main effect / interaction: text columns ``COLUMNS`` (the axis's Optuna importance on its main
    effects' rows)."""
    results = effects(data) if results is None else results
    importance = importances(data)[0] if importance is None else importance
    rows = []
    for r in results:
        e = r.est
        axis = r.plan.id.split(":", 1)[1].split("=", 1)[0] if r.plan.kind == MAIN else None
        imp = importance.get(axis) if axis else None
        rows.append({
            "kind": r.plan.kind,
            "comparison": r.plan.label + (" ⚠" if r.dead or r.lost else ""),
            "difference": f"{e.diff:+.2f}" if e else "–",
            "interval": e.bounds_text() if e else "–",
            "test": e.test if e else "–",
            "n": e.n_text if e else "–",
            "verdict": r.verdict,
            "seeds needed": seeds_needed_text(r.seeds_needed) if e and r.verdict not in SETTLED else "",
            "importance": f"{imp:.2f}" if imp is not None else "",
        })
    return pd.DataFrame(rows, columns=list(COLUMNS))


def effects_markdown(data: StudyData, level_text: str) -> list[str]:
    """The 'Which factor matters' and 'Cells that did not learn' sections of summary.md (empty for one cell)."""
    lines: list[str] = []
    dead = dead_cell_notes(data)
    if dead:
        lines += ["## Cells that did not learn", ""]
        lines += [f"- **{label}** {why}. Verdicts resting on it are marked ⚠." for label, why in dead]
        lines.append("")
    results = effects(data)
    if not results:
        return lines
    importance, how = importances(data)
    rows = effect_rows(data, results, importance)
    lines += ["## Which factor matters", "",
              f"Each axis's main effect: the mean of the objective's error at each value minus at the axis's first "
              f"value, averaged over the other axes (the full-factorial cells); two-way interactions where the grid is "
              f"full. {level_text[0].upper() + level_text[1:]}; a main effect claims no direction, so it is "
              f"*decided* when its interval excludes zero. Importance: Optuna's importance of the axis "
              f"(`optuna.importance.get_param_importances`, sums to 1; {how}"
              f"{': ' + IMPORTANCE_MEANS[how] if how in IMPORTANCE_MEANS else ''}). Per-axis error EDFs: "
              f"`error_edf.png`.",
              "", markdown_table(rows.astype(object)), ""]
    note = lost_note(data, results)
    return lines + ([note, ""] if note else [])


def lost_note(data: StudyData, results: list[Result]) -> str:
    """What a ⚠ on a comparison resting on seeds that failed or diverged means, naming them ('' where none)."""
    lost = {c: why for r in results for c, why in r.lost.items()}
    if not lost:
        return ""
    return ("Comparisons on cells with seeds that failed or diverged count the completed seeds only, and are marked "
            "⚠: " + "; ".join(f"{data.cells[c].label} {why}" for c, why in lost.items()) + ".")
