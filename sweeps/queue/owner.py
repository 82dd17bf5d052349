"""Whose runs a study folder holds: the launch's rule (``study_format`` has the record and the readers' side).

Two studies with the same name and ``--root`` but different storages would share ``<root>/<study>/trials/``: the
second would move the first's runs aside and write its own under the same names, and the first's report would show
the second's numbers. So every study has a random id (the study user attr ``study_id``: it lives in the study, the
same for every machine and every kind of storage), and the launch that first uses a study folder writes it there
(``owner.json``). A launch whose study does not own the folder refuses before it writes anything:
- an owner record naming another study id: refused, unless it names this storage and this study name (the study it
  names was deleted, and this one took its name: the old runs are left-overs, moved aside as before);
- no owner record (a folder from before owner records): adopted when it holds no runs, when the storage is the
  folder's own journal (its runs are that journal's), or when the existing study has a run folder there; else
  refused.
"""
from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from resnet_core.errors import ConfigError
from resnet_core.record import atomic_write_json

from ..spec.study_format import JOURNAL_NAME, OWNER_FILE, STUDY_ID_ATTR, folder_owner, owner_phrase
from .storage import StorageRef


def new_study_id() -> str:
    """A fresh random study id."""
    return uuid.uuid4().hex


def storage_key(ref: StorageRef) -> str:
    """What names one storage in an owner record: a journal's absolute path, an RDB URL with its password masked."""
    return str(Path(ref.url).resolve()) if ref.kind == "journal" else ref.display


def owner_record(ref: StorageRef, study: Any) -> dict[str, Any]:
    """The owner record of ``study`` (in ``ref``) for its study folder."""
    return {"study": study.study_name, "study_id": study.user_attrs[STUDY_ID_ATTR], "storage": ref.display,
            "storage_key": storage_key(ref)}


def check_owner(study_dir: Path, ref: StorageRef, name: str, study: Any = None) -> None:
    """Refuse (one-line ``ConfigError``) when ``study_dir`` holds the runs of another study than ``name`` in ``ref``
    (``study``: the existing study, None for one not created yet). Reads only."""
    record = folder_owner(study_dir)
    study_id = study.user_attrs.get(STUDY_ID_ATTR) if study is not None else None
    if record is not None:
        same_storage = record.get("storage_key") == storage_key(ref)
        if record["study_id"] == study_id or (same_storage and record.get("study") == name):
            return
        raise ConfigError(f"{owner_phrase(study_dir, record)} ({'another study' if same_storage else 'another storage'}"
                          f"): use the same --storage, or another --root")
    if not _has_runs(study_dir) or _own_journal(study_dir, ref) or _has_run_of(study, study_dir):
        return
    raise ConfigError(f"{study_dir} holds runs of another study (it has no {OWNER_FILE}, and study {name!r} in "
                      f"{ref.display} has none of them): use the --storage that ran them, or another --root")


def claim_owner(study_dir: Path, ref: StorageRef, study: Any) -> None:
    """Write ``study``'s owner record into ``study_dir`` unless it is there (after ``check_owner``). A folder without
    one is claimed with an exclusive create: of two launches at the same moment one wins, the other refuses."""
    record = owner_record(ref, study)
    current = folder_owner(study_dir)
    if current is not None and current["study_id"] == record["study_id"]:
        return
    if current is not None:   # the folder of a deleted study of this storage and name, or a launch racing this one
        check_owner(study_dir, ref, study.study_name, study)
        atomic_write_json(Path(study_dir) / OWNER_FILE, record)
        return
    if _create_new(Path(study_dir) / OWNER_FILE, record):
        return
    current = folder_owner(study_dir)
    if current is not None and current["study_id"] != record["study_id"]:
        raise ConfigError(f"{owner_phrase(study_dir, current)}, claimed by a launch at the same moment: use the "
                          f"same --storage, or another --root")


def _create_new(path: Path, record: dict[str, Any]) -> bool:
    """Write ``record`` to ``path`` unless a file is there (False): written whole, then linked into place."""
    try:
        atomic_write_json(path, record, exclusive=True)
        return True
    except FileExistsError:
        return False


def _has_runs(study_dir: Path) -> bool:
    trials = Path(study_dir) / "trials"
    return trials.is_dir() and any(trials.iterdir())


def _own_journal(study_dir: Path, ref: StorageRef) -> bool:
    return ref.kind == "journal" and Path(ref.url).resolve() == (Path(study_dir) / JOURNAL_NAME).resolve()


def _has_run_of(study: Any, study_dir: Path) -> bool:
    if study is None:
        return False
    dirs = {t.user_attrs.get("run_dir") for t in study.get_trials(deepcopy=False)}
    return any(isinstance(d, str) and (Path(study_dir) / d).is_dir() for d in dirs)
