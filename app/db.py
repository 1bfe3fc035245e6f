"""Database access: engines for the primary and its replicas, one routed Session, transactions.

* ``Session()`` is the request's (or job's) session; it is removed when the app context ends.
* Everything goes to the primary unless it runs inside :func:`read_only`; there, reads go to a
  healthy replica that has replayed at least what this client has already seen.
* Read-your-writes follows GitLab's load balancer: after a request commits on the primary, the
  response carries the primary's WAL position (``X-Lapak-LSN`` header and ``lapak_lsn`` cookie);
  the client's next reads only use a replica whose ``pg_last_wal_replay_lsn()`` is at least that.
  The position is read in the same round trip as the COMMIT, on the same backend, just after it
  (``COMMIT; SELECT pg_current_wal_insert_lsn()``): it is past the commit record, and costs
  neither a second connection nor a transaction of its own.
* A replica that cannot be reached, is not in recovery (promoted), fails during a read or does
  not answer within ``replica_read_timeout`` is skipped for a while and the read is run again on
  the primary; the client never sees the replica's error.
* A primary that cannot be reached answers 503 problem+json with ``Retry-After`` on every
  endpoint; a connection that died under a request is discarded quietly at cleanup.
* With no replicas (and on SQLite) the same code simply always uses the primary.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import random
import re
import select
import sqlite3
import threading
import time
from collections.abc import Callable, Collection, Hashable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, TypeVar

import psycopg
from flask import Flask, current_app, g, has_request_context, request
from flask.wrappers import Response
from sqlalchemy import (
    ARRAY,
    JSON,
    Column,
    Connection,
    DateTime,
    Engine,
    MetaData,
    Numeric,
    bindparam,
    create_engine,
    delete,
    event,
    func,
    insert,
    text,
    update,
)
from sqlalchemy import inspect as sa_inspect
from sqlalchemy import select as select_rows  # the name select is the standard library's here
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, InvalidatePoolError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.orm import (
    DeclarativeBase,
    make_transient,
    make_transient_to_detached,
    scoped_session,
    sessionmaker,
)
from sqlalchemy.orm import Session as OrmSession
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.types import TypeDecorator

from app import clock, errors
from app.config import Settings
from app.log import WarningsEvery

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
    #: Until when the position it last said it had replayed serves reads without asking again.
    trusted_until: float = 0.0
    trusted_replayed: int = 0


@dataclass(frozen=True)
class ReplicaState:
    """What a replica says of itself, read in one round trip."""

    in_recovery: bool
    replayed: int | None
    #: Since the last replayed transaction; grows while the primary has nothing to send.
    seconds_since_replay: float | None


#: Asked before every replica read: plain SQL on the driver's cursor (see :func:`cursor_rows`),
#: where ``%`` starts a placeholder: write ``%%`` for a literal one.
_REPLICA_STATE = (
    "SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn()::text, "
    "extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8"
)


def _replica_reads(engine: Engine) -> dict[str, Any] | None:
    """How a session's reads run on the replica it chose: in autocommit, when the server's
    isolation is READ COMMITTED (PostgreSQL's default; known once the engine has connected).

    There each statement of a transaction takes its own snapshot anyway, so a transaction adds
    nothing to reads but a BEGIN and a ROLLBACK round trip; and a replica's snapshots only move
    forward, past the WAL position it was chosen for. Under a stricter isolation the reads
    keep their transaction (one snapshot for all of them).
    """
    if getattr(engine.dialect, "default_isolation_level", None) == "READ COMMITTED":
        return {"isolation_level": "AUTOCOMMIT"}
    return None


_CURRENT_LSN = text("SELECT pg_current_wal_insert_lsn()::text")
#: One simple-query message: the SELECT runs after the COMMIT, on the same backend.
_COMMIT_AND_LSN = "COMMIT; SELECT pg_current_wal_insert_lsn()::text"
#: The primary's WAL insert position read with this context's last COMMIT (None: not read).
_commit_lsn: ContextVar[int | None] = ContextVar("lapak_commit_lsn", default=None)


def _commit_reading_lsn(connection: Any) -> None:
    """``do_commit`` of the primary's dialect when there are replicas: COMMIT and read the WAL
    insert position after it, in one round trip, for the response's ``X-Lapak-LSN``.

    Read after the COMMIT (a read inside the transaction would come before its commit record),
    on the backend that committed: the position covers the commit, so read-your-writes holds.
    """
    raw = getattr(connection, "driver_connection", connection)
    if raw.info.transaction_status != psycopg.pq.TransactionStatus.INTRANS:
        _commit_lsn.set(None)
        raw.commit()  # nothing begun (a no-op), or failed: psycopg's own handling
        return
    with raw.cursor() as cursor:
        # No parameters, never prepared: the simple protocol, which takes both statements.
        cursor.execute(_COMMIT_AND_LSN, prepare=False)
        cursor.nextset()
        row = cursor.fetchone()
    _commit_lsn.set(parse_lsn(row[0]) if row else None)


def replica_state(connection: Connection) -> ReplicaState:
    ((in_recovery, replayed, seconds),) = cursor_rows(connection, _REPLICA_STATE, {})
    return ReplicaState(bool(in_recovery), parse_lsn(replayed), seconds)


def _begin_reads(replica: Replica, session: OrmSession | None) -> None:
    """The session's reads on ``replica`` in autocommit, as when its state is read there."""
    autocommit = _replica_reads(replica.engine)
    if session is not None and autocommit is not None:
        session.connection(bind_arguments={"bind": replica.engine}, execution_options=autocommit)


def _forget_connections(session: OrmSession | None) -> None:
    """End ``session``'s transaction, begun by :meth:`Database.choose_replica` only: the
    refused replica's connection goes back to its pool (or, if it broke, is discarded)."""
    if session is None:
        return
    try:
        session.rollback()
    except DBAPIError:
        session.invalidate()


@dataclass
class Database:
    """The engines of one application: a primary and zero or more replicas."""

    primary: Engine
    replicas: list[Replica] = field(default_factory=list)
    retry_seconds: float = 10.0
    #: Seconds a replica's state, once read, serves the reads that need no newer position.
    trust_seconds: float = 0.0
    #: Seconds a health check, or the check before a replica read, may take per round trip.
    check_timeout: float = 2.0
    #: An unreachable primary is met by every request: warned about once a minute.
    warnings: WarningsEvery = field(default_factory=lambda: WarningsEvery(log, 60.0))
    _pid: int = field(default_factory=os.getpid)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def from_settings(cls, settings: Settings) -> Database:
        primary = _create_engine(settings.database_url, application_name="lapak")
        if settings.replica_urls and primary.dialect.name == "postgresql":
            # Only replicas need the position (read-your-writes); a lone primary commits plainly.
            primary.dialect.do_commit = _commit_reading_lsn  # type: ignore[method-assign]
        replicas = [
            Replica(
                name=_safe_name(url, index),
                engine=_create_engine(
                    url,
                    application_name="lapak-replica",
                    connect_timeout=settings.replica_connect_timeout,
                    round_trip_timeout=settings.replica_read_timeout,
                ),
            )
            for index, url in enumerate(settings.replica_urls)
        ]
        return cls(
            primary,
            replicas,
            settings.replica_retry_seconds,
            trust_seconds=settings.replica_trust_seconds,
            check_timeout=settings.health_check_timeout,
        )

    @property
    def is_postgresql(self) -> bool:
        return self.primary.dialect.name == "postgresql"

    def choose_replica(
        self, min_lsn: int | None, session: OrmSession | None = None
    ) -> Replica | None:
        """A replica that answers, is in recovery and has replayed ``min_lsn``; None: the primary.

        Asked before a read, or its answer taken again for ``trust_seconds`` by reads that need
        no newer position than it had replayed (the position only grows while it is a
        replica). A replica promoted since (it has left the cluster and will miss every later
        write) is noticed by the first read that asks, whatever WAL position it still reports:
        at once by a read that follows a write (it needs a newer position), within
        ``trust_seconds`` by any other; a read it fails runs again on the primary.

        With ``session`` (one not in a transaction) and reads in autocommit (see
        :func:`_replica_reads`), the state is read on the connection the session's reads then
        use: one checkout and one round trip for the choice, no BEGIN or ROLLBACK. A replica
        refused is rolled back out of the session, its connection back in its pool.
        """
        now = time.monotonic()
        candidates = [r for r in self.replicas if r.down_until <= now]
        random.shuffle(candidates)  # spread reads; not security relevant
        for replica in candidates:
            if now < replica.trusted_until and (
                min_lsn is None or replica.trusted_replayed >= min_lsn
            ):
                try:
                    _begin_reads(replica, session)
                except DBAPIError as error:
                    self.mark_down(replica, error)
                    _forget_connections(session)
                    continue
                return replica
            try:
                with round_trips_within(self.check_timeout):
                    # Only in autocommit: in a transaction the snapshot would be taken before
                    # the replayed position is read, and could miss what the position shows.
                    autocommit = _replica_reads(replica.engine)
                    if session is None or autocommit is None:
                        with replica.engine.connect() as connection:
                            state = replica_state(connection)
                    else:
                        state = replica_state(
                            session.connection(
                                bind_arguments={"bind": replica.engine},
                                execution_options=autocommit,
                            )
                        )
            except DBAPIError as error:
                self.mark_down(replica, error)
                _forget_connections(session)
                continue
            if not state.in_recovery or state.replayed is None:
                self.mark_down(replica, NotAReplica())
                _forget_connections(session)
                continue
            if self.trust_seconds:
                replica.trusted_until = now + self.trust_seconds
                replica.trusted_replayed = state.replayed
            if min_lsn is not None and state.replayed < min_lsn:
                log.debug(
                    "replica %s is behind the client (%s < %s)",
                    replica.name,
                    format_lsn(state.replayed),
                    format_lsn(min_lsn),
                )
                _forget_connections(session)
                continue
            return replica
        return None

    def mark_down(self, replica: Replica, error: BaseException) -> None:
        replica.down_until = time.monotonic() + self.retry_seconds
        replica.trusted_until = 0.0
        replica.last_error = _one_line(error)
        log.warning(
            "replica %s skipped for %.0fs: %s", replica.name, self.retry_seconds, replica.last_error
        )

    def primary_lsn(self) -> int | None:
        """The primary's current WAL insert position (None on SQLite).

        Asked in AUTOCOMMIT: no transaction to roll back at check-in (which would make psycopg
        deallocate the connection's prepared statements too).
        """
        if not self.is_postgresql:
            return None
        with self.primary.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            return parse_lsn(connection.execute(_CURRENT_LSN).scalar())

    def check(self) -> dict[str, dict[str, Any]]:
        """Health of every database: ``{"primary": {"ok": True, ...}, "replica-0": {...}}``.

        Each replica also shows its lag: ``lag_bytes`` of WAL the primary has written that it
        has not replayed, and ``lag_seconds`` since the last transaction it replayed (0 when it
        has replayed everything). Every round trip is bounded by ``check_timeout``.
        """
        with round_trips_within(self.check_timeout):
            primary_sql = "SELECT pg_current_wal_lsn()::text" if self.is_postgresql else "SELECT 1"
            primary, written = self._probe(
                "primary", self.primary, lambda c: c.execute(text(primary_sql)).scalar()
            )
            results = {"primary": primary}
            for replica in self.replicas:
                outcome, state = self._probe(replica.name, replica.engine, replica_state)
                if state is not None and not state.in_recovery:
                    outcome = {"ok": False, "error": str(NotAReplica())}
                elif state is not None:
                    outcome.update(_lag(parse_lsn(written), state))
                results[replica.name] = outcome
        return results

    def _probe(
        self, name: str, engine: Engine, ask: Callable[[Connection], T]
    ) -> tuple[dict[str, Any], T | None]:
        """``({"ok": ..., "latency_ms" or "error": ...}, the answer or None)``.

        The readiness answer needs no login, so a failure says only what kind it is; the
        driver's words (hosts, ports, users) go to the log.
        """
        started = time.perf_counter()
        try:
            with engine.connect() as connection:
                answer = ask(connection)
        except DBAPIError as error:
            self.warnings.warn(f"check:{name}", "%s failed its check: %s", name, _one_line(error))
            return {
                "ok": False,
                "error": "unreachable" if is_unavailable(error) else "failed",
            }, None
        elapsed_ms = round((time.perf_counter() - started) * 1000, 2)
        return {"ok": True, "latency_ms": elapsed_ms}, answer

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


class NotAReplica(RuntimeError):
    def __str__(self) -> str:
        return "not in recovery: promoted, or not a replica"


def _lag(primary_written: int | None, state: ReplicaState) -> dict[str, Any]:
    if primary_written is None or state.replayed is None:
        return {"lag_bytes": None, "lag_seconds": None}
    behind = max(0, primary_written - state.replayed)
    seconds = state.seconds_since_replay
    return {
        "lag_bytes": behind,
        # An idle primary sends nothing to replay, so the time since the last replayed
        # transaction grows though the replica has everything: that is no lag.
        "lag_seconds": 0.0 if behind == 0 or seconds is None else round(max(seconds, 0.0), 3),
    }


# --- bounded round trips -------------------------------------------------------------------

#: A tighter bound for the round trips of the current block (health checks); see below.
_round_trip_limit: ContextVar[float | None] = ContextVar("lapak_round_trip_limit", default=None)


@contextmanager
def round_trips_within(seconds: float) -> Iterator[None]:
    """Bound every database round trip (and connect) in the block to ``seconds``."""
    token = _round_trip_limit.set(seconds)
    try:
        yield
    finally:
        _round_trip_limit.reset(token)


class BoundedConnection(psycopg.Connection):
    """A psycopg connection whose every round trip gives up after ``round_trip_timeout``.

    A hung server (its processes frozen, or cut off by a partition) keeps the socket open and
    never answers: ``statement_timeout`` is enforced by that very server, and on the same host
    its kernel still acknowledges TCP (keepalives, ``tcp_user_timeout``), so only the client can
    give up. psycopg runs every round trip (statement, fetch, commit, rollback, ping) through
    ``wait()``, which takes a timeout; past it the connection is in an unknown state, so it is
    closed, which SQLAlchemy treats as a disconnect: the connection is discarded.
    """

    round_trip_timeout: float | None = None

    def wait(self, gen: Any, *args: Any, **kwargs: Any) -> Any:
        limit = _round_trip_limit.get() or self.round_trip_timeout
        if limit is None or kwargs.get("timeout") is not None:
            return super().wait(gen, *args, **kwargs)
        try:
            return super().wait(gen, *args, **{**kwargs, "timeout": limit})
        except psycopg.errors._WaitTimeout:  # psycopg's own, to be converted by the caller
            self.pgconn.finish()
            raise psycopg.errors.ConnectionTimeout(
                f"no answer from the server within {limit:g}s; connection closed"
            ) from None


def _connect_bounded(
    round_trip_timeout: float | None,
) -> Callable[[Any, Any, list[Any], dict[str, Any]], BoundedConnection]:
    def connect(
        _dialect: Any, _record: Any, cargs: list[Any], cparams: dict[str, Any]
    ) -> BoundedConnection:
        limit = _round_trip_limit.get()
        if limit is not None:  # libpq counts whole seconds, at least 2
            cparams = {**cparams, "connect_timeout": max(2, math.ceil(limit))}
        connection = BoundedConnection.connect(*cargs, **cparams)
        connection.round_trip_timeout = round_trip_timeout
        return connection

    return connect


def _create_engine(
    url: str,
    application_name: str,
    connect_timeout: int = 5,
    round_trip_timeout: float | None = None,
) -> Engine:
    parsed = make_url(url)
    # hide_parameters (both engines): statement parameters (password hashes, vault tokens,
    # personal data) stay out of error messages and SQL logs; the statement is still shown.
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            os.makedirs(os.path.dirname(os.path.abspath(parsed.database)), exist_ok=True)
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 30},
            hide_parameters=True,
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        # pysqlite's own transaction handling breaks SAVEPOINT; let SQLAlchemy emit BEGIN.
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    engine = create_engine(
        url,
        pool_size=5,
        max_overflow=10,
        pool_use_lifo=True,  # the warmest connection first; the spare ones age and get pinged
        hide_parameters=True,
        connect_args={"connect_timeout": connect_timeout, "application_name": application_name},
    )
    event.listen(engine, "do_connect", _connect_bounded(round_trip_timeout))
    event.listen(engine, "checkin", _note_idle_since)
    event.listen(engine, "checkout", _ping_when_in_doubt(engine))
    return engine


