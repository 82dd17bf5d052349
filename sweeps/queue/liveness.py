"""Is the worker that holds a RUNNING trial still alive?

Every worker writes, when it takes a trial, the trial user attr ``worker`` = {host, pid, pid_start, device, index,
launcher (the pid of the ``sweep`` that started it, when there is one)},
and while the trial runs it rewrites ``<run_dir>/sweep_heartbeat.json`` every ``HEARTBEAT_INTERVAL`` seconds (on RDB
storage it also records Optuna's own heartbeat). A RUNNING trial is dead when
- its worker ran on this host and that process is gone (or the pid now belongs to another process: its start time
  differs, or it is a zombie) — decided at once, no waiting; or
- its worker ran on another host and its heartbeat (file, or Optuna's on RDB) is older than ``GRACE_PERIOD``; or
- it has no worker record: its claimer was killed between taking it and writing the record. A claimer does both
  under the claim lock (``storage.claim_lock``), and a launch reads the RUNNING trials under it too
  (``study.fail_dead_trials``), so there a trial without a record is dead at once, however slow the storage; a reader
  without the lock (the ``studies`` listing) counts it dead once it started over ``CLAIM_WINDOW_S`` ago.
"""
from __future__ import annotations

import json
import os
import socket
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

from resnet_core.record import atomic_write_text

from .optuna_adapter import record_heartbeat, stale_trial_ids, trial_id
from .storage import GRACE_PERIOD, HEARTBEAT_INTERVAL

HEARTBEAT_FILE = "sweep_heartbeat.json"
HOST = socket.gethostname()


def process_start(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (/proc/<pid>/stat field 22), or None off Linux."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()
    return fields[19]


def _process_state(pid: int) -> str | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2:].split()[0]


def pid_alive(pid: int, start: str | None = None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    state = _process_state(pid)
    if state in ("Z", "X"):
        return False
    if start is not None:
        now = process_start(pid)
        if now is not None and now != start:
            return False
    return True


def worker_record(index: int, device: str, launcher: int | None = None) -> dict[str, Any]:
    pid = os.getpid()
    record = {"host": HOST, "pid": pid, "pid_start": process_start(pid), "device": device, "index": index}
    if launcher is not None:
        record["launcher"] = launcher
    return record


def launched_here(trial: Any, launcher: int | None = None) -> bool:
    """Whether a worker of the launch with pid ``launcher`` (default: this process) on this host holds ``trial``
    (its ``worker`` record, written at the claim)."""
    w = trial.user_attrs.get("worker")
    pid = os.getpid() if launcher is None else launcher
    return isinstance(w, dict) and w.get("host") == HOST and w.get("launcher", w.get("pid")) == pid


def holder(trial: Any) -> str:
    """Who holds a RUNNING trial, in words: ``launcher pid 123 on host (worker pid 456)``."""
    w = trial.user_attrs.get("worker")
    if not isinstance(w, dict):
        return "a worker that has not recorded itself yet"
    launcher = w.get("launcher", w.get("pid"))
    worker = f" (worker pid {w.get('pid')})" if w.get("pid") != launcher else ""
    return f"launcher pid {launcher} on {w.get('host')}{worker}"


def heartbeat_age(run_dir: Path) -> float | None:
    """Seconds since the heartbeat file was last written, or None without one."""
    try:
        return max(0.0, time.time() - (run_dir / HEARTBEAT_FILE).stat().st_mtime)
    except OSError:
        return None


CLAIM_WINDOW_S = 10.0  # read without the claim lock: a claim this recent may still be writing its worker record


def trial_is_dead(trial: Any, study_dir: Path, *, rdb_stale: set[int] | None = None) -> bool:
    """Decide for a RUNNING FrozenTrial (see the module docstring). ``rdb_stale``: trial ids Optuna's RDB heartbeat
    finds stale (None on the journal)."""
    w = trial.user_attrs.get("worker")
    if isinstance(w, dict) and w.get("host") == HOST and isinstance(w.get("pid"), int):
        return not pid_alive(w["pid"], w.get("pid_start"))
    if rdb_stale is not None and trial_id(trial) in rdb_stale:
        return True
    run_dir = trial.user_attrs.get("run_dir")
    if isinstance(w, dict):
        if rdb_stale is not None:
            return False  # another host, Optuna's heartbeat is fresh
        age = heartbeat_age(study_dir / run_dir) if run_dir else None
        if age is not None:
            return age > GRACE_PERIOD
    started = trial.datetime_start
    if started is None:
        return False
    window = GRACE_PERIOD if isinstance(w, dict) else CLAIM_WINDOW_S  # a remote worker not yet beating: its grace
    return (datetime.now() - started).total_seconds() > window


def dead_judge(study: Any, storage: Any, study_dir: Path) -> Callable[[Any], bool]:
    """``trial_is_dead`` for the RUNNING trials of ``study``, with the stale RDB heartbeats of ``storage`` (None: a
    storage opened without them) read once, when first needed."""
    stale: list[set[int] | None] = []

    def dead(trial: Any) -> bool:
        if not stale:
            stale.append(stale_trial_ids(study, storage) if storage is not None else None)
        return trial_is_dead(trial, study_dir, rdb_stale=stale[0])
    return dead


class Heartbeat:
    """A daemon thread that beats every ``interval`` seconds while a trial runs: rewrites the heartbeat file and,
    on RDB storage, records Optuna's heartbeat. ``on_beat`` (optional) runs each beat; an exception there is
    swallowed (a heartbeat must not kill a trial)."""

    def __init__(self, run_dir: Path, record: dict[str, Any], storage: Any = None, trial_id: int | None = None,
                 interval: float = HEARTBEAT_INTERVAL, on_beat: Callable[[], None] | None = None) -> None:
        self.run_dir, self.record = Path(run_dir), record
        self.storage, self.trial_id, self.interval, self.on_beat = storage, trial_id, interval, on_beat
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="sweep-heartbeat", daemon=True)

    def __enter__(self) -> "Heartbeat":
        self.beat()
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        try:
            (self.run_dir / HEARTBEAT_FILE).unlink()
        except OSError:
            pass

    def beat(self) -> None:
        try:
            atomic_write_text(self.run_dir / HEARTBEAT_FILE, json.dumps({**self.record, "time": time.time()}),
                              fsync=False)  # rewritten every few seconds; a lost beat is only a late one
        except OSError:
            pass
        if self.storage is not None and self.trial_id is not None:
            try:
                record_heartbeat(self.storage, self.trial_id)
            except Exception:  # noqa: BLE001
                pass
        if self.on_beat is not None:
            try:
                self.on_beat()
            except Exception:  # noqa: BLE001
                pass

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.beat()
