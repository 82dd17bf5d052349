"""Open a sweep's study from Python in one line, with Optuna's own objects::

    import sweeps
    study = sweeps.open_study("runs/quickstart")            # a study folder, its optuna.journal, or a storage URL
    study.best_params, study.trials_dataframe(), optuna.importance.get_param_importances(study)

(``optuna.load_study(storage="runs/quickstart/optuna.journal")`` fails: Optuna reads a plain string as an RDB URL;
the journal needs ``JournalStorage(JournalFileBackend(path))``, which is what this does.)
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from resnet_core.errors import ConfigError

from ..spec.study_format import JOURNAL_NAME
from .storage import open_storage, resolve_storage, storage_exists


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