#: A pooled connection idle for longer is pinged before use even when its socket is quiet: a
#: firewall or NAT may have dropped it without a word.
PING_AFTER_IDLE_SECONDS = 10.0
_IDLE_SINCE = "lapak_idle_since"


def _note_idle_since(_dbapi_connection: Any, record: Any) -> None:
    record.info[_IDLE_SINCE] = time.monotonic()


def _ping_when_in_doubt(engine: Engine) -> Callable[[Any, Any, Any], None]:
    """SQLAlchemy's ``pool_pre_ping``, for the connections that need it: one round trip on
    every checkout is a tenth of a short request's time.

    A server that ended the session (a restart, ``pg_terminate_backend``, a shutdown) has written
    to the socket of a connection that sits idle between transactions, where nothing else ever
    arrives: a zero-timeout ``poll`` sees it without a round trip. Those, and connections idle
    past :data:`PING_AFTER_IDLE_SECONDS`, are pinged; a failed ping discards every connection
    made before it (as the pre-ping does) and the pool connects anew. The price: a connection
    cut without a word (no FIN: an address moved by a failover) within those seconds fails its
    first statement, a 503 that discards the pool, where the pre-ping would have reconnected.
    """

    def checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.pop(_IDLE_SINCE, None)
        if idle_since is None:
            return  # just connected
        try:
            if time.monotonic() - idle_since < PING_AFTER_IDLE_SECONDS and not _has_input(
                dbapi_connection
            ):
                return
            alive = engine.dialect.do_ping(dbapi_connection)
        except Exception as error:  # whatever the ping raised, this connection is unusable
            raise InvalidatePoolError(f"ping failed: {_one_line(error)}") from error
        if not alive:
            raise InvalidatePoolError("ping failed")

    return checkout


