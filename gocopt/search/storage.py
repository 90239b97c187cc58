"""Where a study lives: in memory, a journal file, SQLite, or a database server such as PostgreSQL.

The storage is the only thing to change to go distributed. An RDB storage gets a heartbeat:
every running trial's worker writes one every ``heartbeat`` seconds, a trial whose worker went
silent for ``3 × heartbeat`` (killed, machine lost) is marked failed by the next worker that
looks, and a copy of it is queued to run again — so a study still ends with exactly the number
of complete trials it was asked for.

Every failure to reach the storage is one :class:`StorageError` naming the URL (password
masked) and how to resume; nothing is written until a search has finished.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import optuna

from gocopt.errors import GocoptError

DEFAULT_HEARTBEAT = 10  # seconds between a running trial's heartbeats; stale after 3 missed
MAX_RETRIES = 3  # a trial whose worker died is re-run at most this many times
T = TypeVar("T")
# The heartbeat, its retry callback and fail_stale_trials are "experimental" in Optuna since 2.8;
# gocopt depends on them on purpose and tests them against a real server: no warning per trial.
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning, module=r"gocopt\.search")
warnings.filterwarnings("ignore", message=r".*heartbeat.*", category=optuna.exceptions.ExperimentalWarning)


class StorageError(GocoptError, ConnectionError):
    """The study's storage cannot be reached or was lost mid-search."""


def shown_url(storage: Any) -> str:
    """The storage as a person may see it: a database URL with its password masked."""
    if not isinstance(storage, str):
        return type(storage).__name__
    if storage.endswith((".log", ".journal")):
        return storage
    try:
        import sqlalchemy

        return sqlalchemy.engine.make_url(storage).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - not a URL: show nothing that could be a secret
        return "<unparseable storage URL>"


def storage_failure(storage: Any, error: BaseException, when: str) -> StorageError:
    detail = str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
    detail = detail.replace(storage, shown_url(storage)) if isinstance(storage, str) else detail
    return StorageError(f"study storage {shown_url(storage)} {when} ({type(error).__name__}: {detail}); check that "
                        "the database server is up and the URL is right, then re-run the same command: the study "
                        "resumes with the trials it has completed, and no schedule was written")


def is_storage_failure(error: BaseException | None) -> bool:
    """A lost or refused database connection (SQLAlchemy's or Optuna's wrapping of it), also when
    it surfaces as another error raised while handling it (Optuna's trial loop does that)."""
    from sqlalchemy.exc import InterfaceError, OperationalError

    seen = 0
    while error is not None and seen < 10:
        if isinstance(error, GocoptError):  # ours, raised on purpose: never re-labelled
            return False
        if isinstance(error, (OperationalError, InterfaceError, optuna.exceptions.StorageInternalError)):
            return True
        error, seen = error.__cause__ or error.__context__, seen + 1
    return False


@contextmanager
def storage_errors(storage: Any, when: str) -> Iterator[None]:
    """Turn a lost database connection inside the block into a :class:`StorageError`."""
    try:
        yield
    except StorageError:
        raise
    except Exception as e:  # noqa: BLE001 - classified just below; everything else propagates unchanged
        if is_storage_failure(e):
            raise storage_failure(storage, e, when) from e
        raise


def get_storage(storage: Any, *, heartbeat: int | None = DEFAULT_HEARTBEAT) -> Any:
    """``None`` (in memory), an Optuna storage object, an RDB URL, or a journal file path.

    Workers that start together race to create an RDB's tables; that race is retried here, so
    any number of processes can be pointed at a fresh database at once. ``heartbeat=None``
    switches the heartbeat off (a single process that never dies mid-trial needs none).
    """
    if storage is None or not isinstance(storage, str):
        return storage
    if storage.endswith((".log", ".journal")):
        from optuna.storages.journal import JournalFileBackend

        return optuna.storages.JournalStorage(JournalFileBackend(storage))
    # SQLite's default 5 s lock timeout is short for several busy workers on one file; a server's
    # pooled connections are pinged before use, so one cut while the leader waits (a restart, an
    # idle timeout) is replaced instead of failing the next read
    sqlite = storage.startswith("sqlite")
    engine_kwargs: dict[str, Any] = {"connect_args": {"timeout": 60}} if sqlite else {"pool_pre_ping": True}
    from sqlalchemy.exc import SQLAlchemyError

    def connect() -> Any:
        return optuna.storages.RDBStorage(storage, engine_kwargs=engine_kwargs, **_heartbeat_options(heartbeat))

    rdb = _retrying(connect, (SQLAlchemyError,), storage)
    if sqlite:
        _serialize_sqlite_transactions(rdb.engine)
    return rdb


def _heartbeat_options(heartbeat: int | None) -> dict[str, Any]:
    if heartbeat is None:
        return {}
    retry = getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None)
    if retry is not None:  # Optuna >= 5
        return {"heartbeat_interval": heartbeat, "grace_period": 3 * heartbeat,
                "heartbeat_stale_trial_callback": retry(max_retry=MAX_RETRIES)}
    return {"heartbeat_interval": heartbeat, "grace_period": 3 * heartbeat,
            "failed_trial_callback": optuna.storages.RetryFailedTrialCallback(max_retry=MAX_RETRIES)}


def _retrying(connect: Callable[[], T], retry_on: tuple[type[BaseException], ...], storage: str) -> T:
    """``connect()``, retried while another worker creates the tables ("already exists", locked);
    a server that does not answer at all is reported at once."""
    for attempt in range(10):
        try:
            return connect()
        except retry_on as e:
            if is_storage_failure(e) and not _is_creation_race(e):
                raise storage_failure(storage, e, "cannot be reached") from e
            if attempt == 9:
                raise storage_failure(storage, e, "could not be set up") from e
            time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")


def _is_creation_race(error: BaseException) -> bool:
    text = str(error).lower()
    return any(s in text for s in ("already exists", "unique", "duplicate", "locked"))


def _serialize_sqlite_transactions(engine) -> None:
    """Make every SQLite transaction take the write lock when it begins (``BEGIN IMMEDIATE``).

    pysqlite begins transactions lazily, so two workers can both read a trial as WAITING and both
    claim it; Optuna's claim is a read-then-write that must not interleave.
    """
    from sqlalchemy import event

    @event.listens_for(engine, "connect")
    def _no_implicit_begin(dbapi_connection, record):  # noqa: ARG001
        dbapi_connection.isolation_level = None

    @event.listens_for(engine, "begin")
    def _begin_immediate(connection):
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    engine.dispose()  # connections made before the listeners existed are dropped


__all__ = ["DEFAULT_HEARTBEAT", "StorageError", "get_storage", "shown_url", "storage_errors"]
