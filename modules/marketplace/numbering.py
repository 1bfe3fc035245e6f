"""Document numbers per code and year (``INV/2026/00042``) from counter rows.

Gap-free numbers (invoices, credit notes) are the counter row's value, incremented in the
transaction that uses it: the row lock is held until that transaction ends, so a rolled-back
transaction gives its number back and two transactions can never take the same one. That lock
serialises every transaction numbering the same code, so :func:`number_document` is the last
statement before commit, and does the increment and the naming in one round trip.

On PostgreSQL the transactions waiting for a counter queue first on an advisory lock of that
code and year, taken in the same statement just before the row. Waiters for a row lock all
wait for its holder's end and then race for the row, so under load some lose the race again
and again (at 32 clients the slowest orders waited up to five times the median); the lock
manager grants an advisory lock in the order it was asked for, and the row is then free.

Numbers that need only be unique (orders, payments: Odoo numbers them from sequences that may
skip) come from :func:`take_unique`: a PostgreSQL sequence per code and year, which holds no
lock, so no order waits for another's commit to get its number.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import Any

from sqlalchemy import (
    BigInteger,
    Integer,
    String,
    Table,
    bindparam,
    cast,
    func,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm.attributes import set_committed_value

from app.db import DriverStatement, Session, get_database

from .models import Payment, SaleOrder, SequenceCounter

#: Document codes: sale order, invoice, credit note (reversed invoice), payment.
CODES = ("SO", "INV", "RINV", "PAY")
DIGITS = 5


def format_number(code: str, year: int, number: int) -> str:
    return f"{code}/{year}/{number:0{DIGITS}d}"


def take_numbers(codes: Iterable[str], year: int) -> dict[str, str]:
    """The next number of each code for ``year``, in the caller's transaction."""
    numbers = {}
    for code in sorted(set(codes)):
        if code not in CODES:
            raise ValueError(f"unknown document code {code!r}")
        numbers[code] = format_number(code, year, _take(code, year))
    return numbers


def _take(code: str, year: int) -> int:
    session = Session()
    statement = (
        update(SequenceCounter)
        .where(SequenceCounter.code == code, SequenceCounter.year == year)
        .values(next_number=SequenceCounter.next_number + 1)
        .returning(SequenceCounter.next_number)
    )
    taken = session.execute(statement).scalar()
    if taken is None:  # the year's first document of this code
        dialect = get_database().primary.dialect.name
        insert = postgresql_insert if dialect == "postgresql" else sqlite_insert
        session.execute(
            insert(SequenceCounter)
            .values(code=code, year=year, next_number=1)
            .on_conflict_do_nothing(index_elements=["code", "year"])
        )
        taken = session.execute(statement).scalar_one()
    return taken - 1


def prepare_year(codes: Iterable[str], year: int) -> None:
    """Make sure the sequences of ``codes`` for ``year`` exist (PostgreSQL; once per process).

    Call it *before* the caller's transaction holds a connection: the first call of a year
    creates the sequences on a connection of its own, and a request must never wait for a
    second connection while holding the first (a small pool would starve).
    """
    database = get_database()
    if database.primary.dialect.name != "postgresql":
        return
    codes = [code for code in codes if _sequence_name(code, year) not in _READY]
    if not codes:
        return
    with database.primary.connect() as connection:
        for code in codes:
            name = _sequence_name(code, year)
            with connection.begin():
                # Two processes making the year's first order at once would both try to create
                # it, and PostgreSQL logs the loser's duplicate error even with IF NOT EXISTS:
                # one creates it under the lock, the other then finds it.
                connection.execute(
                    select(func.pg_advisory_xact_lock(_LOCK_SPACE, func.hashtext(name)))
                )
                if connection.execute(select(func.to_regclass(name))).scalar() is None:
                    _create_sequence(connection, code, year)
            _READY.add(name)


#: The first key of the advisory locks taken around creating sequences ("SEQ" in ASCII).
_LOCK_SPACE = 0x534551


def _create_sequence(connection: Any, code: str, year: int) -> None:
    """Create the sequence, starting after any number of that code and year already used."""
    name, table = _sequence_name(code, year), _NUMBERED_TABLES[code]
    # Owned by the counters' table: dropped with it (a downgrade) and restarted with it
    # (TRUNCATE ... RESTART IDENTITY).
    connection.execute(
        text(f"CREATE SEQUENCE IF NOT EXISTS {name} OWNED BY marketplace_sequence.next_number")
    )
    # Documents already numbered in that year (the sequence was dropped and made again).
    used = connection.execute(
        select(func.max(cast(func.substring(table.c.name, "([0-9]+)$"), BigInteger))).where(
            table.c.name.like(f"{code}/{year}/%")
        )
    ).scalar()
    if used:
        # GREATEST skips a NULL last value (a sequence no one has used yet).
        last = func.pg_sequence_last_value(func.to_regclass(name))
        connection.execute(select(func.setval(name, func.greatest(used, last))))