def _has_input(dbapi_connection: Any) -> bool:
    """True when the server wrote to an idle connection (or closed it), or it is closed."""
    if dbapi_connection.closed or dbapi_connection.broken:
        return True
    poller = select.poll()
    poller.register(dbapi_connection.fileno(), select.POLLIN | select.POLLPRI)
    return bool(poller.poll(0))


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


T = TypeVar("T")


def _one_line(error: BaseException) -> str:
    """The first line of a driver error, without SQL or parameters."""
    original = getattr(error, "orig", None) or error
    return (str(original).strip().splitlines() or [type(original).__name__])[0][:300]


def _safe_name(url: str, index: int) -> str:
    return f"replica-{index}"


# --- hot statements ------------------------------------------------------------------------


class DriverStatement:
    """A Core statement compiled once per dialect and set of parameters, then run on the
    connection's DBAPI cursor.

    On the busiest paths SQLAlchemy's per-execution work (the compiled-cache lookup, building
    the parameters, wrapping the result) costs about what the round trip does. This takes the
    path SQLAlchemy itself takes for a column default's statement (``_cursor_execute``): the
    engine's cursor events (statement capture in tests and benchmarks), echo and error
    translation (a driver error is a ``DBAPIError``; a lost connection is invalidated) still
    apply, and so do the dialect's bind processors (:class:`UTCDateTime` refuses a naive
    time; JSON is serialised; a Decimal goes as it is) and, for an INSERT, the Python-side
    defaults of the columns not given. A statement it cannot run as SQLAlchemy would (expanding
    parameters, an UPDATE of a table with ``onupdate``, a default that needs the execution
    context) is refused when first run. Only on PostgreSQL; elsewhere it runs as usual.
    """

    def __init__(self, statement: Any) -> None:
        self.statement = statement
        self._compiled: dict[tuple[str, frozenset[str]], _Compiled] = {}

    def rows(self, connection: Any, params: dict[str, Any]) -> list[Any]:
        """The statement's rows as the driver gives them (no result processing: for ids,
        numbers and text), or an empty list."""
        if connection.dialect.name != "postgresql":
            result = connection.execute(self.statement, params)
            return list(result) if result.returns_rows else []
        compiled = self._compile(connection.dialect, params)
        values = {**compiled.constants, **params} if compiled.constants else dict(params)
        for key, default in compiled.defaults.items():
            values[key] = default()
        for key, process in compiled.processors.items():
            if key in values:
                values[key] = process(values[key])
        return cursor_rows(connection, compiled.sql, values)

    def run_many(self, connection: Any, rows: Sequence[dict[str, Any]]) -> None:
        """Run the statement once per parameter set (each with the same keys) in one driver
        ``executemany`` (psycopg pipelines it: one round trip); no rows are read back."""
        if connection.dialect.name != "postgresql":
            connection.execute(self.statement, list(rows))
            return
        compiled = self._compile(connection.dialect, rows[0], many=True)
        keys = rows[0].keys()
        many = []
        for params in rows:
            if params.keys() != keys:
                raise TypeError("run_many needs the same keys in every parameter set")
            values = {**compiled.constants, **params} if compiled.constants else dict(params)
            for key, default in compiled.defaults.items():
                values[key] = default()
            for key, process in compiled.processors.items():
                if key in values:
                    values[key] = process(values[key])
            many.append(values)
        cursor_executemany(connection, compiled.sql, many)

    def scalar(self, connection: Any, params: dict[str, Any]) -> Any:
        """The first column of the one row the statement returns."""
        (row,) = self.rows(connection, params)
        return row[0]

    def _compile(self, dialect: Any, params: dict[str, Any], many: bool = False) -> _Compiled:
        key = (dialect.name, frozenset(params), many)
        compiled = self._compiled.get(key)
        if compiled is None:
            compiled = self._compiled[key] = self._build(dialect, params, many)
        return compiled

    def _build(self, dialect: Any, params: dict[str, Any], many: bool) -> _Compiled:
        statement = self.statement
        defaults: dict[str, Callable[[], Any]] = {}
        if statement.is_insert:
            for column in statement.table.columns:
                default = _python_default(column)
                if column.key not in params and default is not None:
                    defaults[column.key] = default
        elif statement.is_update and any(c.onupdate is not None for c in statement.table.columns):
            raise _cannot(statement, "a column has an onupdate")
        columns = [*params, *defaults] if statement.is_insert else None
        # For executemany, as SQLAlchemy compiles it: no implicit RETURNING of the new ids.
        built = statement.compile(dialect=dialect, column_keys=columns, for_executemany=many)
        if built.post_compile_params or built.literal_execute_params:
            raise _cannot(statement, "expanding or literal-execute parameters")
        names = set(built.bind_names.values())
        if unknown := set(params) - names:
            raise _cannot(statement, f"parameters it does not take: {sorted(unknown)}")
        # The values the statement carries itself (func.nextval("name")'s argument).
        constants: dict[str, Any] = {}
        processors: dict[str, Callable[[Any], Any]] = {}
        for bind, name in built.bind_names.items():
            if name not in params and name not in defaults:
                if bind.required:
                    raise _cannot(statement, f"no value for {name}")
                constants[name] = bind.effective_value
            elif not bind.required and bind.value is not None:
                raise _cannot(statement, f"{name} is the name of one of its own values")
            # The dialect's own processor: generic Numeric's would send a float.
            processor = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if processor is not None:
                processors[name] = processor
        return _Compiled(str(built), processors, defaults, constants)


