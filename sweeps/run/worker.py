"""Workers: processes that take waiting trials of one study and train them, one at a time, on one device.

``--workers N`` starts N workers (spawned processes; one runs in the launching process itself when N is 1), given
devices round-robin from ``--devices`` (several workers may share one GPU). A worker loops: claim a WAITING trial
(``packing.claim_group``, which also claims the precision its cell runs as: ``ran_as``), record who runs it
(``worker`` user attr) and beat a heartbeat while it trains, report the result with ``study.tell``. When no trial
is waiting it reconciles once under the study lock (a trial whose worker died is failed and a resuming copy
enqueued) and stops if that found nothing to do. A spawned worker dies with its parent (``PR_SET_PDEATHSIG``), so
killing the launcher never leaves orphans training.
"""
from __future__ import annotations

import ctypes
import logging
import os
import re
import signal
import sys
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from resnet_core.devices import available_cores, make_current, set_cpu_threads
from resnet_core.errors import ConfigError
from resnet_core.signals import EXIT_CONFIG, handle_sigterm, interrupt_code, os_error_line
from resnet_core.tracking import own_wandb_service

from ..queue.access import open_study_to_run
from ..queue.liveness import Heartbeat, dead_judge, worker_record
from ..queue.optuna_adapter import trial_id
from ..queue.packing import Packing, claim_group
from ..queue.ran_as import check_ran_as
from ..queue.storage import StorageRef, study_lock
from ..queue.study import reconcile
from ..spec.grid import GridSpec
from ..spec.study_format import ALIASES_ATTR, trial_unit
from .objective import clear_stale_run_dir, run_fused_objective, run_objective

DEVICE = re.compile(r"^(cpu|cuda(:\d+)?|mps|npu(:\d+)?)$")


