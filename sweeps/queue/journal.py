"""The Optuna journal file must stay readable whatever happens to one append.

A crash or a full disk during an append leaves a *torn* last line (no newline, or not JSON). Optuna reads past it,
but the next append lands after it and turns it into a corrupt line in the middle, which no reader gets past. So
before anything is appended (``open_storage`` for writing) ``check_journal(path, repair=True)`` cuts a torn tail off
under Optuna's own journal lock (so no process is half-way through an append), keeping a copy of the whole file as
``<journal>.torn-<time>.bak`` and saying so on stderr.

A corrupt line anywhere else (a damaged disk block, a hand edit) is salvaged the same way before anything is
appended: the file as it was is kept as ``<journal>.corrupt-<time>.bak``, and the journal is rebuilt from every
record it still proves (``salvage``). Optuna numbers studies and trials by the order of their create records, so a
damaged create record still takes its number, and every record that refers to what it created (a trial's params,
attrs and state; a study's trials) is dropped with it; a damaged record of another kind loses only itself. A line
that is a torn append followed by a whole record (a crash, then an append by a process that never saw the torn
part) keeps that record. What was dropped (which trials) is printed; the launch carries on and runs again what is
now missing. Read-only commands read the salvaged records without writing (a warning says so).

Optuna's journal lock is a symlink ``<journal>.lock`` → the journal, removed after each append. A process killed
while it holds it leaves it behind; Optuna releases a lock whose journal has not changed for its grace period,
reading the journal's mtime through the link, so the link must point at the journal by its absolute path: a
relative one dangles (it resolves against the link's folder), the stat fails, and every later append waits forever
(``journal_backend``, ``journal_lock``).
"""
from __future__ import annotations

import atexit
import json
import os
import re
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from optuna.trial import TrialState

from resnet_core.errors import ConfigError

from ..spec.study_format import LOST
from .optuna_adapter import journal_op_codes

OPS = journal_op_codes()                                 # Optuna's own codes: a line's op_code → its kind
CREATE_STUDY, DELETE_STUDY, CREATE_TRIAL = OPS["CREATE_STUDY"], OPS["DELETE_STUDY"], OPS["CREATE_TRIAL"]
STUDY_OPS = tuple(OPS[k] for k in ("DELETE_STUDY", "SET_STUDY_USER_ATTR", "SET_STUDY_SYSTEM_ATTR"))  # by study_id
TRIAL_OPS = tuple(OPS[k] for k in ("SET_TRIAL_PARAM", "SET_TRIAL_STATE_VALUES", "SET_TRIAL_INTERMEDIATE_VALUE",
                                   "SET_TRIAL_USER_ATTR", "SET_TRIAL_SYSTEM_ATTR"))                 # by trial_id
KNOWN_OPS = frozenset(OPS.values())
FAIL = TrialState.FAIL.value
OP_NAMES = {OPS[k]: name for k, name in (
    ("CREATE_STUDY", "create study"), ("DELETE_STUDY", "delete study"), ("SET_STUDY_USER_ATTR", "study attr"),
    ("SET_STUDY_SYSTEM_ATTR", "study attr"), ("CREATE_TRIAL", "create trial"), ("SET_TRIAL_PARAM", "trial param"),
    ("SET_TRIAL_STATE_VALUES", "trial state"), ("SET_TRIAL_INTERMEDIATE_VALUE", "intermediate value"),
    ("SET_TRIAL_USER_ATTR", "trial attr"), ("SET_TRIAL_SYSTEM_ATTR", "trial attr"))}


def _is_record(line: bytes) -> bool:
    """Whether ``line`` is a journal record: a JSON object with a known ``op_code`` (other JSON is no record)."""
    try:
        r = json.loads(line)
    except ValueError:
        return False
    return isinstance(r, dict) and r.get("op_code") in KNOWN_OPS


def _scan(data: bytes) -> tuple[int, int | None]:
    """(byte offset where the readable lines end, 1-based number of a corrupt line before the last, or None)."""
    end = 0
    lines = data.split(b"\n")
    complete, tail = lines[:-1], lines[-1]  # `tail`: bytes after the last newline (b"" when the file ends in one)
    for i, line in enumerate(complete):
        if not _is_record(line):
            if i == len(complete) - 1 and not tail:
                return end, None  # the last line is complete but no record: torn too
            return end, i + 1
        end += len(line) + 1
    return end, None


JOURNAL_MARK = b'"op_code"'   # in every journal record, whole or torn
HEAD_BYTES = 1 << 20         # how much of a file is read to tell whether it is a journal at all


