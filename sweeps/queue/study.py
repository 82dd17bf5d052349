"""The study: create or load it, enqueue every unit once, take waiting trials, and reconcile on every launch.

Units and trials. A *unit* is one (cell, seed) of a grid (search: one (cell, slot)); its key is the trial user attr
``unit``. A unit normally has one trial. It gets another only when the previous one ended without a result:
- *interrupted* (its worker died, or was stopped): the new trial resumes in the same run folder (``resume: true``);
- *failed* / *diverged*, and the launch asks ``--retry-failed``: the new trial starts afresh in ``…-r<k>``.
A unit with a COMPLETE (or PRUNED) trial is done and never runs again.

Exactly once. All changes to the set of trials (create, enqueue, fail a dead trial + enqueue its replacement)
happen in ``reconcile`` under the per-study lock (``storage.study_lock``), which first re-reads the trials: two
launchers (or a launcher and an idle worker) can never both enqueue the same unit. Taking trials is
``packing.claim_group``: a compare-and-set WAITING → RUNNING per trial that exactly one process wins (see
``storage``). Workers never call ``study.ask()`` (which creates a new trial when the queue is empty); a claim only
ever takes enqueued trials.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from resnet_core.errors import ConfigError
from resnet_core.overrides import diff_keys
from resnet_core.plugins import check_same_plugins, plugin_records
from resnet_core.run_config import RunConfig
from resnet_core.values import freeze

from ..spec.cells import with_params
from ..spec.grid import GridSpec, Unit
from ..spec.identity import alias_of, cell_aliases
from ..spec.params import merged_space, space_attr, study_space, unit_params
from ..spec.study_format import (ALIASES_ATTR, DONE, FAILED, LOST, STUDY_ID_ATTR, extra_seeds_of, trial_cell,
                                 trial_status as _status, trial_unit, unit_attrs)
from .liveness import trial_is_dead
from .owner import check_owner, claim_owner, new_study_id
from .storage import StorageRef, claim_lock, open_storage, storage_exists
from .ran_as import same_precision
from .optuna_adapter import record_heartbeat, stale_trial_ids, trial_id
from .search import CellPruner, CellSampler

MAX_AUTO_RESUMES = 3   # within one launch, a unit whose worker keeps dying is resumed at most this many times


# -- create / load ----------------------------------------------------------------------------------------------
def sampler_and_pruner(spec: GridSpec):
    """TPE + median pruning, each restricted to the trials of the same cell, for `search`; nothing for a grid."""
    import optuna

    if not spec.search:
        return optuna.samplers.RandomSampler(), optuna.pruners.NopPruner()

    n = spec.n_trials or 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        tpe = optuna.samplers.TPESampler(n_startup_trials=max(1, min(10, n // 3)), constant_liar=True)
    median = optuna.pruners.MedianPruner(n_startup_trials=max(1, min(5, n // 4)), n_warmup_steps=0)
    return CellSampler(tpe), CellPruner(median)


def load_existing(storage: Any, name: str, sampler: Any = None, pruner: Any = None) -> Any | None:
    """The study ``name`` in ``storage``, or None when there is none; writes nothing (no create record)."""
    import optuna

    try:
        return optuna.load_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner)
    except KeyError:
        return None


def read_existing(ref: Any, name: str) -> Any | None:
    """The study ``name`` in the storage ``ref``, opened read-only, or None when there is none (what a dry run and
    the checks before a launch's first write read). A storage that cannot be read is a one-line ``ConfigError``."""
    return load_existing(open_storage(ref, read_only=True), name) if storage_exists(ref) else None


def check_existing(study: Any, spec: GridSpec) -> tuple[Any, Any]:
    """Refuse a grid that would mix another experiment into the existing ``study``: a one-line ``ConfigError``
    naming what differs (direction, metric, base, search space, plugins, axis values, cells), before anything is
    written. Takes the seeds the study's ``--until-decided`` rounds added into ``spec``. The launch and its dry run
    both call it. Returns ``grid_layout(spec, study)``."""
    direction = spec.objective["direction"]
    if study.direction.name.lower() != direction:
        raise ConfigError(f"study {spec.study!r} exists with direction {study.direction.name.lower()}, the grid "
                          f"asks {direction}; use another study name (--study NAME)")
    _check_same_objective(study.user_attrs.get("objective"), spec)
    _check_same_base(study.user_attrs, spec, study.get_trials(deepcopy=False))
    _check_same_search(study.user_attrs.get("search"), spec)
    check_same_plugins(study.user_attrs.get("plugins"), plugin_records(spec.plugins), spec.study)
    space, aliases = grid_layout(spec, study)
    spec.extra_seeds = extra_seeds_of(study.user_attrs, aliases)  # seeds `--until-decided` rounds added belong to it
    return space, aliases


def grid_layout(spec: GridSpec, study: Any = None) -> tuple[Any, Any]:
    """(the axis space attr, the cell aliases) of ``spec`` over ``study``'s stored space and trials (None: a study
    not created yet); a one-line ``ConfigError`` where the grid cannot extend them."""
    stored = study.user_attrs.get("axis_space") if study is not None else None
    trials = study.get_trials(deepcopy=False) if study is not None else []
    return space_attr(merged_space(stored, spec)), cell_aliases(spec, trials)


def create_or_load(storage: Any, spec: GridSpec, study_dir: Path, owner: Any = None) -> tuple[Any, bool]:
    """Load the study and check it (``check_existing``), or create it (and say so); nothing is written before a
    refusal. ``owner`` (the ``StorageRef``): also refuse a study folder that holds another study's runs, and claim
    it for this study (``owner.check_owner``, ``owner.claim_owner``). Call under ``study_lock``."""
    import optuna

    sampler, pruner = sampler_and_pruner(spec)
    study = load_existing(storage, spec.study, sampler, pruner)
    created = study is None
    space, aliases = grid_layout(spec) if created else check_existing(study, spec)   # ConfigErrors before any write
    if owner is not None:
        check_owner(study_dir, owner, spec.study, study)
    if created:
        study = optuna.create_study(study_name=spec.study, storage=storage, direction=spec.objective["direction"],
                                    sampler=sampler, pruner=pruner, load_if_exists=False)
    attrs = {**spec.study_attrs(), "study_dir": str(Path(study_dir).resolve()), "axis_space": space,
             ALIASES_ATTR: aliases, STUDY_ID_ATTR: study.user_attrs.get(STUDY_ID_ATTR) or new_study_id()}
    metric = [spec.objective["metric"]]
    if study.metric_names != metric:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(metric)
    current = study.user_attrs
    for key, value in attrs.items():
        if current.get(key) != value:
            study.set_user_attr(key, value)
    if owner is not None:
        try:
            claim_owner(study_dir, owner, study)
        except ConfigError:   # another study's launch took the folder first: leave no empty study behind
            if created:
                optuna.delete_study(study_name=spec.study, storage=storage)
            raise
    return study, created


def _resolved(base: dict[str, Any]) -> dict[str, Any]:
    d = RunConfig.from_dict({k: v for k, v in base.items() if k not in ("name", "seed", "device")}).to_dict()
    for k in ("name", "seed", "device"):
        d.pop(k, None)
    return d


def _check_same_objective(stored: Any, spec: GridSpec) -> None:
    """Stored values are the old metric: a new metric would relabel them and mix them with new ones."""
    old = stored.get("metric") if isinstance(stored, dict) else None
    if old is not None and old != spec.objective["metric"]:
        raise ConfigError(f"study {spec.study!r} exists with objective.metric {old}, the grid asks "
                          f"{spec.objective['metric']}; its stored values are {old}s — use another study name "
                          f"(--study NAME) or the original metric")


def _check_same_search(stored: Any, spec: GridSpec) -> None:
    """Stored trials sampled the old search space (a grid's: none): another one would mix two experiments in one
    cell's best trial, or fail its trials on Optuna's distribution check."""
    if not isinstance(stored, dict):
        return   # a study from before the attr
    new = {k.key: k.to_dict() for k in spec.search}
    keys = [k for k in dict.fromkeys([*stored, *new]) if freeze(stored.get(k)) != freeze(new.get(k))]
    if keys:
        shown = "; ".join(f"{k}: {_knob_text(stored.get(k))} → {_knob_text(new.get(k))}" for k in keys)
        raise ConfigError(f"study {spec.study!r} exists with another search space ({shown}); its trials sampled "
                          f"the old one — use another study name (--study NAME) or the original search")


def _knob_text(knob: Any) -> str:
    if not isinstance(knob, dict):
        return "none" if knob is None else str(knob)
    return ", ".join(f"{kind} {args}" for kind, args in knob.items())


def _check_same_base(attrs: dict[str, Any], spec: GridSpec, trials: Iterable[Any] = ()) -> None:
    """Refuse a changed base: compare the resolved run config of every cell the stored study and the grid share
    (so a base that is only valid together with the cell values is compared too), and of every renamed cell (of the
    study's last grid, or of any trial) with the grid cell its trials would count for (``identity.alias_of``); with
    neither, the resolved bases, else the bases as written. A `precision: auto` pinned to the one precision the
    trials ran as is no change (`ran_as.same_precision`)."""
    stored = attrs.get("base")
    if not isinstance(stored, dict) or stored == spec.base:
        return
    trials = list(trials)
    cells = attrs.get("cells") if isinstance(attrs.get("cells"), list) else []
    old_cells = {c.get("id"): c.get("params") or {} for c in cells if isinstance(c, dict)}
    for t in trials:   # cells of earlier grids too, as their trials carry them
        cell, params = t.user_attrs.get("cell"), t.user_attrs.get("cell_params")
        if isinstance(cell, str) and isinstance(params, dict):
            old_cells.setdefault(cell, params)
    pairs = [(with_params(stored, old_cells[c.id]), with_params(spec.base, c.params))
             for c in spec.cells if c.id in old_cells]
    ids = {c.id for c in spec.cells}
    for cell, params in old_cells.items():   # a renamed cell: what it ran against the grid cell its trials count for
        same = alias_of(spec, cell, params) if isinstance(cell, str) and cell not in ids else None
        if same is not None:
            pairs.append((with_params(stored, params), with_params(spec.base, same.params)))
    if not pairs:
        pairs = [(stored, spec.base)]
    for old_cfg, new_cfg in pairs:
        try:
            old, new = _resolved(old_cfg), _resolved(new_cfg)
        except ConfigError:
            old, new = old_cfg, new_cfg  # not valid on its own: compare as written
        if same_precision(old.get("precision", "auto"), new.get("precision", "auto"), trials):
            old, new = {**old, "precision": None}, {**new, "precision": None}   # auto pinned to what its trials ran as
        if old != new:
            diff = diff_keys(old, new)
            shown = ", ".join(diff[:4]) + (", …" if len(diff) > 4 else "")
            raise ConfigError(f"study {spec.study!r} exists with a different base config ({shown}); its trials "
                              f"would not be comparable — use another study name (--study NAME) or the original "
                              f"settings")


# -- unit states ------------------------------------------------------------------------------------------------
@dataclass
class UnitStatus:
    unit: Unit
    state: str                        # complete pruned running waiting failed diverged interrupted missing
    trials: list[Any] = field(default_factory=list)

    @property
    def latest(self) -> Any:
        return self.trials[-1] if self.trials else None


def trial_status(t: Any) -> str:
    """The outcome of one trial (``study_format.trial_status``)."""
    return _status(t.state.name, t.user_attrs.get("status"))


def unit_status(unit: Unit, trials: list[Any]) -> UnitStatus:
    trials = sorted(trials, key=lambda t: t.number)
    trials = [t for t in trials if trial_status(t) != "duplicate"] or trials
    states = [trial_status(t) for t in trials]
    for s in ("complete", "pruned", "running", "waiting"):
        if s in states:
            return UnitStatus(unit, s, trials)
    return UnitStatus(unit, states[-1] if states else "missing", trials)


def group_by_unit(trials: Iterable[Any], aliases: dict[str, str] | None = None) -> dict[str, list[Any]]:
    """Unit key → its trials; a trial of a renamed cell (``aliases``: ``identity.cell_aliases``) under the new key."""
    out: dict[str, list[Any]] = {}
    for t in trials:
        key = trial_unit(t.user_attrs, aliases)
        if key is not None:
            out.setdefault(key, []).append(t)
    return out


def statuses(spec: GridSpec, trials: Iterable[Any]) -> list[UnitStatus]:
    trials = list(trials)
    by_unit = group_by_unit(trials, cell_aliases(spec, trials))
    return [unit_status(u, by_unit.get(u.key, [])) for u in spec.units()]


# -- enqueue ----------------------------------------------------------------------------------------------------
def enqueue_waiting(study: Any, params: dict[str, Any], distributions: dict[str, Any], attrs: dict[str, Any]) -> None:
    """Add a WAITING trial that already carries its params (with their distributions), so Optuna's tools see them
    from the start; they are also its ``fixed_params``, as ``study.enqueue_trial`` would store them."""
    import optuna

    study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.WAITING, params=params,
                                              distributions=distributions, user_attrs=attrs,
                                              system_attrs={"fixed_params": params}))


