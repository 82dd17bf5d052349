"""Optuna's RDBStorage against a real PostgreSQL server, with several OS processes.

These tests need the ``pg_url`` fixture (tests/conftest.py), i.e. a server
started by ``scripts/test.sh`` via ``scripts/pg_throwaway.sh``.  They prove
the database works for the multi-worker sweep pattern: trials are enqueued
once, separate worker processes pull them with ``study.ask()``, and every
enqueued trial is taken by exactly one worker and completes.

Driver note: with SQLAlchemy 2.1 a bare ``postgresql://`` URL selects psycopg 3,
while the project's ``postgres`` extra installs psycopg2.  ``_sa_url`` names
the installed driver explicitly (``postgresql+psycopg2://``) when psycopg 3 is
missing; the project's own code needs the same care (or psycopg 3 installed).
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time

import pytest

optuna = pytest.importorskip("optuna")
pytest.importorskip("psycopg2")

from optuna.trial import TrialState  # noqa: E402

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning"),
]

HEARTBEAT_INTERVAL = 1  # seconds
GRACE_PERIOD = 3  # seconds
LONG_GRACE_PERIOD = 600  # seconds: a heartbeat this recent is fresh however slow the machine

# Worker run in a separate interpreter: connects its own RDBStorage, says READY,
# waits for GO on stdin (so both workers start pulling at the same time), then
# pulls waiting trials with study.ask() until none are left.  Holding its first
# trial, it waits until every worker holds one (the trials' worker_pid attrs): so
# the workers are known to have pulled from the queue at the same time, whatever
# the scheduler did (released by GO alone, one worker could drain the queue
# before the other was scheduled on a loaded machine).
_WORKER = r"""
import json, os, sys, time, warnings
import optuna
from optuna.trial import TrialState

url, study_name, delay, hb, grace = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
peers = int(sys.argv[6])
optuna.logging.set_verbosity(optuna.logging.WARNING)
# ask() warns that heartbeats are meant for optimize(); we record them by hand.
warnings.filterwarnings("ignore", message=".*[Hh]eartbeat.*")
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
storage = optuna.storages.RDBStorage(url, heartbeat_interval=hb, grace_period=grace)
study = optuna.load_study(study_name=study_name, storage=storage)
print("READY", flush=True)
if sys.stdin.readline().strip() != "GO":
    sys.exit(3)

pid = os.getpid()
taken, strays = [], []
while study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
    trial = study.ask()
    storage.record_heartbeat(trial._trial_id)
    trial.set_user_attr("worker_pid", pid)
    if "fixed_params" not in storage.get_trial_system_attrs(trial._trial_id):
        # Another worker popped the last waiting trial between our check and
        # ask(), so ask() created a fresh trial.  Close it and look again.
        study.tell(trial, state=TrialState.FAIL)
        strays.append(trial.number)
        continue
    if not taken:  # the first trial: hold it until every worker holds one
        t_end = time.monotonic() + 300
        while len({t.user_attrs["worker_pid"] for t in study.get_trials(deepcopy=False)
                   if "worker_pid" in t.user_attrs}) < peers:
            if time.monotonic() > t_end:
                sys.exit("no other worker took a trial within 300 s")
            time.sleep(0.05)
    x = trial.suggest_int("x", 0, 10_000)
    time.sleep(delay)
    study.tell(trial, float(x * x))
    taken.append({"number": trial.number, "x": x})

