"""Open a sweep's study from Python in one line, with Optuna's own objects::

    import sweeps
    study = sweeps.open_study("runs/quickstart")            # a study folder, its optuna.journal, or a storage URL
    study.best_params, study.trials_dataframe(), optuna.importance.get_param_importances(study)

(``optuna.load_study(storage="runs/quickstart/optuna.journal")`` fails: Optuna reads a plain string as an RDB URL;
the journal needs ``JournalStorage(JournalFileBackend(path))``, which is what this does.)

The one home of opening a study: ``open_study`` (from Python), ``open_study_named`` (a study by name under a root or
in a ``--storage``: what ``reports`` reads) and ``open_study_to_run`` (a worker's: with the per-cell sampler and
pruner, and the failed-trial callback that requeues a trial whose RDB heartbeat went stale).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from resnet_core.errors import ConfigError

from ..spec.grid import GridSpec
from ..spec.study_format import DEFAULT_ROOT, JOURNAL_NAME, find_journals, journal_path, mask_url, read_spec
from .storage import StorageRef, open_storage, resolve_storage, storage_exists
from .study import requeue_failed_trial, sampler_and_pruner


def open_study(where: str | Path, name: str | None = None) -> Any:
    """The ``optuna.Study`` at ``where``: a study folder (``runs/<study>``, holding ``optuna.journal``), a journal
    file, or an RDB URL (``sqlite:///…``, ``postgresql://…``). ``name``: the study in that storage; optional when it
    holds only one. Opens read-only (creates nothing). Raises ConfigError when there is no storage or no such
    study (naming the studies there)."""
    import optuna

    text = str(where)
    if "://" not in text and Path(text).is_dir():
        text = str(Path(text) / JOURNAL_NAME)
    ref = resolve_storage(text, ".", name or "")
    if not storage_exists(ref):
        raise ConfigError(f"no Optuna storage at {ref.display}")
    storage = open_storage(ref, read_only=True)
    names = optuna.get_all_study_names(storage=storage)
    if name is None:
        if len(names) != 1:
            raise ConfigError(f"{ref.display} holds {len(names)} studies ({', '.join(names) or 'none'}); name one")
        name = names[0]
    elif name not in names:
        raise ConfigError(f"no study {name!r} in {ref.display}; studies there: {', '.join(names) or 'none'}")
    return optuna.load_study(study_name=name, storage=storage)


def silence_optuna() -> None:
    """Optuna logs warnings only (a reader's output stays its own)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)


def journal_storage(path: Path) -> Any:
    """The journal at ``path``, read-only (a corrupt line: one line naming the file and line)."""
    return open_storage(StorageRef("journal", str(path), str(path)), read_only=True)


def study_names(storage: Any) -> list[str]:
    """The studies in ``storage``, sorted."""
    import optuna

    return sorted(optuna.get_all_study_names(storage))


def journal_path_of(storage: str) -> Path | None:
    """A journal file given as --storage: 'journal:PATH', 'file:PATH', or a path (not a URL)."""
    for prefix in ("journal:///", "journal://", "journal:", "file://", "file:"):
        if storage.startswith(prefix):
            return Path(storage[len(prefix):])
    if "://" not in storage:
        return Path(storage)
    return None


def find_study_names(root: str | Path | None = None, storage: str | None = None) -> list[str]:
    """The study names in a storage URL, or in every ``<root>/*/optuna.journal``."""
    silence_optuna()
    if storage:
        return study_names(open_storage_text(storage)[0])
    root = Path(root or DEFAULT_ROOT)
    names: set[str] = set()
    for journal in find_journals(root):
        try:
            names.update(study_names(journal_storage(journal)))
        except Exception:  # an unreadable journal: name its folder
            names.add(journal.parent.name)
    return sorted(names)


def check_storage_file(storage: str) -> Path | None:
    """The journal file a --storage value names (None for a database URL); a one-line ``ConfigError`` when the
    journal or SQLite file it names is not there (a read-only command creates none)."""
    journal = journal_path_of(storage)
    if journal is not None:
        if not journal.exists():
            raise ConfigError(f"journal file not found: {journal}")
        return journal
    if storage.startswith("sqlite:///"):
        db = Path(storage[len("sqlite:///"):])
        if str(db) not in ("", ":memory:") and not db.exists():
            raise ConfigError(f"database file not found: {db} (from {storage})")
    return None


def open_storage_text(storage: str) -> tuple[Any, str, Path | None]:
    """(storage object, description, journal path if any) for a --storage value."""
    journal = check_storage_file(storage)
    if journal is not None:
        return journal_storage(journal), str(journal), journal
    ref = resolve_storage(storage, DEFAULT_ROOT, "")
    return open_storage(ref, read_only=True), mask_url(storage), None  # a bad URL, server down: ConfigError


def open_study_named(study: str, root: str | Path | None = None, storage: str | None = None) -> tuple[Any, str, list[Path]]:
    """(study, where it was read from, the folders its relative run dirs resolve against) for the study named
    ``study`` under ``root`` (its journal) or in ``storage``; an unknown study is a ConfigError that lists the studies
    there. Read-only."""
    import optuna

    silence_optuna()
    root = Path(root or DEFAULT_ROOT)
    dirs: list[Path] = []
    if storage:
        st, desc, journal = open_storage_text(storage)
        names = study_names(st)
        if study not in names:
            raise ConfigError(f"unknown study {study!r} in {desc}; studies there: {', '.join(names) or '(none)'}")
        dirs.append(root / study)
        if journal is not None:
            dirs += [journal.parent, journal.parent / study]
    else:
        journal = journal_path(root, study)
        if not journal.exists():
            names = find_study_names(root)
            raise ConfigError(f"unknown study {study!r}: no {journal}; studies under {root}/: "
                              f"{', '.join(names) or '(none)'}")
        st, desc = journal_storage(journal), str(journal)
        names = study_names(st)
        if study not in names:
            raise ConfigError(f"unknown study {study!r} in {journal}; studies there: {', '.join(names) or '(none)'}")
        dirs.append(journal.parent)
    loaded = optuna.load_study(study_name=study, storage=st)
    seen: list[Path] = []
    for d in dirs:
        if d not in seen:
            seen.append(d)
    return loaded, desc, seen


def open_study_to_run(name: str, ref: StorageRef, storage: Any = None) -> tuple[Any, Any, GridSpec]:
    """(study, storage, spec) for a worker running study ``name``'s trials: the resolved spec the study stores
    (``read_spec``), the study with that spec's per-cell sampler and pruner, and its storage opened with the
    callback that requeues a trial whose RDB heartbeat went stale."""
    import optuna

    storage = storage or open_storage(ref, failed_trial_callback=requeue_failed_trial)
    spec = read_spec(optuna.load_study(study_name=name, storage=storage))
    sampler, pruner = sampler_and_pruner(spec)
    study = optuna.load_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner)
    return study, storage, spec
