"""Every use of Optuna's private API, in one module; ``tests/test_optuna_adapter.py`` pins what each relies on, so
an Optuna upgrade that changes one fails that test rather than a sweep.

Everything else in ``sweeps`` uses Optuna's public API (``create_study``, ``study.add_trial`` / ``tell``,
``BaseStorage.get_all_trials`` / ``set_trial_state_values`` / ``set_trial_user_attr``, ``RDBStorage(heartbeat_interval,
grace_period, failed_trial_callback)``, ``optuna.storages.fail_stale_trials``). What has no public equivalent:
- a trial's storage id (``Trial`` / ``FrozenTrial``: only ``number`` is public; number → id is a query per trial);
- the RDB heartbeat: recording one outside ``study.optimize`` and listing the stale trials without failing them
  (``fail_stale_trials`` fails them at once; a sweep first decides for itself, see ``liveness``);
- the cached RDB wrapper ``create_study`` puts around an ``RDBStorage`` (``get_storage``, "internal usage"), and the
  SQLAlchemy engine behind it (for the PostgreSQL advisory lock);
- ``Study._get_trials``, which Optuna's samplers call on the study they are given (``StudyView`` must answer it);
- the journal's record codes (``JournalOperation``), which ``journal`` reads to salvage a damaged journal.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

# Optuna 4.0-5.1's JournalOperation codes: used only where an Optuna has no JournalOperation to read them from
JOURNAL_OPS_FALLBACK = {"CREATE_STUDY": 0, "DELETE_STUDY": 1, "SET_STUDY_USER_ATTR": 2, "SET_STUDY_SYSTEM_ATTR": 3,
                        "CREATE_TRIAL": 4, "SET_TRIAL_PARAM": 5, "SET_TRIAL_STATE_VALUES": 6,
                        "SET_TRIAL_INTERMEDIATE_VALUE": 7, "SET_TRIAL_USER_ATTR": 8, "SET_TRIAL_SYSTEM_ATTR": 9,
                        "DISCARD_TRIALS": 10}


def trial_id(trial: Any) -> int:
    """The storage id of a ``Trial`` or ``FrozenTrial`` (what ``BaseStorage``'s trial methods take)."""
    return trial._trial_id


def cached_rdb(rdb: Any) -> Any:
    """The cached wrapper ``optuna.create_study`` would put around ``rdb``: one object for the study and us."""
    import optuna

    return optuna.storages.get_storage(rdb)


def rdb_engine(storage: Any) -> Any | None:
    """The SQLAlchemy engine of an RDB storage (cached or not), or None for any other storage."""
    return getattr(getattr(storage, "_backend", storage), "engine", None)


def heartbeat_enabled(storage: Any) -> bool:
    """Whether ``storage`` keeps Optuna heartbeats (an RDB storage opened with ``heartbeat_interval``)."""
    from optuna.storages._heartbeat import is_heartbeat_enabled

    return bool(is_heartbeat_enabled(storage))


def record_heartbeat(storage: Any, tid: int) -> None:
    """Record trial ``tid``'s heartbeat (what ``study.optimize``'s heartbeat thread does); a no-op on a storage
    without heartbeats (the journal)."""
    if hasattr(storage, "record_heartbeat"):
        storage.record_heartbeat(tid)


def stale_trial_ids(study: Any, storage: Any) -> set[int] | None:
    """Ids of RUNNING trials whose heartbeat is older than the grace period, without failing them; None when the
    storage keeps no heartbeats (the journal), an empty set if Optuna cannot say."""
    if not heartbeat_enabled(storage):
        return None
    getter = getattr(storage, "_get_stale_trial_ids", None)
    if getter is None:
        return set()
    try:
        return set(getter(storage.get_study_id_from_name(study.study_name)))
    except Exception:  # noqa: BLE001
        return set()


def journal_op_codes() -> dict[str, int]:
    """Optuna's journal record codes by name (its ``JournalOperation``: the ``op_code`` of each journal line), read
    from the installed Optuna; ``JOURNAL_OPS_FALLBACK`` only where it has none to read."""
    try:
        from optuna.storages.journal._storage import JournalOperation
    except ImportError:
        return dict(JOURNAL_OPS_FALLBACK)
    return {op.name: int(op.value) for op in JournalOperation}


class StudyView:
    """A Study look-alike whose trial lists keep only the trials ``keep`` accepts; everything else is the study's.
    Samplers read trials through ``get_trials`` and the private ``_get_trials``, so both are filtered."""

    def __init__(self, study: Any, keep: Callable[[Any], bool]) -> None:
        self._study, self._keep_trial = study, keep

    def __getattr__(self, name: str) -> Any:
        return getattr(self._study, name)

    def _keep(self, trials: list[Any]) -> list[Any]:
        return [t for t in trials if self._keep_trial(t)]

    def get_trials(self, deepcopy: bool = True, states: Sequence[Any] | None = None) -> list[Any]:
        return self._keep(self._study.get_trials(deepcopy=deepcopy, states=states))

    def _get_trials(self, deepcopy: bool = True, states: Sequence[Any] | None = None,
                    use_cache: bool = False) -> list[Any]:
        return self._keep(self._study._get_trials(deepcopy=deepcopy, states=states, use_cache=use_cache))

    @property
    def trials(self) -> list[Any]:
        return self.get_trials()