print("RESULT " + json.dumps({"pid": pid, "taken": taken, "strays": strays}), flush=True)
"""


def _sa_url(url: str) -> str:
    """The SQLAlchemy URL for ``url`` with a driver that is actually installed."""
    if url.startswith(("postgresql://", "postgres://")):
        try:
            import psycopg  # noqa: F401  (SQLAlchemy 2.1's default PostgreSQL driver)
        except ImportError:
            return "postgresql+psycopg2://" + url.split("://", 1)[1]
    return url


def _storage(url: str) -> "optuna.storages.RDBStorage":
    return optuna.storages.RDBStorage(
        _sa_url(url), heartbeat_interval=HEARTBEAT_INTERVAL, grace_period=GRACE_PERIOD
    )


def _spawn_worker(url: str, study_name: str, delay: float, script: str = _WORKER, peers: int = 2) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", script, _sa_url(url), study_name, str(delay), str(HEARTBEAT_INTERVAL), str(GRACE_PERIOD),
         str(peers)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _read_line(proc: subprocess.Popen, deadline: float) -> str:
    """Read one stdout line from proc, failing the test if none comes by deadline."""
    assert proc.stdout is not None
    remaining = deadline - time.monotonic()
    ready, _, _ = select.select([proc.stdout], [], [], max(remaining, 0))
    if not ready:
        pytest.fail(f"worker {proc.pid} said nothing within the time limit")
    line = proc.stdout.readline()
    if not line:
        proc.wait(timeout=10)
        stderr = proc.stderr.read() if proc.stderr else ""
        pytest.fail(f"worker {proc.pid} exited with {proc.returncode} before answering:\n{stderr}")
    return line.strip()


def _kill_all(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait(timeout=10)


@pytest.mark.slow
def test_two_processes_take_each_enqueued_trial_exactly_once(pg_url: str, pg_study_name: str) -> None:
    n_trials = 16
    storage = _storage(pg_url)
    study = optuna.create_study(study_name=pg_study_name, storage=storage, direction="minimize")
    xs = [7 * i + 3 for i in range(n_trials)]
    for x in xs:
        study.enqueue_trial({"x": x})
    enqueued = {t.number: t.system_attrs["fixed_params"]["x"] for t in study.get_trials(deepcopy=False)}
    assert sorted(enqueued.values()) == xs
    assert all(t.state == TrialState.WAITING for t in study.get_trials(deepcopy=False))

    procs = [_spawn_worker(pg_url, pg_study_name, delay=0.1, peers=2) for _ in range(2)]
    try:
        deadline = time.monotonic() + 600  # a few seconds when idle; minutes on a loaded 2-core machine
        for p in procs:
            assert _read_line(p, deadline) == "READY"
        for p in procs:  # release both workers together
            assert p.stdin is not None
            p.stdin.write("GO\n")
            p.stdin.close()
            p.stdin = None  # so communicate() below does not touch the closed pipe
        results = []
        for p in procs:
            out, err = p.communicate(timeout=max(deadline - time.monotonic(), 1))
            assert p.returncode == 0, f"worker {p.pid} failed ({p.returncode}):\n{err}"
            lines = [ln for ln in out.splitlines() if ln.startswith("RESULT ")]
            assert len(lines) == 1, f"worker {p.pid} printed no result:\n{out}\n{err}"
            results.append(json.loads(lines[0][len("RESULT "):]))
    finally:
        _kill_all(procs)

    print("trials per worker:", {r["pid"]: len(r["taken"]) for r in results},
          "stray trials:", [n for r in results for n in r["strays"]])
    pids = [r["pid"] for r in results]
    assert len(set(pids)) == 2 and os.getpid() not in pids, pids

    # Every enqueued trial was taken exactly once, and only enqueued trials were "taken".
    taken_by: dict[int, int] = {}
    for r in results:
        for item in r["taken"]:
            assert item["number"] not in taken_by, f"trial {item['number']} taken twice"
            taken_by[item["number"]] = r["pid"]
            assert item["x"] == enqueued[item["number"]]
    assert set(taken_by) == set(enqueued)
    # Both processes really worked on the queue (each held its first trial until
    # the other held one: deterministic, not a matter of scheduling).
    for r in results:
        assert r["taken"], f"worker {r['pid']} took no trial: {results}"

    # What the server holds, read back through a fresh connection.
    final = optuna.load_study(study_name=pg_study_name, storage=_storage(pg_url))
    trials = {t.number: t for t in final.get_trials(deepcopy=False)}
    for number, x in enqueued.items():
        t = trials[number]
        assert t.state == TrialState.COMPLETE, (number, t.state)
        assert t.params == {"x": x}
        assert t.value == float(x * x)
        assert t.user_attrs["worker_pid"] == taken_by[number]
    strays = [n for r in results for n in r["strays"]]
    for number in strays:  # trials that ask() created after losing a race
        assert number not in enqueued
        assert trials[number].state == TrialState.FAIL
    assert set(trials) == set(enqueued) | set(strays)
    assert not final.get_trials(deepcopy=False, states=(TrialState.WAITING, TrialState.RUNNING))
    assert final.best_value == float(min(xs) ** 2)

    # Heartbeats were recorded but no finished trial counts as stale.
    optuna.storages.fail_stale_trials(final)
    assert all(final.get_trials(deepcopy=False)[n].state == TrialState.COMPLETE for n in enqueued)


_DYING_WORKER = r"""
import sys, time, warnings
import optuna

url, study_name, hb, grace = sys.argv[1], sys.argv[2], int(sys.argv[4]), int(sys.argv[5])
warnings.filterwarnings("ignore", message=".*[Hh]eartbeat.*")
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
storage = optuna.storages.RDBStorage(url, heartbeat_interval=hb, grace_period=grace)
study = optuna.load_study(study_name=study_name, storage=storage)
trial = study.ask()
storage.record_heartbeat(trial._trial_id)
print("TOOK", trial.number, flush=True)
time.sleep(600)  # killed by the test
"""


@pytest.mark.slow
def test_trial_of_a_killed_worker_is_failed_as_stale(pg_url: str, pg_study_name: str) -> None:
    storage = _storage(pg_url)
    study = optuna.create_study(study_name=pg_study_name, storage=storage)
    study.enqueue_trial({"x": 1})

    proc = _spawn_worker(pg_url, pg_study_name, delay=0, script=_DYING_WORKER)
    try:
        line = _read_line(proc, time.monotonic() + 300)
        assert line.startswith("TOOK "), line
        number = int(line.split()[1])
        assert study.get_trials(deepcopy=False)[number].state == TrialState.RUNNING
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        _kill_all([proc])

    # Not stale yet right after the kill (heartbeat is fresh) ... The check reads through a storage with a grace
    # period of minutes: with the 3 s one it failed whenever 3 s passed between the worker's beat and this line
    # (interpreter start-up, the READY line and the kill on a loaded machine).
    patient = optuna.storages.RDBStorage(_sa_url(pg_url), heartbeat_interval=HEARTBEAT_INTERVAL,
                                         grace_period=LONG_GRACE_PERIOD)
    optuna.storages.fail_stale_trials(optuna.load_study(study_name=pg_study_name, storage=patient))
    assert study.get_trials(deepcopy=False)[number].state == TrialState.RUNNING
    # ... but it is once the grace period has passed without a heartbeat (a lower bound: later is as stale).
    time.sleep(GRACE_PERIOD + 1.5)
    optuna.storages.fail_stale_trials(study)
    assert study.get_trials(deepcopy=False)[number].state == TrialState.FAIL