def take_unique(codes: Iterable[str], year: int) -> dict[str, str]:
    """Numbers unique for each code and ``year`` (not gap-free), in the caller's transaction.

    On PostgreSQL from a sequence per code and year (:func:`prepare_year` first): no lock is
    held, so no order waits for another to commit, and a failed order leaves a gap, as Odoo's
    sequences do. On SQLite, where writes are serialised anyway, from the counter rows.
    """
    codes = sorted(set(codes))
    if get_database().primary.dialect.name != "postgresql":
        return take_numbers(codes, year)
    names = tuple(_sequence_name(code, year) for code in codes)
    try:
        (values,) = _nextval_statement(names).rows(Session().connection(), {})
    except DBAPIError:
        # Dropped under a running process (a downgrade)? The next request makes them again.
        _READY.difference_update(names)
        raise
    return {
        code: format_number(code, year, number) for code, number in zip(codes, values, strict=True)
    }


@functools.lru_cache(maxsize=32)
def _nextval_statement(names: tuple[str, ...]) -> DriverStatement:
    """``SELECT nextval(...), ...`` of these sequences, built once (a few per year)."""
    return DriverStatement(select(*[func.nextval(name) for name in names]))


def _sequence_name(code: str, year: int) -> str:
    if code not in CODES or not isinstance(year, int):
        raise ValueError(f"no sequence for {code!r} {year!r}")
    return f"marketplace_seq_{code.lower()}_{year}"


#: The tables whose names the sequences' codes number.
_NUMBERED_TABLES = {"SO": SaleOrder.__table__, "PAY": Payment.__table__}
#: Sequences this process knows exist.
_READY: set[str] = set()


def number_document(document: Any, code: str, year: int) -> str:
    """Give a flushed ``document`` (a model with ``id`` and ``name``) the next gap-free number.

    Call it last before commit: it locks the counter row until the transaction ends.
    """
    session = Session()
    table = document.__table__
    if get_database().primary.dialect.name != "postgresql":
        # SQLite: writes are serialised anyway; two statements are as short a hold as one.
        name = take_numbers((code,), year)[code]
        session.execute(update(table).where(table.c.id == document.id).values(name=name))
        set_committed_value(document, "name", name)
        return name
    session.flush()  # as the ORM would before a statement: the document's own changes first
    statement = _numbering_statement(table)
    values = {
        "queue_space": QUEUE_SPACE,
        "queue_key": queue_key(code, year),
        "counter_code": code,
        "counter_year": year,
        "number_prefix": f"{code}/{year}/",
        "document_id": document.id,
    }
    connection = session.connection()
    name = statement.scalar(connection, values)
    if name is None:  # the year's first document of this code
        connection.execute(_FIRST_OF_YEAR, {"code": code, "year": year})
        name = statement.scalar(connection, values)
    set_committed_value(document, "name", name)  # written already; no UPDATE from the ORM
    return name


#: The first key of the advisory locks gap-free counters queue on ("NUM" in ASCII).
QUEUE_SPACE = 0x4E554D


def queue_key(code: str, year: int) -> int:
    """The second key: one per code and year, none shared."""
    if code not in CODES:
        raise ValueError(f"unknown document code {code!r}")
    return year * 100 + CODES.index(code)


@functools.cache
def _numbering_statement(table: Table) -> DriverStatement:
    """Take the next number of a code and year and write it as ``table``'s name, built once
    per table: the counter row's increment is a data-modifying CTE of the naming UPDATE."""
    counters = SequenceCounter.__table__
    # An uncorrelated scalar subquery: PostgreSQL runs it once, as a filter before the scan,
    # so the queue's lock is held before the row is reached.
    queued = select(
        func.pg_advisory_xact_lock(
            bindparam("queue_space", type_=Integer), bindparam("queue_key", type_=Integer)
        )
    ).scalar_subquery()
    taken = (
        update(counters)
        .where(
            counters.c.code == bindparam("counter_code"),
            counters.c.year == bindparam("counter_year"),
            queued.is_not(None),
        )
        .values(next_number=counters.c.next_number + 1)
        .returning((counters.c.next_number - 1).label("number"))
        .cte("taken")
    )
    # A scalar subquery, not UPDATE ... FROM taken: no counter row (a new year) gives NULL.
    digits = cast(select(taken.c.number).scalar_subquery(), String)
    return DriverStatement(
        update(table)
        .where(table.c.id == bindparam("document_id"))
        .values(
            name=bindparam("number_prefix", type_=String)
            + func.lpad(digits, func.greatest(DIGITS, func.length(digits)), "0")
        )
        .returning(table.c.name)
    )


_FIRST_OF_YEAR = text(
    "INSERT INTO marketplace_sequence (code, year, next_number) VALUES (:code, :year, 1) "
    "ON CONFLICT (code, year) DO NOTHING"
)


def last_numbers(year: int) -> dict[str, int]:
    """The last number taken per code in ``year`` (0 when none)."""
    rows = Session().execute(
        select(SequenceCounter.code, SequenceCounter.next_number).where(
            SequenceCounter.year == year
        )
    )
    return {code: next_number - 1 for code, next_number in rows}
