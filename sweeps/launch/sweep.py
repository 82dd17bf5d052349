"""`resnet-ablate sweep GRID.yaml`: check the grid, create or resume the study, run the workers, print the results.

A launch is idempotent: it creates the study the first time (enqueuing every (cell, seed) once) and on every later
launch prints what is done, failed, interrupted and missing, and enqueues only what is missing (plus interrupted
trials, which resume from their checkpoint, and with ``--retry-failed`` failed/diverged ones). See ``study.py``.
"""
from __future__ import annotations

import dataclasses
import os
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Sequence, TextIO

from resnet_core import shell
from resnet_core.data.torchvision_sets import TORCHVISION_SETS, is_extracted, load_torchvision
from resnet_core.errors import ConfigError, UnknownPartError, choices_error, reworded
from resnet_core.model import build_model, count_params
from resnet_core.plan import describe, plan
from resnet_core.provenance import STUDY_ATTR as PROVENANCE_ATTR, provenance_history
from resnet_core.run_config import RunConfig
from resnet_core.signals import EXIT_CONFIG, EXIT_FAILED, EXIT_OK, EXIT_UNFINISHED
from resnet_core.values import dump_yaml

from ..queue.liveness import dead_judge, holder, launched_here, trial_is_dead
from ..queue.packing import Packing, check_fusable_runs, default_table, parse_fuse, plan_runs
from ..queue.access import check_storage_file
from ..queue.storage import StorageRef, open_storage, resolve_storage, storage_exists, study_lock
from ..queue.owner import check_owner
from ..queue.ran_as import check_ran_as
from ..queue.study import (Plan, check_existing, create_or_load, read_existing, reconcile, requeue_failed_trial,
                           statuses, stray_trials, study_progress, trial_status)
from ..run.worker import assign_devices, checkpoint_step, cpu_threads, default_workers, parse_devices, quiet_optuna
from ..spec.grid import GridSpec, load_grid
from ..spec.study_format import DONE, FAILED, find_journals
from ..verdicts.rounds import DEFAULT_MAX_SEEDS, check_args, check_same_plan, ensure_plan, futility_change_text
from .decide import decide_rounds, plan_lines, print_decisions
from .estimate import busy_note, sweep_seconds
from .launchers import Job, make_launcher
from .monitor import Monitor, fmt_duration, result_lines
from .summary import log_summary_run, summary_is_current

LIST_MAX = 12
DRY_SHOW = 5       # --dry-run of a large grid lists this many cells at each end


def _units_line(spec: GridSpec) -> str:
    n_cells = len(spec.cells)
    if spec.search:
        return f"{len(spec.units())} trials ({n_cells} cell{'s' * (n_cells != 1)} × {spec.n_trials} search trials)"
    added = sum(len(spec.cell_seeds(c)) - len(spec.seeds) for c in spec.cells)
    return (f"{len(spec.units())} trials ({n_cells} cell{'s' * (n_cells != 1)} × {len(spec.seeds)} "
            f"seed{'s' * (len(spec.seeds) != 1)}" + (f" + {added} added by --until-decided rounds" if added else "")
            + ")")


def _who(st: Any) -> str:
    u = st.unit
    where = u.cell.id or "base"
    return f"{where} seed {u.seed}" + (f" (search trial {u.slot})" if u.slot is not None else "")


def _list(out: TextIO, title: str, items: list[Any], fmt: Callable[[Any], str] = _who) -> None:
    if not items:
        return
    print(f"  {title}:", file=out)
    for st in items[:LIST_MAX]:
        print(f"    {fmt(st)}", file=out)
    if len(items) > LIST_MAX:
        print(f"    … and {len(items) - LIST_MAX} more", file=out)


