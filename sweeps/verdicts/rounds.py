"""``sweep --until-decided``: seeds added in rounds to the cells of undecided comparisons, recorded in the study.

The plan is fixed when the first such launch starts and stored in the study (user attr ``until_decided``): the
comparisons (``comparisons.decision_family``: the grid's claims and main effects), α = 0.05, and the looks — the
grid's n0 seeds, then n0 + ``ROUND_SEEDS``, … up to ``--max-seeds`` (``inference.SequentialPlan``). Every look
judges at the Bonferroni level 1 − α / looks, so peeking after every round cannot inflate the chance of deciding a
comparison that has no true difference above α.

A round: once every trial of the study has finished, the comparisons are judged; the cells of those still undecided
(not *reproduced*, *contradicted*, *non-inferior*, *equivalent* or *decided*) that are below the round's target get seeds up to it
(the same next seeds for every cell, so cells that pair keep pairing). With ``--futility P`` a comparison whose
power at the cap is below P (``SequentialPlan.futility``, non-binding) gets no more seeds either: it stays
*undecided*, its seeds needed named, and the round records it under ``futile``. The bound may change at a
relaunch (``futility_change``): a non-binding rule cannot raise the chance of a false decision whenever it is set,
so the new bound is kept in the plan and the change recorded (``futility_changes``: the look it first applies to,
the old and new bound), and reports state it. A comparison resting on a cell that failed or
diverged in every one of its seeds (``STUCK_AFTER`` or more: ``stuck_cells``) is left out: more seeds of the same
recipe would fail too, and it stays *not enough data* with the cell named. The round is written into the study under the
study lock *before* its trials are enqueued, and a launch reads the recorded rounds into the grid
(``GridSpec.extra_seeds``) first: a launch killed anywhere in a round is relaunched with the same command and runs
the round's missing trials once each (``study.reconcile``), then goes on to the next round.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from resnet_core.errors import ConfigError

from ..spec.study_format import DECIDE_ATTR, FAILED, record_of
from .inference import SETTLED, SequentialPlan

ALPHA = 0.05
ROUND_SEEDS = 2            # seeds added per round (the planned step between looks)
DEFAULT_MAX_SEEDS = 10
STUCK_AFTER = 2            # a cell whose every seed failed, this many or more, gets no more seeds


def make_plan(spec: Any, max_seeds: int, futility: float = 0.0) -> SequentialPlan:
    return SequentialPlan(ALPHA, len(spec.seeds), ROUND_SEEDS, max_seeds, futility)


def check_args(spec: Any, max_seeds: Any, futility: Any = None) -> None:
    """One-line ConfigErrors for what ``--until-decided`` cannot do."""
    if not isinstance(max_seeds, int) or isinstance(max_seeds, bool) or max_seeds < 2:
        raise ConfigError(f"--max-seeds must be an integer of at least 2 (seeds per cell), got {max_seeds!r}")
    if futility is not None and (isinstance(futility, bool) or not isinstance(futility, (int, float))
                                 or not 0 <= futility < 1):
        raise ConfigError(f"--futility is a power from 0 (off) up to but not including 1, e.g. 0.1, got {futility!r}")
    if spec.search:
        raise ConfigError(f"--until-decided adds seeds to grid cells; the grid {spec.study!r} has a search space "
                          f"({', '.join(k.key for k in spec.search)}): drop `search` or --until-decided")
    if max_seeds < len(spec.seeds):
        raise ConfigError(f"--max-seeds {max_seeds} is below the grid's {len(spec.seeds)} seeds per cell")


def stored_plan(attrs: Mapping[str, Any]) -> SequentialPlan | None:
    """The study's sequential plan, if a ``--until-decided`` launch made one (reports judge at its level)."""
    rec = record_of(attrs)
    try:
        return SequentialPlan.from_dict(rec["plan"]) if rec else None
    except (KeyError, TypeError, ValueError):
        return None


def ensure_plan(study: Any, spec: Any, max_seeds: int, futility: float | None = None) -> dict[str, Any] | None:
    """Store the plan on the first ``--until-decided`` launch; a later one must ask the same ``--max-seeds``, and
    one asking another ``--futility`` changes the stored bound (``futility_change``). Returns the change recorded,
    or None. Call under ``study_lock``."""
    plan = check_same_plan(study, spec, max_seeds, futility)
    rec = record_of(study.user_attrs)
    if rec is None:
        study.set_user_attr(DECIDE_ATTR, {"plan": plan.to_dict(), "seeds": list(spec.seeds), "rounds": [],
                                          "stopped": None})
        return None
    change = futility_change(rec, plan)
    if change is not None:
        rec["plan"] = plan.to_dict()
        rec["futility_changes"] = list(rec.get("futility_changes") or []) + [change]
        study.set_user_attr(DECIDE_ATTR, rec)
    return change


