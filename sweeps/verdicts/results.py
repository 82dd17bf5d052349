"""A study's completed trials as a table (pandas): one row per completed trial with its cell, seed, one column per
grid axis, the run-summary numbers its user attrs hold, and why it did not learn (``dead``) where it did not. What
the closing table, the W&B summary run and ``--until-decided`` compute from."""
from __future__ import annotations

from typing import Any, Iterable

import pandas as pd

from ..spec.cells import format_value
from ..spec.grid import GridSpec
from ..spec.identity import cell_aliases
from ..spec.metrics import ERROR_KEYS
from ..spec.study_format import trial_cell
from .dead import dead_cell_text, dead_reason, shape_of



def cell_configs(spec: GridSpec) -> dict[str, dict[str, Any]]:
    """Cell id → the run config of its first seed (what decides pairing and the dataset's classes)."""
    return {c.id: spec.run_config(c, spec.seeds[0]) for c in spec.cells}


def axis_values(spec: GridSpec, params: dict[str, Any]) -> dict[str, Any]:
    """One column per axis: the cell's value of it (a list or mapping as its cell-id text), None where unset."""
    out = {}
    for axis in spec.axes:
        v = params.get(axis)
        out[axis] = v if v is None or isinstance(v, (bool, int, float, str)) else format_value(v)
    return out


def trial_frame(spec: GridSpec, trials: Iterable[Any]) -> pd.DataFrame:
    """Completed trials: cell, seed, the axes, ``value`` (the objective), ``ERROR_KEYS`` and ``dead`` (a reason or
    None)."""
    from optuna.trial import TrialState

    cells = {c.id: c for c in spec.cells}
    shapes = {cid: shape_of(cfg) for cid, cfg in cell_configs(spec).items()}
    trials = list(trials)
    aliases = cell_aliases(spec, trials)  # a renamed cell's trials count for the cell it is now, as in the report
    rows = []
    for t in trials:
        cid = trial_cell(t.user_attrs, aliases)
        if t.state != TrialState.COMPLETE or cid not in cells:
            continue
        row = {"cell": cid, "seed": t.user_attrs.get("seed"), **axis_values(spec, cells[cid].params),
               "value": t.value}
        row.update({m: t.user_attrs.get(m) for m in ERROR_KEYS})
        row["dead"] = dead_reason(row["final_test_error"], shapes.get(cid), lowest_train_loss=row["lowest_train_loss"],
                                  final_train_loss=row["final_train_loss"])
        rows.append(row)
    cols = ["cell", "seed", *spec.axes, "value", *ERROR_KEYS, "dead"]
    return pd.DataFrame(rows, columns=list(dict.fromkeys(cols)))


def dead_cells(frame: pd.DataFrame, search: bool) -> dict[str, str]:
    """Cell id → ``dead_cell_text`` for the cells with a dead run (``search``: a search study's frame)."""
    out = {}
    for cid, g in frame.groupby("cell", sort=False):
        text = dead_cell_text([r for r in g["dead"] if isinstance(r, str)], len(g), search)
        if text:
            out[str(cid)] = text
    return out
