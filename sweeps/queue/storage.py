"""Where a study lives, and the locks that keep (cell, seed) → trial exactly-once.

- Default (one machine, no server): ``<root>/<study>/optuna.journal``, an Optuna ``JournalStorage`` over a
  ``JournalFileBackend`` (its own file lock makes appends safe across processes). Trial run folders go to
  ``<root>/<study>/trials/``.
- ``--storage postgresql://user:pass@host/db`` (several machines) or ``sqlite:///file.db``: an ``RDBStorage`` with
  heartbeats; run folders still under ``<root>/<study>/trials/`` (a shared filesystem when several machines run).
- ``--storage some/path.journal``: a journal file elsewhere.

Locks: every change to the *set* of trials (create the study, enqueue, fail a dead trial and enqueue its
replacement) happens under one per-study lock: ``fcntl.flock`` on a file beside the journal / SQLite file, and a
PostgreSQL advisory lock (held by one connection; released by the server if the holder dies) for PostgreSQL.
Taking waiting trials happens under a second per-study lock (``claim_lock``). Exactly-once does not need it on the
journal (the log's order decides: the first RUNNING record wins) nor on PostgreSQL (``SELECT … FOR UPDATE``), only on
SQLite, which reads outside a transaction so that two processes can both see a trial WAITING; everywhere it keeps
fused groups whole (``packing.claim_group``).
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from resnet_core.errors import ConfigError
from resnet_core.redact import connect_url, scrub

from ..spec.study_format import journal_path, mask_url
from .journal import check_is_journal, check_journal, journal_backend
from .optuna_adapter import cached_rdb, rdb_engine

HEARTBEAT_INTERVAL = int(os.environ.get("RESNET_ABLATE_HEARTBEAT_S", "10"))     # seconds between heartbeats
GRACE_PERIOD = int(os.environ.get("RESNET_ABLATE_GRACE_S", "60"))               # no heartbeat this long: dead


@dataclass(frozen=True)
class StorageRef:
    """A storage location as the user wrote it (``display``) and how to open it."""
    kind: str                      # journal | postgresql | sqlite | rdb
    url: str                       # journal: the file path; rdb: the SQLAlchemy URL (with a driver that exists)
    display: str                   # what to print (passwords masked)

    @property
    def is_rdb(self) -> bool:
        return self.kind != "journal"

    def dashboard_arg(self) -> str:
        """The argument for ``optuna-dashboard`` (an RDB URL with its password masked: put yours back)."""
        return self.url if self.kind == "journal" else self.display


def resolve_storage(storage: str | None, root: str | Path, study: str) -> StorageRef:
    """The storage for ``study``: ``storage`` (a URL or a journal path) or the default journal under ``root``."""
    if not storage:
        path = journal_path(root, study)
        check_is_journal(path)
        return StorageRef("journal", str(path), str(path))
    if "://" not in storage:
        if storage.endswith((".db", ".sqlite", ".sqlite3")):
            raise ConfigError(f"--storage {storage!r}: write an SQLite database as a URL, sqlite:///{storage}")
        check_is_journal(storage)
        return StorageRef("journal", str(Path(storage)), storage)
    scheme = storage.split("://", 1)[0].lower()
    if scheme in ("postgresql", "postgres") or scheme.startswith("postgresql+"):
        return StorageRef("postgresql", _pg_driver_url(connect_url(storage)), mask_url(storage))
    if scheme.startswith("sqlite"):
        if sqlite_path(storage) is None or "mode=memory" in storage:
            raise ConfigError(f"--storage {mask_url(storage)!r}: an in-memory SQLite database lives and dies with one "
                              f"process, so the workers and the next launch would not see the study; name a file, "
                              f"e.g. sqlite:///runs/{study or 'study'}.db, or leave --storage out for a journal")
        return StorageRef("sqlite", storage, mask_url(storage))
    if scheme.startswith(("mysql", "mariadb", "oracle", "mssql")):
        return StorageRef("rdb", connect_url(storage), mask_url(storage))
    raise ConfigError(f"--storage {mask_url(storage)!r}: unknown scheme {scheme!r}; use postgresql://…, sqlite:///… "
                      f"or a path to a .journal file")


def _pg_driver_url(url: str) -> str:
    """SQLAlchemy 2.1 reads a bare postgresql:// as psycopg 3; use psycopg2 when only it is installed."""
    scheme, rest = url.split("://", 1)
    if "+" in scheme:
        return url
    try:
        import psycopg  # noqa: F401
        return "postgresql://" + rest
    except ImportError:
        try:
            import psycopg2  # noqa: F401
        except ImportError:
            raise ConfigError("--storage postgresql://… needs a PostgreSQL driver: pip install psycopg2-binary "
                              "(or the project's [postgres] extra)") from None
        return "postgresql+psycopg2://" + rest


