"""The trial objective: a claimed trial → its run config → ``resnet_core.engine.train`` → a verdict for Optuna.

The run config is the grid's ``base`` with the cell's values, the searched values (``search:`` knobs, suggested
through the trial so they are ``trial.params``), ``name = <study>-<cell-slug>-s<seed>`` and ``seed``; ``device`` is
the worker's. The run folder is ``<study folder>/<run_dir user attr>``. Results go back as trial user attrs
(``status``, ``reason`` and the summary numbers) and the trial's state: COMPLETE with the objective value, PRUNED
(search only), or FAIL for a diverged or failed run — a failure never stops the study.
"""
from __future__ import annotations

import copy
import math
import shutil
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from resnet_core.overrides import set_dotted
from resnet_core.record import read_metrics
from resnet_core.signals import disk_full, disk_full_error
from resnet_core.tracking import wandb_callback

from ..queue.liveness import HEARTBEAT_FILE
from ..queue.optuna_adapter import trial_id
from ..spec.cells import Cell
from ..spec.grid import GridSpec
from ..spec.metrics import SUMMARY_ATTR_NAMES, TRIAL_SUMMARY_KEYS
from ..spec.params import cell_params, study_space



@dataclass
class Outcome:
    state: str                          # complete | pruned | fail
    value: float | None = None
    attrs: dict[str, Any] = field(default_factory=dict)


class TrialCallback:
    """Engine callback: reports the objective metric to the trial at each evaluation (``trial.report``: Optuna's
    intermediate values, the dashboard's learning curves — for grids too) and, with pruning on (search only), stops
    the run when the pruner says so. ``stop()`` returning True (the trial was taken away) also stops it. A resumed
    trial first reports the values its run record holds from before the resume, so its curve is whole."""

    def __init__(self, trial: Any, report_key: str, prune: bool, stop: Callable[[], bool] | None = None) -> None:
        self.trial, self.report_key, self.prune, self.stop = trial, report_key, prune, stop
        self.last_train_error: float | None = None
        self.pruned_at: int | None = None
        self.abandoned = False

    def on_start(self, member: int, config: dict[str, Any], run_dir: Path) -> None:
        split, _, name = self.report_key.partition("/")
        try:
            done = set(self.trial.storage.get_trial(trial_id(self.trial)).intermediate_values)
            for r in read_metrics(run_dir):
                if (r["split"], r["name"]) == (split, name) and r["step"] not in done and math.isfinite(r["value"]):
                    self.trial.report(float(r["value"]), int(r["step"]))
        except (FileNotFoundError, KeyError, ValueError, TypeError):
            pass  # no record yet (a fresh run): nothing to report

    def on_log(self, member: int, step: int, metrics: dict[str, float]) -> None:
        value = metrics.get("train/error")
        if value is not None:
            self.last_train_error = value

    def on_eval(self, member: int, step: int, metrics: dict[str, float]) -> bool:
        value = metrics.get(self.report_key)
        if value is None and self.report_key == "train/error":
            value = self.last_train_error
        if value is not None and math.isfinite(value):
            self.trial.report(float(value), step)
            if self.prune and self.trial.should_prune():
                self.pruned_at = step
                return True
        if self.stop is not None and self.stop():
            self.abandoned = True
            return True
        return False


def ensure_params(trial: Any, spec: GridSpec, cell: Cell, space: dict[str, Any]) -> dict[str, Any]:
    """Give a running trial every axis param it lacks (a trial enqueued before axes were params) through the
    storage; returns axis → encoded value. A trial enqueued by ``study.enqueue_unit`` has them all already."""
    have = trial.params
    params = cell_params(spec, cell)
    for key, value in params.items():
        if key in have or key not in space:
            continue
        dist = space[key]
        trial.storage.set_trial_param(trial_id(trial), key, dist.to_internal_repr(value), dist)
    return params