def _cannot(statement: Any, why: str) -> TypeError:
    return TypeError(f"DriverStatement cannot run {type(statement).__name__} faithfully: {why}")


def cursor_rows(connection: Any, sql: str, params: dict[str, Any]) -> list[Any]:
    """Run ``sql`` (the driver's placeholders) on the connection's own DBAPI cursor, as
    SQLAlchemy runs a column default's statement: cursor events, echo and error translation
    (a ``DBAPIError``; a lost connection invalidated) apply. The rows as the driver gives them,
    or an empty list."""
    try:
        cursor = connection.connection.cursor()
    except Exception as error:  # a closed connection: the driver's error, translated
        connection._handle_dbapi_exception(error, sql, params, None, None)
    try:
        connection._cursor_execute(cursor, sql, params)
        try:
            return cursor.fetchall() if cursor.description else []
        except Exception as error:  # loading a value, or the connection lost meanwhile
            connection._handle_dbapi_exception(error, sql, params, cursor, None)
    finally:
        cursor.close()


def cursor_executemany(connection: Any, sql: str, rows: list[dict[str, Any]]) -> None:
    """:func:`cursor_rows` for many parameter sets: the driver's ``executemany``, with the
    engine's cursor events (``executemany=True``), echo and error translation, as SQLAlchemy
    runs one."""
    try:
        cursor = connection.connection.cursor()
    except Exception as error:
        connection._handle_dbapi_exception(error, sql, rows, None, None)
    try:
        events = connection._has_events or connection.engine._has_events
        if events:
            for listener in connection.dispatch.before_cursor_execute:
                sql, rows = listener(connection, cursor, sql, rows, None, True)
        if connection._echo:
            connection._log_info(sql)
            connection._log_parameters(rows, "raw sql", ismulti=True)
        connection.dialect.do_executemany(cursor, sql, rows, None)
        if events:
            connection.dispatch.after_cursor_execute(connection, cursor, sql, rows, None, True)
    except BaseException as error:
        connection._handle_dbapi_exception(error, sql, rows, cursor, None)
    finally:
        cursor.close()