def check_is_journal(path: str | Path) -> None:
    """A one-line ``ConfigError`` if ``path`` holds something that is no Optuna journal — a folder, or a file none
    of whose lines is a journal record, whole or torn (a grid file, notes, a database given by its path) — before
    anything reads it as one: repairing it would replace the file with an empty journal and start a study in it.
    Nothing there, or an empty file, is fine (a new journal)."""
    path = Path(path)
    if path.is_dir():
        inside = path / "optuna.journal"
        hint = f": the study folder's journal is {inside}" if inside.is_file() else ""
        raise ConfigError(f"journal {path} is a folder, not a journal file{hint}")
    if not path.is_file():
        return
    with open(path, "rb") as f:
        head = f.read(HEAD_BYTES)
    if head.strip() and JOURNAL_MARK not in head:
        raise ConfigError(f"{path} is not an Optuna journal (no line of it is a journal record); nothing was read "
                          f"or written: name a journal file (a new path starts one) or a database URL (sqlite:///…, "
                          f"postgresql://…)")


LOCK_GRACE_S = int(os.environ.get("RESNET_ABLATE_JOURNAL_LOCK_GRACE_S", "30"))   # Optuna's default grace period


def journal_lock(path: str | Path) -> Any:
    """Optuna's symlink lock of the journal at ``path``, by its absolute path, released by the next process once the
    journal has not changed for ``LOCK_GRACE_S`` seconds (its holder was killed mid-append). A lock left dangling by
    a relative path (an older version's) is removed once it is that old itself: it could never expire."""
    from optuna.storages.journal import JournalFileSymlinkLock

    path = Path(path).resolve()
    link = Path(f"{path}.lock")
    try:
        if link.is_symlink() and not link.exists() and time.time() - link.lstat().st_mtime > LOCK_GRACE_S:
            link.unlink(missing_ok=True)
    except OSError:   # gone meanwhile: released by its holder
        pass
    return JournalFileSymlinkLock(str(path), grace_period=LOCK_GRACE_S)


def journal_backend(path: str | Path) -> Any:
    """Optuna's ``JournalFileBackend`` for the journal at ``path``, with ``journal_lock``."""
    from optuna.storages.journal import JournalFileBackend

    return JournalFileBackend(str(Path(path).resolve()), lock_obj=journal_lock(path))


def check_journal(path: str | Path, *, repair: bool = False, err=None) -> Path:
    """The file to open for the journal at ``path``: ``path`` itself, repaired in place with ``repair`` (a torn last
    line cut off, a corrupt line salvaged: backup kept, a note on ``err``); read-only, a corrupt journal's salvaged
    records in a temporary file (nothing written beside it). A missing file is fine."""
    path = Path(path)
    err = err or sys.stderr
    check_is_journal(path)
    if not path.is_file():
        return path
    if not repair:
        data = path.read_bytes()
        _, bad = _scan(data)
        if bad is None:
            return path
        result = salvage(data)
        try:
            _check_readable(result.text())
        except Exception:  # noqa: BLE001
            raise _corrupt(path, bad) from None
        tmp = _temporary_copy(result.text())
        print(f"warning: {path}: {result.lines_phrase()} damaged (not a valid journal record); reading the "
              f"{result.n_kept} records it still proves ({result.lost_phrase()}); a `sweep` launch on the study "
              f"repairs the file (keeping a backup)", file=err, flush=True)
        return tmp
    lock = journal_lock(path)
    lock.acquire()
    try:
        data = path.read_bytes()
        end, bad = _scan(data)
        if bad is not None:
            _repair(path, data, err)
            return path
        if end == len(data):
            return path
        backup = _backup(path, "torn")
        with open(path, "r+b") as f:
            f.truncate(end)
        print(f"warning: {path}: cut off a torn last line ({len(data) - end} bytes, left by a crash or a full disk "
              f"during an append); the file as it was is in {backup}", file=err, flush=True)
        return path
    finally:
        lock.release()


def _backup(path: Path, why: str) -> Path:
    backup = path.with_name(f"{path.name}.{why}-{time.strftime('%Y%m%d-%H%M%S')}.bak")
    shutil.copy2(path, backup)
    return backup


def _repair(path: Path, data: bytes, err) -> None:
    """Rebuild the journal at ``path`` from what ``data`` still proves (call under Optuna's journal lock)."""
    result = salvage(data)
    text = result.text()
    try:
        _check_readable(text)
    except Exception:  # noqa: BLE001 - records Optuna cannot replay: not guessed at
        raise _corrupt(path, result.bad[0]) from None
    backup = _backup(path, "corrupt")
    tmp = path.with_name(f".{path.name}.salvage-{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    print(f"warning: {path}: {result.lines_phrase()} damaged (not a valid journal record); rebuilt the journal "
          f"from the {result.n_kept} records it still proves; the file as it was is in {backup}", file=err)
    for line in result.lost_lines():
        print(f"warning: {path}: {line}", file=err)
    err.flush()