def print_plan(plan: Plan, created: bool, out: TextIO) -> None:
    if created:
        print(f"created the study; enqueued {plan.enqueued} trials", file=out)
        return
    print(f"resuming: {len(plan.done)} done, {len(plan.running)} running elsewhere, {len(plan.waiting)} waiting, "
          f"{len(plan.failed) + len(plan.retried)} failed, {len(plan.interrupted)} interrupted, "
          f"{len(plan.missing)} missing", file=out)
    _list(out, "skip (done)", plan.done)
    _list(out, "skip (running in another live worker)", plan.running)
    _list(out, "skip (failed or diverged; --retry-failed runs them again)", plan.failed,
          lambda st: f"{_who(st)}: {st.latest.user_attrs.get('reason') or st.state}")
    _list(out, "retry (failed or diverged, --retry-failed)", plan.retried,
          lambda st: f"{_who(st)}: was {st.latest.user_attrs.get('reason') or st.state}")
    _list(out, "resume (interrupted; continues from its last checkpoint)", plan.interrupted)
    _list(out, "run (missing)", plan.missing)
    if plan.dead:
        print(f"  found {len(plan.dead)} trial(s) RUNNING with a dead worker: marked failed (interrupted)", file=out)
    print_layout(plan.renamed, plan.stray, out)


def print_layout(renamed: dict[str, str], stray: int, out: TextIO) -> None:
    """The study's trials under a grid edit: those of renamed cells (``old → new``) and those left alone."""
    if renamed:
        _list(out, "same run config under a new cell id (their trials count for it)", list(renamed.items()),
              lambda kv: f"{kv[0] or 'base'} → {kv[1] or 'base'}")
    if stray:
        print(f"  {stray} trial(s) of the study belong to cells or seeds no longer in the grid (left alone)",
              file=out)


# -- dry run ----------------------------------------------------------------------------------------------------
def _params(spec: GridSpec, cell: Any) -> str:
    try:
        import torch

        model, _ = RunConfig.from_dict(spec.run_config(cell, spec.seeds[0])).model_on_dataset()
        with torch.device("meta"):
            n = count_params(build_model(model))
        return f"{n / 1e6:.2f}M params" if n >= 100_000 else f"{n / 1e3:.1f}k params"
    except Exception:  # noqa: BLE001
        return "? params"


def checkpointed(study_dir: Path, sts: Sequence[Any]) -> dict[str, int]:
    """Unit key → the step its run folder's checkpoint holds, for the units among ``sts`` that resume there
    (interrupted, or waiting in a folder a trial trained in): the estimate counts only the steps left."""
    out: dict[str, int] = {}
    for s in sts:
        run_dir = s.latest.user_attrs.get("run_dir") if s.latest is not None else None
        if s.state in ("interrupted", "waiting") and run_dir:
            step = checkpoint_step(study_dir / run_dir)
            if step:
                out[s.unit.key] = step
    return out


def print_packing(spec: GridSpec, units: list[Any], packing: Packing, out: TextIO) -> None:
    """How the trials to run pack into fused runs: a line per set of cells that fuse together."""
    runs = plan_runs(spec, units, packing)
    fused = [r for r in runs if r.members > 1]
    print(f"fuse: {packing.describe()}; {len(units)} trials → {len(runs)} run{'s' * (len(runs) != 1)}"
          + (f" ({len(fused)} fused)" if fused else ""), file=out)
    by_key: dict[str, list[Any]] = {}
    for r in fused:
        by_key.setdefault(r.key, []).append(r)
    for i, group in enumerate(by_key.values()):
        if i == LIST_MAX:
            print(f"  … and {len(by_key) - LIST_MAX} more", file=out)
            break
        cells = list(dict.fromkeys(u.cell.id or "base" for r in group for u in r.units))
        n = sum(r.members for r in group)
        print(f"  {' + '.join(cells)}: {n} trials as {' + '.join(str(r.members) for r in group)} fused members",
              file=out)


def ran_here(trials: Sequence[Any], since: datetime) -> list[Any]:
    """The ``trials`` this launch's workers (``liveness.launched_here``) started at or after ``since``."""
    return [t for t in trials if t.datetime_start is not None and t.datetime_start >= since and launched_here(t)]