@dataclass(frozen=True)
class _Compiled:
    sql: str
    processors: dict[str, Callable[[Any], Any]]
    defaults: dict[str, Callable[[], Any]]
    constants: dict[str, Any]


# --- plain INSERTs and UPDATEs of records ------------------------------------------------------


def insert_record(record: Any) -> int:
    """INSERT a new record (built outside the session) with one driver statement, on the
    session's connection; its id is set and returned. The record stays outside the session
    (:func:`adopt_written` hands it over). On the busiest paths the unit of work costs several
    times what the statement does."""
    _writing()
    statement = _insert_statements(record.__table__)[1]
    record.id = statement.scalar(Session().connection(), _row(record))
    return record.id


def insert_records(records: Sequence[Any], **parent: int) -> None:
    """INSERT new records of one table (their ids not read back), each with ``parent``'s
    columns too (``order_id=...``)."""
    _writing()
    if len(records) == 1:  # most have one: the driver's path
        statement = _insert_statements(records[0].__table__)[0]
        statement.rows(Session().connection(), {**_row(records[0]), **parent})
    elif records:
        statement = _insert_statements(records[0].__table__)[0].statement
        Session().connection().execute(statement, [{**_row(r), **parent} for r in records])


def adopt_written(record: Any) -> Any:
    """Put a record :func:`insert_record` wrote into the session as the database has it: its
    later changes are UPDATEd by the next flush; nothing of it is written again. As a flushed
    record, it is not to be used once its transaction rolls back (its row is gone)."""
    make_transient_to_detached(record)
    Session().add(record)
    return record


