#!/usr/bin/env bash
# Run the test suite the way CI does.
#
#   bash scripts/test.sh                 # everything
#   bash scripts/test.sh tests/test_x.py -k foo   # args go to pytest
#
# 1. scripts/setup.sh (creates/updates .venv; fast when up to date)
# 2. a throwaway PostgreSQL on 127.0.0.1 (scripts/pg_throwaway.sh), exported as
#    RESNET_ABLATE_PG_URL.  If RESNET_ABLATE_PG_URL is already set, that server
#    is used and none is started.  If it cannot be started: with CI set this is
#    a failure; otherwise a warning, and the PostgreSQL tests skip.
# 3. a throwaway one-node Slurm cluster (scripts/slurm_throwaway.sh; munged,
#    slurmctld and slurmd on this machine), exported as SLURM_CONF with
#    RESNET_ABLATE_SLURM=1 for tests/test_slurm.py.  If RESNET_ABLATE_SLURM=1
#    and SLURM_CONF are already set, that cluster is used.  If it cannot be
#    started: with CI set this is a failure; otherwise a warning, and the Slurm
#    tests skip.  RESNET_ABLATE_SLURM=0 skips it (and them) on purpose.
# 4. .venv/bin/python -m pytest -q -n auto --dist loadgroup "$@": one pytest-xdist worker per core
#    (RESNET_ABLATE_TEST_WORKERS=N sets N; 0 runs in this process); the tests on the one-node Slurm cluster share
#    one worker. The server and the cluster are stopped on exit.
# Exits with pytest's code; "no tests collected" (pytest's 5) is a failure.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT" || exit 1

is_ci() { [[ -n "${CI:-}" && "${CI,,}" != "false" && "${CI}" != "0" ]]; }

bash scripts/setup.sh || { echo "[test] scripts/setup.sh failed" >&2; exit 1; }

PG_STATE=""
SLURM_STATE=""
cleanup() {
    if [[ -n "$PG_STATE" ]]; then
        RESNET_ABLATE_PG_STATE="$PG_STATE" bash scripts/pg_throwaway.sh stop || true
        rm -f "$PG_STATE"
        PG_STATE=""
    fi
    if [[ -n "$SLURM_STATE" ]]; then
        RESNET_ABLATE_SLURM_STATE="$SLURM_STATE" bash scripts/slurm_throwaway.sh stop || true
        rm -f "$SLURM_STATE"
        SLURM_STATE=""
    fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [[ -n "${RESNET_ABLATE_PG_URL:-}" ]]; then
    echo "[test] using the PostgreSQL server already given in RESNET_ABLATE_PG_URL"
else
    # A state file of our own, so this run never reuses or stops a server that
    # someone started by hand with scripts/pg_throwaway.sh.
    PG_STATE="$(mktemp "${TMPDIR:-/tmp}/resnet-ablate-pg-test.XXXXXXXX")"
    rm -f "$PG_STATE"
    if url="$(RESNET_ABLATE_PG_STATE="$PG_STATE" bash scripts/pg_throwaway.sh start)" && [[ -n "$url" ]]; then
        export RESNET_ABLATE_PG_URL="$url"
    else
        if is_ci; then
            echo "[test] ERROR: could not start the throwaway PostgreSQL server (CI is set, so this fails the run)" >&2
            exit 1
        fi
        echo "[test] WARNING: could not start a throwaway PostgreSQL server; PostgreSQL tests will be skipped" >&2
    fi
fi

if [[ "${RESNET_ABLATE_SLURM:-}" == "0" ]]; then
    echo "[test] RESNET_ABLATE_SLURM=0: no Slurm cluster; the Slurm tests will be skipped"
elif [[ "${RESNET_ABLATE_SLURM:-}" == "1" && -n "${SLURM_CONF:-}" ]]; then
    echo "[test] using the Slurm cluster already given in SLURM_CONF"
else
    SLURM_STATE="$(mktemp "${TMPDIR:-/tmp}/resnet-ablate-slurm-test.XXXXXXXX")"
    rm -f "$SLURM_STATE"
    if conf="$(RESNET_ABLATE_SLURM_STATE="$SLURM_STATE" bash scripts/slurm_throwaway.sh start)" && [[ -n "$conf" ]]; then
        export SLURM_CONF="$conf" RESNET_ABLATE_SLURM=1
    else
        if is_ci; then
            echo "[test] ERROR: could not start the throwaway Slurm cluster (CI is set, so this fails the run)" >&2
            exit 1
        fi
        echo "[test] WARNING: could not start a throwaway Slurm cluster; Slurm tests will be skipped" >&2
        unset RESNET_ABLATE_SLURM
    fi
fi

.venv/bin/python -m pytest -q -n "${RESNET_ABLATE_TEST_WORKERS:-auto}" --dist loadgroup "$@"
rc=$?
if [[ $rc -eq 5 ]]; then
    echo "[test] ERROR: pytest collected no tests (exit code 5); treating that as a failure" >&2
fi
exit "$rc"