def enqueue_unit(study: Any, spec: GridSpec, unit: Unit, prev: list[Any], *, resume: bool,
                 space: dict[str, Any]) -> None:
    """Enqueue a trial for ``unit`` with its cell's axis params (``space``: ``params.study_space``). ``resume``:
    continue the latest trial in its run folder with its (searched) params; else a fresh start in a new folder
    (``trials/<slug>-s<seed>``, then ``-r1``, ``-r2`` … for retries)."""
    attempt = len(prev)
    latest = prev[-1] if prev else None
    params, dists = unit_params(space, spec, unit.cell)
    if resume and latest is not None:
        run_dir = latest.user_attrs.get("run_dir") or f"trials/{unit.run_name}"
        params, dists = {**params, **latest.params}, {**dists, **latest.distributions}
    else:
        run_dir = f"trials/{unit.run_name}" + (f"-r{attempt}" if attempt else "")
    attrs = unit_attrs(unit, attempt=attempt, run_dir=run_dir, resume=bool(resume and latest is not None),
                       replaces=latest.number if latest is not None else None)
    if resume and latest is not None and latest.user_attrs.get("cell_slug"):
        attrs["cell_slug"] = latest.user_attrs["cell_slug"]  # the run keeps its name (a renamed cell's too)
    enqueue_waiting(study, params, dists, attrs)