def update_record(record: Any, **values: Any) -> None:
    """UPDATE these columns (named as their attributes) of a record the session holds, with
    one driver statement now (not by the next flush), and set them on the record as written."""
    _writing()
    _update_row(record.__table__, record.id, values)
    for name, value in values.items():
        set_committed_value(record, name, value)


def flush_changes() -> None:
    """Write the session's pending changes now, as ``Session.flush`` does. When they are all
    changed columns of records already written (no record added or deleted, no relationship
    changed), each record gets one driver statement UPDATE of the columns that changed, in
    the unit of work's order (tables by their foreign keys, then rows by id) and is left
    clean; anything else goes through the unit of work."""
    session = Session()
    if session.new or session.deleted:
        session.flush()
        return
    plan = []
    for record in session.dirty:
        state = sa_inspect(record)
        changes = _column_changes(state)
        if changes is None:
            session.flush()
            return
        plan.append((_table_rank(state.mapper.local_table), record.id, state, changes))
    if not plan:
        return
    _writing()
    plan.sort(key=lambda item: item[:2])
    for _, record_id, state, changes in plan:
        if changes:
            _update_row(state.mapper.local_table, record_id, changes)
    for *_, state, _ in plan:  # as the database has them now, as after a flush
        record = state.obj()
        session.expunge(record)
        make_transient(record)
        make_transient_to_detached(record)
        session.add(record)


