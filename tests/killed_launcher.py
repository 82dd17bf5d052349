"""Kill a sweep launcher mid-trial, as `kill -9` or a lost node would, for the tests that relaunch it afterwards
(tests/test_sweeps.py's ``kill_mid_trial_and_rerun``, which tests/test_sweeps_pg.py and tests/test_sweeps_fused.py
reuse, and tests/test_until_decided.py). tests/ is on sys.path through pyproject's ``pythonpath``.

Every wait is a deadline of minutes around a short poll, never a fixed sleep: the launcher and its workers must
reach the state to kill in even on 2 cores that are busy with other jobs.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

if TYPE_CHECKING:  # optuna is imported by the callers (after their importorskip), not by this module
    from optuna.study import Study
    from optuna.trial import FrozenTrial

REACH_S = 900.0  # for the launcher to get far enough (a few seconds on an idle machine)
GONE_S = 180.0   # for the launcher and its workers to be gone after the SIGKILL (well under a second when idle)
POLL_S = 0.2


def pid_gone(pid: int) -> bool:
    """The process has exited (a zombie counts as gone: its parent, the killed launcher, will never reap it)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:  # reaped between the two looks
        return True
    return state in ("Z", "X")


def running_with_checkpoint(study: Study, study_dir: Path) -> list[FrozenTrial]:
    """The RUNNING trials that a worker has recorded itself on and that have written ``last.pt`` in their run folder."""
    return [t for t in study.get_trials(deepcopy=False) if t.state.name == "RUNNING" and "worker" in t.user_attrs
            and (study_dir / t.user_attrs["run_dir"] / "last.pt").exists()]


def sigkill_launcher_when(args: Sequence[str], log: Path, open_study: Callable[[], Study | None],
                          far_enough: Callable[[Study], bool], *, reach_s: float = REACH_S) -> list[FrozenTrial]:
    """Start ``python -m resnet_core *args`` in a session of its own (stdout and stderr to ``log``), poll
    ``open_study()`` (None or a KeyError: not created yet) until ``far_enough(study)``, then SIGKILL the launcher.

    Returns the trials that were RUNNING when it died, once every worker process recorded on them is gone too (the
    workers die with the launcher, PR_SET_PDEATHSIG). Fails, with the launcher's output, if the launcher exits or
    ``reach_s`` passes before the study is far enough."""
    with open(log, "w") as out:  # a file, not a pipe: a launcher that writes a lot never blocks on a full pipe
        proc = subprocess.Popen([sys.executable, "-m", "resnet_core", *args], stdout=out, stderr=subprocess.STDOUT,
                                text=True, start_new_session=True)
    deadline = time.monotonic() + reach_s
    killed = False
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            time.sleep(POLL_S)
            try:
                study = open_study()
            except KeyError:
                continue  # not created yet
            if study is not None and far_enough(study):
                os.kill(proc.pid, signal.SIGKILL)
                killed = True
                break
        exited = None if killed else proc.poll()
    finally:
        if proc.poll() is None and not killed:  # out of time, or an error above: leave nothing running
            proc.kill()
        proc.wait(timeout=GONE_S)
    assert killed, (f"the launcher exited with {exited}" if exited is not None else
                    f"the study was not far enough after {reach_s:.0f} s") + f":\n{log.read_text()}"
    victims = [t for t in open_study().get_trials(deepcopy=False) if t.state.name == "RUNNING"]
    assert victims, f"no trial was caught running:\n{log.read_text()}"

    worker_pids = {t.user_attrs["worker"]["pid"] for t in victims if "worker" in t.user_attrs}
    gone_by = time.monotonic() + GONE_S
    while not all(pid_gone(p) for p in worker_pids) and time.monotonic() < gone_by:
        time.sleep(0.1)
    assert all(pid_gone(p) for p in worker_pids), f"workers outlived their killed launcher: {sorted(worker_pids)}"
    return victims
