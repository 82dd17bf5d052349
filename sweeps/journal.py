"""The Optuna journal file must stay readable whatever happens to one append.

A crash or a full disk during an append leaves a *torn* last line (no newline, or not JSON). Optuna reads past it,
but the next append lands after it and turns it into a corrupt line in the middle, which no reader gets past. So
before anything is appended (``open_storage`` for writing) ``check_journal(path, repair=True)`` cuts a torn tail off
under Optuna's own journal lock (so no process is half-way through an append), keeping a copy of the whole file as
``<journal>.torn-<time>.bak`` and saying so on stderr. A corrupt line anywhere else is not guessed at: it is a
one-line ``ConfigError`` naming the file and the line.
"""
from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

from resnet_core.errors import ConfigError


def _scan(data: bytes) -> tuple[int, int | None]:
    """(byte offset where the readable lines end, 1-based number of a corrupt line before the last, or None)."""
    end = 0
    lines = data.split(b"\n")
    complete, tail = lines[:-1], lines[-1]  # `tail`: bytes after the last newline (b"" when the file ends in one)
    for i, line in enumerate(complete):
        try:
            json.loads(line)
        except ValueError:
            if i == len(complete) - 1 and not tail:
                return end, None  # the last line is complete but not JSON: torn too
            return end, i + 1
        end += len(line) + 1
    return end, None


def check_journal(path: str | Path, *, repair: bool = False, err=None) -> None:
    """Raise a one-line ``ConfigError`` if the journal at ``path`` has a corrupt line before its last; with
    ``repair``, cut a torn last line off (backup kept, a note on ``err``). A missing file is fine."""
    path = Path(path)
    if not path.is_file():
        return
    if not repair:
        _, bad = _scan(path.read_bytes())
        if bad is not None:
            raise _corrupt(path, bad)
        return
    from optuna.storages.journal import JournalFileSymlinkLock

    lock = JournalFileSymlinkLock(str(path))
    lock.acquire()
    try:
        data = path.read_bytes()
        end, bad = _scan(data)
        if bad is not None:
            raise _corrupt(path, bad)
        if end == len(data):
            return
        backup = path.with_name(f"{path.name}.torn-{time.strftime('%Y%m%d-%H%M%S')}.bak")
        shutil.copy2(path, backup)
        with open(path, "r+b") as f:
            f.truncate(end)
        print(f"warning: {path}: cut off a torn last line ({len(data) - end} bytes, left by a crash or a full disk "
              f"during an append); the file as it was is in {backup}", file=err or sys.stderr, flush=True)
    finally:
        lock.release()


def _corrupt(path: Path, line: int) -> ConfigError:
    return ConfigError(f"{path} line {line}: not a valid journal record (a damaged Optuna journal); restore the "
                       f"file from a backup, or move it away to start the study afresh")