def _column_changes(state: Any) -> dict[str, Any] | None:
    """A written record's changed columns (column key -> value), or None when a flush has
    more to do for it than an UPDATE of them."""
    mapper = state.mapper
    if (
        state.key is None
        or mapper.version_id_col is not None
        or mapper.local_table is not mapper.persist_selectable
        or [column.key for column in mapper.primary_key] != ["id"]
        or any(column.onupdate is not None for column in mapper.local_table.columns)
    ):
        return None
    columns = {attribute: column for attribute, column, _ in _columns_of(mapper.class_)}
    changes: dict[str, Any] = {}
    for key in set(mapper.attrs.keys()) - state.unmodified:
        column = columns.get(key)
        if column is None:  # a relationship, the primary key, or a query's property
            return None
        history = state.attrs[key].history
        if history.added and list(history.added) != list(history.deleted):
            changes[column] = history.added[0]
    return changes


def _update_row(table: Any, record_id: Any, values: dict[str, Any]) -> None:
    statement = _update_statement(table, tuple(sorted(values)))
    statement.rows(Session().connection(), {**values, "record_id": record_id})


def _table_rank(table: Any) -> int:
    """The table's place in the order the unit of work writes tables (parents first)."""
    rank = _table_ranks().get(table)
    if rank is None:  # a model mapped since
        _table_ranks.cache_clear()
        rank = _table_ranks()[table]
    return rank


@functools.cache
def _table_ranks() -> dict[Any, int]:
    return {table: index for index, table in enumerate(Base.metadata.sorted_tables)}


def _writing() -> None:
    """A plain statement is about to write: refused inside read_only(), else remembered as a
    flush would be (later reads of the request stay on the primary)."""
    session = Session()
    if session.info.get("read_only"):
        raise ReadOnlyViolation("a write was attempted inside read_only(); use transaction()")
    session.info["primary_wrote"] = True


@functools.cache
def _update_statement(table: Any, columns: tuple[str, ...]) -> DriverStatement:
    return DriverStatement(
        update(table)
        .where(table.c.id == bindparam("record_id"))
        .values({name: bindparam(name) for name in columns})
    )


@functools.cache
def _insert_statements(table: Any) -> tuple[DriverStatement, DriverStatement]:
    """``table``'s INSERT, and the one that returns the new id: built once."""
    return DriverStatement(insert(table)), DriverStatement(insert(table).returning(table.c.id))


def _row(record: Any) -> dict[str, Any]:
    """The record's column values, an unset one given its column's default (on the record
    too: it holds what the row does, and reading it once written costs no query)."""
    row = {}
    for attribute, column, default in _columns_of(type(record)):
        value = getattr(record, attribute)
        if value is None:
            if default is not None:
                value = default()
            setattr(record, attribute, value)  # set, not left to a load once written
        row[column] = value
    return row


@functools.cache
def _columns_of(model: type) -> tuple[tuple[str, str, Callable[[], Any] | None], ...]:
    """(attribute, column, its Python default) of each table column but the primary key (not
    of the properties read by a query, as SaleOrder.payment_state)."""
    columns = []
    for prop in sa_inspect(model).column_attrs:
        column = prop.columns[0]
        if isinstance(column, Column) and not column.primary_key:
            columns.append((prop.key, column.key, _python_default(column)))
    return tuple(columns)


def _python_default(column: Any) -> Callable[[], Any] | None:
    """The column's default as a function of nothing (None without one)."""
    default = column.default
    if default is None:
        return None
    if default.is_scalar:
        return functools.partial(lambda value: value, default.arg)
    if getattr(default.arg, "__wrapped__", None) is not None:
        # A callable without arguments, which SQLAlchemy wrapped to take a context.
        return default.arg.__wrapped__
    raise TypeError(f"DriverStatement cannot run {column}'s default: it needs a context")


# --- the session ---------------------------------------------------------------------------


def get_database() -> Database:
    return current_app.extensions["lapak.db"]


def any_of(column: Any, values: Collection[Any]) -> Any:
    """``column IN values``, as ``column = ANY(:values)`` on PostgreSQL: one array parameter,
    so the statement's text is the same whatever the number of values (psycopg converts it and
    PostgreSQL parses it once), where ``IN`` takes a placeholder per value. For readers of
    thousands of rows by id at a time."""
    if get_database().primary.dialect.name == "postgresql":
        return column == func.any(bindparam(None, list(values), type_=ARRAY(column.type)))
    return column.in_(list(values))


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
            position = _commit_lsn.get()
            if position is not None:
                g.lapak_commit_lsn = max(position, g.get("lapak_commit_lsn") or 0)
    _commit_lsn.set(None)
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


def held_locks() -> dict[Hashable, Any]:
    """The row locks the current database transaction took so far, as their takers noted them
    (``("order", 42)``), each with what its taker keeps of it (the row's object, or True): a
    lock held is not asked for again, and a row read under it is current. Forgotten when the
    transaction ends (a new one starts empty)."""
    session = Session()
    if session.get_transaction() is None:
        session.connection()  # begin: the locks belong to a transaction, never to none
    # The innermost one: locks taken in a savepoint are released by its rollback (inside one,
    # the outer transaction's locks are asked for again: harmless).
    current = session.get_nested_transaction() or session.get_transaction()
    noted = session.info.get("held_locks")
    if noted is None or noted[0] is not current:
        noted = (current, {})
        session.info["held_locks"] = noted
    return noted[1]


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


