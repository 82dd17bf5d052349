"""The rounds of ``sweep --until-decided`` in a launch: judge, record the next round, run it, until every
comparison is settled or the planned looks are used up (the rule and the record: ``rounds``)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence, TextIO

from ..queue.storage import study_lock
from ..queue.study import Plan, reconcile, statuses
from ..spec.study_format import DONE, FAILED, extra_seeds_of, record_of
from ..verdicts.comparisons import Result, decision_family, evaluate
from ..verdicts.inference import SETTLED, seeds_needed_text
from ..verdicts.results import cell_configs, dead_cells, trial_frame
from ..verdicts.inference import SequentialPlan
from ..verdicts.rounds import (check_same_plan, futile_results, futility_change, futility_change_text, lost_seeds,
                               next_round, open_results, record_round, record_stop, stored_plan, stuck_cells)


def judge(spec: Any, trials: Sequence[Any], level: float) -> list[Result]:
    """The decision family (``comparisons.decision_family``) on the study's completed trials at ``level``; a cell
    that did not learn, or failed in every seed (``failing_cells``), is named on the comparisons resting on it, as
    is one that lost some of its seeds (``lost_cells``)."""
    frame = trial_frame(spec, trials)
    return evaluate(decision_family(spec), frame, configs=cell_configs(spec),
                    dead={**dead_cells(frame, bool(spec.search)), **failing_cells(spec, trials)},
                    lost=lost_cells(spec, trials), level=level)


def unit_states(spec: Any, trials: Sequence[Any]) -> list[tuple[str, str]]:
    """(cell id, outcome) of each (cell, seed) of the grid."""
    return [(s.unit.cell.id, s.state) for s in statuses(spec, trials)]


def failing_cells(spec: Any, trials: Sequence[Any]) -> dict[str, str]:
    """Cell id → why more seeds cannot help it (``rounds.stuck_cells``), from the outcome of each (cell, seed)."""
    return stuck_cells(unit_states(spec, trials))


def lost_cells(spec: Any, trials: Sequence[Any]) -> dict[str, str]:
    """Cell id → its seeds that failed or diverged (``rounds.lost_seeds``), for the cells with some seeds left
    (a cell that failed in every seed is a ``failing_cells`` one)."""
    states = unit_states(spec, trials)
    stuck = stuck_cells(states)
    return {c: why for c, why in lost_seeds(states).items() if c not in stuck}


def futility_text(plan: SequentialPlan, results: Sequence[Result], futile: dict[str, float]) -> str:
    """'2 left undecided for futility (power at 8 seeds under 10 %: A − B 3 %; C − D 6 %)'."""
    labels = "; ".join(f"{r.plan.label} {futile[r.id]:.0%}" for r in results if r.id in futile)
    return (f"{len(futile)} left undecided for futility (power at {plan.max_seeds} seeds under {plan.futility:.0%}: "
            f"{labels})")


def stop_reason(plan: SequentialPlan, results: Sequence[Result], failing: dict[str, str]) -> str:
    """Why the rounds stop: all decided, the cap, comparisons too unlikely to be decided by the cap (futility), or
    comparisons resting on a cell that failed in every seed."""
    futile = futile_results(plan, results)
    open_ = open_results(results, failing, futile)
    open_ids = {r.id for r in open_}
    hopeless = [r for r in results if r.verdict not in SETTLED and r.id not in open_ids and r.id not in futile]
    parts = []
    if open_:
        parts.append(f"cap: {len(open_)} undecided at the planned maximum")
    if futile:
        parts.append(futility_text(plan, results, futile))
    if hopeless:
        cells = dict.fromkeys(c for r in hopeless for c in r.plan.cells if c in failing)
        parts.append(f"{len(hopeless)} cannot be decided by more seeds: "
                     + "; ".join(f"{c} {failing[c]}" for c in cells))
    return "; ".join(parts) or "all decided"


def seeds_per_cell(spec: Any) -> dict[str, int]:
    """Cell id → its seeds so far (the grid's and those the recorded rounds added)."""
    return {c.id: len(spec.cell_seeds(c)) for c in spec.cells}


def plan_lines(spec: Any, study: Any | None, max_seeds: int, futility: float | None = None) -> list[str]:
    """What ``--until-decided`` would do, for a dry run: the plan, the comparisons it decides, the most trials it
    can add, and (a study with every trial finished) the next round as the results stand. Reads only."""
    plan = check_same_plan(study, spec, max_seeds, futility)
    family = decision_family(spec)
    labels = "; ".join(p.label for p in family[:3]) + ("; …" if len(family) > 3 else "")
    most = sum(max(0, plan.max_seeds - len(spec.cell_seeds(c))) for c in spec.cells)
    change = futility_change(record_of(study.user_attrs) or {}, plan) if study is not None else None
    lines = [f"until-decided: {plan.describe()}"
             + (f" ({futility_change_text(change)}: a launch records the change)" if change else ""),
             f"  decides {len(family)} comparison{'s' * (len(family) != 1)} ({labels})",
             f"  adds at most {most} trials (every cell to {plan.max_seeds} seeds, if nothing is decided before)"]
    if study is None:
        return lines
    trials = study.get_trials(deepcopy=False)
    if any(s.state not in DONE + FAILED for s in statuses(spec, trials)):
        return lines + ["  next round: judged once every trial of the study has finished"]
    results = judge(spec, trials, plan.level)
    done = len((record_of(study.user_attrs) or {}).get("rounds") or [])
    failing = failing_cells(spec, trials)
    rnd = next_round(plan, done, results, seeds_per_cell(spec), spec, failing)
    open_ = sum(r.verdict not in SETTLED for r in results)
    if rnd is None:
        return lines + [f"  next round: none ({open_} undecided after {done} round{'s' * (done != 1)}; "
                        f"{stop_reason(plan, results, failing)})"]
    added = sum(max(0, rnd.target - len(spec.cell_seeds(c))) for c in spec.cells if c.id in rnd.cells)
    return lines + [f"  next round: {open_} undecided now; {len(rnd.cells)} cell{'s' * (len(rnd.cells) != 1)} to "
                    f"{rnd.target} seeds, {added} trials"
                    + (f"; {futility_text(plan, results, rnd.futile)}" if rnd.futile else "")]


def decide_rounds(spec: Any, study: Any, storage: Any, ref: Any, study_dir: Path, launch: Callable[[Plan], int],
                  out: TextIO) -> tuple[int, list[Result], bool]:
    """Run rounds until decided, the cap, or an unfinished trial (then a relaunch continues). Returns (exit code of
    the workers, the last judgement, whether any round ran trials)."""
    ran = False
    while True:
        plan = stored_plan(study.user_attrs)   # each round: another launch may have changed the futility bound
        trials = study.get_trials(deepcopy=False)
        if any(s.state not in DONE + FAILED for s in statuses(spec, trials)):
            print("until-decided: some trials did not finish; run the same command again to continue the rounds",
                  file=out)
            return 0, judge(spec, trials, plan.level), ran
        results = judge(spec, trials, plan.level)
        with study_lock(ref, spec.study, storage):
            done = len((record_of(study.user_attrs) or {}).get("rounds") or [])
            failing = failing_cells(spec, trials)
            rnd = next_round(plan, done, results, seeds_per_cell(spec), spec, failing)
            if rnd is None:
                why = stop_reason(plan, results, failing)
                record_stop(study, why)
                print(f"until-decided: stopped after {done} round{'s' * (done != 1)} ({why})", file=out)
                return 0, results, ran
            record_round(study, rnd)          # before its trials exist: a relaunch sees the round and runs them
            spec.extra_seeds = extra_seeds_of(study.user_attrs)
            for key in ("extra_seeds", "n_units"):  # what readers (reports, `studies`) count the units by
                study.set_user_attr(key, spec.study_attrs()[key])
            queued = reconcile(study, storage, spec, study_dir, ref)
        labels = [r.plan.label for r in results if r.plan.id in rnd.undecided]
        print(f"until-decided: round {rnd.number}: {len(labels)} undecided comparison"
              f"{'s' * (len(labels) != 1)} ({'; '.join(labels[:3])}"
              f"{'; …' if len(labels) > 3 else ''}); {len(rnd.cells)} cell{'s' * (len(rnd.cells) != 1)} "
              f"to {rnd.target} seeds (seeds {', '.join(map(str, rnd.seeds))}), "
              f"{queued.to_run} trials" + (f"; {futility_text(plan, results, rnd.futile)}" if rnd.futile else ""),
              file=out, flush=True)
        ran = True
        code = launch(queued)
        if code:
            return code, [], ran


def comparison_lines(results: Sequence[Result]) -> list[str]:
    """One line per comparison: the label, the interval, the test and n, the verdict; seeds needed if undecided."""
    width = max([len(r.plan.label) for r in results] + [4])
    lines = []
    for r in results:
        if r.est is None:
            core = "not enough data (fewer than 2 completed seeds on a side)"
        else:
            e = r.est
            core = (f"{e.diff:+7.2f} {e.bounds_text()}  {e.test}, n={e.n_text}  {r.verdict}")
            if r.verdict not in SETTLED:
                core += f"; seeds needed ≈ {seeds_needed_text(r.seeds_needed)}"
        if r.dead:
            core += "  [rests on a cell that did not learn: " + "; ".join(f"{c} {why}" for c, why in r.dead.items()) + "]"
        if r.lost:
            core += "  [completed seeds only: " + "; ".join(f"{c} {why}" for c, why in r.lost.items()) + "]"
        lines.append(f"  {r.plan.label.ljust(width)}  {core}")
    return lines


def print_decisions(study: Any, results: Sequence[Result], out: TextIO) -> None:
    plan = stored_plan(study.user_attrs)
    rec = record_of(study.user_attrs) or {}
    print(f"comparisons ({plan.describe() if plan else '95 % intervals'}; {len(rec.get('rounds') or [])} "
          f"round(s) run):", file=out)
    for line in comparison_lines(results):
        print(line, file=out)