def requeue_failed_trial(study: Any, trial: Any) -> None:
    """``failed_trial_callback`` of the RDB storage: Optuna failed a trial whose heartbeat went stale; enqueue a
    copy that resumes it, unless its unit already has a live or finished trial."""
    key = trial.user_attrs.get("unit")
    if key is None:
        return
    from optuna.trial import TrialState

    aliases = study.user_attrs.get(ALIASES_ATTR)
    key = trial_unit(trial.user_attrs, aliases)
    others = [t for t in study.get_trials(deepcopy=False) if trial_unit(t.user_attrs, aliases) == key]
    if any(t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)
           for t in others):
        return
    attrs = {k: v for k, v in trial.user_attrs.items() if k not in ("worker", "reason")}
    attrs.update(attempt=len(others), resume=True, replaces=trial.number, status="waiting")
    enqueue_waiting(study, dict(trial.params), dict(trial.distributions), attrs)


# -- dead workers -----------------------------------------------------------------------------------------------
def mark_interrupted(storage: Any, trial: Any, reason: str) -> bool:
    """RUNNING → FAIL with status/reason interrupted. False if another process finished it first."""
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.trial import TrialState

    tid = trial_id(trial)
    try:
        storage.set_trial_user_attr(tid, "status", "interrupted")
        storage.set_trial_user_attr(tid, "reason", reason)
        return bool(storage.set_trial_state_values(tid, TrialState.FAIL))
    except (UpdateFinishedTrialError, RuntimeError):
        return False