def finished_here(trials: Sequence[Any], since: datetime) -> int:
    """How many of ``trials`` this launch's workers started at or after ``since`` and finished (complete, failed or
    pruned)."""
    return sum(1 for t in ran_here(trials, since) if t.state.is_finished())


def stopped_line(trials: Sequence[Any], since: datetime) -> str:
    """What a launch stopped by Ctrl-C or SIGTERM leaves, and how to go on: ``sweep stopped: 1 trial interrupted
    (checkpointed where it stopped), 2 complete; the same command resumes …``."""
    states = [trial_status(t) for t in ran_here(trials, since)]
    stopped, killed, done = states.count("interrupted"), states.count("running"), states.count("complete")
    parts = [f"{stopped} trial{'s' * (stopped != 1)} interrupted (checkpointed where {'they' if stopped != 1 else 'it'}"
             f" stopped)", f"{done} complete"]
    if killed:
        parts.append(f"{killed} left RUNNING by killed workers (resumed from their last periodic checkpoint)")
    return (f"sweep stopped: {', '.join(parts)}; the same command resumes the study, without rerunning what is "
            f"complete")


def wall_line(spent: Sequence[tuple[float, int, int, float | None]]) -> str:
    """``wall time 7s for 2 of 6 trials (estimated ~6s for all 6)``: what this launch's workers ran beside what was
    planned (a timeout, or another launcher on the study, leaves some to others) and the estimate for the plan."""
    ran, planned = sum(r for _, r, _, _ in spent), sum(n for _, _, n, _ in spent)
    estimates = [e for _, _, _, e in spent if e]
    trials, all_of = (f"{ran}", "") if ran == planned else (f"{ran} of {planned}", f" for all {planned}")
    est = f" (estimated ~{fmt_duration(sum(estimates))}{all_of})" if estimates else ""
    return f"wall time {fmt_duration(sum(w for w, _, _, _ in spent))} for {trials} trials{est}"


def resume_orphans(sts: list[Any], study: Any, study_dir: Path) -> tuple[list[Any], int]:
    """(``sts`` with each running unit whose every RUNNING trial has a dead worker marked interrupted, how many): a
    launch fails such trials and resumes them (``liveness.trial_is_dead``, as `studies` counts them stale)."""
    if study is None:
        return sts, 0
    dead = dead_judge(study, None, study_dir)
    orphan = [s.state == "running" and all(dead(t) for t in s.trials if trial_status(t) == "running") for s in sts]
    return [dataclasses.replace(s, state="interrupted") if o else s for s, o in zip(sts, orphan)], sum(orphan)


