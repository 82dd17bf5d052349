"""Shared pytest fixtures."""

from __future__ import annotations

import os

import pytest


# --- PostgreSQL fixture (scripts/test.sh starts the server) -------------------
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


# --- end of PostgreSQL fixture -------------------------------------------------
