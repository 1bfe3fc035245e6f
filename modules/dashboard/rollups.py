"""Keeping the rollups: the outbox subscribers that count each fact once, and the rebuild.

**Incremental.** ``payment.succeeded`` / ``payment.failed`` / ``payment.canceled``,
``payment.confirmed`` and ``refund.succeeded`` each name their subject; the subscriber reads its
fact (:mod:`.facts`), inserts the fact's natural key into ``dashboard_counted`` (``ON CONFLICT DO
NOTHING``) and, only if that row is new, adds the fact to its rollup rows with ``INSERT ... ON
CONFLICT DO UPDATE`` (one statement for the platform's row and the sellers'), in the dispatch's
transaction. A fact is named by one event, or by two that say the same (a provider's payment:
``payment.succeeded`` and ``payment.confirmed``), so the key is the event's identity: the outbox
delivers at least once, the counters move once. Unlike the outbox's event id, the key is also
known to the rebuild, which reads the facts from the source tables.

**Rebuild** (``lapak dashboard rebuild``), in one transaction, in two steps:

1. :func:`stage` counts every fact of the source tables again, read in bulk
   (:func:`.facts.every_fact`), into two temporary tables: the facts' keys, and the rollup rows
   they sum to. The dashboard's own tables are not locked meanwhile: the subscribers go on.
2. :func:`swap` locks both tables on PostgreSQL (``EXCLUSIVE``: reads go on, the subscribers'
   writes wait), waiting at most ``lock_timeout`` for the writers already there
   (:class:`RebuildBusy`, nothing changed). Under the lock, the keys the subscribers counted that
   the count did not see are read (their facts came after it read their table) and their facts
   added to what was staged; keys whose fact is no more are dropped; then only the keys and rows
   that differ from the staged ones are written. The lock lasts what the differences take, not
   what the count took.

So a fact is counted once: the count saw it (its key, written at the swap, refuses the
subscriber that comes later) or the subscriber counted it (and the swap adds it), never both,
never neither. On SQLite the transaction holds the database's one write lock from its start
(SQLite has a single writer): there the subscribers wait for the whole rebuild.

**Repair.** Last, in the same transaction, ``dashboard_seller_payment`` (kept by triggers, not by
the subscribers) is made what the payments and lines say (:func:`.seller_payment.repair`): rows
no line gives deleted, times fixed, missing rows inserted, under a ``SHARE`` lock of the payments
and lines on PostgreSQL (orders and payments wait for its three statements).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import (
    Column,
    MetaData,
    String,
    Table,
    Uuid,
    and_,
    delete,
    exists,
    insert,
    literal,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import OperationalError

from app.db import Session, get_database, transaction, utcnow
from app.errors import Conflict

from .facts import (
    PAYMENT,
    REFUND,
    TRANSACTION,
    Fact,
    every_fact,
    facts_of,
    facts_of_keys,
    increments,
)
from .models import COUNTERS, CountedFact, DailyRollup
from .seller_payment import Repaired, repair

#: Rows written per statement.
CHUNK = 1000
#: Summed rollup rows the count keeps in memory before adding them to the staged ones.
HELD_ROWS = 20_000
#: How long the swap waits for the writers of the dashboard's tables before giving up.
LOCK_TIMEOUT = timedelta(seconds=10)
#: PostgreSQL's SQLSTATE for a lock not granted within ``lock_timeout``.
LOCK_NOT_AVAILABLE = "55P03"
_ROLLUP = DailyRollup.__table__
_COUNTED = CountedFact.__table__
_KEY = ("seller_id", "currency", "day", "provider")


# -- the subscribers ----------------------------------------------------------------------------


def count_transaction(payload: dict[str, Any]) -> None:
    """``payment.succeeded`` / ``payment.failed`` / ``payment.canceled``."""
    if payload.get("kind") != "invoice":
        return  # a wallet top-up: not a sale
    _count(TRANSACTION, payload["transaction"])


def count_payment(payload: dict[str, Any]) -> None:
    """``payment.confirmed``: the payment's fact, or its provider transaction's (the same one
    ``payment.succeeded`` counts: once, whichever comes first)."""
    _count(PAYMENT, payload["payment"])


def count_refund(payload: dict[str, Any]) -> None:
    """``refund.succeeded``."""
    _count(REFUND, payload["refund"])


def _count(kind: str, subject: str) -> None:
    with transaction():
        for fact in facts_of(kind, uuid.UUID(subject)):
            if _claim(fact):
                _add(_ROLLUP, increments(fact))


def _claim(fact: Fact) -> bool:
    """Record that ``fact`` is counted; False if it already was."""
    claimed = Session().execute(
        _insert(_COUNTED)
        .values(kind=fact.kind, subject=fact.subject, counted_at=utcnow())
        .on_conflict_do_nothing(index_elements=["kind", "subject"])
        .returning(_COUNTED.c.kind)
    )
    return claimed.scalar() is not None


def _add(table: Table, rows: list[dict[str, Any]]) -> None:
    """Add ``rows``' counters to ``table``'s rows with their keys (made when missing)."""
    statement = _insert(table)
    statement = statement.on_conflict_do_update(
        index_elements=list(_KEY),
        set_={name: table.c[name] + statement.excluded[name] for name in COUNTERS},
    )
    for start in range(0, len(rows), CHUNK):
        Session().execute(statement, rows[start : start + CHUNK])


def _insert(table: Any) -> Any:
    if get_database().primary.dialect.name == "postgresql":
        return postgresql_insert(table)
    return sqlite_insert(table)


# -- the rebuild ----------------------------------------------------------------------------------


class RebuildBusy(Conflict):
    code = "dashboard-rebuild-busy"
    title = "The dashboard's rollups are being written: try the rebuild again"


@dataclass(frozen=True)
class Rebuilt:
    #: Facts counted: the source tables' when read, and those counted meanwhile.
    facts: int
    #: Of them, those the subscribers counted while the count ran (added at the swap).
    meanwhile: int
    #: Keys dropped: counted once, their fact is no more.
    dropped: int
    #: Seconds the dashboard's tables were locked (the swap), and the whole rebuild took.
    locked_s: float
    total_s: float
    #: What the repair of ``dashboard_seller_payment`` changed (:func:`.seller_payment.repair`).
    repaired: Repaired | None = None


def rebuild(lock_timeout: timedelta = LOCK_TIMEOUT) -> Rebuilt:
    """Count every fact of the source tables again, in one transaction (see the module)."""
    began = time.perf_counter()
    with transaction():
        staged = stage()
        locked = time.perf_counter()
        meanwhile, dropped = swap(lock_timeout)
        swapped = time.perf_counter()
        repaired = _repair(lock_timeout)
    return Rebuilt(
        facts=staged + meanwhile,
        meanwhile=meanwhile,
        dropped=dropped,
        locked_s=swapped - locked,
        total_s=time.perf_counter() - began,
        repaired=repaired,
    )


def _repair(lock_timeout: timedelta) -> Repaired:
    """Make ``dashboard_seller_payment`` what the payments and lines say (rows its triggers
    missed, a write that bypassed them), under the swap's ``lock_timeout``."""
    try:
        return repair(Session().connection())
    except OperationalError as error:
        if getattr(error.orig, "sqlstate", None) != LOCK_NOT_AVAILABLE:
            raise
        raise RebuildBusy(
            f"the payments and invoice lines stayed locked by other writers for {lock_timeout}: "
            "nothing was changed; run the rebuild again (or with a longer --lock-timeout)",
        ) from error


