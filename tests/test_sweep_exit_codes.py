"""The sweep's exit code follows its workers': a full disk (2) or a signal (130, 143) in every failed worker is the
launch's code too (README's table), a crash is 1."""
from __future__ import annotations

import io
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