def trial_run_config(spec: GridSpec, trial: Any, device: str,
                     cfg: dict[str, Any] | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """(run config dict, searched values) for a claimed trial; the search knobs are suggested here. ``cfg``: the
    trial's run config as its claim built it (``GridSpec.trial_config``), else it is built here."""
    attrs = trial.user_attrs
    ensure_params(trial, spec, spec.cell_of(attrs), study_space(trial.study, spec))
    values = {k.key: k.suggest(trial) for k in spec.search}
    cfg = copy.deepcopy(cfg) if cfg is not None else spec.trial_config(attrs, device)
    for key, value in values.items():
        set_dotted(cfg, key, value)
    return cfg, values


def _tracking_callbacks(spec: GridSpec, cfg: dict[str, Any], trial: Any, values: dict[str, Any]) -> list[Any]:
    """W&B: ``resnet_core.tracking.wandb_callback(**init)`` with init = {project, entity, mode, group=<study>,
    name=<run name>, job_type="trial", config=<run config + trial params>}. With mode ``disabled``, none."""
    mode = spec.wandb.get("mode")
    if mode == "disabled":
        return []
    init = {"project": spec.wandb.get("project"), "entity": spec.wandb.get("entity"), "mode": mode,
            "group": spec.study, "name": cfg["name"], "job_type": "trial",
            "config": {**cfg, "trial": {"number": trial.number, "cell": trial.user_attrs.get("cell"),
                                        "params": values}}}
    cb = wandb_callback(**init)
    return [cb] if cb is not None else []


def clear_stale_run_dir(run_dir: Path) -> None:
    """A fresh (non-resuming) trial whose folder already holds files (a deleted study's leftovers): move them aside
    rather than mix two runs' metrics."""
    if run_dir.is_dir() and any(p.name != HEARTBEAT_FILE for p in run_dir.iterdir()):
        aside = run_dir.with_name(f"{run_dir.name}.stale-{time.strftime('%Y%m%d-%H%M%S')}")
        shutil.move(str(run_dir), str(aside))


def _finite(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def outcome_of(spec: GridSpec, result: Any, cb: TrialCallback) -> Outcome:
    """A finished run's RunResult (and what its TrialCallback saw) → the trial's Outcome."""
    summary = dict(getattr(result, "summary", None) or {})
    out = {SUMMARY_ATTR_NAMES.get(k, k): _finite(summary.get(k)) for k in TRIAL_SUMMARY_KEYS if k in summary}
    status = getattr(result, "status", "failed")
    reason = getattr(result, "reason", None)
    if cb.abandoned:
        return Outcome("abandoned", attrs={**out, "status": "interrupted", "reason": "interrupted: trial taken over"})
    if status == "pruned" or cb.pruned_at is not None:
        return Outcome("pruned", attrs={**out, "status": "pruned",
                                         "reason": f"pruned at step {cb.pruned_at}" if cb.pruned_at else reason})
    if status == "diverged":
        return Outcome("fail", attrs={**out, "status": "diverged", "reason": f"diverged: {reason or 'non-finite loss'}"})
    if status != "complete":
        return Outcome("fail", attrs={**out, "status": "failed", "reason": f"{status}: {reason}"})
    value = summary.get(spec.summary_key)
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        return Outcome("fail", attrs={**out, "status": "failed",
                                      "reason": f"failed: no finite {spec.summary_key} in the run summary"})
    return Outcome("complete", float(value), {**out, "status": "complete", "reason": None})


def _failure(e: BaseException) -> Outcome:
    tb = traceback.format_exc(limit=3).strip().splitlines()
    return Outcome("fail", attrs={"status": "failed", "reason": f"failed: {type(e).__name__}: {e}",
                                  "traceback": "\n".join(tb[-6:])})


def run_objective(spec: GridSpec, trial: Any, *, device: str, study_dir: Path, train: Callable,
                  stop: Callable[[], bool] | None = None, cfg: dict[str, Any] | None = None) -> Outcome:
    """Train one trial and turn the RunResult into an Outcome. KeyboardInterrupt and a full disk (an ENOSPC
    OSError) propagate (the worker records the trial as interrupted); every other exception is a failed trial."""
    attrs = trial.user_attrs
    run_dir = Path(study_dir) / attrs["run_dir"]
    resume = bool(attrs.get("resume"))
    if not resume:
        clear_stale_run_dir(run_dir)
    try:
        cfg, values = trial_run_config(spec, trial, device, cfg)
    except Exception as e:  # noqa: BLE001
        return Outcome("fail", attrs={"status": "failed", "reason": f"failed: {type(e).__name__}: {e}"})
    cb = TrialCallback(trial, spec.report_key, prune=bool(spec.search), stop=stop)
    try:
        callbacks = [cb, *_tracking_callbacks(spec, cfg, trial, values)]
        result = train(cfg, run_dir, callbacks=callbacks, resume=resume)
    except KeyboardInterrupt:
        raise
    except Exception as e:  # noqa: BLE001 - a failed trial is a result, not the end of the study
        if disk_full(e):   # not the trial's fault: it stays resumable (the worker records it interrupted)
            raise disk_full_error(e) from None
        return _failure(e)
    return outcome_of(spec, result, cb)


class MemberCallbacks:
    """Routes the engine's hooks for member ``member`` of a fused run to one trial's callbacks, which see themselves
    as member 0 of a single run (its TrialCallback, its W&B run)."""

    def __init__(self, member: int, callbacks: Sequence[Any]) -> None:
        self.member, self.callbacks = member, list(callbacks)

    def _forward(self, hook: str, member: int, *args: Any) -> list[Any]:
        if member != self.member:
            return []
        return [getattr(cb, hook)(0, *args) for cb in self.callbacks if hasattr(cb, hook)]

    def on_start(self, member: int, config: dict[str, Any], run_dir: Path) -> None:
        self._forward("on_start", member, config, run_dir)

    def on_log(self, member: int, step: int, metrics: dict[str, float]) -> None:
        self._forward("on_log", member, step, metrics)

    def on_eval(self, member: int, step: int, metrics: dict[str, float]) -> bool:
        return any(self._forward("on_eval", member, step, metrics))

    def on_end(self, member: int, summary: dict[str, Any]) -> None:
        self._forward("on_end", member, summary)


def run_fused_objective(spec: GridSpec, trials: Sequence[Any], *, device: str, study_dir: Path,
                        train_members: Callable, stops: Sequence[Callable[[], bool] | None],
                        cfgs: Sequence[dict[str, Any] | None] | None = None) -> list[Outcome]:
    """Train G trials that share their fusion key as one fused run (``resnet_core.engine.train_members``); one
    Outcome per trial, each from its own member's result, callback and W&B run. The trials all resume or all start
    fresh (``packing.trial_key`` groups them so)."""
    run_dirs = [Path(study_dir) / t.user_attrs["run_dir"] for t in trials]
    resume = bool(trials[0].user_attrs.get("resume"))
    if not resume:
        for d in run_dirs:
            clear_stale_run_dir(d)
    try:
        prepared = [trial_run_config(spec, t, device, c) for t, c in zip(trials, cfgs or [None] * len(trials))]
    except Exception as e:  # noqa: BLE001 - they share every key but name and seed: one fails, all fail
        return [Outcome("fail", attrs={"status": "failed", "reason": f"failed: {type(e).__name__}: {e}"})
                for _ in trials]
    cbs = [TrialCallback(t, spec.report_key, prune=bool(spec.search), stop=stop) for t, stop in zip(trials, stops)]
    try:
        routed = [MemberCallbacks(g, [cb, *_tracking_callbacks(spec, cfg, t, values)])
                  for g, (t, cb, (cfg, values)) in enumerate(zip(trials, cbs, prepared))]
        results = train_members([cfg for cfg, _ in prepared], run_dirs, callbacks=routed, resume=resume)
    except KeyboardInterrupt:
        raise
    except Exception as e:  # noqa: BLE001
        if disk_full(e):
            raise disk_full_error(e) from None
        failed = _failure(e)
        return [Outcome(failed.state, failed.value, dict(failed.attrs)) for _ in trials]
    return [outcome_of(spec, r, cb) for r, cb in zip(results, cbs)]