def _check_readable(text: bytes) -> None:
    """Replay the rebuilt records with Optuna's own reader before they replace anything."""
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "check.journal"
        p.write_bytes(text)
        storage = JournalStorage(JournalFileBackend(str(p)))
        for study in storage.get_all_studies():
            storage.get_all_trials(storage.get_study_id_from_name(study.study_name), deepcopy=False)


_TEMPORARY: list[Path] = []


def _temporary_copy(text: bytes) -> Path:
    fd, name = tempfile.mkstemp(prefix="resnet-ablate-salvaged-", suffix=".journal")
    with os.fdopen(fd, "wb") as f:
        f.write(text)
    if not _TEMPORARY:
        atexit.register(lambda: [p.unlink(missing_ok=True) for p in _TEMPORARY])
    _TEMPORARY.append(Path(name))
    return Path(name)


# -- salvage ----------------------------------------------------------------------------------------------------
@dataclass
class Salvage:
    """The records a damaged journal still proves (``lines``: each as bytes, in order) and what was lost."""
    lines: list[bytes] = field(default_factory=list)
    bad: list[int] = field(default_factory=list)                  # 1-based numbers of the damaged lines
    lost_trials: dict[tuple[str, int], int] = field(default_factory=dict)   # (study, trial number) → records dropped
    lost_records: list[str] = field(default_factory=list)         # damaged records that took nothing with them
    n_kept: int = 0

    def text(self) -> bytes:
        return b"".join(line + b"\n" for line in self.lines)

    def lines_phrase(self) -> str:
        shown = ", ".join(map(str, self.bad[:5])) + (", …" if len(self.bad) > 5 else "")
        return f"line{'s' * (len(self.bad) != 1)} {shown} {'is' if len(self.bad) == 1 else 'are'}"

    def lost_phrase(self) -> str:
        if not self.lost_trials:
            return "no trial lost"
        return "lost: " + ", ".join(f"trial {n} of {s!r}" for s, n in self.lost_trials)

    def lost_lines(self) -> list[str]:
        out = [f"trial {n} of study {s!r} dropped: its create record was damaged ({k} later record"
               f"{'s' * (k != 1)} about it dropped too); it runs again if its grid cell needs it"
               for (s, n), k in self.lost_trials.items()]
        return out + self.lost_records


def _parse(line: bytes) -> tuple[dict[str, Any] | None, bool]:
    """(the record on ``line``, whether a torn prefix came before it): a whole line, else the last whole record
    that ends the line (an append after a torn one); (None, False) if there is none."""
    def record(text: bytes) -> dict[str, Any] | None:
        try:
            r = json.loads(text)
        except ValueError:
            return None
        return r if isinstance(r, dict) and r.get("op_code") in KNOWN_OPS else None

    r = record(line)
    if r is not None:
        return r, False
    i = line.rfind(b'{"op_code"')
    while i > 0:
        r = record(line[i:])
        if r is not None:
            return r, True
        i = line.rfind(b'{"op_code"', 0, i)
    return None, False


def _field(line: bytes, name: str) -> int | None:
    m = re.search(rb'"%s"\s*:\s*(\d+)' % name.encode(), line)
    return int(m.group(1)) if m else None


