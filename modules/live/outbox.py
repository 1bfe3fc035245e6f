"""Reading committed events from the outbox in id order, without ever skipping one.

Outbox ids are handed out when a transaction inserts its event, not when it commits. On
PostgreSQL two transactions can commit out of id order: event 11 may be visible while event
10's transaction is still running. A feed that moved past 10 on seeing 11 would never send 10,
and a client resuming after 11 (``Last-Event-ID``) would miss it for good. So the feed
(:class:`Frontier`) stops at the first missing id and only goes on once that id can no longer
appear: its transaction rolled back, or it committed and was read.

Which it is cannot be read from the table (another transaction's uncommitted row is invisible),
but it can be told from transaction ids. The transaction that took a missing id took it before
the event after it committed, so by the next poll it has its transaction id. The feed then takes
a *horizon*: a transaction id of its own, given at that moment and ended at once
(``pg_current_xact_id()`` in a short transaction of its own), so newer than every transaction
that could hold the missing id. Once the oldest transaction still running (``xmin`` of a later
snapshot, ``pg_current_snapshot()``, read before the events) is no older than the horizon, all
of those have ended, and the events read after that snapshot include the missing one if it
committed. A missing id still missing then belongs to a rolled-back transaction, and is
skipped. A rollback costs the feed a poll or two; a transaction that keeps running (a long
import) holds the feed back at most ``LAPAK_LIVE_GAP_TIMEOUT_SECONDS``, after which the missing
ids are skipped with a warning. Where a feed starts is chosen the same way
(:func:`settled_newest_id`).

Why not the snapshot's ``xmax`` as the horizon: PostgreSQL sets it to the newest *ended*
transaction id plus one, not the next id to be given, and leaves the transactions running at or
above it out of ``xmin`` as well. A transaction that began writing after the one holding the
next event, but took its outbox id first, can be at or above it while that event commits: the
feed would see every transaction "known" at the horizon ended while it still runs, and skip its
event for good.

On SQLite one transaction writes at a time (``BEGIN IMMEDIATE``) and a rolled-back id is used
again by the next insert, so committed ids never have a hole that a later commit fills: a
missing id is skipped at once.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Text, bindparam, func, select, text
from sqlalchemy.orm import Session

from app.events import OutboxEvent

log = logging.getLogger(__name__)

#: Events read per query, by the feed and by a replay.
PAGE_SIZE = 500


@dataclass(frozen=True)
class Committed:
    """One committed event of the outbox."""

    id: int
    event_id: uuid.UUID
    name: str
    created_at: datetime
    payload: dict[str, Any]


@dataclass(frozen=True)
class Snapshot:
    """What a poll knows of the transactions running on PostgreSQL: the oldest still running
    (``xmin``), and a horizon (see the module) when it was asked for one."""

    xmin: int
    horizon: int | None = None


_XMIN = text("SELECT pg_snapshot_xmin(pg_current_snapshot())::text")
_NEXT_XID = text("SELECT pg_current_xact_id()::text")


def read_snapshot(session: Session, horizon: bool = False) -> Snapshot | None:
    """The oldest transaction running on the server, and with ``horizon`` first a horizon (see
    the module); None where commits cannot overtake ids (SQLite)."""
    if session.get_bind().dialect.name != "postgresql":
        return None
    found = read_horizon(session) if horizon else None
    return Snapshot(int(session.execute(_XMIN).scalar_one()), found)


def read_horizon(session: Session) -> int:
    """A transaction id newer than every one given before (PostgreSQL): one given to a
    transaction of its own on another connection, ended at once (``session`` is left alone)."""
    with session.get_bind().connect() as connection:
        xid = connection.execute(_NEXT_XID).scalar_one()
        connection.rollback()
    return int(xid)


_COLUMNS = (
    OutboxEvent.id,
    OutboxEvent.event_id,
    OutboxEvent.name,
    OutboxEvent.created_at,
    OutboxEvent.payload,
)
#: Built once (their compiled form cached): a poll runs twice a second in every process.
_AFTER = select(*_COLUMNS).where(OutboxEvent.id > bindparam("after"))
_PAGE = _AFTER.order_by(OutboxEvent.id).limit(bindparam("limit"))
_PAGE_UPTO = (
    _AFTER.where(OutboxEvent.id <= bindparam("upto"))
    .order_by(OutboxEvent.id)
    .limit(bindparam("limit"))
)
#: The page with, on each row, the oldest transaction running when the statement's snapshot
#: was taken (that of the rows read: see :func:`read_polled`).
_POLLED = (
    select(func.pg_snapshot_xmin(func.pg_current_snapshot()).cast(Text), *_COLUMNS)
    .where(OutboxEvent.id > bindparam("after"))
    .order_by(OutboxEvent.id)
    .limit(bindparam("limit"))
)


def read_after(
    session: Session, after: int, limit: int = PAGE_SIZE, upto: int | None = None
) -> list[Committed]:
    """Up to ``limit`` committed events with an id above ``after`` (and at most ``upto``), in id
    order: one range scan of the primary key."""
    if upto is None:
        rows = session.execute(_PAGE, {"after": after, "limit": limit})
    else:
        rows = session.execute(_PAGE_UPTO, {"after": after, "upto": upto, "limit": limit})
    return [Committed(*row) for row in rows]


def read_polled(
    session: Session, after: int, limit: int = PAGE_SIZE, horizon: bool = False
) -> tuple[list[Committed], Snapshot | None]:
    """:func:`read_after`, and the :func:`read_snapshot` the rows were read with (with
    ``horizon``, a horizon taken first), in one round trip: the feed's poll.

    One statement reads the rows and ``pg_current_snapshot()`` with the same snapshot, so its
    ``xmin`` is as good as one read before the rows: every transaction older than it had ended
    when the rows were read. With no rows there is nothing to skip and no snapshot (None, as on
    SQLite, where commits cannot overtake ids anyway).
    """
    if session.get_bind().dialect.name != "postgresql":
        return read_after(session, after, limit), None
    found = read_horizon(session) if horizon else None
    rows = session.execute(_POLLED, {"after": after, "limit": limit}).all()
    if not rows:
        return [], None
    return [Committed(*row[1:]) for row in rows], Snapshot(int(rows[0][0]), found)


def newest_id(session: Session) -> int:
    """The highest event id committed so far (0 for none)."""
    return session.scalar(select(func.max(OutboxEvent.id))) or 0


def settled_newest_id(session: Session, wait_seconds: float) -> int:
    """The newest event id, once no lower id can still commit: where a feed starts.

    On PostgreSQL the transactions holding a lower id all had their transaction id when the
    newest was read (see the module), so once the oldest transaction running is no older than a
    horizon taken then, every id up to it has committed or never will. That takes
    milliseconds (the transactions then running end). A transaction that keeps running holds
    the start back at most ``wait_seconds`` (the feed's gap timeout: a feed already running
    would wait as long for the same id), after which the feed starts anyway, with a warning: an
    event that transaction commits with a lower id will not be streamed.
    """
    newest = newest_id(session)
    if read_snapshot(session) is None:
        return newest
    horizon = read_horizon(session)
    deadline = time.monotonic() + wait_seconds
    pause = 0.005
    while True:
        snapshot = read_snapshot(session)
        if snapshot is None or snapshot.xmin >= horizon:
            return newest
        if time.monotonic() >= deadline:
            break
        time.sleep(pause)
        pause = min(pause * 2, 0.1)  # milliseconds at first; a long wait asks ten times a second
    log.warning(
        "live: the feed starts after event %d although a transaction that began before it was "
        "read still runs after %ds; an event it commits with a lower id will not be streamed",
        newest,
        wait_seconds,
    )
    return newest


@dataclass
class _Gap:
    seen_at: float
    #: A transaction id taken at the first poll after the gap was seen (see the module): every
    #: transaction that could fill it had its id, older than this one, by then.
    horizon: int | None = None


class Frontier:
    """The feed's position: every event up to :attr:`position` was taken (or can no longer
    appear). See the module for how it waits on missing ids."""

    def __init__(
        self,
        position: int,
        gap_timeout_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.position = position
        self.gap_timeout_seconds = gap_timeout_seconds
        self._clock = clock
        self._gaps: dict[int, _Gap] = {}

    def advance(self, rows: Sequence[Committed], snapshot: Snapshot | None) -> list[Committed]:
        """The events of ``rows`` (read after ``snapshot``, above :attr:`position`, in id order)
        that come next, in order, up to the first missing id that may still appear."""
        taken: list[Committed] = []
        now = self._clock()
        for row in rows:
            if row.id <= self.position:
                continue
            if row.id > self.position + 1 and not self._gap_closed(row.id, snapshot, now):
                break
            taken.append(row)
            self.position = row.id
        self._gaps = {start: gap for start, gap in self._gaps.items() if start > self.position}
        return taken

    @property
    def wants_horizon(self) -> bool:
        """Whether the next snapshot should come with a horizon (a gap waits for one)."""
        return any(gap.horizon is None for gap in self._gaps.values())

    def _gap_closed(self, following: int, snapshot: Snapshot | None, now: float) -> bool:
        """Whether the ids between :attr:`position` and ``following`` can no longer appear."""
        if snapshot is None:
            return True
        start = self.position + 1
        gap = self._gaps.get(start)
        if gap is None:
            self._gaps[start] = _Gap(seen_at=now)
            return False
        if gap.horizon is None:
            gap.horizon = snapshot.horizon
        if gap.horizon is not None and snapshot.xmin >= gap.horizon:
            return True
        if now - gap.seen_at >= self.gap_timeout_seconds:
            log.warning(
                "live: event ids %d to %d were still missing after %ds (a transaction running "
                "that long, or a rolled-back one); the feed goes on without them",
                start,
                following - 1,
                self.gap_timeout_seconds,
            )
            return True
        return False
