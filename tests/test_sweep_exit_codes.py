"""The sweep's exit code follows its workers': a full disk (2) or a signal (130, 143) in every failed worker is the
launch's code too (README's table), a crash is 1."""
from __future__ import annotations

import io
import time
from types import SimpleNamespace

import pytest

from sweeps.launch.launchers import LocalLauncher
from sweeps.launch.sweep import sweep_exit_code


def _wait(codes: list[int | None]) -> int:
    launcher = LocalLauncher()
    launcher._specs = [object()] * len(codes)
    launcher._procs = [SimpleNamespace(name=f"sweep-worker-{i}", exitcode=c, is_alive=lambda: False,
                                       join=lambda timeout=None: None) for i, c in enumerate(codes)]
    return launcher.wait(io.StringIO())


@pytest.mark.parametrize("codes, expected", [
    ([0, 0], 0),
    ([2, 2], 2),            # a full disk in each worker: its trials interrupted, the launch says full disk
    ([2, 0], 2),
    ([143, 143], 143),
    ([130, 0], 130),
    ([143, 130], 143),
    ([2, 143], 2),          # an error to fix comes before the interruption it caused
    ([1, 2], 1),            # a crash is a crash
    ([-9, 0], 1),           # killed by SIGKILL (the OOM killer)
])
def test_the_launch_exit_code_follows_the_workers(codes, expected):
    assert _wait(codes) == expected
    # …and is the sweep's, whatever the trials' states (interrupted trials are unfinished, not failed)
    assert sweep_exit_code(expected, n_failed=0, n_unfinished=3) == (expected or 3)


def test_failed_trials_or_a_crash_are_1_and_unfinished_ones_3():
    assert sweep_exit_code(0, n_failed=1, n_unfinished=1) == 1
    assert sweep_exit_code(1, n_failed=0, n_unfinished=0) == 1
    assert sweep_exit_code(0, n_failed=0, n_unfinished=1) == 3
    assert sweep_exit_code(0, n_failed=0, n_unfinished=0) == 0


class _SlowToStop:
    """A worker process that ends ``joins`` joins after its SIGTERM (a step and its checkpoint on a loaded machine)."""

    def __init__(self, name: str, joins: int) -> None:
        self.name, self.joins, self.terminated, self.killed = name, joins, False, False

    def is_alive(self) -> bool:
        return self.joins > 0 and not self.killed

    def terminate(self) -> None:
        self.terminated = True

    def kill(self) -> None:
        self.killed = True

    def join(self, timeout: float | None = None) -> None:
        if self.terminated and self.joins > 0:
            self.joins -= 1
            if timeout:
                time.sleep(min(timeout, 0.01))


def test_a_stop_waits_for_every_worker_to_checkpoint_and_says_whom_it_waits_for(monkeypatch):
    """A stop sent SIGTERM and waited 30 s per worker, then returned with workers still writing their checkpoints:
    the launch printed its closing table over trials still running. It waits for every worker, and names the
    ones it still waits for once STOP_NOTE_S has passed."""
    from sweeps.launch import launchers

    monkeypatch.setattr(launchers, "STOP_NOTE_S", 0.05)
    launcher = LocalLauncher()
    launcher._procs = [_SlowToStop("sweep-worker-0", 2), _SlowToStop("sweep-worker-1", 40)]
    err = io.StringIO()
    launcher.stop(err)
    assert not any(p.is_alive() for p in launcher._procs)
    assert all(p.terminated and not p.killed for p in launcher._procs)
    assert err.getvalue().count("\n") == 1 and "waiting for sweep-worker-1 to checkpoint" in err.getvalue()


def test_a_second_ctrl_c_while_a_stop_waits_kills_the_workers(monkeypatch):
    from sweeps.launch import launchers

    monkeypatch.setattr(launchers, "STOP_NOTE_S", 3600.0)
    launcher = LocalLauncher()
    worker = _SlowToStop("sweep-worker-0", 10 ** 9)
    calls = []

    def interrupted_join(timeout=None):
        calls.append(timeout)
        if len(calls) == 3:
            raise KeyboardInterrupt
    worker.join = interrupted_join
    launcher._procs = [worker]
    with pytest.raises(KeyboardInterrupt):
        launcher.stop(io.StringIO())
    assert worker.killed and not worker.is_alive()
