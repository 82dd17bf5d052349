"""Commands printed for the user to paste: each argument quoted for a POSIX shell (``shlex.quote``), so a path with
spaces, quotes or non-ASCII characters reaches the program as one argument."""
from __future__ import annotations

import shlex
from pathlib import Path


def command(*args: str | Path) -> str:
    """``command("wandb", "sync", "/my runs/x")`` → ``wandb sync '/my runs/x'``."""
    return " ".join(shlex.quote(str(a)) for a in args)


def glob_arg(folder: str | Path, pattern: str) -> str:
    """A shell glob under ``folder``: the folder quoted, the pattern (``trials/*/wandb/offline-run-*``) left for the
    shell to expand."""
    return shlex.quote(f"{folder}/") + pattern