def dry_run(spec: GridSpec, ref: StorageRef, study_dir: Path, workers: int, devices: list[str],
            retry_failed: bool, out: TextIO, packing: Packing | None = None, max_seeds: int | None = None,
            futility: float | None = None) -> int:
    """What a launch would run, read from the storage: ``max_seeds`` (``--until-decided``) adds its plan."""
    quiet_optuna()
    study = read_existing(ref, spec.study)
    aliases = check_existing(study, spec)[1] if study is not None else {}   # refused as the launch would refuse it
    check_owner(study_dir, ref, spec.study, study)
    trials = study.get_trials(deepcopy=False) if study is not None else []
    note = "" if study is not None else " (no study there yet)"
    sts, orphans = resume_orphans(statuses(spec, trials), study, study_dir)
    done = [s for s in sts if s.state in DONE]
    failed = [s for s in sts if s.state in FAILED]
    running = [s for s in sts if s.state == "running"]
    to_run = [s for s in sts if s.state not in DONE + ("running",) and (retry_failed or s.state not in FAILED)]
    total_s, per_cell = sweep_seconds(spec, [s.unit for s in to_run], devices, packing, workers,
                                      checkpointed(study_dir, to_run))
    print(f"study {spec.study}: {_units_line(spec)}", file=out)
    print(f"storage: {ref.display}{note}", file=out)
    print(f"study folder: {study_dir}", file=out)
    shown = spec.cells
    if len(spec.cells) > 2 * DRY_SHOW + 1:  # a large grid: the axes, then the first and last few cells
        print(f"axes: {len(spec.cells)} cells = " + " × ".join(f"{k} ({len(v)})" for k, v in spec.grid.items())
              + (f" + {len(spec.extra_cells)} extra cells" if spec.extra_cells else ""), file=out)
        for k, v in spec.grid.items():
            print(f"  {k}: {', '.join(map(str, v[:8]))}{', …' if len(v) > 8 else ''}", file=out)
        shown = spec.cells[:DRY_SHOW] + [None] + spec.cells[-DRY_SHOW:]
    print("cells:", file=out)
    width = max(len(c.id or "base") for c in shown if c is not None)
    for c in shown:
        if c is None:
            print(f"  … {len(spec.cells) - 2 * DRY_SHOW} more cells …", file=out)
            continue
        t = per_cell.get(c.id)
        est = f"~{fmt_duration(t)}/trial" if t is not None else ""
        print(f"  {(c.id or 'base').ljust(width)}  {_params(spec, c):>14}  {est}", file=out)
    gone = f" ({orphans} of them RUNNING with a dead worker: the launch resumes them)" if orphans else ""
    print(f"trials: {len(sts)} total, {len(done)} done, {len(running)} running, {len(failed)} failed, "
          f"{len(to_run)} to run{gone}", file=out)
    print_layout(aliases, stray_trials(spec, trials, aliases), out)   # as the launch will list them
    if packing is not None:
        print_packing(spec, [s.unit for s in to_run], packing, out)
    dev = ",".join(sorted(set(devices)))
    if total_s is None:
        print("estimate: unknown for this dataset", file=out)
    else:
        print(f"estimate: ~{fmt_duration(total_s)} for {len(to_run)} trials on {dev} with {workers} worker"
              f"{'s' * (workers != 1)} (a rough estimate from FLOPs × iterations, good to about 2× on an idle "
              f"machine){busy_note(devices)}", file=out)
    if max_seeds is not None:
        for line in plan_lines(spec, study, max_seeds, futility):
            print(line, file=out)
    print("dry run: nothing was created or run", file=out)
    return 0


def print_cell_configs(grid_file: str | Path, cell: str = "", *, overrides: Sequence[str] = (),
                       study: str | None = None, plugins: Sequence[str] = (), axes: Sequence[str] = (),
                       out: TextIO | None = None) -> int:
    """Print the run config (YAML) of every cell of the grid, or of ``cell`` (an id or a slug), as its first seed's
    trial will run it here (`resnet_core.plan`: the dataset's classes and channels; a comment line with the device,
    precision, memory format and fast path; ``device`` is the worker's and left out). ConfigError for an unknown
    cell."""
    out = out or sys.stdout
    spec = load_grid(grid_file, overrides, study=study, plugins=plugins, axes=axes)
    cells = [c for c in spec.cells if not cell or cell in (c.id, c.slug)]
    if not cells:
        raise choices_error("--print-config cell", cell, [c.slug for c in spec.cells])
    for i, c in enumerate(cells):
        cfg, ran = plan(RunConfig.from_dict(spec.run_config(c, spec.seeds[0])))
        cfg.pop("device", None)
        print(("---\n" if i else "") + f"# cell {c.id or 'base'} ({c.slug}), seed {spec.seeds[0]}", file=out)
        print(describe(ran, threads="threads shared out by the launch"), file=out)
        print(dump_yaml(cfg).rstrip(), file=out)
    return 0