def sqlite_path(url: str) -> Path | None:
    rest = url.split("://", 1)[1]
    if rest.startswith("/"):
        rest = rest[1:]
    return None if rest in ("", ":memory:") else Path(rest)


def storage_exists(ref: StorageRef) -> bool:
    """Whether there is anything to read (so read-only commands never create a file or tables): a journal file, an
    SQLite file, Optuna's tables in a database. A database that cannot be reached is ``storage_error``."""
    if ref.kind == "journal":
        return Path(ref.url).is_file()
    if ref.kind == "sqlite":
        p = sqlite_path(ref.url)
        if p is None or not p.is_file():
            return False
    return _has_tables(ref)


def _has_tables(ref: StorageRef) -> bool:
    import sqlalchemy

    try:
        engine = sqlalchemy.create_engine(ref.url, poolclass=sqlalchemy.pool.NullPool)
        try:
            return sqlalchemy.inspect(engine).has_table("studies")
        finally:
            engine.dispose()
    except Exception as e:  # noqa: BLE001 - a connection failure is one line for the user
        raise storage_error(ref, e) from None


def storage_error(ref: StorageRef, e: BaseException) -> ConfigError:
    """The one line for a storage that cannot be opened: its masked URL and the driver's own first line (the root of
    the exception chain: "connection refused", not Optuna's wrapper), with the password scrubbed."""
    while e.__cause__ is not None:
        e = e.__cause__
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return ConfigError(f"cannot open storage {ref.display}: {scrub(first, [ref.url])[:200]}")


def open_storage(ref: StorageRef, *, failed_trial_callback: Callable[..., None] | None = None,
                 read_only: bool = False):
    """An Optuna storage for ``ref``. RDB storages get heartbeats (``heartbeat_interval``, ``grace_period``) and
    ``failed_trial_callback`` (used when a stale trial is failed: it enqueues a resuming copy)."""
    import optuna

    if ref.kind == "journal":
        from optuna.storages.journal import JournalStorage

        if not read_only:
            Path(ref.url).parent.mkdir(parents=True, exist_ok=True)
        if read_only:   # a damaged journal: the records it still proves, read from a temporary copy
            return JournalStorage(journal_backend(check_journal(ref.url)))
        with init_lock(ref):
            check_journal(ref.url, repair=True)   # a torn tail cut off, a damaged line salvaged (backup kept)
            return JournalStorage(journal_backend(ref.url))
    kwargs: dict[str, Any] = {}
    if not read_only:
        kwargs.update(heartbeat_interval=HEARTBEAT_INTERVAL, grace_period=GRACE_PERIOD,
                      failed_trial_callback=failed_trial_callback)
    else:
        kwargs["skip_table_creation"] = True
    if ref.kind in ("postgresql", "rdb"):
        kwargs["engine_kwargs"] = {"pool_pre_ping": True}
    if ref.kind == "sqlite" and not read_only:
        p = sqlite_path(ref.url)
        if p is not None:
            p.parent.mkdir(parents=True, exist_ok=True)
    try:
        with warnings.catch_warnings(), (contextlib.nullcontext() if read_only else init_lock(ref)):
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            rdb = optuna.storages.RDBStorage(ref.url, **kwargs)  # creates the tables: one process at a time
        return cached_rdb(rdb)  # the cached wrapper create_study would make; one object for all
    except Exception as e:  # noqa: BLE001 - a connection failure is one line for the user
        raise storage_error(ref, e) from None


