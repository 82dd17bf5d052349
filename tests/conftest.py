"""Shared pytest fixtures: the services scripts/test.sh starts (the PostgreSQL server URL, a per-test study name, the
Slurm cluster).

`pytest -m "not slow"` is the subset to run while editing: every module, without the long process-level runs
(killed and relaunched sweeps, several workers racing for trials, real torch.compile builds). Each slow test carries
`@pytest.mark.slow` itself (or `pytest.param(..., marks=pytest.mark.slow)` where only some parametrizations are slow);
nothing here adds marks from outside.

scripts/test.sh runs the suite on one pytest-xdist worker per core, in file order: each long process-level test then
shares the machine with short in-process ones. (Collected slow-first, the long tests ran against each other, their
workers oversubscribed the cores, and the suite took 16 min instead of 9.)
"""

from __future__ import annotations

import os
import uuid

import pytest


# --- PostgreSQL fixtures (scripts/test.sh starts the server) ------------------
# scripts/test.sh starts a throwaway server with scripts/pg_throwaway.sh and
# exports RESNET_ABLATE_PG_URL.  Without it the PostgreSQL tests skip, except
# under CI, where a missing server is a failure rather than a silent skip.


def _ci_is_set() -> bool:
    value = os.environ.get("CI", "").strip().lower()
    return value not in ("", "0", "false", "no")


@pytest.fixture(scope="session")
def pg_url() -> str:
    """URL of a real PostgreSQL database (``postgresql://user:pass@127.0.0.1:port/db``)."""
    url = os.environ.get("RESNET_ABLATE_PG_URL", "").strip()
    if not url:
        message = (
            "RESNET_ABLATE_PG_URL is not set; run the tests via `bash scripts/test.sh` "
            "(or start a server with `bash scripts/pg_throwaway.sh start`)"
        )
        if _ci_is_set():
            pytest.fail(message + " -- CI is set, so this is a failure", pytrace=False)
        pytest.skip(message)
    return url


@pytest.fixture
def pg_study_name(pg_url: str):
    """A study name unique to this test; the study is deleted from the PostgreSQL database afterwards."""
    name = f"pytest-pg-{uuid.uuid4().hex[:12]}"
    yield name
    import optuna  # here, not at the top: collection stays free of optuna for the tests that never use it

    from sweeps.queue.storage import open_storage, resolve_storage  # as above; the sweeps' own driver choice

    try:
        optuna.delete_study(study_name=name, storage=open_storage(resolve_storage(pg_url, ".", name)))
    except KeyError:
        pass


# --- end of PostgreSQL fixtures ------------------------------------------------


# --- the one-node Slurm cluster (scripts/test.sh starts it: scripts/slurm_throwaway.sh) ---------------------------
@pytest.fixture(scope="session")
def slurm(pg_url: str) -> str:
    """SLURM_CONF of the throwaway cluster (scripts/slurm_throwaway.sh)."""
    conf = os.environ.get("SLURM_CONF", "")
    if os.environ.get("RESNET_ABLATE_SLURM") == "0":
        pytest.skip("RESNET_ABLATE_SLURM=0: the Slurm tests are switched off")
    if os.environ.get("RESNET_ABLATE_SLURM") != "1" or not conf:
        message = ("no Slurm cluster: RESNET_ABLATE_SLURM=1 and SLURM_CONF are not set; run the tests via "
                   "`bash scripts/test.sh` (or `eval $(bash scripts/slurm_throwaway.sh start >/dev/null && "
                   "bash scripts/slurm_throwaway.sh env)` and export RESNET_ABLATE_SLURM=1)")
        if _ci_is_set():
            pytest.fail(message + " -- CI is set, so this is a failure", pytrace=False)
        pytest.skip(message)
    return conf


# --- one torch thread ----------------------------------------------------------------------------------------------
@pytest.fixture
def one_thread():
    """One torch thread for the test, the process's count back afterwards. Small nets gain little from OpenMP threads,
    which spin badly when the cores are shared (a loaded 2-core machine ran tests/test_model.py 3× slower with 2
    threads). A module takes it with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    import torch  # here, not at the top: collection stays free of torch for the tests that never use it

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def a_cpp_compiler(monkeypatch):
    """A C++ compiler 'found' for a test whose torch.compile is a stand-in (no inductor build): `fast: compile` on a
    CPU without one is refused up front (``fast_path.resolve_fast``), which such a test never needs."""
    from resnet_core import fast_path

    monkeypatch.setattr(fast_path, "cpu_compiler", lambda: "/usr/bin/g++")