# -- devices ----------------------------------------------------------------------------------------------------
def default_devices() -> list[str]:
    import torch

    if torch.cuda.is_available():
        return [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    return ["cpu"]


def parse_devices(text: str | None) -> list[str]:
    """``cpu`` | ``cuda:0,cuda:1`` | ``cuda`` (every GPU) | …; a device that is not there is a ConfigError."""
    if not text:
        return default_devices()
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts:
        raise ConfigError("--devices is empty; give e.g. cpu or cuda:0,cuda:1")
    out: list[str] = []
    for p in parts:
        if not DEVICE.match(p):
            raise ConfigError(f"--devices: unknown device {p!r}; use cpu, cuda, cuda:<i>, mps or npu[:<i>]")
        if p.startswith("cuda"):
            import torch

            if not torch.cuda.is_available():
                raise ConfigError(f"--devices {p}: CUDA is not available here; use --devices cpu")
            n = torch.cuda.device_count()
            if p == "cuda":
                out += [f"cuda:{i}" for i in range(n)]
                continue
            if int(p.split(":")[1]) >= n:
                raise ConfigError(f"--devices {p}: only {n} CUDA device(s) here (cuda:0…cuda:{n - 1})")
        out.append(p)
    return out


def default_workers(devices: list[str]) -> int:
    """One worker per GPU; on CPU one per core (each single-threaded: for small nets, processes use cores better
    than one process's intra-op threads — the quickstart runs in about half the time), at most 4."""
    if all(d == "cpu" for d in devices):
        return max(1, min(4, available_cores()))
    return len(devices)


def assign_devices(workers: int, devices: list[str]) -> list[str]:
    """Round-robin: worker i gets devices[i % len(devices)]."""
    return [devices[i % len(devices)] for i in range(workers)]


def cpu_threads(assigned: list[str]) -> int | None:
    """Torch threads for each CPU worker: the cores shared out without oversubscription, cores // CPU workers
    (one CPU worker: all cores). None where no worker runs on the CPU."""
    n_cpu = sum(1 for d in assigned if d == "cpu")
    if n_cpu == 0:
        return None
    return max(1, available_cores() // n_cpu)


# -- the worker -------------------------------------------------------------------------------------------------
@dataclass
class WorkerSpec:
    spec: str                         # the study: the worker runs the resolved spec it stores (read_spec)
    storage: StorageRef
    study_dir: str
    device: str
    index: int = 0
    deadline: float | None = None     # time.time() after which no new trial starts
    threads: int | None = None
    parent_pid: int | None = None
    fuse: str | int = 1               # "auto" or the most trials to train as one fused run (packing.parse_fuse)
    fuse_table: str | None = None     # a `resnet-ablate bench --members … --out` table for "auto"


@dataclass
class WorkerStats:
    ran: int = 0
    lost: int = 0                     # trials whose result could not be recorded (taken over)
    numbers: list[int] = field(default_factory=list)


def die_with_parent(parent_pid: int | None) -> None:
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except OSError:
            pass
    if parent_pid is not None and os.getppid() != parent_pid:
        os._exit(1)  # the parent died before prctl took effect


def quiet_optuna() -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", message=".*[Hh]eartbeat.*")
    logging.getLogger("optuna").setLevel(logging.WARNING)


def worker_main(ws: WorkerSpec) -> None:
    """Entry point of a spawned worker process."""
    die_with_parent(ws.parent_pid)
    own_wandb_service()
    handle_sigterm()  # SIGTERM → KeyboardInterrupt → the trial is marked interrupted
    if ws.threads:
        set_cpu_threads(ws.threads)
    try:
        run_worker(ws)
    except KeyboardInterrupt as e:
        sys.exit(interrupt_code(e))
    except ConfigError as e:
        print(f"worker {ws.index}: error: {e}", file=sys.stderr, flush=True)
        sys.exit(EXIT_CONFIG)
    except OSError as e:
        print(f"worker {ws.index}: error: {os_error_line(e)}", file=sys.stderr, flush=True)
        sys.exit(EXIT_CONFIG)


def run_worker(ws: WorkerSpec, *, train: Callable | None = None, train_members: Callable | None = None,
               stop: threading.Event | None = None, on_trial: Callable[[int], None] | None = None) -> WorkerStats:
    """Take and run trials (alone, or packed into fused runs) until none is left (or the deadline / ``stop``).
    ``train`` / ``train_members``: what trains a trial / a fused group (default ``resnet_core.engine``'s).

    The worker's device is made current first, before any CUDA work (streams and graphs use the current device)."""
    make_current(ws.device)
    quiet_optuna()
    from resnet_core import engine  # lazy: only a process that trains loads the engine (`studies`, --dry-run don't)

    study, storage, spec = open_study_to_run(ws.spec, ws.storage)
    study_dir = Path(ws.study_dir)
    check_ran_as(spec, study.get_trials(deepcopy=False), [ws.device],   # on this worker's machine
                 dead_judge(study, storage, study_dir))
    train_fn = train or engine.train
    members_fn = train_members or engine.train_members
    packing = Packing(ws.fuse, ws.device, Path(ws.fuse_table) if ws.fuse_table else None, bool(spec.search))
    stats = WorkerStats()
    keys: dict[int, tuple[str, int, dict[str, Any] | None, float | None]] = {}   # see claim_group
    claimer = worker_record(ws.index, ws.device, ws.parent_pid)
    while not (stop is not None and stop.is_set()):
        if ws.deadline is not None and time.time() >= ws.deadline:
            break
        tids = claim_group(study, storage, ws.storage, spec, study_dir, packing, keys=keys,
                           worker=claimer)
        if not tids:
            with study_lock(ws.storage, spec.study, storage):
                plan = reconcile(study, storage, spec, study_dir, ws.storage, auto=True)
            if plan.enqueued:
                continue
            break
        configs = {tid: keys[tid][2] for tid in tids if tid in keys}
        numbers = run_group(study, storage, spec, tids, ws, train_fn, members_fn, study_dir, stats, claimer, configs)
        if on_trial is not None:
            for number in numbers:
                on_trial(number)
    return stats


def checkpoint_step(run_dir: Path) -> int:
    """The step of ``run_dir/last.pt`` (where a resumed trial continues), 0 without a readable one."""
    path = run_dir / "last.pt"
    if not path.is_file():
        return 0
    try:
        import torch

        return int(torch.load(path, map_location="cpu", weights_only=True, mmap=True)["step"])
    except Exception:  # noqa: BLE001 - unreadable: the engine says why when it resumes
        return 0


def _drop_duplicate(study: Any, trial: Any) -> bool:
    """Fail ``trial`` if its unit already finished (never happens while enqueues stay under the study lock; a guard
    so a unit never finishes twice). True if it was dropped."""
    from optuna.trial import TrialState

    aliases = study.user_attrs.get(ALIASES_ATTR)
    unit = trial_unit(trial.user_attrs, aliases)
    twins = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
             if trial_unit(t.user_attrs, aliases) == unit]
    if not twins:
        return False
    trial.set_user_attr("status", "duplicate")
    trial.set_user_attr("reason", f"duplicate of trial {twins[0].number}; not run")
    study.tell(trial, state=TrialState.FAIL)
    return True


def run_group(study: Any, storage: Any, spec: GridSpec, tids: list[int], ws: WorkerSpec, train_fn: Callable,
              members_fn: Callable, study_dir: Path, stats: WorkerStats, record: dict[str, Any],
              configs: dict[int, Any] | None = None) -> list[int]:
    """Run the trials claimed with worker record ``record`` (which the claim wrote on each) — one alone with
    ``train_fn``, several as one fused run with ``members_fn`` — and tell each its own result. Returns their
    numbers. ``configs``: trial id → the run config the claim built (``packing.claim_group``), built only once."""
    import contextlib

    import optuna
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.trial import TrialState

    claimed = [optuna.trial.Trial(study, tid) for tid in tids]
    trials = [t for t in claimed if not _drop_duplicate(study, t)]
    if not trials:
        return [t.number for t in claimed]
    fused_with = [t.number for t in trials]
    for trial in trials:
        trial.set_user_attr("status", "running")
        if len(trials) > 1:
            trial.set_user_attr("fused_with", fused_with)
        if not trial.user_attrs.get("resume"):
            clear_stale_run_dir(study_dir / trial.user_attrs["run_dir"])  # before the heartbeat file appears
        else:
            trial.set_user_attr("resumed_from_step", checkpoint_step(study_dir / trial.user_attrs["run_dir"]))

    def taken_over(tid: int) -> Callable[[], bool]:
        return lambda: storage.get_trial(tid).state != TrialState.RUNNING

    stops = [taken_over(trial_id(t)) for t in trials]
    cfgs = [(configs or {}).get(trial_id(t)) for t in trials]
    try:
        with contextlib.ExitStack() as beats:
            for trial in trials:
                beats.enter_context(Heartbeat(study_dir / trial.user_attrs["run_dir"],
                                              {**record, "trial": trial.number}, storage=storage,
                                              trial_id=trial_id(trial)))
            if len(trials) == 1:
                outcomes = [run_objective(spec, trials[0], device=ws.device, study_dir=study_dir, train=train_fn,
                                          stop=stops[0], cfg=cfgs[0])]
            else:
                outcomes = run_fused_objective(spec, trials, device=ws.device, study_dir=study_dir,
                                               train_members=members_fn, stops=stops, cfgs=cfgs)
    except (KeyboardInterrupt, OSError) as e:   # a stop, or a full disk: the trials resume on the next launch
        why = f"interrupted: {os_error_line(e)}" if isinstance(e, OSError) else "interrupted: the worker was stopped"
        for trial in trials:
            try:
                trial.set_user_attr("status", "interrupted")
                trial.set_user_attr("reason", why)
                study.tell(trial, state=TrialState.FAIL)
            except Exception:  # noqa: BLE001
                pass
        raise
    for trial, outcome in zip(trials, outcomes):
        stats.ran += 1
        stats.numbers.append(trial.number)
        try:
            if outcome.state == "abandoned":
                stats.lost += 1
                continue
            for key, value in outcome.attrs.items():
                trial.set_user_attr(key, value)
            if outcome.state == "complete":
                study.tell(trial, outcome.value)
            elif outcome.state == "pruned":
                study.tell(trial, state=TrialState.PRUNED)
            else:
                study.tell(trial, state=TrialState.FAIL)
        except UpdateFinishedTrialError:
            stats.lost += 1  # another process declared this worker dead and failed the trial; its copy resumes
    return [t.number for t in claimed]
