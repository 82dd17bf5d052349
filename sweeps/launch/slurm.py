"""`resnet-ablate sweep GRID --launcher slurm`: the sweep's workers as one Slurm job array, through submitit.

The launcher creates (or resumes) the study on the login node exactly as a local launch does — every (cell, seed)
enqueued once, under the study lock — then submits N workers as ONE job array (``submitit.SlurmExecutor.map_array``),
prints the job id and how to follow it, and returns. Each array task is a worker that claims waiting trials from
the shared storage until none is left (``worker.run_worker``), so exactly-once holds as it does for local workers.

Settings come from the grid's ``launcher: {slurm: {...}}`` section, overridden by flags (``add_arguments``):

=====================  ======================  ============================================================
grid key               flag                    meaning
=====================  ======================  ============================================================
``partition``          ``--partition``         Slurm partition (default: the cluster's default partition)
``time``               ``--time``              time limit per worker: minutes, ``HH:MM:SS`` or ``D-HH:MM:SS``
``cpus_per_worker``    ``--cpus-per-worker``   CPUs per array task (default 1)
``gpus_per_worker``    ``--gpus-per-worker``   GPUs per array task (default 0); one trial (or fused group) per GPU
``mem``                ``--mem``               memory per array task, e.g. ``16G`` (default: the cluster's)
``sbatch``             ``--sbatch KEY=VALUE``  extra sbatch options, e.g. ``{account: abc, qos: high}``
``setup``                                      shell lines run before the worker, e.g. ``[module load cuda]``
``array_parallelism``                          at most this many array tasks at once (default: all)
``max_requeues``                               requeues after a time limit before giving up (default 3)
``signal_delay_s``                             the warning signal comes this long before the limit (default 90)
=====================  ======================  ============================================================

Storage: every node must reach it. A PostgreSQL (or other server) URL always works; a local journal or SQLite
file is refused (``check_storage``) unless ``--shared-fs`` says the path is on a filesystem all nodes mount. The
study folder (run folders with ``last.pt``; submitit's files in ``<study>/slurm/``) must be shared too, for a
requeued worker on another node to resume. submitit's folder is created mode 0700: its pickles hold the storage
URL, password included (as a ``.pgpass`` file would); nothing printed or logged shows the password.

Preemption and time limits. Slurm sends SIGUSR2 ``signal_delay_s`` before the time limit (submitit's
``--signal``), and SIGTERM on ``scancel``, ``scontrol requeue`` and preemption, to every process of the task.
- In the worker processes (``_task_worker``), the first SIGTERM/SIGUSR2 raises KeyboardInterrupt in the training
  loop: the engine writes the run's summary as interrupted, and the worker marks its trial(s) FAIL with status
  ``interrupted`` (``worker.run_group``) at once, not after a heartbeat grace period. The run folder keeps the
  ``last.pt`` written at the latest evaluation (``eval_every``).
- In the task's main process, submitit calls ``SlurmWorker.checkpoint`` on SIGUSR2: it stops the worker processes
  as above and returns a ``DelayedSubmission`` of itself, and submitit requeues the task (``scontrol requeue``).
  On SIGTERM Slurm itself requeues (preemption with ``PreemptMode=REQUEUE``, ``scontrol requeue``) or cancels.
- A requeued (or any idle) worker finds the interrupted trial when it reconciles and enqueues one resuming copy
  under the study lock; whichever worker claims it continues from ``last.pt`` in the same run folder.
A task killed without warning (SIGKILL, a node failure) leaves its trial RUNNING; it is found dead (its process
gone on this host, or no heartbeat for ``RESNET_ABLATE_GRACE_S`` seconds) and resumed the same way.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import shutil
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, TextIO

from resnet_core.devices import set_cpu_threads
from resnet_core.errors import ConfigError
from resnet_core.shell import command
from resnet_core.tracking import own_wandb_service

from ..queue.storage import StorageRef
from ..run.worker import WorkerSpec, die_with_parent, run_worker
from ..spec.launcher import LAUNCHERS, SlurmConfig, parse_sbatch_option

STOP_WAIT_S = 60       # how long checkpoint() waits for the workers to record their trials as interrupted


def check_storage(ref: StorageRef, shared_fs: bool) -> None:
    """Refuse a Slurm launch whose storage is a local file (journal or SQLite) unless ``shared_fs``."""
    if ref.kind not in ("journal", "sqlite") or shared_fs:
        return
    what = "journal file" if ref.kind == "journal" else "SQLite file"
    raise ConfigError(f"--launcher slurm: storage {ref.display} is a local {what} that workers on other nodes cannot "
                      f"reach; use --storage postgresql://user:pass@host/db, or add --shared-fs if that path is on a "
                      f"filesystem every node mounts")


def check_launch(launcher: str, ref: StorageRef, *, shared_fs: bool, devices: str | None, dry: bool,
                 flags: Mapping[str, Any] | None = None) -> None:
    """Everything a Slurm launch needs that can be checked before anything is written (ConfigError otherwise);
    ``flags`` (``slurm_flags``): Slurm settings given on the command line, refused by another launcher."""
    if launcher not in LAUNCHERS:
        raise ConfigError(f"--launcher: unknown launcher {launcher!r}; allowed: {', '.join(LAUNCHERS)}")
    if launcher != "slurm":
        if shared_fs:
            raise ConfigError("--shared-fs only applies to --launcher slurm")
        given = [key for key, value in (flags or {}).items() if value not in (None, {})]
        if given:
            raise ConfigError(f"--{given[0].replace('_', '-')} is a Slurm option: add --launcher slurm (a grid's "
                              f"launcher.slurm section holds the settings; --launcher picks the launcher)")
        return
    if devices:
        raise ConfigError("--devices does not apply to --launcher slurm: each worker uses the GPUs Slurm allocates "
                          "(launcher.slurm.gpus_per_worker or --gpus-per-worker)")
    check_storage(ref, shared_fs)
    try:
        import submitit  # noqa: F401
    except ImportError:
        raise ConfigError("--launcher slurm needs submitit: pip install submitit") from None
    if not dry and shutil.which("sbatch") is None:
        raise ConfigError("--launcher slurm: sbatch not found on PATH; run this on a Slurm login node")


# -- flags ------------------------------------------------------------------------------------------------------
def add_arguments(p: argparse.ArgumentParser) -> None:
    """The sweep command's launcher flags."""
    g = p.add_argument_group("launcher", "run the workers as a Slurm job array (docs/sweeps.md: 'On a Slurm cluster')")
    g.add_argument("--launcher", choices=LAUNCHERS, default="local",
                   help="local: worker processes here (default); slurm: submit --workers N workers as one job "
                        "array, print its id and return")
    g.add_argument("--shared-fs", action="store_true",
                   help="with --launcher slurm: the journal/SQLite storage is on a filesystem every node mounts")
    g.add_argument("--partition", default=None, help="Slurm partition (grid: launcher.slurm.partition)")
    g.add_argument("--time", default=None, metavar="LIMIT",
                   help="time limit per worker: minutes or HH:MM:SS (default 60 minutes)")
    g.add_argument("--cpus-per-worker", default=None, type=int, metavar="N", help="CPUs per worker (default 1)")
    g.add_argument("--gpus-per-worker", default=None, type=int, metavar="N",
                   help="GPUs per worker (default 0); a worker trains one trial or fused group per GPU")
    g.add_argument("--mem", default=None, metavar="SIZE", help="memory per worker, e.g. 16G")
    g.add_argument("--sbatch", action="append", default=[], metavar="KEY=VALUE",
                   help="an extra sbatch option, e.g. --sbatch account=abc --sbatch qos=high, or a bare KEY for a flag "
                        "without a value: --sbatch exclusive is sbatch's --exclusive (repeatable; a key given again: "
                        "the last value wins)")


