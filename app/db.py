"""Database access: engines for the primary and its replicas, one routed Session, transactions.

* ``Session()`` is the request's (or job's) session; it is removed when the app context ends.
* Everything goes to the primary unless it runs inside :func:`read_only`; there, reads go to a
  healthy replica that has replayed at least what this client has already seen.
* Read-your-writes follows GitLab's load balancer: after a request commits on the primary, the
  response carries the primary's WAL position (``X-Lapak-LSN`` header and ``lapak_lsn`` cookie);
  the client's next reads only use a replica whose ``pg_last_wal_replay_lsn()`` is at least that.
* A replica that cannot be reached, or fails during a read, is skipped for a while and the read
  is run again on the primary; the client never sees the replica's error.
* With no replicas (and on SQLite) the same code simply always uses the primary.
"""

from __future__ import annotations

import functools
import logging
import os
import random
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, TypeVar

from flask import Flask, current_app, g, has_request_context, request
from flask.wrappers import Response
from sqlalchemy import JSON, DateTime, Engine, MetaData, Numeric, create_engine, event, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.orm import DeclarativeBase, scoped_session, sessionmaker
from sqlalchemy.orm import Session as OrmSession
from sqlalchemy.types import TypeDecorator

from app import clock
from app.config import Settings

log = logging.getLogger(__name__)

LSN_HEADER = "X-Lapak-LSN"
LSN_COOKIE = "lapak_lsn"
_LSN_PATTERN = re.compile(r"^[0-9A-Fa-f]{1,8}/[0-9A-Fa-f]{1,8}$")

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    """The current time, timezone-aware UTC (see :mod:`app.clock`)."""
    return clock.now()


#: JSON that is JSONB on PostgreSQL (indexable, compact) and plain JSON text on SQLite.
JsonDocument = JSON().with_variant(JSONB(), "postgresql")


class UTCDateTime(TypeDecorator[datetime]):
    """``timestamp with time zone``; always hands back aware UTC datetimes, SQLite included."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column; use app.db.utcnow()")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    """Declarative base of every model: constraint names follow NAMING_CONVENTION."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime(), Decimal: Numeric(28, 12)}


class ReadOnlyViolation(RuntimeError):
    """Code inside a read_only() scope tried to write: a programming error."""


def parse_lsn(value: str | None) -> int | None:
    """``'16/B374D848'`` -> an integer that orders like the WAL position; None if malformed."""
    if not value or not _LSN_PATTERN.match(value):
        return None
    high, low = value.split("/")
    return (int(high, 16) << 32) | int(low, 16)


def format_lsn(position: int) -> str:
    return f"{position >> 32:X}/{position & 0xFFFFFFFF:X}"


@dataclass
class Replica:
    """One read replica and when it may be tried again after a failure."""

    name: str
    engine: Engine
    down_until: float = 0.0
    last_error: str | None = None


@dataclass
class Database:
    """The engines of one application: a primary and zero or more replicas."""

    primary: Engine
    replicas: list[Replica] = field(default_factory=list)
    retry_seconds: float = 10.0
    _pid: int = field(default_factory=os.getpid)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def from_settings(cls, settings: Settings) -> Database:
        primary = _create_engine(settings.database_url, application_name="lapak")
        replicas = [
            Replica(
                name=_safe_name(url, index),
                engine=_create_engine(
                    url,
                    application_name="lapak-replica",
                    connect_timeout=settings.replica_connect_timeout,
                ),
            )
            for index, url in enumerate(settings.replica_urls)
        ]
        return cls(primary, replicas, settings.replica_retry_seconds)

    @property
    def is_postgresql(self) -> bool:
        return self.primary.dialect.name == "postgresql"

    def choose_replica(self, min_lsn: int | None) -> Replica | None:
        """A replica that answers and has replayed ``min_lsn``; None means: use the primary."""
        now = time.monotonic()
        candidates = [r for r in self.replicas if r.down_until <= now]
        random.shuffle(candidates)  # spread reads; not security relevant
        for replica in candidates:
            try:
                with replica.engine.connect() as connection:
                    replayed = connection.execute(
                        text("SELECT pg_last_wal_replay_lsn()::text")
                    ).scalar()
            except DBAPIError as error:
                self.mark_down(replica, error)
                continue
            position = parse_lsn(replayed)
            if position is None:
                # Not in recovery: a promoted or misconfigured server is not a replica of ours.
                self.mark_down(
                    replica, RuntimeError("not in recovery (pg_last_wal_replay_lsn is null)")
                )
                continue
            if min_lsn is not None and position < min_lsn:
                log.debug(
                    "replica %s is behind the client (%s < %s)",
                    replica.name,
                    format_lsn(position),
                    format_lsn(min_lsn),
                )
                continue
            return replica
        return None

    def mark_down(self, replica: Replica, error: BaseException) -> None:
        replica.down_until = time.monotonic() + self.retry_seconds
        replica.last_error = _one_line(error)
        log.warning(
            "replica %s skipped for %.0fs: %s", replica.name, self.retry_seconds, replica.last_error
        )

    def primary_lsn(self) -> int | None:
        """The primary's current WAL insert position (None on SQLite)."""
        if not self.is_postgresql:
            return None
        with self.primary.connect() as connection:
            return parse_lsn(
                connection.execute(text("SELECT pg_current_wal_insert_lsn()::text")).scalar()
            )

    def check(self) -> dict[str, dict[str, Any]]:
        """Health of every database: ``{"primary": {"ok": True, ...}, "replica-0": {...}}``."""
        results = {"primary": _probe(self.primary, "SELECT 1")}
        for replica in self.replicas:
            outcome = _probe(replica.engine, "SELECT pg_is_in_recovery()")
            if outcome["ok"] and outcome.pop("value") is not True:
                outcome = {"ok": False, "error": "not in recovery: this is not a replica"}
            outcome.pop("value", None)
            results[replica.name] = outcome
        results["primary"].pop("value", None)
        return results

    def after_fork(self) -> None:
        """Drop pooled connections inherited from a parent process (RQ forks a work horse)."""
        if os.getpid() != self._pid:
            self._pid = os.getpid()
            for engine in self.engines():
                engine.dispose(close=False)

    def engines(self) -> list[Engine]:
        return [self.primary, *(r.engine for r in self.replicas)]

    def dispose(self) -> None:
        for engine in self.engines():
            engine.dispose()