# -- locks ------------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def _flock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def _lock_file(ref: StorageRef, study: str, what: str) -> Path | None:
    if ref.kind == "journal":
        return Path(f"{ref.url}.{what}.lock")
    if ref.kind == "sqlite":
        p = sqlite_path(ref.url)
        return Path(f"{p}.{study}.{what}.lock") if p is not None else None
    return None


@contextlib.contextmanager
def init_lock(ref: StorageRef) -> Iterator[None]:
    """Around creating a storage (tables, alembic stamp, journal file), so launchers started at the same moment
    (a cluster array job) never race: a file lock beside a journal or SQLite file, an advisory lock on PostgreSQL."""
    if ref.kind == "journal":
        path: Path | None = Path(f"{ref.url}.init.lock")
    elif ref.kind == "sqlite":
        p = sqlite_path(ref.url)
        path = Path(f"{p}.init.lock") if p is not None else None
    else:
        path = None
    if path is not None:
        with _flock(path):
            yield
    elif ref.kind == "postgresql":
        with _pg_advisory_lock(ref, " storage init"):  # a name no study can have
            yield
    else:
        yield


def _per_study_lock(ref: StorageRef, study: str, what: str, storage: Any = None) -> Any:
    """The ``what`` lock of ``study`` (a context manager): a file lock beside a journal or SQLite file, an advisory
    lock on PostgreSQL (keyed by the study's name, then ``what`` unless it is the study lock); None for a storage
    that has neither."""
    path = _lock_file(ref, study, what)
    if path is not None:
        return _flock(path)
    if ref.kind == "postgresql":
        return _pg_advisory_lock(ref, study if what == "sweep" else f"{study} {what}", storage)
    return None


@contextlib.contextmanager
def study_lock(ref: StorageRef, study: str, storage: Any = None) -> Iterator[None]:
    """Serialise changes to the set of trials of ``study`` (create, enqueue, requeue) across processes/machines."""
    lock = _per_study_lock(ref, study, "sweep", storage)
    if lock is None:
        warnings.warn(f"no cross-process lock for {ref.kind} storage; run one `sweep` launcher at a time")
        lock = contextlib.nullcontext()
    with lock:
        yield


def claim_lock(ref: StorageRef, study: str, storage: Any = None) -> Any:
    """Around taking waiting trials (a context manager): a file lock beside a journal or SQLite file, an advisory
    lock on PostgreSQL (its key differs from the study lock's: the two never block each other). Exactly-once needs
    it only on SQLite; on every storage it makes claims one at a time, so that a worker packing a fused run sees
    every trial still waiting and its group is as full as they allow (racing claimers can each end with part of one
    cell, see ``packing.claim_group``)."""
    return _per_study_lock(ref, study, "claim", storage) or contextlib.nullcontext()


@contextlib.contextmanager
def _pg_advisory_lock(ref: StorageRef, study: str, storage: Any = None) -> Iterator[None]:
    import sqlalchemy

    key = int(hashlib.sha1(f"resnet-ablate:{study}".encode()).hexdigest()[:15], 16)  # fits a signed bigint
    engine = rdb_engine(storage)
    own = engine is None
    if own:
        engine = sqlalchemy.create_engine(ref.url, poolclass=sqlalchemy.pool.NullPool)
    try:
        with engine.connect() as conn:
            conn.execute(sqlalchemy.text("SELECT pg_advisory_lock(:k)"), {"k": key})
            conn.commit()
            try:
                yield
            finally:
                conn.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                conn.commit()
    finally:
        if own:
            engine.dispose()