# -- the launch -------------------------------------------------------------------------------------------------
def worker_devices(spec: GridSpec, devices: str | None) -> list[str]:
    """The workers' devices: ``--devices``, else the grid's ``base.device`` (unless auto), else every GPU or the
    CPU. A device that is not here is a one-line ``ConfigError`` naming where it was asked for."""
    asked = spec.base.get("device")
    if devices or asked in (None, "auto"):
        return parse_devices(devices)
    try:
        return parse_devices(str(asked))
    except ConfigError as e:
        raise ConfigError(str(e).replace("--devices", "base.device", 1) + " (--devices overrides base.device)"
                          ) from None


def make_study_dir(study_dir: Path, root: str | Path) -> None:
    """Create the study folder, or a one-line ``ConfigError`` saying why it cannot be written."""
    try:
        study_dir.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise ConfigError(f"--root {root}: cannot make the study folder {study_dir}: a part of that path is a file, "
                          f"not a folder") from None
    if not study_dir.is_dir():
        raise ConfigError(f"--root {root}: {study_dir} is a file, not a folder")
    if not os.access(study_dir, os.W_OK | os.X_OK):
        raise ConfigError(f"study folder {study_dir} is not writable; give --root a folder you can write to")


def recorded_plugins_hint(grid_file: str | Path, study: str | None, root: str | Path, storage: str | None,
                          error: Exception) -> str:
    """For a grid that does not load because a part is unknown: ``"; study X was trained with plugin P: pass
    --plugin P"`` when the study it names exists and recorded plugins this process has not loaded
    (``plugins.missing_plugins_hint``), else "". Reads only; never raises (the grid's own error is the answer)."""
    import optuna

    from resnet_core.plugins import missing_plugins_hint

    if not isinstance(error, UnknownPartError):
        return ""
    from resnet_core.values import read_yaml

    try:
        name = study or read_yaml(Path(grid_file)).get("study")
        ref = resolve_storage(storage, root, str(name))
        if not name or not storage_exists(ref):
            return ""
        quiet_optuna()
        found = optuna.load_study(study_name=str(name), storage=open_storage(ref, read_only=True))
        return missing_plugins_hint(found.user_attrs.get("plugins"), f"study {name!r}", error)
    except Exception:  # noqa: BLE001 - no study, another storage's error: nothing to add
        return ""


def fetch_datasets(spec: GridSpec, out: TextIO) -> None:
    """Each torchvision set the cells download (``data.download`` true) and ``data.root`` lacks: fetched once, here,
    before the study and its workers exist (they would all download into the same files at once)."""
    seen = set()
    for cell in spec.cells:
        data = RunConfig.from_dict(spec.run_config(cell, spec.cell_seeds(cell)[0])).data
        where = (data.name, str(data.data_root()))
        if data.name not in TORCHVISION_SETS or not data.download or where in seen:
            continue
        seen.add(where)
        if not is_extracted(data.name, data.data_root()):
            print(f"data: downloading {data.name} into {data.data_root()} (once, before the workers start)",
                  file=out, flush=True)
            load_torchvision(data.name, data.data_root(), True)   # downloads and extracts it