def futility_change(rec: Mapping[str, Any], plan: SequentialPlan) -> dict[str, Any] | None:
    """{'look', 'from', 'to'} where ``plan``'s futility bound differs from the one ``rec`` stored: the look it first
    applies to is the one after the rounds recorded (look 1 is the grid's seeds); None where they agree."""
    old = stored_plan({DECIDE_ATTR: rec})
    if old is None or old.futility == plan.futility:
        return None
    return {"look": len(rec.get("rounds") or []) + 1, "from": old.futility, "to": plan.futility}


def futility_change_text(change: Mapping[str, Any]) -> str:
    """'futility bound 10% from look 2 on (was off)'."""
    def bound(p: float) -> str:
        return f"{p:.0%}" if p else "off"
    return f"futility bound {bound(change['to'])} from look {change['look']} on (was {bound(change['from'])})"


def futility_history_text(attrs: Mapping[str, Any]) -> str:
    """The recorded changes of the futility bound, '; '-joined ('' where none)."""
    changes = (record_of(attrs) or {}).get("futility_changes") or []
    return "; ".join(futility_change_text(c) for c in changes)


def check_same_plan(study: Any, spec: Any, max_seeds: int, futility: float | None = None) -> SequentialPlan:
    """The plan ``--max-seeds`` and ``--futility`` make (no ``--futility``: the stored plan's, else off), refused
    (one line) where the study stored other looks (``--max-seeds``, the grid's seeds)."""
    old = stored_plan(study.user_attrs) if study is not None else None
    if futility is None:
        futility = old.futility if old is not None else 0.0
    plan = make_plan(spec, max_seeds, futility)
    if old is None:
        return plan
    check_same_seeds(study.user_attrs, old, spec)
    if (old.max_seeds, old.step, old.alpha) != (plan.max_seeds, plan.step, plan.alpha):
        raise ConfigError(f"--max-seeds {max_seeds}: study {spec.study!r} planned its rounds with --max-seeds "
                          f"{old.max_seeds}; relaunch with --max-seeds {old.max_seeds}")
    return plan


def check_same_seeds(attrs: Mapping[str, Any], old: SequentialPlan, spec: Any) -> None:
    """Refuse (one line) a grid whose seeds are not those the study's rounds were planned from: its first look
    was judged on them, and the rounds' seeds follow them (``seed_sequence``), so another list would swap seeds
    out of a look already made (a seed whose result was seen) or add seeds no look planned. ``attrs``: the study's
    user attrs (the seeds its ``until_decided`` record holds, else those the last launch stored; with neither, the
    plan's count and the rounds' seeds)."""
    rec = record_of(attrs) or {}
    planned = rec.get("seeds") or attrs.get("seeds")
    rounds_agree = all(list(r.get("seeds") or []) == seed_sequence(spec, int(r.get("target", 0)))[len(spec.seeds):]
                       for r in rec.get("rounds") or [])
    if planned is not None and list(planned) == list(spec.seeds):
        return
    if planned is None and len(spec.seeds) == old.start and rounds_agree:
        return
    was = f"seeds {list(planned)}" if planned is not None else f"{old.start} seeds per cell"
    raise ConfigError(f"seeds: the grid has {list(spec.seeds)}, but study {spec.study!r} planned its --until-decided "
                      f"rounds from the grid's {was}; the seeds cannot change once the rounds are planned: restore "
                      f"them, or use another study (--study NAME)")


def seed_sequence(spec: Any, n: int) -> list[int]:
    """The first ``n`` seeds of a cell: the grid's, then max + 1, max + 2, … (the same for every cell)."""
    seeds = list(spec.seeds)
    nxt = max(seeds) + 1
    while len(seeds) < n:
        seeds.append(nxt)
        nxt += 1
    return seeds[:n]


@dataclass
class Round:
    number: int
    target: int                       # seeds per cell after it
    cells: list[str]                  # the cells that get seeds
    seeds: list[int]                  # the seeds beyond the grid's these cells have after it
    undecided: list[str]              # the comparisons that asked for it
    futile: dict[str, float] = field(default_factory=dict)   # comparison id → power at the cap, left out

    def to_dict(self) -> dict[str, Any]:
        return {"round": self.number, "target": self.target, "cells": self.cells, "seeds": self.seeds,
                "undecided": self.undecided, "futile": self.futile}