def salvage(data: bytes) -> Salvage:
    """Rebuild a journal from ``data``: keep every whole record; a damaged create record becomes a placeholder
    (a FAIL trial with ``status`` lost, a study named ``lost-line<N>``) so every later id and trial number stays
    what it was, and the records that refer to it are dropped; a damaged record of another kind is dropped alone.
    A damaged line whose kind cannot be read counts as a create when a later record refers to the id a create
    there would have made before any other create makes it."""
    raw = data.split(b"\n")
    if raw and raw[-1] == b"":
        raw.pop()
    elif raw:
        raw.pop()    # a torn last line (no newline): never applied, no reader saw it
    parsed = [_parse(line) for line in raw]
    out = Salvage()
    names: dict[int, str] = {}            # live study id → name
    next_study = 0
    trial_study: dict[int, int] = {}      # trial id → study id
    counts: dict[int, int] = {}           # study id → trials so far
    lost: dict[int, tuple[str, int]] = {}  # trial id → (study, number) of a lost trial

    def lost_create(i: int, op: int | None) -> bool:
        """Whether the damaged line ``i`` was a create (known ``op``, else judged from the records after it)."""
        if op is not None:
            return op in (CREATE_STUDY, CREATE_TRIAL)
        trial_id, study_id = len(trial_study), next_study
        for r, _ in parsed[i + 1:]:
            if r is None:
                continue
            code = r["op_code"]
            if code == CREATE_TRIAL and r.get("study_id") in names:
                trial_id = -1  # an id made after here: a reference to it proves nothing
            if code == CREATE_STUDY:
                study_id = -1
            if code in TRIAL_OPS and r.get("trial_id") == trial_id:
                return True
            if code in STUDY_OPS + (CREATE_TRIAL,) and r.get("study_id") == study_id:
                return True
        return False

    for i, (r, torn) in enumerate(parsed):
        line_no = i + 1
        if r is None or torn:
            out.bad.append(line_no)
        if r is None:
            line = raw[i]
            op = _field(line, "op_code")
            op = op if op in KNOWN_OPS else None
            if not lost_create(i, op):
                what = f"{OP_NAMES[op]} record" if op in OP_NAMES else "record"
                tid = _field(line, "trial_id")
                if op in TRIAL_OPS and tid in lost:
                    lost_key = lost[tid]
                    out.lost_trials[lost_key] = out.lost_trials.get(lost_key, 0) + 1
                    continue
                about = f" of trial {_number(tid, trial_study)}" if op in TRIAL_OPS and tid in trial_study else ""
                out.lost_records.append(f"line {line_no}: a damaged {what}{about} dropped (nothing else "
                                        f"refers to it)")
                continue
            if op == CREATE_STUDY or (op is None and _field(line, "study_name") is not None) or (
                    op is None and _refers_to_study(parsed[i + 1:], next_study, names)):
                sid, next_study = next_study, next_study + 1
                names[sid] = f"lost-line{line_no}"
                counts[sid] = 0
                out.lines.append(json.dumps({"op_code": CREATE_STUDY, "worker_id": "salvage",
                                             "study_name": names[sid], "directions": [1]},
                                            separators=(",", ":")).encode())
                out.lost_records.append(f"line {line_no}: a damaged create study record: its study is now named "
                                        f"{names[sid]!r} (its trials and attrs are kept under that name)")
                continue
            sid = _field(line, "study_id")
            if sid not in names:
                sid = _last_study(trial_study, names)
            if sid is None:
                out.lost_records.append(f"line {line_no}: a damaged create trial record of no known study dropped")
                continue
            tid = len(trial_study)
            trial_study[tid] = sid
            lost[tid] = (names[sid], counts[sid])
            counts[sid] += 1
            out.lost_trials[lost[tid]] = 0
            stamp = datetime.now(timezone.utc).isoformat()
            out.lines.append(json.dumps({
                "op_code": CREATE_TRIAL, "worker_id": "salvage", "study_id": sid, "datetime_start": None,
                "datetime_complete": stamp, "state": FAIL, "user_attrs": {
                    "status": LOST, "reason": f"its record in the journal was damaged (line {line_no}); salvaged"}},
                separators=(",", ":")).encode())
            continue
        code = r["op_code"]
        keep = True
        if code == CREATE_STUDY:
            if r.get("study_name") not in names.values():
                names[next_study] = r.get("study_name")
                counts[next_study] = 0
                next_study += 1
        elif code == DELETE_STUDY:
            names.pop(r.get("study_id"), None)
        elif code == CREATE_TRIAL:
            sid = r.get("study_id")
            if sid in names:
                trial_study[len(trial_study)] = sid
                counts[sid] += 1
        elif code in TRIAL_OPS:
            tid = r.get("trial_id")
            if tid in lost:
                out.lost_trials[lost[tid]] = out.lost_trials.get(lost[tid], 0) + 1
                keep = False
        if keep:
            out.lines.append(raw[i] if not torn else json.dumps(r, separators=(",", ":")).encode())
            out.n_kept += 1
    return out


def _number(tid: int, trial_study: dict[int, int]) -> int:
    """The trial number of trial id ``tid`` (its place among its study's trials)."""
    sid = trial_study[tid]
    return sum(1 for t, s in trial_study.items() if s == sid and t < tid)


def _last_study(trial_study: dict[int, int], names: dict[int, str]) -> int | None:
    """The study the latest trial was created in (the study a damaged create trial most likely belonged to)."""
    for tid in sorted(trial_study, reverse=True):
        if trial_study[tid] in names:
            return trial_study[tid]
    return next(iter(names), None)


def _refers_to_study(rest: list[tuple[dict[str, Any] | None, bool]], study_id: int, names: dict[int, str]) -> bool:
    for r, _ in rest:
        if r is None:
            continue
        if r["op_code"] == CREATE_STUDY:
            return False
        if r["op_code"] in STUDY_OPS + (CREATE_TRIAL,) and r.get("study_id") == study_id:
            return True
    return False


def _corrupt(path: Path, line: int) -> ConfigError:
    return ConfigError(f"{path} line {line}: not a valid journal record (a damaged Optuna journal) and the records "
                       f"after it cannot be replayed without it; restore the file from a backup, or move it away to "
                       f"start the study afresh")
