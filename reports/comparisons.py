"""A study's comparisons, judged by the one set of rules (``sweeps.verdicts.inference``, ``sweeps.verdicts.comparisons``,
``sweeps.verdicts.dead``): which cells did not learn, at what level to judge, the main effects and interactions of the grid
with their intervals, and Optuna's importance of each axis beside them."""
from __future__ import annotations

import math
from typing import Any, Sequence

import pandas as pd

from resnet_core.values import freeze
from sweeps.spec.study_format import record_of
from sweeps.verdicts.comparisons import Planned, Result, evaluate, interactions, main_effects
from sweeps.verdicts.dead import dead_cell_text, dead_reason, shape_of
from sweeps.verdicts.inference import LEVEL
from sweeps.verdicts.rounds import futility_history_text, lost_seeds, stored_plan

from .study_reader import StudyData


def level_of(data: StudyData) -> float:
    """95 %, or the Bonferroni level of the study's ``--until-decided`` plan (its looks share α)."""
    plan = stored_plan(data.user_attrs)
    return plan.level if plan else LEVEL


def level_text(data: StudyData) -> str:
    plan = stored_plan(data.user_attrs)
    if plan is None:
        return "95 % confidence intervals"
    rounds = len((record_of(data.user_attrs) or {}).get("rounds") or [])
    changes = futility_history_text(data.user_attrs)
    return (f"{plan.describe()} — the study ran `sweep --until-decided` ({rounds} round{'s' * (rounds != 1)} "
            f"of added seeds{'; ' + changes if changes else ''})")


def run_dead(data: StudyData) -> pd.Series:
    """Per row of ``data.runs``: why that completed run did not learn (``sweeps.verdicts.dead``), else None."""
    shapes = {cid: shape_of(c.config) for cid, c in data.cells.items()}
    out = []
    for _, r in data.runs.iterrows():
        if r["status"] != "complete":
            out.append(None)
            continue
        out.append(dead_reason(r["final_test_error"], shapes.get(r["cell"]), lowest_train_loss=lowest_loss(data, r),
                               final_train_loss=r["final_train_loss"]))
    return pd.Series(out, index=data.runs.index, dtype=object)


def lowest_loss(data: StudyData, run: pd.Series) -> float | None:
    """The run's lowest logged training loss: its summary's, else (a record from before the summary kept it) the
    lowest train/loss row of its metrics.jsonl; None without either."""
    value = run.get("lowest_train_loss")
    if value is not None and math.isfinite(float(value)):
        return float(value)
    m = data.metrics(run.get("run_dir"))
    losses = m.loc[(m["split"] == "train") & (m["name"] == "loss"), "value"].astype(float)
    losses = losses[losses.map(math.isfinite)]
    return float(losses.min()) if len(losses) else None


def dead_cells(data: StudyData, dead: pd.Series | None = None) -> dict[str, str]:
    """Cell id → ``dead_cell_text`` for cells with a dead completed run; ``dead`` is ``run_dead(data)`` where the
    caller has it already."""
    runs = data.runs.assign(dead=run_dead(data) if dead is None else dead)
    out = {}
    for cid, g in runs[runs["status"] == "complete"].groupby("cell", sort=False):
        text = dead_cell_text([r for r in g["dead"] if isinstance(r, str)], len(g), bool(data.spec.search))
        if text:
            out[str(cid)] = text
    return out


def lost_cells(data: StudyData) -> dict[str, str]:
    """Cell id → its seeds that failed or diverged, which no verdict counts (``rounds.lost_seeds``)."""
    return lost_seeds(list(zip(data.runs["cell"].astype(str), data.runs["status"])))


def judge(data: StudyData, plans: Sequence[Planned]) -> list[Result]:
    """``plans`` on the study's completed runs, paired where the cells' seeds and data order agree; each names the
    cells it rests on that did not learn or lost seeds."""
    configs = {cid: c.config for cid, c in data.cells.items()}
    return evaluate(plans, data.complete_runs(), configs=configs, dead=dead_cells(data), lost=lost_cells(data),
                    level=level_of(data))