def fail_dead_trials(study: Any, storage: Any, study_dir: Path, ref: StorageRef) -> list[Any]:
    """Fail every RUNNING trial whose worker is dead (``liveness.trial_is_dead``); return them. Then Optuna's own
    ``fail_stale_trials`` (RDB heartbeats), whose ``failed_trial_callback`` enqueues resuming copies. A stale trial
    whose worker process still exists on this host (suspended, e.g. by Slurm's suspend preemption) is alive: this
    launch records its heartbeat first, so Optuna does not fail it and no copy runs beside it.

    The RUNNING trials are read under the claim lock (``ref``'s), under which a claimer takes a trial and writes its
    worker record: one without a record there lost its claimer between the two, and is dead."""
    import optuna
    from optuna.trial import TrialState

    with claim_lock(ref, study.study_name, storage):
        running = [t for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
                   if t.user_attrs.get("unit") is not None]
    stale = stale_trial_ids(study, storage)
    dead = []
    for t in running:
        if not isinstance(t.user_attrs.get("worker"), dict) or trial_is_dead(t, study_dir, rdb_stale=stale):
            w = t.user_attrs.get("worker") or {}
            who = f"worker pid {w.get('pid')} on {w.get('host')}" if w else "its worker"
            if mark_interrupted(storage, t, f"interrupted: {who} is gone"):
                dead.append(t)
        elif stale and trial_id(t) in stale:
            record_heartbeat(storage, trial_id(t))  # its process lives on this host (suspended): vouch for it
    if stale is not None:
        optuna.storages.fail_stale_trials(study)
    return dead