def _create_engine(url: str, application_name: str, connect_timeout: int = 5) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            os.makedirs(os.path.dirname(os.path.abspath(parsed.database)), exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        # pysqlite's own transaction handling breaks SAVEPOINT; let SQLAlchemy emit BEGIN.
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    return create_engine(
        url,
        pool_pre_ping=True,
        pool_size=5,
        max_overflow=10,
        connect_args={"connect_timeout": connect_timeout, "application_name": application_name},
    )


def _sqlite_begin(connection: Any) -> None:
    # A write transaction takes SQLite's write lock up front: it then waits for another writer
    # (the busy timeout) instead of failing with "database is locked" when it reads first and
    # another connection commits before its first write (WAL cannot upgrade a stale snapshot).
    immediate = connection.get_execution_options().get("lapak_write", False)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.close()


def _probe(engine: Engine, sql: str) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        with engine.connect() as connection:
            value = connection.execute(text(sql)).scalar()
    except DBAPIError as error:
        return {"ok": False, "error": _one_line(error)}
    return {
        "ok": True,
        "latency_ms": round((time.perf_counter() - started) * 1000, 2),
        "value": value,
    }


def _one_line(error: BaseException) -> str:
    """The first line of a driver error, without SQL or parameters."""
    original = getattr(error, "orig", None) or error
    return (str(original).strip().splitlines() or [type(original).__name__])[0][:300]


def _safe_name(url: str, index: int) -> str:
    return f"replica-{index}"


# --- the session ---------------------------------------------------------------------------


def get_database() -> Database:
    return current_app.extensions["lapak.db"]


class RoutingSession(OrmSession):
    """Sends a statement to the primary, or to the chosen replica inside :func:`read_only`."""

    def get_bind(self, mapper: Any = None, clause: Any = None, **kwargs: Any) -> Engine:
        database = get_database()
        replica = self.info.get("replica")
        if replica is not None and self.info.get("read_only") and not self._flushing:
            return replica.engine
        return database.primary


Session = scoped_session(sessionmaker(class_=RoutingSession, expire_on_commit=False))


@event.listens_for(RoutingSession, "after_flush")
def _remember_flush(session: OrmSession, _context: Any) -> None:
    session.info["primary_wrote"] = True


@event.listens_for(RoutingSession, "do_orm_execute")
def _remember_dml(state: Any) -> None:
    if state.is_insert or state.is_update or state.is_delete:
        state.session.info["primary_wrote"] = True


@event.listens_for(RoutingSession, "before_flush")
def _refuse_writes_when_read_only(session: OrmSession, _context: Any, _instances: Any) -> None:
    if session.info.get("read_only") and (session.new or session.dirty or session.deleted):
        raise ReadOnlyViolation("a write was attempted inside read_only(); use transaction()")


@event.listens_for(RoutingSession, "after_commit")
def _after_commit(session: OrmSession) -> None:
    if session.info.get("primary_wrote"):
        # Kept until the session is removed: later reads of this request or job stay on the
        # primary, which has the write, instead of a replica that may not have it yet.
        session.info["committed_writes"] = True
        if has_request_context():
            g.lapak_wrote = True
    callbacks = session.info.pop("after_commit", [])
    for callback in callbacks:
        try:
            callback()
        except Exception:
            # The data is committed; a failed follow-up (e.g. Redis down) must not undo that
            # in the caller's eyes. Each callback owns its own recovery (the outbox sweeps).
            log.exception("after-commit callback %r failed", callback)


@event.listens_for(RoutingSession, "after_rollback")
def _after_rollback(session: OrmSession) -> None:
    session.info.pop("after_commit", None)


@event.listens_for(RoutingSession, "after_transaction_end")
def _forget_writes(session: OrmSession, transaction: Any) -> None:
    if transaction.parent is None:
        session.info.pop("primary_wrote", None)


def after_commit(callback: Callable[[], None]) -> None:
    """Run ``callback`` once the current transaction commits; drop it if it rolls back."""
    Session().info.setdefault("after_commit", []).append(callback)


@contextmanager
def transaction() -> Iterator[OrmSession]:
    """Run the block in one transaction on the primary: commit at the end, roll back on error.

    Nested calls join the outer transaction; only the outermost one commits.
    """
    session = Session()
    if session.info.get("read_only"):
        raise ReadOnlyViolation("transaction() inside read_only(): writes go to the primary")
    depth = session.info.get("transaction_depth", 0)
    if depth == 0 and get_database().primary.dialect.name == "sqlite":
        if session.in_transaction() and not (session.new or session.dirty or session.deleted):
            session.commit()  # end a read snapshot that could not become a write (see above)
        if not session.in_transaction():
            session.connection(execution_options={"lapak_write": True})
    session.info["transaction_depth"] = depth + 1
    session.info["primary_wrote"] = True  # a write scope, even before its first flush
    try:
        yield session
        if depth == 0:
            session.commit()
    except BaseException:
        if depth == 0:
            session.info.pop("after_commit", None)  # rollback() fires no event if nothing ran
            session.rollback()
        raise
    finally:
        session.info["transaction_depth"] = depth


F = TypeVar("F", bound=Callable[..., Any])
_REPLICA_FAILURES = (OperationalError, InterfaceError)


class read_only:
    """Route the reads of a block (or a view) to a healthy, caught-up replica.

    As a decorator it also survives a replica failing mid-read: the replica is skipped and the
    whole function runs again on the primary, which is safe because nothing in it writes. Put it
    above ``@blp.response`` so serialisation (lazy loads) happens inside the scope too.
    """

    def __init__(self, use_replica: bool = True) -> None:
        self.use_replica = use_replica
        self.replica: Replica | None = None
        self._outer = False

    def __enter__(self) -> OrmSession:
        session = Session()
        self._outer = not session.info.get("read_only")
        if self._outer:
            database = get_database()
            # Read-your-writes inside one unit of work: after a write, stay on the primary.
            if (
                self.use_replica
                and database.replicas
                and not session.info.get("primary_wrote")
                and not session.info.get("committed_writes")
                and not session.info.get("transaction_depth")
            ):
                self.replica = database.choose_replica(client_min_lsn())
            session.info["read_only"] = True
            session.info["replica"] = self.replica
        return session

    def __exit__(self, *exc_info: object) -> None:
        if self._outer:
            session = Session()
            session.info["read_only"] = False
            session.info["replica"] = None

    def __call__(self, func: F) -> F:
        @functools.wraps(func)
        def run(*args: Any, **kwargs: Any) -> Any:
            scope = read_only()
            try:
                with scope:
                    return func(*args, **kwargs)
            except _REPLICA_FAILURES as error:
                if scope.replica is None:
                    raise
                get_database().mark_down(scope.replica, error)
                Session().rollback()
            with read_only(use_replica=False):
                return func(*args, **kwargs)

        return run  # type: ignore[return-value]


def client_min_lsn() -> int | None:
    """The WAL position this client has already seen (from its header or cookie), if any."""
    if not has_request_context():
        return None
    return g.get("lapak_min_lsn")


def init_app(app: Flask, settings: Settings) -> Database:
    """Create the engines, and wire session cleanup and the read-your-writes LSN into requests."""
    database = Database.from_settings(settings)
    app.extensions["lapak.db"] = database

    @app.before_request
    def _read_client_lsn() -> None:
        positions = [
            parse_lsn(request.headers.get(LSN_HEADER)),
            parse_lsn(request.cookies.get(LSN_COOKIE)),
        ]
        known = [p for p in positions if p is not None]
        g.lapak_min_lsn = max(known) if known else None

    @app.after_request
    def _send_primary_lsn(response: Response) -> Response:
        if database.replicas and g.get("lapak_wrote"):
            try:
                position = database.primary_lsn()
            except DBAPIError:
                log.warning("could not read the primary's WAL position after a write")
                position = None
            if position is not None:
                position = max(position, g.get("lapak_min_lsn") or 0)
                response.headers[LSN_HEADER] = format_lsn(position)
                response.set_cookie(
                    LSN_COOKIE, format_lsn(position), max_age=3600, httponly=True, samesite="Lax"
                )
        return response

    @app.teardown_appcontext
    def _remove_session(_error: BaseException | None) -> None:
        Session.remove()

    return database
