"""How a sweep's workers run: one small interface, two launchers (Hydra's split in spirit: ``sweep.py`` decides what
to run — the study, its plan, the workers' count and devices — and a launcher only starts the workers).

A ``Launcher``:
- ``validate(spec, ref, devices=…, dry=…)``: everything it needs that can be checked before anything is written
  (a one-line ``ConfigError`` otherwise);
- ``device_flag(devices)``: the ``--devices`` value the launch's packing and estimates assume;
- ``dry_note(asked)``: what a dry run says about it (or None);
- ``start(job, out)``: start the workers of ``job``;
- ``wait(err)``: wait for them (the caller's ``Monitor`` shows the progress meanwhile); their exit codes as one
  (``workers_exit_code``).
  A launcher that does not wait (``waits`` False: Slurm) returns at once, and the sweep returns once submitted;
- ``stop()``: stop the workers (Ctrl-C: their trials are recorded as interrupted and resume on the next launch).

A new launcher is a class with these members, added to ``LAUNCHER_TYPES`` (and its name to
``sweeps.spec.launcher.LAUNCHERS``, which the ``--launcher`` flag offers).
"""
from __future__ import annotations

import multiprocessing as mp
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol, Sequence, TextIO

from resnet_core.errors import ConfigError
from resnet_core.signals import EXIT_CONFIG, EXIT_FAILED, EXIT_OK, EXIT_SIGINT, EXIT_SIGTERM

from ..queue.storage import StorageRef
from ..run.worker import WorkerSpec, cpu_threads, run_worker, worker_main
from ..spec.grid import GridSpec
from ..spec.launcher import LAUNCHERS, SlurmConfig, parse_launcher
from .slurm import check_launch, submit

STOP_NOTE_S = 30.0   # a stop still waiting for its workers after this long says which


def workers_exit_code(codes: Sequence[int | None]) -> int:
    """The workers' exit codes as the launch's (README's table): 0 when none failed; 1 when one crashed (any code
    but 2, 130, 143); else 2 when one stopped on a config or input error (a full disk); else 143 (SIGTERM) or 130."""
    bad = {c for c in codes if c not in (EXIT_OK, None)}
    if not bad:
        return EXIT_OK
    if bad - {EXIT_CONFIG, EXIT_SIGINT, EXIT_SIGTERM}:
        return EXIT_FAILED
    return next(c for c in (EXIT_CONFIG, EXIT_SIGTERM, EXIT_SIGINT) if c in bad)


@dataclass
class Job:
    """What a launcher starts: ``workers`` workers on the study ``spec.study`` in ``ref``."""
    spec: GridSpec
    ref: StorageRef
    study_dir: Path
    workers: int
    deadline: float | None = None        # time.time() after which no worker starts a new trial
    fuse: str | int = 1
    fuse_table: str | None = None
    devices: Sequence[str] = field(default_factory=list)   # local: each worker's device (``assign_devices``)


class Launcher(Protocol):
    name: str
    waits: bool

    def validate(self, spec: GridSpec, ref: StorageRef, *, devices: str | None, dry: bool) -> None: ...

    def device_flag(self, devices: str | None) -> str | None: ...

    def dry_note(self, asked: int | None) -> str | None: ...

    def start(self, job: Job, out: TextIO) -> None: ...

    def wait(self, err: TextIO) -> int: ...

    def stop(self, err: TextIO) -> None: ...


