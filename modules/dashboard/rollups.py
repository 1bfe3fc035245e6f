"""Keeping the rollups: the outbox subscribers that count each fact once, and the rebuild.

**Incremental.** ``payment.succeeded`` / ``payment.failed`` / ``payment.canceled``,
``payment.confirmed`` and ``refund.succeeded`` each name their subject; the subscriber reads it
(:mod:`.facts`), inserts the fact's natural key into ``dashboard_counted`` (``ON CONFLICT DO
NOTHING``) and, only if that row is new, adds the fact to its rollup rows with ``INSERT ... ON
CONFLICT DO UPDATE`` (one statement for the platform's row and the sellers'), in the dispatch's
transaction. Each of these events is emitted once per subject (a transaction reaches one final
state once, a payment is confirmed once, a refund succeeds once), so the key is the event's
identity: the outbox delivers at least once, the counters move once. Unlike the outbox's event
id, the key is also known to the rebuild, which reads the facts from the source tables.

**Rebuild** (``lapak dashboard rebuild``): in one transaction, empty both tables and count every
fact the source tables hold again, its key with it. On PostgreSQL the two tables are locked
first (``EXCLUSIVE``: reads go on, the subscribers' writes wait), so a subscriber's fact is
either in what the rebuild read (and its key refuses the subscriber's) or not (and the
subscriber counts it after): never both, never neither.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from sqlalchemy import delete, insert, select, text
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from app.db import Session, get_database, transaction, utcnow
from modules.marketplace.models import Payment, Refund
from modules.payment.models import PaymentTransaction

from .facts import Fact, every_fact, increments, payment_fact, refund_fact, transaction_fact
from .models import COUNTERS, CountedFact, DailyRollup

#: Rows written per statement by the rebuild.
CHUNK = 1000
_ROLLUP = DailyRollup.__table__
_KEY = ("seller_id", "currency", "day", "provider")


# -- the subscribers ----------------------------------------------------------------------------


def count_transaction(payload: dict[str, Any]) -> None:
    """``payment.succeeded`` / ``payment.failed`` / ``payment.canceled``."""
    if payload.get("kind") != "invoice":
        return  # a wallet top-up: not a sale
    _count(PaymentTransaction, payload["transaction"], transaction_fact)


def count_payment(payload: dict[str, Any]) -> None:
    """``payment.confirmed``: the payment's fact, or its provider transaction's (the same one
    ``payment.succeeded`` counts: once, whichever comes first)."""
    _count(Payment, payload["payment"], payment_fact)


def count_refund(payload: dict[str, Any]) -> None:
    """``refund.succeeded``."""
    _count(Refund, payload["refund"], refund_fact)


def _count(model: Any, subject: str, fact_of: Callable[[Any], Fact | None]) -> None:
    with transaction() as session:
        record = session.scalars(select(model).where(model.uuid == uuid.UUID(subject))).first()
        fact = fact_of(record) if record is not None else None
        if fact is not None and _claim(fact):
            _add(increments(fact))


def _claim(fact: Fact) -> bool:
    """Record that ``fact`` is counted; False if it already was."""
    claimed = Session().execute(
        _insert(CountedFact.__table__)
        .values(kind=fact.kind, subject=fact.subject, counted_at=utcnow())
        .on_conflict_do_nothing(index_elements=["kind", "subject"])
        .returning(CountedFact.__table__.c.kind)
    )
    return claimed.scalar() is not None


def _add(rows: list[dict[str, Any]]) -> None:
    """Add ``rows``' counters to the rollup rows with their keys (made when missing)."""
    statement = _insert(_ROLLUP)
    statement = statement.on_conflict_do_update(
        index_elements=list(_KEY),
        set_={name: _ROLLUP.c[name] + statement.excluded[name] for name in COUNTERS},
    )
    Session().execute(statement, rows)


def _insert(table: Any) -> Any:
    if get_database().primary.dialect.name == "postgresql":
        return postgresql_insert(table)
    return sqlite_insert(table)


# -- the rebuild ----------------------------------------------------------------------------------


def rebuild() -> int:
    """Count every fact of the source tables again, in one transaction; how many there are."""
    with transaction() as session:
        if get_database().primary.dialect.name == "postgresql":
            session.execute(text("LOCK TABLE dashboard_counted, dashboard_daily IN EXCLUSIVE MODE"))
        session.execute(delete(CountedFact))
        session.execute(delete(DailyRollup))
        totals: dict[tuple[Any, ...], dict[str, Any]] = {}
        keys: list[dict[str, Any]] = []
        counted = 0
        now = utcnow()
        for fact in every_fact():
            counted += 1
            keys.append({"kind": fact.kind, "subject": fact.subject, "counted_at": now})
            for row in increments(fact):
                key = tuple(row[name] for name in _KEY)
                total = totals.get(key)
                if total is None:
                    totals[key] = dict(row)
                    continue
                for name in COUNTERS:
                    total[name] += row[name]
            if len(keys) >= CHUNK:
                session.execute(insert(CountedFact), keys)
                keys = []
        if keys:
            session.execute(insert(CountedFact), keys)
        rows = [totals[key] for key in sorted(totals)]
        for start in range(0, len(rows), CHUNK):
            session.execute(insert(DailyRollup), rows[start : start + CHUNK])
    return counted