_staging = MetaData()
#: The keys of the facts the count read, and the rollup rows they sum to (temporary tables:
#: the transaction's own, dropped by the swap; rolled back with it on a failure).
_STAGED_KEYS = Table(
    "dashboard_rebuild_counted",
    _staging,
    Column("kind", String(16), primary_key=True),
    Column("subject", Uuid(), primary_key=True),
    prefixes=["TEMPORARY"],
)
_STAGED_ROLLUP = Table(
    "dashboard_rebuild_daily",
    _staging,
    *(
        Column(column.name, column.type, primary_key=column.primary_key, autoincrement=False)
        for column in _ROLLUP.columns
    ),
    prefixes=["TEMPORARY"],
)


def stage() -> int:
    """Count every fact into the staging tables (made here, in the current transaction);
    how many there are. Locks nothing of the dashboard's."""
    connection = Session().connection()
    _STAGED_KEYS.create(connection)
    _STAGED_ROLLUP.create(connection)
    totals = _Totals()
    counted = 0
    for batch in every_fact():
        counted += len(batch)
        _stage(batch, totals)
        if len(totals.rows) >= HELD_ROWS:
            _add(_STAGED_ROLLUP, totals.drain())
    _add(_STAGED_ROLLUP, totals.drain())
    if connection.dialect.name == "postgresql":
        # Their statistics, so that the swap's joins with the dashboard's tables are planned
        # for their size (a temporary table is never analysed by autovacuum).
        connection.execute(text("ANALYZE dashboard_rebuild_counted, dashboard_rebuild_daily"))
    return counted