class LocalLauncher:
    """Worker processes on this machine: one runs in this process (nothing to spawn, and a kill of this process
    kills it), several are spawned, each with its share of the CPU threads."""
    name = "local"
    waits = True

    def __init__(self, *, flags: Mapping[str, Any] | None = None, shared_fs: bool = False) -> None:
        self.flags = dict(flags or {})   # Slurm's: any given is refused in validate, as --shared-fs is
        self.shared_fs = shared_fs
        self._specs: list[WorkerSpec] = []
        self._procs: list[Any] = []

    def validate(self, spec: GridSpec, ref: StorageRef, *, devices: str | None, dry: bool) -> None:
        check_launch(self.name, ref, shared_fs=self.shared_fs, devices=devices, dry=dry, flags=self.flags)

    def device_flag(self, devices: str | None) -> str | None:
        return devices

    def dry_note(self, asked: int | None) -> str | None:
        return None

    def start(self, job: Job, out: TextIO) -> None:
        threads = cpu_threads(list(job.devices))
        self._specs = [WorkerSpec(job.spec.study, job.ref, str(job.study_dir), d, i, job.deadline, threads,
                                  os.getpid(), job.fuse, job.fuse_table) for i, d in enumerate(job.devices)]
        self._procs = []
        if len(self._specs) == 1:
            return   # runs in this process, in wait()
        ctx = mp.get_context("spawn")
        self._procs = [ctx.Process(target=worker_main, args=(ws,), name=f"sweep-worker-{ws.index}")
                       for ws in self._specs]
        for p, ws in zip(self._procs, self._specs):
            # a spawned child reads its environment before torch starts its thread pools: share the cores out there
            # (oversubscribed OpenMP threads make a small CPU many times slower)
            saved = os.environ.get("OMP_NUM_THREADS")
            if ws.threads:
                os.environ["OMP_NUM_THREADS"] = str(ws.threads)
            try:
                p.start()
            finally:
                if ws.threads:
                    if saved is None:
                        os.environ.pop("OMP_NUM_THREADS", None)
                    else:
                        os.environ["OMP_NUM_THREADS"] = saved

    def wait(self, err: TextIO) -> int:
        """The workers' exit codes as one (``workers_exit_code``). Ctrl-C stops them and re-raises."""
        if not self._procs:
            for ws in self._specs:
                run_worker(ws)
            return 0
        try:
            self._join_all()
        except KeyboardInterrupt:
            self.stop(err)
            raise
        bad = [p for p in self._procs if p.exitcode not in (0, None)]
        for p in bad:
            print(f"worker {p.name} exited with code {p.exitcode}", file=err, flush=True)
        return workers_exit_code([p.exitcode for p in self._procs])

    def stop(self, err: TextIO) -> None:
        """SIGTERM each worker (its trials are marked interrupted and checkpointed where they stop) and wait for
        all of them, however long a step and its checkpoint take on a loaded machine; after ``STOP_NOTE_S`` it
        names the workers it waits for. A second Ctrl-C kills them: their trials resume from their last periodic
        checkpoint, and the next launch counts the work lost."""
        for p in self._procs:
            if p.is_alive():
                p.terminate()  # SIGTERM → KeyboardInterrupt in the worker → trial marked interrupted

        def note(alive: list[str]) -> None:
            print(f"sweep: waiting for {', '.join(alive)} to checkpoint their trials (Ctrl-C again kills them; their "
                  f"trials then resume from their last periodic checkpoint)", file=err, flush=True)
        try:
            self._join_all(note_after_s=STOP_NOTE_S, note=note)
        except KeyboardInterrupt:
            for p in self._procs:
                if p.is_alive():
                    p.kill()
            for p in self._procs:
                p.join()
            raise

    def _join_all(self, note_after_s: float | None = None, note: Callable[[list[str]], None] | None = None) -> None:
        """Join every worker, 0.2 s at a time so that a Ctrl-C between joins is taken at once; once
        ``note_after_s`` has passed, ``note`` gets the names of those still alive (once)."""
        note_at = time.monotonic() + note_after_s if note is not None and note_after_s is not None else None
        while any(p.is_alive() for p in self._procs):
            for p in self._procs:
                p.join(timeout=0.2)
            if note_at is not None and time.monotonic() > note_at:
                note([p.name for p in self._procs if p.is_alive()])
                note_at = None


class SlurmLauncher:
    """The workers as one Slurm job array (``slurm.submit``); the launch returns once it is submitted, and the
    array's tasks outlive it (``scancel`` stops them)."""
    name = "slurm"
    waits = False

    def __init__(self, *, flags: Mapping[str, Any] | None = None, shared_fs: bool = False) -> None:
        self.flags = dict(flags or {})
        self.shared_fs = shared_fs
        self.cfg: SlurmConfig | None = None

    def validate(self, spec: GridSpec, ref: StorageRef, *, devices: str | None, dry: bool) -> None:
        check_launch(self.name, ref, shared_fs=self.shared_fs, devices=devices, dry=dry)
        self.cfg = parse_launcher(spec.launcher, self.flags)

    def device_flag(self, devices: str | None) -> str | None:
        """The GPUs the cluster allocates are like this machine's; without GPUs per worker, a CPU."""
        return devices if self.cfg is not None and self.cfg.gpus_per_worker else "cpu"

    def dry_note(self, asked: int | None) -> str | None:
        n = f"{asked} worker(s)" if asked else "one worker per trial to run"
        return f"slurm: {n} as one job array, each: {self.cfg.describe()}"

    def start(self, job: Job, out: TextIO) -> None:
        submit(self.cfg, job.spec, job.ref, job.study_dir, job.workers, fuse=job.fuse, fuse_table=job.fuse_table,
               out=out, deadline=job.deadline)

    def wait(self, err: TextIO) -> int:
        return 0

    def stop(self, err: TextIO) -> None:
        pass


LAUNCHER_TYPES = {"local": LocalLauncher, "slurm": SlurmLauncher}


def make_launcher(name: str, *, slurm: Mapping[str, Any] | None = None, shared_fs: bool = False) -> Launcher:
    """The launcher ``--launcher NAME`` names (a one-line ``ConfigError`` for an unknown one)."""
    if name not in LAUNCHER_TYPES:
        raise ConfigError(f"--launcher: unknown launcher {name!r}; allowed: {', '.join(LAUNCHERS)}")
    return LAUNCHER_TYPES[name](flags=slurm, shared_fs=shared_fs)