def run_sweep(grid_file: str | Path, *, workers: int | None = None, devices: str | None = None, root: str | Path = "runs",
              storage: str | None = None, dry: bool = False, retry_failed: bool = False,
              overrides: Sequence[str] = (), wandb: str | None = None, study: str | None = None,
              fuse: str | int | None = "auto", fuse_table: str | None = None,
              launcher: str = "local", slurm: dict[str, Any] | None = None, shared_fs: bool = False,
              plugins: Sequence[str] = (), axes: Sequence[str] = (), until_decided: bool = False,
              max_seeds: int | None = None, futility: float | None = None, out: TextIO | None = None,
              err: TextIO | None = None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    if workers is not None and workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {workers}")
    if max_seeds is not None and not until_decided:
        raise ConfigError(f"--max-seeds {max_seeds} caps --until-decided; add --until-decided or drop it")
    if futility is not None and not until_decided:
        raise ConfigError(f"--futility {futility} stops --until-decided's rounds early; add --until-decided or "
                          f"drop it")
    try:
        spec = load_grid(grid_file, overrides, study=study, wandb_mode=wandb, plugins=plugins, axes=axes)
    except ConfigError as e:   # a part of a plugin the study was made with, not given again: name it
        raise reworded(e, f"{e}{recorded_plugins_hint(grid_file, study, root, storage, e)}") from None
    runner = make_launcher(launcher, slurm=slurm, shared_fs=shared_fs)   # how the workers run (launchers.py)
    if until_decided:
        max_seeds = DEFAULT_MAX_SEEDS if max_seeds is None else max_seeds
        check_args(spec, max_seeds, futility)
        if not runner.waits:
            raise ConfigError(f"--until-decided judges each round in this launch; --launcher {launcher} returns "
                              f"once its jobs are submitted: use the local launcher with --storage on several "
                              f"machines")
    ref = resolve_storage(storage, root, spec.study)
    runner.validate(spec, ref, devices=devices, dry=dry)   # before anything is written
    devs = worker_devices(spec, runner.device_flag(devices))
    existing = read_existing(ref, spec.study) if runner.waits else None   # Slurm's workers check on their nodes
    if until_decided and existing is not None:
        check_same_plan(existing, spec, max_seeds, futility)   # before create_or_load writes the grid's attrs
    study_dir = Path(root) / spec.study
    if runner.waits:
        trials = existing.get_trials(deepcopy=False) if existing is not None else []
        check_ran_as(spec, trials, devs, dead_judge(existing, None, study_dir))
    asked = workers   # a Slurm launch without --workers: one worker per trial to run
    if workers is None:
        workers = default_workers(devs)
    fuse_n = parse_fuse(fuse)
    table = default_table(root, fuse_table)
    packing = Packing(fuse_n, devs[0], table, bool(spec.search))
    check_fusable_runs(spec, packing)   # a plugin part that is not member-aware: refused before anything is written
    if dry:
        note = runner.dry_note(asked)
        if note:
            print(note, file=out)
        return dry_run(spec, ref, study_dir, workers, devs, retry_failed, out, packing,
                       max_seeds if until_decided else None, futility)

    quiet_optuna()
    fetch_datasets(spec, out)
    if not storage_exists(ref):   # a new study: a folder with another study's runs is refused before any write
        check_owner(study_dir, ref, spec.study)
    if ref.is_rdb:   # a database that cannot be reached leaves no empty study folder behind
        st = open_storage(ref, failed_trial_callback=requeue_failed_trial)
        make_study_dir(study_dir, root)
    else:
        make_study_dir(study_dir, root)
        st = open_storage(ref, failed_trial_callback=requeue_failed_trial)
    with study_lock(ref, spec.study, st):
        the_study, created = create_or_load(st, spec, study_dir, owner=ref)
        change = ensure_plan(the_study, spec, max_seeds, futility) if until_decided else None
        history = provenance_history(the_study.user_attrs.get(PROVENANCE_ATTR))
        if history is not None:  # the study records which code (and library versions) ran it
            the_study.set_user_attr(PROVENANCE_ATTR, history)
        plan = reconcile(the_study, st, spec, study_dir, ref, retry_failed=retry_failed)
    print(f"study {spec.study}: {_units_line(spec)}  [{ref.display}]", file=out)
    if change is not None:
        print(f"until-decided: {futility_change_text(change)}, recorded in the study's plan", file=out)
    print_plan(plan, created, out)
    out.flush()

    deadline = time.time() + spec.timeout if spec.timeout else None
    if plan.to_run and not runner.waits:   # submitted: the workers record their trials; nothing to wait for here
        runner.start(Job(spec, ref, study_dir, min(asked or plan.to_run, plan.to_run), deadline, fuse_n,
                         str(table) if table else None), out)
        return 0

    def launch(plan: Plan) -> int:
        """Run the trials ``plan`` left waiting with this launch's workers; their exit code (``workers_exit_code``)."""
        if not plan.to_run:
            return 0
        n = min(workers, plan.to_run)
        assigned = assign_devices(n, devs)
        units = [s.unit for s in plan.missing + plan.interrupted + plan.retried + plan.waiting]
        estimate, _ = sweep_seconds(spec, units, devs, packing, n,
                                    checkpointed(study_dir, plan.interrupted + plan.waiting))
        where = ", ".join(f"{d} ×{assigned.count(d)}" if assigned.count(d) > 1 else d for d in dict.fromkeys(assigned))
        threads = cpu_threads(assigned)
        if threads:
            where += f" ({threads} thread{'s' * (threads != 1)} per CPU worker)"
        fused = [r for r in plan_runs(spec, units, packing) if r.members > 1]
        packed = f"; fuse {packing.describe()}" + (f": {len(fused)} fused runs" if fused else "")
        print(f"running {plan.to_run} trials with {n} worker{'s' * (n != 1)} on {where}{packed}"
              + (f" (estimate ~{fmt_duration(estimate)}{busy_note(assigned)})" if estimate else ""), file=out,
              flush=True)
        job = Job(spec, ref, study_dir, n, deadline, fuse_n, str(table) if table else None, assigned)
        monitor = Monitor(spec, lambda: the_study.get_trials(deepcopy=False), units=plan.units_to_run, workers=n,
                          estimate_s=estimate, stream=err, study_dir=study_dir)
        started, since = time.monotonic(), datetime.now()
        with monitor:
            runner.start(job, out)
            try:
                code = runner.wait(err)
            except KeyboardInterrupt:
                print(stopped_line(the_study.get_trials(deepcopy=False), since), file=err, flush=True)
                raise
        if not monitor.tty:
            print(f"[sweep] {monitor.last_line}", file=err, flush=True)
        spent.append((time.monotonic() - started, finished_here(the_study.get_trials(deepcopy=False), since),
                      plan.to_run, estimate))
        return code

    spent: list[tuple[float, int, int, float | None]] = []   # (wall seconds, trials run, planned, estimate) a launch
    ran = bool(plan.to_run)
    code = launch(plan)
    decided: list[Any] = []
    if until_decided and not code:
        code, decided, more = decide_rounds(spec, the_study, st, ref, study_dir, launch, out)
        ran = ran or more
    wall = wall_line(spent) if spent else ""

    trials = the_study.get_trials(deepcopy=False)
    final = statuses(spec, trials)
    left = [s for s in final if s.state not in DONE + FAILED]
    elsewhere = held_elsewhere(left, study_dir)   # this launch's workers are done: a live holder is another's
    left = [s for s in left if s not in elsewhere]
    how = "the best search trial per cell" if spec.search else "mean ± std over seeds"
    print(f"results ({spec.objective['metric']}, {spec.objective['direction']}; {how}):", file=out)
    for line in result_lines(spec, trials):
        print(line, file=out)
    n_done = sum(1 for s in final if s.state in DONE)
    n_failed = sum(1 for s in final if s.state in FAILED)
    print(f"{n_done}/{len(final)} trials done, {n_failed} failed, {len(left)} not finished"
          + (f", {len(elsewhere)} running in another launcher" if elsewhere else "")
          + (f"; {wall}" if wall else ""), file=out)
    _list(out, "still running in another launcher (it records their results; `studies` shows the progress)",
          elsewhere, lambda st: f"{_who(st)}: held by {holder(_running(st))}")
    if left:
        why = "the timeout was reached; " if spec.timeout and not code else ""
        print(f"{why}run the same command again to resume", file=out)
    print(f"study folder: {study_dir}", file=out)
    print(f"dashboard: {shell.command('optuna-dashboard', ref.dashboard_arg())}", file=out)
    if decided:
        print_decisions(the_study, decided, out)
    if (ran or not summary_is_current(study_dir, trials)) and spec.wandb.get("mode") != "disabled":
        log_summary_run(spec, trials, ref, root, study_dir, out)
    offline = sorted(study_dir.glob("trials/*/wandb/offline-run-*"))
    summary = sorted(study_dir.glob("summary/wandb/offline-run-*"))
    if (offline or summary) and spec.wandb.get("mode") != "disabled":
        globs = [shell.glob_arg(study_dir, f"{g}/wandb/offline-run-*")
                 for g, found in (("trials/*", offline), ("summary", summary)) if found]
        print(f"W&B: {len(offline)} offline trial run(s)" + (" and the study summary run" if summary else "")
              + f"; upload them with: wandb sync {' '.join(globs)}", file=out)
    out.flush()
    return sweep_exit_code(code, n_failed, len(left))


def _running(st: Any) -> Any:
    return next(t for t in reversed(st.trials) if trial_status(t) == "running")


def held_elsewhere(left: list[Any], study_dir: Path) -> list[Any]:
    """The units of ``left`` whose RUNNING trial a live worker holds (after this launch's workers have stopped:
    another launcher's)."""
    return [s for s in left if s.state == "running" and not trial_is_dead(_running(s), study_dir)]


def sweep_exit_code(workers_code: int, n_failed: int, n_unfinished: int) -> int:
    """0: every trial done (or still running in another live launcher, which records it); 1: some failed or
    diverged, or a worker crashed; 3: some not finished (README); else the workers' 2, 130 or 143
    (``launchers.workers_exit_code``): what stopped them."""
    if workers_code and workers_code != EXIT_FAILED:
        return workers_code
    if workers_code or n_failed:
        return EXIT_FAILED
    return EXIT_UNFINISHED if n_unfinished else EXIT_OK


# -- studies ----------------------------------------------------------------------------------------------------
def list_studies(root: str | Path = "runs", storage: str | None = None, out: TextIO | None = None,
                 err: TextIO | None = None) -> int:
    """Print each study's progress; 2 if a journal could not be read (named on ``err``), else 0. A ``root`` that is
    not a folder, or a journal or SQLite file that is not there, is a one-line ``ConfigError`` (a typo, not an
    empty answer)."""
    import optuna

    out = out or sys.stdout
    quiet_optuna()
    found = bad = 0
    if storage:
        check_storage_file(storage)
        ref = resolve_storage(storage, root, "")
        if not storage_exists(ref):
            print(f"no studies in {ref.display}", file=out)
            return 0
        st = open_storage(ref, read_only=True)
        try:
            names = optuna.get_all_study_names(storage=st)
        except Exception as e:  # noqa: BLE001 - e.g. a database without Optuna's tables
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            print(f"no studies in {ref.display} ({first[:120]})", file=out)
            return 0
        for name in names:
            s = optuna.load_study(study_name=name, storage=st)
            sd = s.user_attrs.get("study_dir")
            print(study_progress(s, ref.display, Path(sd) if sd else None).line(), file=out)
            found += 1
    else:
        if not Path(root).is_dir():
            raise ConfigError(f"--root {root}: {'not a folder' if Path(root).exists() else 'no such folder'} (the "
                              f"folder holding <study>/optuna.journal; default runs)")
        for journal in find_journals(root):
            ref = StorageRef("journal", str(journal), str(journal))
            try:  # one damaged journal must not hide the other studies
                st = open_storage(ref, read_only=True)
                for name in optuna.get_all_study_names(storage=st):
                    s = optuna.load_study(study_name=name, storage=st)
                    print(study_progress(s, ref.display, journal.parent).line(), file=out)
                    found += 1
            except ConfigError as e:
                print(f"error: {e}", file=err or sys.stderr)
                bad += 1
    if not found and not bad:
        where = storage or f"{root}/*/optuna.journal"
        print(f"no studies in {where}", file=out)
    return EXIT_CONFIG if bad else 0
