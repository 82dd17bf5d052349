"""Which code produced a result: recorded in every run's ``summary.json`` and in every sweep's study.

``provenance()`` gives the package version, the git commit of the checkout the code runs from and whether it had
uncommitted changes (``None`` for both when the code is not a git checkout, e.g. an installed wheel, or git is
missing or slow), and the torch, optuna and wandb versions (read from the installed distributions' metadata, so
wandb is not imported). It never raises, and asks git once per process, with a short timeout.
"""
from __future__ import annotations

import functools
import importlib.metadata
import os
import subprocess
from pathlib import Path
from typing import Any

PACKAGE = "resnet-ablate"
SOURCE_ROOT = Path(__file__).resolve().parents[1]  # the checkout's root when run from one
GIT_TIMEOUT_S = 3.0


def distribution_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except Exception:  # noqa: BLE001 - not installed, or broken metadata: unknown, never an error
        return None


def _git(root: Path, *args: str) -> str | None:
    """``git args`` in ``root``, or None when it fails or takes longer than GIT_TIMEOUT_S."""
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0"}  # `git status` must not take the index lock of a checkout in use
    try:
        done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=GIT_TIMEOUT_S,
                              stdin=subprocess.DEVNULL, env=env)
    except (OSError, subprocess.SubprocessError, ValueError):
        return None
    return done.stdout if done.returncode == 0 else None


@functools.lru_cache(maxsize=None)
def git_state(root: Path = SOURCE_ROOT) -> tuple[str | None, bool | None]:
    """(commit, dirty) of the checkout at ``root``; (None, None) where it is not one (a package installed in a
    virtual environment that lives inside some other repository is not that repository's code)."""
    if not (Path(root) / ".git").exists():  # a folder in a worktree has a .git file, a clone a .git folder
        return None, None
    commit = _git(root, "rev-parse", "HEAD")
    if commit is None:
        return None, None
    status = _git(root, "status", "--porcelain")
    return commit.strip(), (None if status is None else bool(status.strip()))


@functools.lru_cache(maxsize=1)
def _provenance() -> tuple[tuple[str, Any], ...]:
    commit, dirty = git_state()
    return (("package", PACKAGE), ("version", distribution_version(PACKAGE)), ("git_commit", commit),
            ("git_dirty", dirty), ("torch", distribution_version("torch")),
            ("optuna", distribution_version("optuna")), ("wandb", distribution_version("wandb")))


def provenance() -> dict[str, Any]:
    """``{"package", "version", "git_commit", "git_dirty", "torch", "optuna", "wandb", "plugins"}`` for this process
    (a new dict each call; computed once, except `plugins`: each loaded plugin with the SHA-256 of its source)."""
    from .plugins import loaded_plugin_records

    return {**dict(_provenance()), "plugins": loaded_plugin_records()}


STUDY_ATTR = "provenance"  # a sweep's study: the provenance of each code version that ran `sweep` on it, in order


def provenance_history(stored: Any) -> list[dict[str, Any]] | None:
    """A study's ``STUDY_ATTR`` list with this process's provenance appended; None when it is already the last entry
    (nothing to write). A study created before provenance was recorded (no list) starts one."""
    history = list(stored) if isinstance(stored, list) else []
    current = provenance()
    if history and history[-1] == current:
        return None
    return history + [current]