# -- reconcile --------------------------------------------------------------------------------------------------
@dataclass
class Plan:
    """What a launch found and did."""
    total: int = 0
    done: list[UnitStatus] = field(default_factory=list)
    running: list[UnitStatus] = field(default_factory=list)
    waiting: list[UnitStatus] = field(default_factory=list)
    failed: list[UnitStatus] = field(default_factory=list)          # failed or diverged, not retried
    interrupted: list[UnitStatus] = field(default_factory=list)     # resumed by this launch
    missing: list[UnitStatus] = field(default_factory=list)         # enqueued by this launch
    retried: list[UnitStatus] = field(default_factory=list)         # failed/diverged, enqueued again
    gave_up: list[UnitStatus] = field(default_factory=list)         # interrupted too often in this launch
    dead: list[Any] = field(default_factory=list)                   # RUNNING trials found dead (now FAIL)
    stray: int = 0                                                  # trials of units not in this grid
    renamed: dict[str, str] = field(default_factory=dict)           # a trial's old cell id → its grid cell

    @property
    def enqueued(self) -> int:
        return len(self.missing) + len(self.interrupted) + len(self.retried)

    @property
    def to_run(self) -> int:
        return self.enqueued + len(self.waiting)

    @property
    def units_to_run(self) -> set[str]:
        """The keys of the units this launch runs (another launch on the same study may run others)."""
        return {st.unit.key for st in (*self.missing, *self.interrupted, *self.retried, *self.waiting)}


def stray_trials(spec: GridSpec, trials: Iterable[Any], aliases: dict[str, str]) -> int:
    """How many trials belong to units the grid no longer has (left alone; a salvaged journal's placeholder is no
    unit's)."""
    expected = {u.key for u in spec.units()}
    return sum(1 for t in trials if trial_unit(t.user_attrs, aliases) not in expected
               and t.user_attrs.get("status") != LOST)