def _by_cell(unit_states: Sequence[tuple[str, str]]) -> dict[str, list[str]]:
    """Cell id → the outcomes of its (cell, seed) units, from (cell id, outcome) pairs."""
    out: dict[str, list[str]] = {}
    for cell, state in unit_states:
        out.setdefault(cell, []).append(state)
    return out


def _failure_counts(states: Sequence[str]) -> str:
    """'1 failed, 2 diverged': how many of ``states`` ended each way of ``FAILED``."""
    return ", ".join(f"{states.count(k)} {k}" for k in FAILED if k in states)


def stuck_cells(unit_states: Sequence[tuple[str, str]]) -> dict[str, str]:
    """Cell id → why seeds cannot help it: every one of its seeds, ``STUCK_AFTER`` or more, failed or diverged.
    ``unit_states``: (cell id, the unit's outcome: ``study_format.trial_status``) per (cell, seed)."""
    out = {}
    for cell, states in _by_cell(unit_states).items():
        if len(states) >= STUCK_AFTER and all(s in FAILED for s in states):
            out[cell] = f"failed in every seed ({len(states)} of {len(states)}: {_failure_counts(states)})"
    return out


def lost_seeds(unit_states: Sequence[tuple[str, str]]) -> dict[str, str]:
    """Cell id → '2 of 4 seeds left out (1 failed, 1 diverged)' for the cells with a seed that failed or diverged:
    a verdict counts the completed seeds only, so it rests on the seeds that survived the recipe. ``unit_states``
    as for ``stuck_cells``."""
    out = {}
    for cell, states in _by_cell(unit_states).items():
        lost = [s for s in states if s in FAILED]
        if lost:
            out[cell] = f"{len(lost)} of {len(states)} seeds left out ({_failure_counts(lost)})"
    return out


def futile_results(plan: SequentialPlan, results: Sequence[Any]) -> dict[str, float]:
    """Comparison id → its power at the cap (``SequentialPlan.power_at_cap``; a claim with a margin counts ending
    *non-inferior* too), for the unsettled comparisons under the plan's futility bound."""
    if not plan.futility:
        return {}
    out = {}
    for r in results:
        if r.verdict in SETTLED:
            continue
        power = plan.power_at_cap(r.est, r.plan.margin, r.plan.expect)
        if power is not None and power < plan.futility:
            out[r.id] = power
    return out


def open_results(results: Sequence[Any], stuck: Mapping[str, str], futile: Mapping[str, float] | None = None
                 ) -> list[Any]:
    """The comparisons more seeds may settle: not settled, resting on no ``stuck`` cell, and not ``futile``."""
    futile = futile or {}
    return [r for r in results if r.verdict not in SETTLED and r.id not in futile
            and not any(c in stuck for c in r.plan.cells)]


def next_round(plan: SequentialPlan, done_rounds: int, results: Sequence[Any],
               seeds_per_cell: Mapping[str, int], spec: Any, stuck: Mapping[str, str] | None = None) -> Round | None:
    """The round after ``done_rounds`` recorded ones, from the judged ``results`` (``comparisons.Result``), or None
    when every comparison is settled, rests on a ``stuck`` cell (``stuck_cells``) or is futile (``futile_results``),
    or the planned looks are used up (the cap)."""
    targets = plan.targets
    if done_rounds + 1 >= len(targets):
        return None
    target = targets[done_rounds + 1]
    futile = futile_results(plan, results)
    open_ = open_results(results, stuck or {}, futile)
    cells = list(dict.fromkeys(c for r in open_ for c in r.plan.cells if seeds_per_cell.get(c, 0) < target))
    if not cells:
        return None
    seeds = seed_sequence(spec, target)[len(spec.seeds):]
    return Round(done_rounds + 1, target, cells, seeds, [r.plan.id for r in open_], futile)


def record_round(study: Any, rnd: Round) -> bool:
    """Append ``rnd`` to the study's record unless a round of that number is there already (another launch
    recorded it). Call under ``study_lock``. True if this call recorded it."""
    rec = record_of(study.user_attrs) or {}
    rounds = list(rec.get("rounds") or [])
    if any(int(r.get("round", 0)) == rnd.number for r in rounds):
        return False
    rec["rounds"] = rounds + [rnd.to_dict()]
    study.set_user_attr(DECIDE_ATTR, rec)
    return True


def record_stop(study: Any, why: str) -> None:
    rec = record_of(study.user_attrs) or {}
    if rec.get("stopped") != why:
        rec["stopped"] = why
        study.set_user_attr(DECIDE_ATTR, rec)