def grid_levels(data: StudyData) -> dict[str, list[Any]]:
    """Axis → its values in grid order: the stored spec's grid (for a study without a stored grid, the values its
    cells use: ``read_spec``); a grid of extra cells only: the order the cells first use each value."""
    if data.spec.grid:
        return {k: list(v) for k, v in data.spec.grid.items()}
    out: dict[str, list[Any]] = {}
    for a in data.axes:
        seen: list[Any] = []
        for c in data.cells.values():
            v = c.params.get(a)
            if a in c.params and freeze(v) not in {freeze(x) for x in seen}:
                seen.append(v)
        out[a] = seen
    return out


def effects(data: StudyData, metric: str | None = None) -> list[Result]:
    """Each axis's main effects, then the two-way interactions where the grid is full, judged."""
    metric = metric or data.objective_key
    levels = grid_levels(data)
    cells = {cid: c.params for cid, c in data.cells.items()}
    return judge(data, main_effects(levels, cells, metric) + interactions(levels, cells, metric))


# What each of Optuna's importance evaluators measures, said beside its numbers in summary.md.
IMPORTANCE_MEANS = {
    "fANOVA": "the share of the objective's variance the axis explains, from a random-forest fit (Hutter et al. 2014)",
    "PED-ANOVA": "how far the axis's values among the best 10 % of trials differ from those of all trials (Watanabe "
                 "et al. 2023), not the share of the spread the axis explains: an axis whose one bad value sinks a "
                 "few trials can score near 0 beside a large main effect",
}


def importance_evaluator() -> tuple[Any, str]:
    """Optuna's fANOVA evaluator where scikit-learn (which it needs) is installed, else its PED-ANOVA evaluator
    (Watanabe et al. 2023; no extra dependency); and the name to print."""
    import optuna

    try:
        import sklearn  # noqa: F401

        return optuna.importance.FanovaImportanceEvaluator(seed=0), "fANOVA"
    except ImportError:
        return optuna.importance.PedAnovaImportanceEvaluator(), "PED-ANOVA"


def varying_params(trials: Sequence[Any]) -> list[str]:
    """The params whose value differs among these trials: only they can explain the objective's spread (a param
    whose other values' trials all failed has one value among the completed ones, and its importance would be
    noise taken from the others)."""
    names = dict.fromkeys(k for t in trials for k in t.params)
    return [k for k in names if len({freeze(t.params.get(k)) for t in trials}) > 1]


def importances(data: StudyData) -> tuple[dict[str, float], str]:
    """Optuna's importance of each axis (``optuna.importance.get_param_importances`` on the objective values of the
    trials the report counts as completed: a run record that says failed or diverged wins over the trial's state, as
    in the table) and the evaluator's name, or no importances and why not."""
    import warnings

    study = data.optuna_study
    if study is None:
        return {}, "not available: the Optuna study is not loaded"
    done = {int(n) for n in data.complete_runs()["trial"].dropna()}
    trials = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE" and t.number in done]
    if not trials:
        return {}, "not available: no completed trials"
    if any(not t.params for t in trials):
        return {}, "not available: the study's trials carry no Optuna params (a study recorded before its grid axes were params)"
    varying = varying_params(trials)
    if not varying:
        return {}, "not available: fewer than two distinct completed cells"
    evaluator, name = importance_evaluator()
    try:
        import optuna

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            completed = optuna.create_study(directions=study.directions)   # in memory: these trials only
            completed.add_trials(trials)
            imp = optuna.importance.get_param_importances(completed, evaluator=evaluator, params=varying)
        return {k: float(v) for k, v in imp.items()}, name
    except Exception as e:  # noqa: BLE001 - importance is a side view; the effects stand without it
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        return {}, f"not available: {type(e).__name__}: {first[:160]}"