def swap(lock_timeout: timedelta = LOCK_TIMEOUT) -> tuple[int, int]:
    """Make the dashboard's tables what :func:`stage` staged, with the facts the subscribers
    counted since (see the module), and drop the staging tables; how many facts that added,
    and how many keys of facts that are no more it dropped."""
    connection = Session().connection()
    _lock(connection, lock_timeout)
    staged, counted = _STAGED_KEYS.c, _COUNTED.c
    same_key = and_(staged.kind == counted.kind, staged.subject == counted.subject)
    unseen = list(
        connection.execute(
            select(counted.kind, counted.subject).where(
                ~exists().where(same_key).correlate(_COUNTED)
            )
        )
    )
    meanwhile = facts_of_keys((kind, _uuid(subject)) for kind, subject in unseen)
    if meanwhile:
        totals = _Totals()
        _stage(meanwhile, totals)
        _add(_STAGED_ROLLUP, totals.drain())
    dropped = connection.execute(
        delete(_COUNTED).where(~exists().where(same_key).correlate(_COUNTED))
    ).rowcount
    connection.execute(
        insert(_COUNTED).from_select(
            ["kind", "subject", "counted_at"],
            select(staged.kind, staged.subject, literal(utcnow(), counted.counted_at.type)).where(
                ~exists().where(same_key).correlate(_STAGED_KEYS)
            ),
        )
    )
    rollup, wanted = _ROLLUP.c, _STAGED_ROLLUP.c
    same_row = and_(*(wanted[name] == rollup[name] for name in _KEY))
    connection.execute(delete(_ROLLUP).where(~exists().where(same_row).correlate(_ROLLUP)))
    connection.execute(
        update(_ROLLUP)
        .where(same_row, or_(*(rollup[name] != wanted[name] for name in COUNTERS)))
        .values({name: wanted[name] for name in COUNTERS})
    )
    columns = [column.name for column in _ROLLUP.columns]
    connection.execute(
        insert(_ROLLUP).from_select(
            columns,
            select(*(wanted[name] for name in columns)).where(
                ~exists().where(same_row).correlate(_STAGED_ROLLUP)
            ),
        )
    )
    _STAGED_KEYS.drop(connection)
    _STAGED_ROLLUP.drop(connection)
    return len(meanwhile), dropped


def _stage(facts: list[Fact], totals: _Totals) -> None:
    """Write ``facts``' keys to the staged ones, and sum their rows into ``totals``."""
    keys = [{"kind": fact.kind, "subject": fact.subject} for fact in facts]
    for start in range(0, len(keys), CHUNK):
        Session().execute(insert(_STAGED_KEYS), keys[start : start + CHUNK])
    for fact in facts:
        totals.add(increments(fact))


class _Totals:
    """Rollup rows summed in memory, by key."""

    def __init__(self) -> None:
        self.rows: dict[tuple[Any, ...], list[int]] = {}

    def add(self, rows: Iterable[dict[str, Any]]) -> None:
        for row in rows:
            key = tuple(row[name] for name in _KEY)
            counters = self.rows.get(key)
            if counters is None:
                self.rows[key] = [row[name] for name in COUNTERS]
                continue
            for index, name in enumerate(COUNTERS):
                counters[index] += row[name]

    def drain(self) -> list[dict[str, Any]]:
        """The rows summed so far, in key order (the order every writer locks them in);
        forgotten here."""
        rows = [
            {**dict(zip(_KEY, key, strict=True)), **dict(zip(COUNTERS, counters, strict=True))}
            for key, counters in sorted(self.rows.items())
        ]
        self.rows = {}
        return rows


def _lock(connection: Any, lock_timeout: timedelta) -> None:
    """Lock the dashboard's tables against writers (PostgreSQL; SQLite's transaction holds
    the database's write lock already), waiting at most ``lock_timeout``."""
    if connection.dialect.name != "postgresql":
        return
    milliseconds = max(1, int(lock_timeout.total_seconds() * 1000))
    connection.execute(text(f"SET LOCAL lock_timeout = {milliseconds}"))
    try:
        connection.execute(text("LOCK TABLE dashboard_counted, dashboard_daily IN EXCLUSIVE MODE"))
    except OperationalError as error:
        if getattr(error.orig, "sqlstate", None) != LOCK_NOT_AVAILABLE:
            raise
        raise RebuildBusy(
            f"the dashboard's tables stayed locked by other writers for {lock_timeout}: "
            "nothing was changed; run the rebuild again (or with a longer --lock-timeout)",
        ) from error


def _uuid(value: Any) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))
