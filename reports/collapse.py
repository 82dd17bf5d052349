"""Why a run did not learn, read from its own instruments: when its training loss rose above a uniform guess's, and
from which iteration every layer below the classifier kept a gradient norm under ``VANISHED`` of its first logged
value (the network stopped updating: typically every ReLU before the pool inactive after an early blow-up; the
classifier's bias still gets the gradient of a constant prediction). summary.md and index.html give this beside
each cell that did not learn (``comparisons.dead_cells``)."""
from __future__ import annotations

import math
from typing import Any

import pandas as pd

from sweeps.verdicts.dead import shape_of

from .comparisons import dead_cells, run_dead
from .study_reader import StudyData

VANISHED = 0.01   # a layer's gradient norm below this fraction of its first logged value has vanished


def vanished_from(grads: pd.DataFrame) -> int | None:
    """The first logged step from which every layer below the classifier (the last layer logged, in forward order)
    keeps a gradient norm under ``VANISHED`` × its first logged value, to the run's last logged step; None if some
    such layer still gets gradient at the end. ``grads``: rows of one run's ``grad_norm`` split (columns step,
    name, value)."""
    below = below_classifier(grads)
    if not below:
        return None
    wide = grads.pivot_table(index="step", columns="name", values="value", aggfunc="mean").sort_index()[below]
    first = wide.iloc[0]
    if not (first > 0).all():
        return None
    low = (wide < VANISHED * first).all(axis=1)
    if not low.iloc[-1]:
        return None
    alive = low[~low]
    after = low.index if alive.empty else low.index[low.index > alive.index[-1]]
    return int(after[0])


def below_classifier(grads: pd.DataFrame) -> list[str]:
    """The layers logged in forward order (first appearance), all but the last (the classifier)."""
    return list(pd.unique(grads["name"]))[:-1]


def collapse_text(metrics: pd.DataFrame, classes: int | None) -> str | None:
    """'training loss peaked at 4.01 at iteration 100 (a uniform guess: ln 10 = 2.30); the gradient norm of every
    layer below the classifier under 1 % of its first logged value from iteration 351 on …' for one run's metrics
    (columns step, split, name, value) and its number of classes; None when the record shows neither."""
    parts = []
    loss = metrics[(metrics["split"] == "train") & (metrics["name"] == "loss")].sort_values("step")
    if classes and not loss.empty:
        peak = loss.loc[loss["value"].idxmax()]
        if math.isfinite(peak["value"]) and peak["value"] > math.log(classes):
            parts.append(f"training loss peaked at {peak['value']:.2f} at iteration {int(peak['step']):,} "
                         f"(a uniform guess: ln {classes} = {math.log(classes):.2f})")
    grads = metrics[metrics["split"] == "grad_norm"]
    step = vanished_from(grads)
    if step is not None:
        end = int(grads["step"].max())
        last = grads[(grads["step"] == end) & grads["name"].isin(below_classifier(grads))]
        zero = int((last["value"] == 0).sum())
        parts.append(f"the gradient norm of every layer below the classifier under {100 * VANISHED:g} % of its first "
                     f"logged value from iteration {step:,} on ({zero} of {len(last)} at exactly 0 at iteration "
                     f"{end:,}): the network stopped updating")
    return "; ".join(parts) or None


def collapse_evidence(data: StudyData, dead: pd.Series | None = None) -> dict[str, str]:
    """Cell id → what the instruments of its dead runs show ('seed 0: …; seed 1: …', or in a search study, whose
    runs share a seed, 'trial #3: …'), for cells where they show something (``collapse_text``); ``dead`` is
    ``run_dead(data)`` where the caller has it already."""
    runs = data.runs.assign(dead=run_dead(data) if dead is None else dead)
    out: dict[str, str] = {}
    for cid, g in runs[runs["dead"].map(lambda d: isinstance(d, str))].groupby("cell", sort=False):
        shape = shape_of(data.cells[cid].config) if cid in data.cells else None
        texts = []
        for _, r in g.sort_values(["seed", "trial"]).iterrows():
            text = collapse_text(data.metrics(r["run_dir"]), shape.classes if shape else None)
            if text:   # a search study's runs share a seed: each is named by its trial
                who = f"seed {_seed(r['seed'])}" if pd.isna(r.get("slot")) else f"trial #{_seed(r['trial'])}"
                texts.append(f"{who}: {text}")
        if texts:
            out[str(cid)] = "; ".join(texts)
    return out


def dead_cell_notes(data: StudyData) -> list[tuple[str, str]]:
    """(cell label, 'did not learn in k of n seeds (reason); what its instruments show: …') per cell with a dead
    run: the one text summary.md and index.html give under 'Cells that did not learn'."""
    dead = run_dead(data)
    evidence = collapse_evidence(data, dead)
    return [(data.cells[c].label, why + (f"; what its instruments show: {evidence[c]}" if c in evidence else ""))
            for c, why in dead_cells(data, dead).items()]


def _seed(seed: Any) -> str:
    try:
        return str(int(seed))
    except (TypeError, ValueError):
        return str(seed)