def slurm_flags(args: argparse.Namespace) -> dict[str, Any]:
    """The launcher flags as ``parse_launcher`` overrides (None: not given)."""
    return {"partition": args.partition, "time": args.time, "cpus_per_worker": args.cpus_per_worker,
            "gpus_per_worker": args.gpus_per_worker, "mem": args.mem,
            "sbatch": dict(parse_sbatch_option(s) for s in args.sbatch)}


# -- inside an array task ---------------------------------------------------------------------------------------
def task_devices(gpus: int, env: Mapping[str, str]) -> list[str]:
    """The devices of one array task: ``cuda:0``…``cuda:k-1`` for the k GPUs Slurm allocated (it sets
    ``CUDA_VISIBLE_DEVICES`` to them, so they are numbered from 0 in the task), else ``cpu``."""
    if gpus <= 0:
        return ["cpu"]
    visible = [d for d in env.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
    if not visible:
        import torch

        n = min(gpus, torch.cuda.device_count())
        if n == 0:
            raise ConfigError(f"this Slurm task asked for {gpus} GPU(s) but sees none (no CUDA_VISIBLE_DEVICES, no "
                              f"CUDA device)")
        return [f"cuda:{i}" for i in range(n)]
    return [f"cuda:{i}" for i in range(len(visible))]


def _task_worker(ws: Any) -> None:
    """A worker process of an array task: like ``worker.worker_main``, and SIGUSR2 (submitit's warning signal,
    which Slurm sends to every process of the task) stops it as SIGTERM does. The first signal interrupts the
    trial (recorded as interrupted); later ones are ignored so that recording cannot be cut short."""
    die_with_parent(ws.parent_pid)
    own_wandb_service()

    def _again(signum: int, frame: Any) -> None:
        pass  # a Python no-op, not SIG_IGN: a signal already pending would raise OSError ("ignored due to race")

    def _stop(signum: int, frame: Any) -> None:
        for s in (signal.SIGTERM, signal.SIGUSR2, signal.SIGINT):
            signal.signal(s, _again)
        raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")

    for s in (signal.SIGTERM, signal.SIGUSR2):
        signal.signal(s, _stop)
    if ws.threads:
        set_cpu_threads(ws.threads)
    try:
        stats = run_worker(ws)
    except KeyboardInterrupt as e:
        print(f"worker {ws.index}: stopped ({e}); its trial is recorded as interrupted and resumes from its "
              f"last.pt", file=sys.stderr, flush=True)
        sys.exit(130)
    except ConfigError as e:
        print(f"worker {ws.index}: error: {e}", file=sys.stderr, flush=True)
        sys.exit(2)
    print(f"worker {ws.index} on {ws.device}: ran trials {stats.numbers}, none left", flush=True)


@dataclass
class SlurmWorker:
    """The callable submitted for every array task: starts one worker process per allocated GPU (or one CPU
    worker with all the task's CPUs) and waits for them. ``checkpoint`` is submitit's preemption hook."""
    spec: str                 # the study: its workers run the resolved spec it stores
    storage: StorageRef
    study_dir: str
    gpus: int
    cpus: int
    deadline: float | None
    fuse: str | int
    fuse_table: str | None

    def __post_init__(self) -> None:
        self._procs: list[Any] = []

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "_procs"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._procs = []

    def worker_specs(self, task: int, env: Mapping[str, str]) -> list[Any]:
        devices = task_devices(self.gpus, env)
        threads = max(1, self.cpus // len(devices))
        return [WorkerSpec(self.spec, self.storage, self.study_dir, d, task * len(devices) + i, self.deadline,
                           threads, os.getpid(), self.fuse, self.fuse_table)
                for i, d in enumerate(devices)]

    def __call__(self, task: int) -> list[int]:
        """Run the task's workers to the end; their exit codes (0: no trial left; 130: stopped by a signal)."""
        specs = self.worker_specs(task, os.environ)
        restarts = os.environ.get("SLURM_RESTART_COUNT", "0")
        print(f"array task {task} (restart {restarts}) on {os.uname().nodename}: {len(specs)} worker(s) on "
              f"{', '.join(s.device for s in specs)}, {specs[0].threads} thread(s) each; storage "
              f"{self.storage.display}", flush=True)
        ctx = mp.get_context("spawn")
        os.environ["OMP_NUM_THREADS"] = str(specs[0].threads)   # read by the children before torch starts
        self._procs = [ctx.Process(target=_task_worker, args=(ws,), name=f"slurm-worker-{ws.index}")
                       for ws in specs]
        for proc in self._procs:
            proc.start()
        signal.signal(signal.SIGTERM, self._forward)   # also stop them when only this process is signalled
        while any(p.is_alive() for p in self._procs):
            for p in self._procs:
                p.join(timeout=0.5)
        codes = [p.exitcode for p in self._procs]
        crashed = [c for c in codes if c not in (0, 130)]
        if crashed:
            raise RuntimeError(f"array task {task}: worker exit codes {codes}")
        return codes

    def _forward(self, signum: int, frame: Any = None) -> None:
        for p in self._procs:
            if p.is_alive() and p.pid is not None:
                try:
                    os.kill(p.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass

    def checkpoint(self, task: int) -> Any:
        """submitit's hook on the warning signal (time limit, preemption): stop the workers — each records its
        trial as interrupted, resumable from its last.pt — and resubmit this task as it is."""
        import submitit

        self._forward(signal.SIGTERM)
        t_end = time.time() + STOP_WAIT_S
        for p in self._procs:
            p.join(timeout=max(0.0, t_end - time.time()))
        return submitit.helpers.DelayedSubmission(self, task)


# -- the launch -------------------------------------------------------------------------------------------------
def submit(cfg: SlurmConfig, spec: Any, ref: StorageRef, study_dir: Path, n_workers: int, *, deadline: float | None,
           fuse: str | int, fuse_table: str | None, out: TextIO) -> str:
    """Submit ``n_workers`` SlurmWorkers as one job array; print the job id and how to follow it; return the id."""
    import submitit

    study_dir = study_dir.resolve()
    folder = study_dir / "slurm"
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    executor = submitit.SlurmExecutor(folder=folder, max_num_timeout=cfg.max_requeues)
    executor.update_parameters(**cfg.executor_parameters(job_name=f"ablate-{spec.study}"))
    worker = SlurmWorker(spec.study, ref, str(study_dir), cfg.gpus_per_worker, cfg.cpus_per_worker, deadline,
                         fuse, fuse_table)
    try:
        jobs = executor.map_array(worker, range(n_workers))
    except Exception as e:  # noqa: BLE001 - sbatch refused (bad partition, account, …): one line
        first = str(e).strip().splitlines()
        msg = next((line for line in first if "error" in line.lower()), first[-1] if first else type(e).__name__)
        raise ConfigError(f"sbatch refused the job array: {msg.strip()[:300]}") from None
    array_id = jobs[0].job_id.split("_")[0]   # submitit submits an "array" of one as a plain job
    what = f"job array {array_id}" if n_workers > 1 else f"job {array_id}"
    print(f"submitted {n_workers} worker{'s' * (n_workers != 1)} as Slurm {what} (each: {cfg.describe()})",
          file=out)
    print(f"follow it: squeue -j {array_id}   |   {command('resnet-ablate', 'studies', '--storage', ref.display)}",
          file=out)
    logs = f"{array_id}_<task>_0_log.out" if n_workers > 1 else f"{array_id}_0_log.out"
    print(f"worker logs: {folder}/{logs} (and .err); cancel: scancel {array_id}", file=out)
    print("launch the same command again to resume or to add workers; nothing more to do here", file=out)
    out.flush()
    return array_id