def reconcile(study: Any, storage: Any, spec: GridSpec, study_dir: Path, ref: StorageRef, *,
              retry_failed: bool = False, auto: bool = False) -> Plan:
    """Bring the study in line with the grid: fail dead RUNNING trials, then enqueue every missing unit, resume
    every interrupted one, and (``retry_failed``) retry failed/diverged ones. ``auto``: an idle worker's call
    (interrupted units are resumed at most ``MAX_AUTO_RESUMES`` times, failures never retried).
    ``ref``: the storage's reference (its claim lock). Must run under ``study_lock``."""
    plan = Plan()
    space = study_space(study, spec)
    plan.dead = fail_dead_trials(study, storage, study_dir, ref)
    trials = study.get_trials(deepcopy=False)
    plan.renamed = cell_aliases(spec, trials)
    plan.stray = stray_trials(spec, trials, plan.renamed)
    for st in statuses(spec, trials):
        plan.total += 1
        if st.state in DONE:
            plan.done.append(st)
        elif st.state == "running":
            plan.running.append(st)
        elif st.state == "waiting":
            plan.waiting.append(st)
        elif st.state == "missing":
            enqueue_unit(study, spec, st.unit, [], resume=False, space=space)
            plan.missing.append(st)
        elif st.state == "interrupted":
            resumes = sum(1 for t in st.trials if trial_status(t) == "interrupted")
            if auto and resumes > MAX_AUTO_RESUMES:
                plan.gave_up.append(st)
                continue
            enqueue_unit(study, spec, st.unit, st.trials, resume=True, space=space)
            plan.interrupted.append(st)
        elif st.state in FAILED:
            if retry_failed and not auto:
                enqueue_unit(study, spec, st.unit, st.trials, resume=False, space=space)
                plan.retried.append(st)
            else:
                plan.failed.append(st)
    return plan


# -- listing ----------------------------------------------------------------------------------------------------
@dataclass
class StudyProgress:
    name: str
    total: int
    complete: int
    running: int
    failed: int
    waiting: int
    storage: str
    stale: int = 0
    interrupted: int = 0   # resumed from their checkpoint by the next launch, as the sweep and the report say
    unqueued: int = 0      # units of the grid with no trial at all (a launch stopped mid-enqueue): the next adds them

    def line(self) -> str:
        extra = f" ({self.stale} stale)" if self.stale else ""
        resumes = f"{self.interrupted} interrupted, " if self.interrupted else ""
        unqueued = f", {self.unqueued} not enqueued (the next launch adds them)" if self.unqueued else ""
        return (f"{self.name}: {self.complete}/{self.total} complete, {self.running} running{extra}, "
                f"{self.failed} failed, {resumes}{self.waiting} waiting{unqueued}   [{self.storage}]")


def study_progress(study: Any, storage_display: str, study_dir: Path | None = None) -> StudyProgress:
    """Each unit counted once by its state (``unit_status``, as the sweep and the report count it)."""
    trials = study.get_trials(deepcopy=False)
    by_unit = group_by_unit(trials, study.user_attrs.get(ALIASES_ATTR))
    counts = {"complete": 0, "running": 0, "failed": 0, "interrupted": 0, "waiting": 0}
    stale = 0
    for key, ts in by_unit.items():
        st = unit_status(None, ts)  # type: ignore[arg-type]
        if st.state in DONE:
            counts["complete"] += 1
        elif st.state == "running":
            counts["running"] += 1
            if study_dir is not None and all(trial_is_dead(t, study_dir) for t in ts if trial_status(t) == "running"):
                stale += 1
        elif st.state in FAILED:
            counts["failed"] += 1
        elif st.state == "waiting":
            counts["waiting"] += 1
        else:   # interrupted (a duplicate that never ran too: the report shows it so)
            counts["interrupted"] += 1
    total = study.user_attrs.get("n_units")   # the last launch's grid: a narrower one than the study ran…
    total = max(total, len(by_unit)) if isinstance(total, int) else len(by_unit)   # …still counts every unit run
    return StudyProgress(study.study_name, total, counts["complete"], counts["running"], counts["failed"],
                         counts["waiting"], storage_display, stale, counts["interrupted"], total - len(by_unit))


def objective_values(spec: GridSpec, trials: Iterable[Any]) -> dict[str, list[float]]:
    """Cell id → objective values of its COMPLETE trials (one per seed for a grid)."""
    from optuna.trial import TrialState

    out: dict[str, list[float]] = {c.id: [] for c in spec.cells}
    trials = list(trials)
    aliases = cell_aliases(spec, trials)
    for t in trials:
        cell = trial_cell(t.user_attrs, aliases)
        if t.state == TrialState.COMPLETE and cell in out and t.value is not None and math.isfinite(t.value):
            out[cell].append(float(t.value))
    return out