def delete_in_batches(
    table: Any,
    where: Any,
    batch_rows: int,
    *,
    dependents: Callable[[OrmSession, list[int]], None] | None = None,
) -> int:
    """Delete ``table``'s rows matching ``where``, ``batch_rows`` per short transaction (a purge
    never holds long locks nor grows one huge transaction); how many went. ``dependents(session,
    ids)`` first removes what refers to a batch's rows, in the same transaction. The ids first,
    then the rows: a bounded DELETE on SQLite and PostgreSQL alike. Safe to run concurrently."""
    purged = 0
    while True:
        with transaction() as session:
            ids = list(session.scalars(select_rows(table.c.id).where(where).limit(batch_rows)))
            if ids:
                if dependents is not None:
                    dependents(session, ids)
                session.execute(delete(table).where(table.c.id.in_(ids)))
        purged += len(ids)
        if len(ids) < batch_rows:
            return purged


F = TypeVar("F", bound=Callable[..., Any])
_REPLICA_FAILURES = (OperationalError, InterfaceError)


class read_only:
    """Route the reads of a block (or a view) to a healthy, caught-up replica.

    As a decorator it also survives a replica failing mid-read: the replica is skipped and the
    whole function runs again on the primary, which is safe because nothing in it writes. Put it
    above ``@blp.response`` so serialisation (lazy loads) happens inside the scope too.
    """

    def __init__(self, use_replica: bool = True, min_lsn: int | None = None) -> None:
        self.use_replica = use_replica
        #: A WAL position the replica must have replayed, besides the client's (work outside a
        #: request names what it has to see: an event stream's replay, what it started after).
        self.min_lsn = min_lsn
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
                # A session with no transaction yet reads the replica's state on the
                # connection its reads then use; one already reading keeps its connections.
                needed = [lsn for lsn in (client_min_lsn(), self.min_lsn) if lsn is not None]
                self.replica = database.choose_replica(
                    max(needed, default=None), None if session.in_transaction() else session
                )
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
            scope = read_only(self.use_replica, self.min_lsn)
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


def close_session() -> None:
    """End the request's (or job's) session, discarding a connection that died under it.

    A replica killed or restarted after the read cannot roll back: its connection is dropped
    with a warning, and the answer already computed stands.
    """
    if not Session.registry.has():  # most requests that touch no database never made one
        return
    session = Session()
    try:
        session.close()
    except DBAPIError as error:
        log.warning("discarded a broken database connection at cleanup: %s", _one_line(error))
        session.invalidate()
    finally:
        Session.remove()


# --- an unreachable database ---------------------------------------------------------------

#: Connection exceptions (class 08) and these: the server is going away, starting, or full.
_UNAVAILABLE_SQLSTATES = frozenset({"57P01", "57P02", "57P03", "53300"})
_UNAVAILABLE_SQLITE = frozenset({"SQLITE_BUSY", "SQLITE_LOCKED"})


class DatabaseUnavailable(errors.ServiceUnavailable):
    code = "database-unavailable"
    title = "The database is unavailable"


def is_unavailable(error: BaseException) -> bool:
    """Whether ``error`` says the database cannot be reached or takes no work for now.

    Only that: OperationalError also covers errors a statement causes (too complex, a lock
    not available), which retrying would not cure.
    """
    if isinstance(error, PoolTimeoutError):  # every pooled connection busy past the wait
        return True
    if not isinstance(error, DBAPIError):
        return False
    if error.connection_invalidated:
        return True
    original = error.orig
    if isinstance(original, psycopg.Error):
        if original.sqlstate is None:  # raised by the client: connection refused, lost, timed out
            return isinstance(original, psycopg.OperationalError | psycopg.InterfaceError)
        return original.sqlstate.startswith("08") or original.sqlstate in _UNAVAILABLE_SQLSTATES
    if isinstance(original, sqlite3.OperationalError):
        return getattr(original, "sqlite_errorname", None) in _UNAVAILABLE_SQLITE
    return False


def _answer_database_error(error: Exception) -> Response:
    from app.http import handle_domain_error, handle_unexpected_error

    if not is_unavailable(error):
        return handle_unexpected_error(error)
    get_database().warnings.warn("unavailable", "database unavailable: %s", _one_line(error))
    return handle_domain_error(
        DatabaseUnavailable("The database cannot be reached; try again shortly.")
    )


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
            # Read with the COMMIT; asked again only if that commit could not read it.
            position = g.get("lapak_commit_lsn")
            if position is None:
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
        close_session()

    # The classes a connection failure comes as; anything else in them is handed on as before.
    for error_class in (OperationalError, InterfaceError, PoolTimeoutError):
        app.register_error_handler(error_class, _answer_database_error)
    return database
